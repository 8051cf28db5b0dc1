#!/usr/bin/env bash
# The KurrentDB-protocol read endpoint with the stock Python and Node
# clients (the Rust ones run in `cargo test`, tests/grpc.rs): installs
# kurrentdbclient and @kurrent/kurrentdb-client at pinned versions (a venv
# and a node_modules under target/grpc-clients, kept between runs), starts
# `tidelog serve` on a fresh embedded cluster (the endpoint in plaintext on
# loopback) and `tidelog grpc serve` over TLS beside it (a throwaway CA from
# openssl), then runs scripts/grpc_clients.py and scripts/grpc_clients.mjs,
# which compare every event they receive with the log through psql.
#
#   scripts/grpc-clients.sh
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
out=$root/target/grpc-clients
python_client=1.3.5
node_client=1.3.1
mkdir -p "$out"
rm -rf "$out/data" "$out/tls"

stamp=$out/venv/.installed-kurrentdbclient-$python_client
if [ ! -e "$stamp" ]; then
  rm -rf "$out/venv"
  python3 -m venv "$out/venv"
  "$out/venv/bin/pip" install -q "kurrentdbclient==$python_client"
  touch "$stamp"
fi
# the Node client wants Node 20 or later (its native bridge and fetch)
node_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
stamp=$out/node/.installed-kurrentdb-client-$node_client
if [ "$node_major" -lt 20 ]; then
  echo "grpc-clients: Node 20 or later is not installed: the Node client is skipped" >&2
elif [ ! -e "$stamp" ]; then
  rm -rf "$out/node"
  mkdir -p "$out/node"
  (cd "$out/node" && npm init -y >/dev/null \
    && npm install --no-audit --no-fund --silent "@kurrent/kurrentdb-client@$node_client")
  touch "$stamp"
fi
cargo build --quiet --bin tidelog

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
http_port=$(free_port)
grpc_port=$(free_port)
tls_port=$(free_port)
token=grpc-clients-audit-token-0123456789abcdef

# a CA and a certificate for 127.0.0.1 signed by it
mkdir -p "$out/tls"
(
  cd "$out/tls"
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=tidelog test CA" \
    -keyout ca.key -out ca.pem 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" -keyout key.pem -out cert.csr 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n' >ext.cnf
  openssl x509 -req -in cert.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
    -extfile ext.cnf -out cert.pem 2>/dev/null
)

export TIDELOG_DATA_DIR=$out/data TIDELOG_AUDIT_TOKEN=$token RUST_LOG=${RUST_LOG:-warn}
unset DATABASE_URL
TIDELOG_BIND=127.0.0.1:$http_port TIDELOG_GRPC_BIND=127.0.0.1:$grpc_port \
  target/debug/tidelog serve >"$out/server.log" 2>&1 &
pids+=($!)
for _ in $(seq 600); do
  curl -fsS "http://127.0.0.1:$http_port/healthz" >/dev/null 2>&1 && break
  kill -0 "${pids[0]}" 2>/dev/null || { tail -20 "$out/server.log"; echo "grpc-clients: the server did not start" >&2; exit 1; }
  sleep 0.2
done
# the endpoint alone, over TLS, on the same embedded cluster
TIDELOG_GRPC_BIND=127.0.0.1:$tls_port TIDELOG_GRPC_TLS_CERT=$out/tls/cert.pem TIDELOG_GRPC_TLS_KEY=$out/tls/key.pem \
  target/debug/tidelog grpc serve >"$out/grpc-tls.log" 2>&1 &
pids+=($!)
for _ in $(seq 300); do
  grep -q "tidelog gRPC listening" "$out/grpc-tls.log" 2>/dev/null && break
  kill -0 "${pids[1]}" 2>/dev/null || { tail -20 "$out/grpc-tls.log"; echo "grpc-clients: tidelog grpc serve did not start" >&2; exit 1; }
  sleep 0.2
done

export TIDELOG_HTTP=http://127.0.0.1:$http_port TIDELOG_GRPC=127.0.0.1:$grpc_port TIDELOG_GRPC_TLS=127.0.0.1:$tls_port
export TIDELOG_CA=$out/tls/ca.pem TIDELOG_TOKEN=$token
export TIDELOG_PSQL="psql -X -q -h $out/data/postgres/run -p 5432 -U postgres -d tidelog"
status=0
"$out/venv/bin/python" scripts/grpc_clients.py || status=1
# ES modules resolve packages from where the script is: run it beside them
if [ "$node_major" -ge 20 ]; then
  cp scripts/grpc_clients.mjs "$out/node/"
  node "$out/node/grpc_clients.mjs" || status=1
fi
if [ "$status" -ne 0 ]; then
  echo "--- server log" >&2; tail -30 "$out/server.log" >&2
  echo "--- grpc serve (TLS) log" >&2; tail -30 "$out/grpc-tls.log" >&2
fi
exit "$status"
