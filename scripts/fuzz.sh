#!/usr/bin/env bash
# Contract fuzzing: Schemathesis over every operation of the combined
# OpenAPI document, against a server this script starts on the embedded
# PostgreSQL (a fresh data directory each run), authenticated with accounts
# it registers, its external services (generation gateway, chat model,
# Jimeng, payment provider) on loopback (scripts/fuzz_upstreams.py). It
# fails on any 5xx, any answer outside its documented schema, and any crash;
# the summary goes to target/fuzz/summary.txt, the JUnit report beside it.
#
#   scripts/fuzz.sh                   # FUZZ_MAX_EXAMPLES (100) per operation
#   FUZZ_MAX_EXAMPLES=500 scripts/fuzz.sh
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
out=$root/target/fuzz
examples=${FUZZ_MAX_EXAMPLES:-100}
schemathesis_version=4.32.5
mkdir -p "$out"
rm -rf "$out/data" "$out/report" "$out/summary.txt"

validator_version=0.9.0
stamp=$out/venv/.installed-schemathesis-$schemathesis_version-validator-$validator_version
if [ ! -e "$stamp" ]; then
  rm -rf "$out/venv"
  python3 -m venv "$out/venv"
  "$out/venv/bin/pip" install -q "schemathesis==$schemathesis_version" "openapi-spec-validator==$validator_version"
  touch "$stamp"
fi
cargo build --quiet --bin tidelog

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT

rm -f "$out/upstreams.port"
python3 scripts/fuzz_upstreams.py "$out/upstreams.port" &
pids+=($!)
for _ in $(seq 50); do [ -s "$out/upstreams.port" ] && break; sleep 0.1; done
upstreams=http://127.0.0.1:$(cat "$out/upstreams.port")

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
base=http://127.0.0.1:$port
export TIDELOG_BIND=127.0.0.1:$port TIDELOG_DATA_DIR=$out/data TIDELOG_GRPC_BIND=off
export TIDELOG_ADMIN_TOKEN=fuzz-admin-token-0123456789abcdef TIDELOG_AUDIT_TOKEN=fuzz-audit-token-0123456789abcdef
# no Bilibili on a closed network: the collector stays off
export TIDELOG_COLLECTOR=off
export API_SECRET=fuzz-gift-key-0123456789abcdef
export GENERATION_API_URL=$upstreams GENERATION_API_KEY=fuzz CHAT_API_URL=$upstreams/v1 CHAT_API_KEY=fuzz
export JIMENG_API_URL=$upstreams JIMENG_ACCESS_KEY=fuzz JIMENG_SECRET_KEY=fuzz
export PAYMENT_API_URL=$upstreams PAYMENT_API_KEY=fuzz PAYMENT_IPN_SECRET=fuzz-ipn-secret
# jobs end quickly, so a generated Sora stream does not stay open for minutes
export TIDELOG_GENERATION_POLL_MS=200 TIDELOG_GENERATION_SORA_DEADLINE_SECS=5 TIDELOG_GENERATION_BANANA_DEADLINE_SECS=5
export RUST_LOG=${RUST_LOG:-warn}
unset DATABASE_URL
target/debug/tidelog serve >"$out/server.log" 2>&1 &
server=$!
pids+=($server)
for _ in $(seq 600); do
  curl -fsS "$base/healthz" >/dev/null 2>&1 && break
  kill -0 "$server" 2>/dev/null || { tail -20 "$out/server.log"; echo "fuzz: the server did not start" >&2; exit 1; }
  sleep 0.2
done

# the combined document and each surface's validate as OpenAPI 3.1
for doc in openapi.json openapi/{roomchat,chat8,ocean1,live,gift,admin,ops}.json; do
  curl -fsS "$base/$doc" >"$out/doc.json"
  "$out/venv/bin/python" -c 'import json,sys; from openapi_spec_validator import validate; validate(json.load(open(sys.argv[1])))' "$out/doc.json" \
    || { echo "fuzz: /$doc is not a valid OpenAPI document" >&2; exit 1; }
done

post() { curl -fsS -X POST "$base$1" -H 'content-type: application/json' "${@:3}" -d "$2"; }
token_of() { python3 -c 'import json,sys; print(json.load(sys.stdin)["data"]["token"])'; }
# one account for everything; a second one for the calls that end a session
for who in fuzzer fuzzer_out; do
  post /register "{\"username\":\"$who\",\"password\":\"fuzz-password-1\"}" >/dev/null
done
token=$(post /login '{"username":"fuzzer","password":"fuzz-password-1"}' | token_of)
spare=$(post /login '{"username":"fuzzer_out","password":"fuzz-password-1"}' | token_of)
for currency in coins points; do
  post /admin/ledger/adjustments "{\"account\":\"fuzzer\",\"currency\":\"$currency\",\"direction\":\"credit\",\"amount\":1000000,\"description\":\"fuzzing\",\"operation_id\":\"fuzz-$currency\"}" \
    -H "authorization: Bearer $TIDELOG_ADMIN_TOKEN" >/dev/null
done
post /add/room '{"room_id": 1001, "room_anchors": "fuzz anchor"}' -H "x-api-key: $API_SECRET" >/dev/null

cat >"$out/schemathesis.toml" <<TOML
[auth.openapi.session]
bearer = "$token"
[auth.openapi.sessionCookie]
api_key = "$token"
[auth.openapi.giftApiKey]
api_key = "$API_SECRET"
[auth.openapi.adminToken]
bearer = "$TIDELOG_ADMIN_TOKEN"
[auth.openapi.auditToken]
bearer = "$TIDELOG_AUDIT_TOKEN"

# signing out would end the session every other operation uses
[[operations]]
include-operation-id = ["chat8.logout", "live.login_out", "chat8.refresh"]
headers = { Authorization = "Bearer $spare" }
TOML

status=0
( cd "$out" && "$out/venv/bin/schemathesis" --config-file "$out/schemathesis.toml" run "$base/openapi.json" \
  --checks not_a_server_error,response_schema_conformance \
  --max-examples "$examples" --seed 20261203 --workers 2 --request-timeout 30 \
  --generation-codec utf-8 --suppress-health-check all \
  --report junit --report-dir "$out/report" ) 2>&1 | tee "$out/run.log" || status=$?

kill -0 "$server" 2>/dev/null || { echo "fuzz: the server died" | tee -a "$out/run.log"; status=1; }
python3 - "$out" "$status" "$examples" <<'PY'
import sys, xml.etree.ElementTree as ET, glob, os
out, status, examples = sys.argv[1], int(sys.argv[2]), sys.argv[3]
cases = failures = 0
failed = []
for path in glob.glob(os.path.join(out, "report", "*.xml")):
    for case in ET.parse(path).getroot().iter("testcase"):
        cases += 1
        if case.find("failure") is not None or case.find("error") is not None:
            failures += 1
            failed.append(case.get("name"))
log = open(os.path.join(out, "run.log"), encoding="utf-8", errors="replace").read()
requests = [l for l in log.splitlines() if "test cases" in l or "generated" in l.lower()]
with open(os.path.join(out, "summary.txt"), "w") as f:
    f.write(f"operations: {cases}\nfailed operations: {failures}\nexamples per operation: {examples}\nexit: {status}\n")
    for l in requests[-3:]:
        f.write(l.strip() + "\n")
    for n in failed:
        f.write(f"failed: {n}\n")
print(open(os.path.join(out, "summary.txt")).read())
PY
exit "$status"
