#!/usr/bin/env python3
"""The failover test behind scripts/ha-test.sh (which starts the Patroni
cluster and calls this): tidelog on the cluster under writes on four paths at
once, the leader's Patroni and PostgreSQL killed with SIGKILL, twice (the
old leader rejoining in between); then what was acknowledged is checked in
the log and the read models, the ledger audited, every projection rebuilt
and compared. Prints the figures and writes them to DIR/figures.json; exits
non-zero on any broken promise.

Write paths and their retries (the client's part of "safe to retry"):
  room-chat sends     POST /api/message/send: no idempotency key in the seed,
                      so a 503 is not retried; acknowledged ones must exist
  wallet adjustments  POST /admin/ledger/adjustments: retried with the same
                      operation_id until answered; each must post once
  gift ingestion      POST /ingest/bilibili/{room}: a batch retried as it is
                      until answered; each message must count once
  registrations       POST /register: retried; 409 on a retry is the
                      account made by the lost answer; each name once
  Chat8 messages      POST /api/v1/messages: no key in the seed, not retried;
                      acknowledged ones (201) must exist
Readers on five surfaces (room-chat pages, Chat8 friends and messages, gift
statistics, live lists, admin projections) run beside them: every answer of
every path is a success or a 503 with Retry-After, never a 500 — and the
server's log of each 5xx, with its cause chain, is printed when one is seen.
"""
import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter

ADMIN = "ha-admin-token-0123456789abcdef"
GIFT_KEY = "ha-gift-key-0123456789abcdef"
GIFT_ROOM = 4242
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Server:
    def __init__(self, binary, data_dir, database_url=None):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ, TIDELOG_BIND=f"127.0.0.1:{self.port}", TIDELOG_DATA_DIR=data_dir, TIDELOG_COLLECTOR="off", TIDELOG_GRPC_BIND="off",
                   TIDELOG_ADMIN_TOKEN=ADMIN, API_SECRET=GIFT_KEY, RUST_LOG="warn")
        env.pop("DATABASE_URL", None)
        if database_url:
            env["DATABASE_URL"] = database_url
        os.makedirs(data_dir, exist_ok=True)
        self.log = open(os.path.join(data_dir, "server.log"), "ab")
        self.proc = subprocess.Popen([binary, "serve"], env=env, stdout=self.log, stderr=self.log)
        deadline = time.time() + 120
        while time.time() < deadline:
            if call(self.base, "GET", "/healthz", timeout=2)[0] == 200:
                return
            if self.proc.poll() is not None:
                raise SystemExit(f"tidelog exited ({self.proc.returncode}); see {data_dir}/server.log")
            time.sleep(0.2)
        raise SystemExit("tidelog did not become healthy")

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def call(base, method, path, body=None, token=None, headers=None, timeout=30):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base + path, method=method, data=data)
    req.add_header("content-type", "application/json")
    if token:
        req.add_header("authorization", "Bearer " + token)
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read() or b"null"), r.headers
    except urllib.error.HTTPError as e:
        raw = e.read()
        try:
            raw = json.loads(raw)
        except ValueError:
            pass
        return e.code, raw, e.headers
    except Exception as e:  # refused, reset, timed out: not an answer
        return -1, repr(e), {}


