#!/usr/bin/env bash
# Failover under load on a Patroni cluster (scripts/ha-cluster.sh), twice:
# see scripts/ha_test.py for what is written, how it is retried and what is
# checked. Prints the figures; they are kept in DIR/figures.json.
#
#   scripts/ha-test.sh [DIR]     # DIR: target/ha-test (wiped first)
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-target/ha-test}
scripts/ha-cluster.sh stop "$dir" >/dev/null 2>&1 || true
rm -rf "$dir"
mkdir -p "$dir"
cargo build --quiet --bin tidelog
trap 'scripts/ha-cluster.sh stop "$dir" >/dev/null 2>&1 || true' EXIT
url=$(scripts/ha-cluster.sh start "$dir" | sed -n 's/^DATABASE_URL=//p')
[ -n "$url" ] || { echo "ha-test: the cluster did not start" >&2; exit 1; }
python3 scripts/ha_test.py --dir "$(cd "$dir" && pwd)" --database-url "$url" --bin target/debug/tidelog
