#!/usr/bin/env bash
# tidelog's benchmark: builds the release binaries, then runs the load
# generator, which starts its own server (on a fresh embedded cluster under
# target/bench/data, or a fresh database `tidelog_bench` on DATABASE_URL's
# server), measures every scenario side by side with the ceilings, and
# writes target/bench/report.md and target/bench/report.json.
#
#   scripts/bench.sh            # full: 3 repeats, 10 s per scenario, 1M events
#   scripts/bench.sh --quick    # every scenario briefly (under two minutes)
#
# Extra arguments go to the load generator (see `target/release/loadgen --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --bins --quiet
# the stock KurrentDB client the gRPC figures read through (a dev-dependency)
cargo build --release --example grpc-client --quiet
exec target/release/loadgen --out target/bench "$@"