def psql(url, sql):
    out = subprocess.run(["psql", url, "-Atqc", sql], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def cluster(dirname, *args):
    out = subprocess.run([os.path.join(ROOT, "scripts/ha-cluster.sh"), *args, dirname],
                         capture_output=True, text=True, check=True)
    return out.stdout.strip()


class Load:
    """Writers on four paths; every answer recorded as (start, end, path, status)."""

    def __init__(self, base, token, tag, pair):
        self.base, self.token, self.tag, self.pair = base, token, tag, pair
        self.directs_ok = []      # Chat8 contents acknowledged (201)
        self.lock = threading.Lock()
        self.answers = []
        self.stop = threading.Event()
        self.sent_ok = []         # room-chat contents acknowledged
        self.sent_unknown = []    # room-chat contents answered 503 (outcome unknown)
        self.ops = []             # adjustment operation ids, each answered at last
        self.gifts = 0            # gift messages in batches answered at last
        self.names = []           # usernames answered at last
        self.problems = []

    def record(self, path, started, status, body, headers, ok=(200,)):
        with self.lock:
            self.answers.append((started, time.time(), path, status))
            if status == 503 and not headers.get("retry-after"):
                self.problems.append(f"{path}: 503 without Retry-After")
            if status not in ok + (503,) and not (path == "register" and status == 409):
                self.problems.append(f"{path}: answered {status}: {str(body)[:200]}")

    def until_answered(self, path, fn):
        """Retries a write whose outcome is unknown (503, or no answer)."""
        while True:
            started = time.time()
            status, body, headers = fn()
            self.record(path, started, status, body, headers)
            if status in (200, 409):
                return status
            time.sleep(float(headers.get("retry-after") or 0.5) / 4)

    def chat(self, room, w):
        n = 0
        while not self.stop.is_set():
            content = f"{self.tag}-c{w}-{n}"
            n += 1
            started = time.time()
            status, body, headers = call(self.base, "POST", "/api/message/send",
                                         {"room_id": room, "content": content}, self.token)
            self.record("chat", started, status, body, headers)
            with self.lock:
                (self.sent_ok if status == 200 else self.sent_unknown).append(content)
            if status != 200:
                time.sleep(0.05)

    def adjust(self, account, w):
        n = 0
        while not self.stop.is_set():
            op = f"{self.tag}-a{w}-{n}"
            n += 1
            body = {"account": account, "currency": "points", "direction": "credit", "amount": 1,
                    "description": "failover test", "operation_id": op}
            self.until_answered("adjust", lambda: call(
                self.base, "POST", "/admin/ledger/adjustments", body, ADMIN))
            with self.lock:
                self.ops.append(op)

    def ingest(self):
        n = 0
        while not self.stop.is_set():
            batch = [{"cmd": "SEND_GIFT", "received_at": int(time.time() * 1000), "data": {
                "uid": 7000 + j, "uname": "viewer", "giftId": 31036, "giftName": "小花花", "num": 1,
                "price": 100, "total_coin": 100, "coin_type": "gold",
                "tid": f"{self.tag}-g{n}-{j}"}} for j in range(5)]
            n += 1
            self.until_answered("ingest", lambda: call(
                self.base, "POST", f"/ingest/bilibili/{GIFT_ROOM}", batch, None,
                {"x-api-key": GIFT_KEY}))
            with self.lock:
                self.gifts += len(batch)

    def register(self):
        n = 0
        while not self.stop.is_set():
            name = f"{self.tag}u{n}"
            n += 1
            self.until_answered("register", lambda: call(
                self.base, "POST", "/register", {"username": name, "password": "password123"}))
            with self.lock:
                self.names.append(name)

    def direct(self, pair, w):
        sender, receiver = pair
        n = 0
        while not self.stop.is_set():
            content = f"{self.tag}-d{w}-{n}"
            n += 1
            started = time.time()
            status, body, headers = call(self.base, "POST", "/api/v1/messages",
                                         {"receiver_id": receiver["id"], "content": content,
                                          "message_type": "text"}, sender["token"])
            self.record("direct", started, status, body, headers, ok=(201,))
            with self.lock:
                if status == 201:
                    self.directs_ok.append(content)
            if status != 201:
                time.sleep(0.05)

    def read(self, room, pair, w):
        paths = [
            ("GET", f"/api/message/list?room_id={room}&limit=20", self.token, None),
            ("GET", "/api/v1/friends", pair[0]["token"], None),
            ("GET", f"/api/v1/messages/{pair[1]['id']}?limit=20", pair[0]["token"], None),
            ("GET", f"/gift?room_id={GIFT_ROOM}", None, {"x-api-key": GIFT_KEY}),
            ("GET", "/api/live/get_all_lives", None, None),
            ("GET", "/admin/projections", ADMIN, None),
        ]
        n = w
        while not self.stop.is_set():
            method, path, token, headers = paths[n % len(paths)]
            n += 1
            started = time.time()
            status, body, hdrs = call(self.base, method, path, None, token, headers)
            self.record("read " + path.split("?")[0], started, status, body, hdrs)
            if status != 200:
                time.sleep(0.05)

    def run(self, room, account, seconds, kill_after, kill):
        threads = [threading.Thread(target=self.chat, args=(room, w)) for w in range(4)]
        threads += [threading.Thread(target=self.adjust, args=(account, w)) for w in range(2)]
        threads += [threading.Thread(target=self.ingest), threading.Thread(target=self.register)]
        threads += [threading.Thread(target=self.direct, args=(self.pair, w)) for w in range(2)]
        threads += [threading.Thread(target=self.read, args=(room, self.pair, w)) for w in range(3)]
        for t in threads:
            t.start()
        killed_at = None
        start = time.time()
        if kill:
            time.sleep(kill_after)
            victim = kill()
            # both processes are gone once kill-leader returns
            killed_at = time.time()
        time.sleep(max(0.0, seconds - (time.time() - start)))
        self.stop.set()
        for t in threads:
            t.join()
        out = {"answers": dict(Counter(str(a[3]) for a in self.answers))}
        if kill:
            # the window is the writes' (reads may be answered from what a process kept)
            after = [a for a in self.answers
                     if a[0] >= killed_at and a[3] in (200, 201, 409) and not a[2].startswith("read ")]
            first = min((a[1] for a in after), default=None)
            out["killed"] = victim
            out["failover_window_s"] = round(first - killed_at, 2) if first else None
            out["unavailable_503"] = sum(1 for a in self.answers if a[3] == 503)
            out["no_answer"] = sum(1 for a in self.answers if a[3] == -1)
        return out


def sends_per_second(base, token, room, seconds=10, clients=8):
    stop = time.time() + seconds
    counts = Counter()

    def worker(w):
        n = 0
        while time.time() < stop:
            s = call(base, "POST", "/api/message/send", {"room_id": room, "content": f"bench{w}-{n}"}, token)[0]
            n += 1
            counts[s] += 1

    ts = [threading.Thread(target=worker, args=(w,)) for w in range(clients)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return counts[200] / seconds


def account(base, name):
    call(base, "POST", "/register", {"username": name, "password": "password123"})
    status, body, _ = call(base, "POST", "/login", {"username": name, "password": "password123"})
    assert status == 200, body
    token = body["data"]["token"]
    status, body, _ = call(base, "POST", "/api/room/create", {"name": name}, token)
    assert status == 200, body
    return token, body["data"]["ID"]


def chat8_pair(base):
    """Two Chat8 users who are friends: (sender, receiver), each {id, token}."""
    users = []
    for name in ("hachat8a", "hachat8b"):
        status, body, _ = call(base, "POST", "/api/v1/auth/register", {
            "username": name, "email": f"{name}@example.com", "password": "password123",
            "confirm_password": "password123"})
        assert status == 201, body
        users.append({"id": body["data"]["user_id"], "token": body["data"]["access_token"]})
    status, body, _ = call(base, "POST", "/api/v1/friends/request",
                           {"user_id": users[1]["id"], "message": "hi"}, users[0]["token"])
    assert status == 200, body
    status, body, _ = call(base, "PUT", f"/api/v1/friends/request/{body['data']['request_id']}",
                           {"action": "accept"}, users[1]["token"])
    assert status == 200, body
    return users


def server_5xx(log_path, since_bytes):
    """The server log's lines about requests that failed on its side
    (`request failed`: the 500s, with their cause chains), since an offset."""
    with open(log_path, "rb") as f:
        f.seek(since_bytes)
        return [l.decode(errors="replace").strip() for l in f
                if b"request failed" in l or b"panicked" in l]


def caught_up(base, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        status, rows, _ = call(base, "GET", "/admin/projections", token=ADMIN)
        if status == 200 and all(r.get("lag_events", 1) == 0 for r in rows):
            return True
        time.sleep(0.5)
    return False


def read_model_digest(url):
    tables = psql(url, "SELECT string_agg(tablename, ' ' ORDER BY tablename) FROM pg_tables "
                       "WHERE schemaname = 'public' AND tablename NOT IN ('_sqlx_migrations', 'blobs', "
                       "'chat8_sockets', 'event_store_unique_keys', 'events', 'live_presence', "
                       "'projection_checkpoints', 'rate_limit_hits', 'server_secrets', 'snapshots')").split()
    digest = {}
    for t in tables:
        digest[t] = psql(url, f"SELECT count(*) || ':' || coalesce(md5(string_agg(x::text, '|' ORDER BY x::text)), '') FROM {t} x")
    return digest


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--database-url", required=True)
    ap.add_argument("--bin", required=True)
    ap.add_argument("--seconds", type=float, default=30)
    args = ap.parse_args()
    url, failures, figures = args.database_url, [], {}

    # the single-node embedded default, for the ratio
    single = Server(args.bin, os.path.join(args.dir, "single"))
    token, room = account(single.base, "bench")
    figures["sends_per_s_embedded"] = round(sends_per_second(single.base, token, room), 1)
    single.stop()

    server = Server(args.bin, os.path.join(args.dir, "tidelog"), url)
    token, room = account(server.base, "halead")
    figures["sends_per_s_patroni"] = round(sends_per_second(server.base, token, room), 1)
    figures["sends_ratio"] = round(figures["sends_per_s_patroni"] / figures["sends_per_s_embedded"], 2)
    call(server.base, "POST", "/add/room", {"room_id": GIFT_ROOM, "room_anchors": "ha"}, None, {"x-api-key": GIFT_KEY})

    pair = chat8_pair(server.base)
    log_path = os.path.join(args.dir, "tidelog", "server.log")
    loads = []
    for phase in (1, 2):
        log_from = os.path.getsize(log_path)
        load = Load(server.base, token, f"p{phase}x{int(time.time())}", pair)
        out = load.run(room, "halead", args.seconds, 8, lambda: cluster(args.dir, "kill-leader"))
        figures[f"failover_{phase}"] = out
        print(f"failover {phase}: {json.dumps(out)}", flush=True)
        failures += [f"phase {phase}: {p}" for p in load.problems[:20]]
        # a 500 the client saw is explained by the server's own log line
        failures += [f"phase {phase}: server log: {l[:600]}" for l in server_5xx(log_path, log_from)[:10]]
        if out.get("no_answer"):
            failures.append(f"phase {phase}: {out['no_answer']} requests got no answer")
        if out.get("failover_window_s") is None:
            failures.append(f"phase {phase}: no success after the kill")
        loads.append(load)
        # the old leader rejoins as a replica (pg_rewind), for the next round
        victim = out["killed"].replace("node", "")
        cluster(args.dir, "restart-node", victim)
        deadline = time.time() + 120
        while time.time() < deadline:
            status = cluster(args.dir, "status")
            line = next(l for l in status.splitlines() if l.startswith(f"node{victim} "))
            if "replica running" in line and "down" not in status.split("leader:")[0]:
                break
            time.sleep(1)
        else:
            failures.append(f"phase {phase}: node{victim} did not rejoin: {status}")
        figures[f"rejoined_{phase}"] = cluster(args.dir, "status")

    if not caught_up(server.base):
        failures.append("the projections did not catch up")
    server.stop()

    # what was acknowledged is there, once
    def count(sql):
        return int(psql(url, sql) or 0)
    for i, load in enumerate(loads, 1):
        tag = load.tag
        chats = dict(line.split("|") for line in psql(url, f"SELECT content, count(*) FROM chat_messages WHERE content LIKE '{tag}-c%' GROUP BY content").splitlines() if line)
        missing = [c for c in load.sent_ok if c not in chats]
        doubled = [c for c, n in chats.items() if int(n) > 1]
        unknown_done = sum(1 for c in load.sent_unknown if c in chats)
        logged = count(f"SELECT count(*) FROM events WHERE event_type = 'MessagePosted' AND payload::text LIKE '%{tag}-c%'")
        if missing:
            failures.append(f"phase {i}: {len(missing)} acknowledged room-chat sends lost, e.g. {missing[:3]}")
        if doubled:
            failures.append(f"phase {i}: room-chat sends twice: {doubled[:3]}")
        if logged != len(chats):
            failures.append(f"phase {i}: {logged} sends in the log, {len(chats)} in the read model")
        posted = dict(line.split("|") for line in psql(url, f"SELECT operation_id, count(*) FROM ledger_entries WHERE operation_id LIKE 'adjust:{tag}-%' GROUP BY operation_id").splitlines() if line)
        lost_ops = [o for o in load.ops if f"adjust:{o}" not in posted]
        twice = [o for o, n in posted.items() if int(n) != 1]
        if lost_ops or twice or len(posted) != len(load.ops):
            failures.append(f"phase {i}: adjustments lost {lost_ops[:3]}, posted twice {twice[:3]}, {len(posted)} posted of {len(load.ops)}")
        directs = dict(line.split("|") for line in psql(url, f"SELECT content, count(*) FROM direct_messages WHERE content LIKE '{tag}-d%' GROUP BY content").splitlines() if line)
        lost_directs = [c for c in load.directs_ok if c not in directs]
        if lost_directs or any(int(n) > 1 for n in directs.values()):
            failures.append(f"phase {i}: Chat8 messages lost {lost_directs[:3]} or stored twice")
        names = dict(line.split("|") for line in psql(url, f"SELECT username, count(*) FROM accounts WHERE username LIKE '{tag}u%' GROUP BY username").splitlines() if line)
        if sorted(names) != sorted(load.names) or any(int(n) != 1 for n in names.values()):
            failures.append(f"phase {i}: registrations: {len(names)} accounts for {len(load.names)} names")
        figures[f"acknowledged_{i}"] = {
            "chat_sends": len(load.sent_ok), "chat_503": len(load.sent_unknown),
            "chat_503_committed_anyway": unknown_done, "adjustments": len(load.ops),
            "gift_messages": load.gifts, "registrations": len(load.names),
            "chat8_messages": len(load.directs_ok)}
    gold = count(f"SELECT coalesce(sum(gift_gold), 0) FROM bili_days WHERE room_id = {GIFT_ROOM}")
    sent_gifts = sum(l.gifts for l in loads)
    if gold != 100 * sent_gifts:
        failures.append(f"gift ingestion: {gold} gold counted for {sent_gifts} messages of 100")

    audit = subprocess.run([args.bin, "audit", "verify", "--json"], env=dict(os.environ, DATABASE_URL=url),
                           capture_output=True, text=True)
    figures["audit_verify_exit"] = audit.returncode
    if audit.returncode != 0:
        failures.append(f"audit verify: {audit.stdout[-500:]} {audit.stderr[-500:]}")
    # the same read on a hot standby (the analysts' way off the primary)
    status = cluster(args.dir, "status")
    replica = next(l.split()[1] for l in status.splitlines() if "replica running" in l)
    standby_url = url.replace(url.split("@")[1].split("/")[0], replica)
    audit = subprocess.run([args.bin, "audit", "verify", "--json", "--database-url", standby_url],
                           capture_output=True, text=True)
    figures["audit_verify_on_standby_exit"] = audit.returncode
    if audit.returncode != 0:
        failures.append(f"audit verify on the standby: {audit.stderr[-500:]}")

    before = read_model_digest(url)
    rebuild = subprocess.run([args.bin, "projections", "rebuild", "all"], env=dict(os.environ, DATABASE_URL=url),
                             capture_output=True, text=True)
    if rebuild.returncode != 0:
        failures.append(f"rebuild: {rebuild.stderr[-500:]}")
    after = read_model_digest(url)
    differ = [t for t in before if before[t] != after.get(t)]
    figures["rebuild_tables_compared"] = len(before)
    if differ:
        failures.append(f"a rebuild differs from the incremental read models in {differ}")

    figures["failures"] = failures
    with open(os.path.join(args.dir, "figures.json"), "w") as f:
        json.dump(figures, f, indent=2)
    print(json.dumps(figures, indent=2))
    if failures:
        print("ha-test: FAILED", file=sys.stderr)
        for f in failures:
            print("  " + f, file=sys.stderr)
        sys.exit(1)
    print("ha-test: every acknowledged write survived both failovers")


if __name__ == "__main__":
    main()
