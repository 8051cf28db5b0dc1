"""The KurrentDB-protocol read endpoint with Python's stock client,
kurrentdbclient (pinned by scripts/grpc-clients.sh): streams and $all read
both ways, filtered, subscribed from the start while events are appended
through HTTP, resumed from a saved position, compared event by event with
the log (PostgreSQL, through psql): none missing, none twice. Bad requests
get the protocol's errors; TLS needs the auditors' token.

Environment: TIDELOG_HTTP (base URL), TIDELOG_GRPC (host:port, plaintext),
TIDELOG_GRPC_TLS (host:port), TIDELOG_CA (PEM file), TIDELOG_TOKEN,
TIDELOG_PSQL (psql arguments, space-separated).
"""

import json
import os
import subprocess
import sys
import threading
import time
import urllib.request

from kurrentdbclient import KurrentDBClient, NewEvent, StreamState
from kurrentdbclient.exceptions import (
    AccessDeniedError,
    KurrentDBClientError,
    NotFoundError,
    ServiceUnavailableError,
    UnauthenticatedError,
)

HTTP = os.environ["TIDELOG_HTTP"]
GRPC = os.environ["TIDELOG_GRPC"]
GRPC_TLS = os.environ["TIDELOG_GRPC_TLS"]
CA = os.environ["TIDELOG_CA"]
TOKEN = os.environ["TIDELOG_TOKEN"]
PSQL = os.environ["TIDELOG_PSQL"].split()
TAG = "py"
CHECKS = []


def check(name, ok, detail=""):
    CHECKS.append(name)
    if not ok:
        print(f"python kurrentdbclient: FAILED {name}: {detail}", file=sys.stderr)
        sys.exit(1)


def post(path, body, token=None):
    req = urllib.request.Request(HTTP + path, data=json.dumps(body).encode(), method="POST")
    req.add_header("content-type", "application/json")
    if token:
        req.add_header("Authorization", token)
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.load(r)


def sql(query):
    out = subprocess.run(PSQL + ["-Atc", query], check=True, capture_output=True, text=True)
    return out.stdout.splitlines()


def all_numbered():
    """Waits until every event has its log position; returns how many."""
    for _ in range(400):
        events, numbered = sql(
            "SELECT (SELECT count(*) FROM events) || ' ' || (SELECT count(*) FROM log_positions)"
        )[0].split()
        if events == numbered:
            return int(events)
        time.sleep(0.05)
    raise AssertionError("events not numbered")


def log():
    """The log as clients should see it, in position order."""
    rows = sql(
        "SELECT json_build_object('position', p.position, 'stream', e.aggregate_type || '-' || e.aggregate_id,"
        " 'revision', e.sequence - 1, 'type', e.event_type, 'data', e.payload::text, 'metadata', e.metadata::text)"
        " FROM log_positions p JOIN events e ON e.global_position = p.global_position ORDER BY p.position"
    )
    return [json.loads(r) for r in rows]


def same(got, want):
    """An event as received equals the log's (credentials redacted)."""
    if got.commit_position != want["position"] or got.prepare_position != want["position"]:
        return f"position {got.commit_position} != {want['position']}"
    if (got.stream_name, got.stream_position, got.type) != (want["stream"], want["revision"], want["type"]):
        return f"{(got.stream_name, got.stream_position, got.type)} != {want}"
    data = json.loads(got.data)
    if "password_hash" in want["data"]:
        if "<redacted>" not in got.data.decode() or "argon2" in got.data.decode():
            return f"credentials not redacted: {got.data!r}"
    elif data != json.loads(want["data"]):
        return f"data {got.data!r} != {want['data']}"
    if json.loads(got.metadata) != json.loads(want["metadata"]):
        return f"metadata {got.metadata!r} != {want['metadata']}"
    if got.content_type != "application/json" or got.recorded_at is None or str(got.id) == "":
        return f"content type, time or id: {got}"
    return None


def compare(name, got, want):
    check(f"{name}: count", len(got) == len(want), f"{len(got)} events, log has {len(want)}")
    for g, w in zip(got, want):
        problem = same(g, w)
        check(f"{name}: event {w['position']}", problem is None, problem)


