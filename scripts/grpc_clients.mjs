// The KurrentDB-protocol read endpoint with Node's stock client,
// @kurrent/kurrentdb-client (pinned by scripts/grpc-clients.sh; its reads go
// through a native Rust bridge, its subscriptions through grpc-js): streams
// and $all read both ways, filtered, subscribed from the start while events
// are appended through HTTP, resumed from a saved position, compared event
// by event with the log (PostgreSQL, through psql): none missing, none
// twice. Bad requests get the protocol's errors; TLS needs the auditors'
// token. Environment: as scripts/grpc_clients.py.
import { execFileSync } from "node:child_process";
import { isDeepStrictEqual } from "node:util";
import {
  KurrentDBClient,
  START,
  END,
  FORWARDS,
  BACKWARDS,
  streamNameFilter,
  eventTypeFilter,
  jsonEvent,
  AccessDeniedError,
  StreamNotFoundError,
  UnavailableError,
} from "@kurrent/kurrentdb-client";

const env = process.env;
const HTTP = env.TIDELOG_HTTP;
const PSQL = env.TIDELOG_PSQL.split(" ");
const TAG = "node";
let checks = 0;

function check(name, ok, detail = "") {
  checks += 1;
  if (!ok) {
    console.error(`node @kurrent/kurrentdb-client: FAILED ${name}: ${detail}`);
    process.exit(1);
  }
}

async function post(path, body, token) {
  const headers = { "content-type": "application/json" };
  if (token) headers.authorization = token;
  const r = await fetch(HTTP + path, { method: "POST", headers, body: JSON.stringify(body) });
  if (!r.ok) throw new Error(`${path}: ${r.status} ${await r.text()}`);
  return r.json();
}

const sql = (query) =>
  execFileSync(PSQL[0], [...PSQL.slice(1), "-Atc", query], { encoding: "utf8" }).split("\n").filter((l) => l);

