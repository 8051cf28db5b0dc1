#!/usr/bin/env bash
# Stops the private PostgreSQL cluster that `cargo test` starts and leaves
# running for later runs (one per user, under /tmp).
set -euo pipefail
root="/tmp/tidelog-test-cluster-$(id -u)"
[ -f "$root/data/postmaster.pid" ] || { echo "no test cluster running"; exit 0; }
bin=$(dirname "$(command -v pg_ctl || ls -d /usr/lib/postgresql/*/bin/pg_ctl | sort -V | tail -n1)")
if [ "$(id -u)" = 0 ]; then
  runuser -u postgres -- "$bin/pg_ctl" -D "$root/data" -m fast stop
else
  "$bin/pg_ctl" -D "$root/data" -m fast stop
fi