def main():
    # traffic through HTTP: two accounts, a room, messages
    creds = {"username": f"{TAG}_alice", "password": "password123"}
    post("/register", creds)
    post("/register", {"username": f"{TAG}_bob", "password": "password123"})
    token = post("/login", creds)["data"]["token"]
    room = post("/api/room/create", {"name": f"{TAG} room"}, token)["data"]["ID"]
    stream = f"ChatRoom-{room}"

    def say(n, prefix):
        for i in range(n):
            post("/api/message/send", {"room_id": room, "type": "text", "content": f"{prefix}{i}"}, token)

    say(10, "first ")
    n = all_numbered()
    the_log = log()
    client = KurrentDBClient(uri=f"kurrentdb://{GRPC}?tls=false")

    # $all, both ways, from a position (forwards includes it, backwards not)
    compare("read_all forwards", list(client.read_all()), the_log)
    compare("read_all backwards", list(client.read_all(backwards=True)), the_log[::-1])
    k = n // 2
    compare("read_all from a position", list(client.read_all(commit_position=k, limit=5)), the_log[k - 1:k + 4])
    compare("read_all backwards from a position", list(client.read_all(commit_position=k, backwards=True)),
            the_log[:k - 1][::-1])
    check("get_commit_position", client.get_commit_position() == n, client.get_commit_position())
    # filters: a category by prefix, event types by regex
    rooms = [e for e in the_log if e["stream"].startswith("ChatRoom-")]
    compare("read_all filtered by stream prefix",
            list(client.read_all(filter_include=["ChatRoom-"], filter_by_stream_name=True, filter_by_prefix=True)),
            rooms)
    posted = [e for e in the_log if e["type"] == "MessagePosted"]
    compare("read_all filtered by event type", list(client.read_all(filter_include=["MessagePosted"])), posted)
    compare("read_all excluding a type", list(client.read_all(filter_exclude=["MessagePosted"])),
            [e for e in the_log if e["type"] != "MessagePosted"])
    # a stream
    of_room = [e for e in the_log if e["stream"] == stream]
    compare("get_stream", list(client.get_stream(stream)), of_room)
    compare("get_stream backwards", list(client.get_stream(stream, backwards=True, limit=3)), of_room[::-1][:3])
    compare("get_stream from a revision", list(client.get_stream(stream, stream_position=2, limit=4)), of_room[2:6])
    check("get_current_version", client.get_current_version(stream) == len(of_room) - 1)

    # errors: not found, a bad position, a write; the endpoint goes on
    try:
        client.get_stream("ChatRoom-999999")
        check("unknown stream", False, "no error")
    except NotFoundError:
        check("unknown stream is NotFoundError", True)
    try:
        list(client.read_all(commit_position=2**63))
        check("bad position", False, "no error")
    except KurrentDBClientError as e:
        check("bad position is an error, not a node failure", not isinstance(e, ServiceUnavailableError), repr(e))
    try:
        client.append_to_stream(stream, events=NewEvent(type="X", data=b"{}"), current_version=StreamState.ANY)
        check("append", False, "no error")
    except AccessDeniedError:
        check("append is AccessDeniedError", True)
    try:
        client.append_to_stream(stream, events=[NewEvent(type="X", data=b"{}"), NewEvent(type="Y", data=b"{}")],
                                current_version=StreamState.ANY)
        check("batch append", False, "no error")
    except AccessDeniedError:
        check("batch append is AccessDeniedError", True)
    check("still serving", len(list(client.read_all())) == n)

    # subscriptions from the start while events are appended through HTTP
    saved = 5
    from_start = client.subscribe_to_all(include_caught_up=True)
    resumed = client.subscribe_to_all(commit_position=saved)
    filtered = client.subscribe_to_all(filter_include=["ChatRoom-"], filter_by_stream_name=True,
                                       filter_by_prefix=True, include_checkpoints=True, window_size=4,
                                       checkpoint_interval_multiplier=1)
    of_stream = client.subscribe_to_stream(stream, include_caught_up=True)
    writers = [threading.Thread(target=say, args=(30, f"w{w} ")) for w in range(3)]
    for w in writers:
        w.start()
    for w in writers:
        w.join()
    n = all_numbered()
    the_log = log()

    def take(sub, count):
        got, kinds = [], []
        deadline = time.time() + 60
        for item in sub:
            kind = type(item).__name__
            if kind in ("CaughtUp", "Checkpoint"):
                kinds.append(kind)
                continue
            got.append(item)
            if len(got) == count or time.time() > deadline:
                break
        return got, kinds

    got, kinds = take(from_start, n)
    compare("subscribe_to_all from the start, racing writes", got, the_log)
    check("caught up once", kinds.count("CaughtUp") == 1, kinds)
    got, _ = take(resumed, n - saved)
    compare("subscribe_to_all resumed from a saved position", got, the_log[saved:])
    rooms = [e for e in the_log if e["stream"].startswith("ChatRoom-")]
    got, kinds = take(filtered, len(rooms))
    compare("filtered subscription", got, rooms)
    check("filtered subscription checkpoints", kinds.count("Checkpoint") >= 2, kinds)
    of_room = [e for e in the_log if e["stream"] == stream]
    got, kinds = take(of_stream, len(of_room))
    compare("subscribe_to_stream", got, of_room)
    for s in (from_start, resumed, filtered, of_stream):
        s.stop()
    # none twice: nothing more arrives on a fresh resumed subscription at the head
    at_head = client.subscribe_to_all(commit_position=n, include_caught_up=True, timeout=2)
    extra = []
    try:
        for item in at_head:
            if type(item).__name__ == "CaughtUp":
                break
            extra.append(item)
    finally:
        at_head.stop()
    check("nothing after the head", extra == [], extra)

    # TLS: the auditors' token as password; anything else refused
    with open(CA) as f:
        ca = f.read()
    tls = KurrentDBClient(uri=f"kurrentdb://analyst:{TOKEN}@{GRPC_TLS}?tls=true", root_certificates=ca)
    check("read over TLS", len(list(tls.read_all())) == n)
    # (without credentials the client refuses to connect over TLS itself)
    bad = KurrentDBClient(uri=f"kurrentdb://analyst:wrong-token@{GRPC_TLS}?tls=true", root_certificates=ca)
    for what, call in (("read", lambda: list(bad.read_all())),
                       ("subscription", lambda: next(iter(bad.subscribe_to_all())))):
        try:
            call()
            check(f"a wrong token over TLS ({what})", False, "read without the token")
        except UnauthenticatedError:
            check(f"a wrong token over TLS ({what}) is UnauthenticatedError", True)
    print(f"python kurrentdbclient: {len(CHECKS)} checks passed")


if __name__ == "__main__":
    main()