async function allNumbered() {
  for (let i = 0; i < 400; i++) {
    const [events, numbered] = sql(
      "SELECT (SELECT count(*) FROM events) || ' ' || (SELECT count(*) FROM log_positions)",
    )[0].split(" ");
    if (events === numbered) return Number(events);
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error("events not numbered");
}

const theLog = () =>
  sql(
    "SELECT json_build_object('position', p.position, 'stream', e.aggregate_type || '-' || e.aggregate_id," +
      " 'revision', e.sequence - 1, 'type', e.event_type, 'data', e.payload::text, 'metadata', e.metadata::text," +
      " 'created_ms', floor(extract(epoch from e.recorded_at) * 1000)::bigint)" +
      " FROM log_positions p JOIN events e ON e.global_position = p.global_position ORDER BY p.position",
  ).map((r) => JSON.parse(r));

function same(got, want) {
  const e = got.event;
  if (e.position.commit !== BigInt(want.position) || e.position.prepare !== BigInt(want.position))
    return `position ${e.position.commit} != ${want.position}`;
  if (got.commitPosition !== BigInt(want.position)) return `commitPosition ${got.commitPosition}`;
  if (e.streamId !== want.stream || e.revision !== BigInt(want.revision) || e.type !== want.type)
    return `${e.streamId} ${e.revision} ${e.type} != ${JSON.stringify(want)}`;
  if (!e.isJson || !e.id) return `isJson ${e.isJson}, id ${e.id}`;
  if (want.data.includes("password_hash")) {
    const text = JSON.stringify(e.data);
    if (!text.includes("<redacted>") || text.includes("argon2")) return `credentials not redacted: ${text}`;
  } else if (!isDeepStrictEqual(e.data, JSON.parse(want.data))) return `data ${JSON.stringify(e.data)}`;
  if (!isDeepStrictEqual(e.metadata, JSON.parse(want.metadata))) return `metadata ${JSON.stringify(e.metadata)}`;
  // reads (the Rust bridge) keep whole seconds, subscriptions milliseconds
  if (Math.abs(e.created.getTime() - Number(want.created_ms)) >= 1000) return `created ${e.created}`;
  return null;
}

function compare(name, got, want) {
  check(`${name}: count`, got.length === want.length, `${got.length} events, log has ${want.length}`);
  got.forEach((g, i) => {
    const problem = same(g, want[i]);
    check(`${name}: event ${want[i].position}`, problem === null, problem);
  });
}

async function collect(iter) {
  const out = [];
  for await (const e of iter) out.push(e);
  return out;
}

async function expectError(name, f, kinds) {
  try {
    await f();
    check(name, false, "no error");
  } catch (e) {
    check(name, kinds.some((k) => e instanceof k), `${e?.constructor?.name}: ${e}`);
  }
}

/** Records a subscription from its start: listeners attached at once, so
 * its confirmation is heard too. */
function record(sub) {
  const rec = { got: [], kinds: [], error: null };
  sub.on("confirmation", () => rec.kinds.push("confirmation"));
  sub.on("caughtUp", () => rec.kinds.push("caughtUp"));
  sub.on("error", (e) => (rec.error = e));
  sub.on("data", (e) => rec.got.push(e));
  return rec;
}

/** Waits until `rec` has `count` events (60 s at most); fails on its error. */
async function until(rec, count) {
  const deadline = Date.now() + 60000;
  while (rec.got.length < count) {
    if (rec.error) throw rec.error;
    if (Date.now() > deadline) throw new Error(`timed out with ${rec.got.length} of ${count} events`);
    await new Promise((r) => setTimeout(r, 20));
  }
  return rec;
}

async function main() {
  const creds = { username: `${TAG}_alice`, password: "password123" };
  await post("/register", creds);
  await post("/register", { username: `${TAG}_bob`, password: "password123" });
  const token = (await post("/login", creds)).data.token;
  const room = (await post("/api/room/create", { name: `${TAG} room` }, token)).data.ID;
  const stream = `ChatRoom-${room}`;
  const say = async (n, prefix) => {
    for (let i = 0; i < n; i++)
      await post("/api/message/send", { room_id: room, type: "text", content: `${prefix}${i}` }, token);
  };
  await say(10, "first ");
  let n = await allNumbered();
  let log = theLog();
  const client = KurrentDBClient.connectionString`kurrentdb://${env.TIDELOG_GRPC}?tls=false`;

  // $all both ways, from a position (forwards includes it, backwards not)
  compare("readAll forwards", await collect(client.readAll()), log);
  compare("readAll backwards", await collect(client.readAll({ direction: BACKWARDS, fromPosition: END })), log.toReversed());
  const k = Math.floor(n / 2);
  const at = (p) => ({ commit: BigInt(p), prepare: BigInt(p) });
  compare(
    "readAll from a position",
    await collect(client.readAll({ direction: FORWARDS, fromPosition: at(k), maxCount: 5 })),
    log.slice(k - 1, k + 4),
  );
  compare(
    "readAll backwards from a position",
    await collect(client.readAll({ direction: BACKWARDS, fromPosition: at(k) })),
    log.slice(0, k - 1).toReversed(),
  );
  const rooms = () => log.filter((e) => e.stream.startsWith("ChatRoom-"));
  compare(
    "readAll filtered by stream prefix",
    await collect(client.readAll({ filter: streamNameFilter({ prefixes: ["ChatRoom-"] }) })),
    rooms(),
  );
  compare(
    "readAll filtered by event type regex",
    await collect(client.readAll({ filter: eventTypeFilter({ regex: "^Message(Posted)?$" }) })),
    log.filter((e) => e.type === "MessagePosted"),
  );
  const ofRoom = () => log.filter((e) => e.stream === stream);
  compare("readStream", await collect(client.readStream(stream)), ofRoom());
  compare(
    "readStream backwards",
    await collect(client.readStream(stream, { direction: BACKWARDS, fromRevision: END, maxCount: 3 })),
    ofRoom().toReversed().slice(0, 3),
  );
  compare(
    "readStream from a revision",
    await collect(client.readStream(stream, { fromRevision: 2n, maxCount: 4 })),
    ofRoom().slice(2, 6),
  );

  // errors: not found, a bad position, a write; the endpoint goes on
  await expectError("unknown stream", () => collect(client.readStream("ChatRoom-999999")), [StreamNotFoundError]);
  try {
    await collect(client.readAll({ fromPosition: { commit: 3n, prepare: 5n } }));
    check("bad position", false, "no error");
  } catch (e) {
    check("bad position is an error, not a node failure", !(e instanceof UnavailableError), `${e}`);
  }
  await expectError(
    "append",
    () => client.appendToStream(stream, jsonEvent({ type: "X", data: { x: 1 } })),
    [AccessDeniedError],
  );
  check("still serving", (await collect(client.readAll())).length === n);

  // subscriptions from the start while events are appended through HTTP
  const saved = 5;
  const fromStart = record(client.subscribeToAll({ fromPosition: START }));
  const resumed = record(client.subscribeToAll({ fromPosition: at(saved) }));
  const filtered = record(
    client.subscribeToAll({
      fromPosition: START,
      filter: streamNameFilter({ prefixes: ["ChatRoom-"], maxSearchWindow: 4, checkpointInterval: 1 }),
    }),
  );
  const ofStream = record(client.subscribeToStream(stream, { fromRevision: START }));
  await Promise.all([say(30, "w0 "), say(30, "w1 "), say(30, "w2 ")]);
  n = await allNumbered();
  log = theLog();
  let r = await until(fromStart, n);
  compare("subscribeToAll from the start, racing writes", r.got, log);
  check(
    "confirmed, caught up once",
    r.kinds[0] === "confirmation" && r.kinds.filter((k) => k === "caughtUp").length === 1,
    r.kinds,
  );
  r = await until(resumed, n - saved);
  compare("subscribeToAll resumed from a saved position", r.got, log.slice(saved));
  r = await until(filtered, rooms().length);
  compare("filtered subscription", r.got, rooms());
  r = await until(ofStream, ofRoom().length);
  compare("subscribeToStream", r.got, ofRoom());
  // none twice: nothing more comes on any of them
  await new Promise((r) => setTimeout(r, 1000));
  const counts = [fromStart, resumed, filtered, ofStream].map((rec) => rec.got.length);
  check("nothing after the head", isDeepStrictEqual(counts, [n, n - saved, rooms().length, ofRoom().length]), counts);

  // TLS: the auditors' token as password; anything else refused
  const tls = (who) =>
    KurrentDBClient.connectionString`kurrentdb://${who}${env.TIDELOG_GRPC_TLS}?tls=true&tlsCAFile=${env.TIDELOG_CA}`;
  const good = tls(`analyst:${env.TIDELOG_TOKEN}@`);
  check("readAll over TLS", (await collect(good.readAll())).length === n);
  r = await until(record(good.subscribeToAll({ fromPosition: START })), n);
  compare("subscribeToAll over TLS", r.got, log);
  await expectError("wrong token over TLS", () => collect(tls("analyst:wrong-token@").readAll()), [AccessDeniedError]);
  await expectError(
    "wrong token over TLS, subscribing",
    () => until(record(tls("analyst:wrong-token@").subscribeToAll({ fromPosition: START })), 1),
    [AccessDeniedError],
  );
  console.log(`node @kurrent/kurrentdb-client: ${checks} checks passed`);
  process.exit(0);
}

main().catch((e) => {
  console.error(`node @kurrent/kurrentdb-client: FAILED: ${e?.stack ?? e}`);
  process.exit(1);
});
