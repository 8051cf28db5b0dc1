#!/usr/bin/env bash
# A highly available PostgreSQL for tidelog on loopback, from Debian's own
# packages: one etcd, three Patroni nodes (synchronous replication,
# pg_rewind) and HAProxy routing to whichever node answers Patroni's
# `GET /primary`.
#
#   scripts/ha-cluster.sh install       # the Debian packages, when missing
#   scripts/ha-cluster.sh start [DIR]   # prints DATABASE_URL (HAProxy's port)
#   scripts/ha-cluster.sh status [DIR]  # members, roles, lag
#   scripts/ha-cluster.sh stop [DIR]    # ends what start started (pids, and this DIR's configs)
#   scripts/ha-cluster.sh kill-leader [DIR]  # SIGKILL the leader's Patroni and PostgreSQL
#   scripts/ha-cluster.sh restart-node N [DIR] # start node N's Patroni again (it rejoins)
#
# DIR defaults to target/ha. Ports: etcd 2379/2380, Patroni REST 8008-8010,
# PostgreSQL 5433-5435, HAProxy 5000 (HA_BASE_PORT moves them all).
set -euo pipefail
cmd=${1:-status}
if [ "$cmd" = restart-node ]; then
  node_arg=${2:?restart-node N [DIR]}
  dir=${3:-target/ha}
else
  dir=${2:-target/ha}
fi
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
base=${HA_BASE_PORT:-0}
etcd_client=$((2379 + base)) etcd_peer=$((2380 + base)) proxy=$((5000 + base))
rest() { echo $((8007 + base + $1)); }
pgport() { echo $((5432 + base + $1)); }
su_pass=tidelog-ha-superuser
bin_dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)

install_packages() {
  local missing=()
  command -v patroni >/dev/null || missing+=(patroni)
  command -v etcd >/dev/null || missing+=(etcd-server)
  command -v haproxy >/dev/null || missing+=(haproxy)
  [ -n "$bin_dir" ] || missing+=(postgresql)
  if [ ${#missing[@]} -gt 0 ]; then
    echo "installing ${missing[*]}" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null 2>&1 \
      || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null; }
    bin_dir=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
  fi
}

# PostgreSQL refuses to run as root: Patroni (and so PostgreSQL) runs as
# the `postgres` user then, over directories it owns.
as_pg() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

node_config() {
  local n=$1
  cat >"$dir/node$n/patroni.yml" <<YAML
scope: tidelog
name: node$n
log:
  dir: $dir/node$n
  file_num: 2
restapi:
  listen: 127.0.0.1:$(rest "$n")
  connect_address: 127.0.0.1:$(rest "$n")
etcd3:
  hosts: 127.0.0.1:$etcd_client
bootstrap:
  dcs:
    # failover in about ttl seconds after the leader dies (Patroni's own
    # defaults are ttl 30, loop_wait 10, retry_timeout 10: about 30 s)
    ttl: 10
    loop_wait: 2
    retry_timeout: 4
    maximum_lag_on_failover: 1048576
    # a commit is acknowledged once the synchronous standby has it, and
    # only that standby may be promoted: no acknowledged write is lost
    synchronous_mode: true
    postgresql:
      use_pg_rewind: true
      use_slots: true
      parameters:
        wal_level: replica
        hot_standby: "on"
        wal_log_hints: "on"
        max_wal_senders: 10
        max_replication_slots: 10
        max_connections: 200
  initdb:
    - encoding: UTF8
    - data-checksums
  pg_hba:
    - local all all trust
    - host replication replicator 127.0.0.1/32 scram-sha-256
    - host all all 127.0.0.1/32 scram-sha-256
postgresql:
  listen: 127.0.0.1:$(pgport "$n")
  connect_address: 127.0.0.1:$(pgport "$n")
  data_dir: $dir/node$n/data
  bin_dir: $bin_dir
  pgpass: $dir/node$n/pgpass
  authentication:
    replication:
      username: replicator
      password: tidelog-ha-replicator
    superuser:
      username: postgres
      password: $su_pass
    rewind:
      username: rewinder
      password: tidelog-ha-rewinder
  parameters:
    unix_socket_directories: $dir/node$n
tags:
  nofailover: false
  noloadbalance: false
YAML
}

start_node() {
  local n=$1
  alive "$dir/node$n/patroni.pid" && return 0
  as_pg nohup patroni "$dir/node$n/patroni.yml" >>"$dir/node$n/patroni.out" 2>&1 &
  # Patroni's own pid (under runuser when root), for stop and kill-leader
  for _ in $(seq 50); do
    pgrep -f -n "python.* [^ ]*patroni $dir/node$n/patroni.yml\$" >"$dir/node$n/patroni.pid" && break
    sleep 0.1
  done
}

members() {
  for n in 1 2 3; do
    local url=http://127.0.0.1:$(rest "$n") role
    role=$(curl -s --max-time 1 "$url/patroni" | python3 -c 'import json,sys
try:
    d=json.load(sys.stdin); print(d.get("role","?"), d.get("state","?"), "timeline", d.get("timeline","?"))
except Exception: print("down")' 2>/dev/null || echo down)
    if [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "$url/sync")" = 200 ]; then role="$role synchronous"; fi
    echo "node$n 127.0.0.1:$(pgport "$n") $role"
  done
}

leader() {
  for n in 1 2 3; do
    if [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "http://127.0.0.1:$(rest "$n")/primary")" = 200 ]; then
      echo "$n"
      return
    fi
  done
}

wait_ready() {
  # a leader and a synchronous standby, and HAProxy routing to the leader
  for _ in $(seq 240); do
    local l
    l=$(leader || true)
    if [ -n "$l" ] && members | grep ' synchronous' >/dev/null \
      && PGPASSWORD=$su_pass psql -h 127.0.0.1 -p "$proxy" -U postgres -d postgres -Atc 'select 1' >/dev/null 2>&1; then
      return 0
    fi
    sleep 0.5
  done
  echo "ha-cluster: no leader with a synchronous standby reachable through HAProxy after 120 s" >&2
  members >&2
  PGPASSWORD=$su_pass psql -h 127.0.0.1 -p "$proxy" -U postgres -d postgres -Atc 'select 1' >&2 || true
  return 1
}

case "$cmd" in
  install)
    install_packages
    command -v patroni >/dev/null && command -v etcd >/dev/null && command -v haproxy >/dev/null
    ;;
  start)
    install_packages
    if [ "$(id -u)" = 0 ]; then chown postgres "$dir"; fi
    if ! alive "$dir/etcd.pid"; then
      mkdir -p "$dir/etcd"
      nohup etcd --name ha --data-dir "$dir/etcd/data" \
        --listen-client-urls "http://127.0.0.1:$etcd_client" --advertise-client-urls "http://127.0.0.1:$etcd_client" \
        --listen-peer-urls "http://127.0.0.1:$etcd_peer" --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer" \
        --initial-cluster "ha=http://127.0.0.1:$etcd_peer" >"$dir/etcd/etcd.out" 2>&1 &
      echo $! >"$dir/etcd.pid"
      for _ in $(seq 50); do curl -s "http://127.0.0.1:$etcd_client/health" | grep -q true && break; sleep 0.2; done
    fi
    for n in 1 2 3; do
      mkdir -p "$dir/node$n"
      if [ "$(id -u)" = 0 ]; then chown postgres "$dir/node$n"; fi
      node_config "$n"
      if [ "$(id -u)" = 0 ]; then chown postgres "$dir/node$n/patroni.yml"; fi
      start_node "$n"
      # the first node bootstraps alone, the others then clone it
      [ "$n" = 1 ] && for _ in $(seq 120); do [ -n "$(leader || true)" ] && break; sleep 0.5; done
    done
    if ! alive "$dir/haproxy.pid"; then
      {
        echo "global"
        echo "  maxconn 2000"
        echo "defaults"
        echo "  mode tcp"
        echo "  timeout connect 2s"
        echo "  timeout client 30m"
        echo "  timeout server 30m"
        echo "  timeout check 1s"
        echo "listen primary"
        echo "  bind 127.0.0.1:$proxy"
        echo "  option httpchk GET /primary"
        echo "  http-check expect status 200"
        echo "  default-server inter 500ms fall 2 rise 2 on-marked-down shutdown-sessions"
        for n in 1 2 3; do echo "  server node$n 127.0.0.1:$(pgport "$n") maxconn 500 check port $(rest "$n")"; done
      } >"$dir/haproxy.cfg"
      haproxy -f "$dir/haproxy.cfg" -D -p "$dir/haproxy.pid"
    fi
    wait_ready
    PGPASSWORD=$su_pass psql -h 127.0.0.1 -p "$proxy" -U postgres -d postgres -Atc \
      "select 1 from pg_database where datname = 'tidelog'" | grep -q 1 \
      || PGPASSWORD=$su_pass psql -h 127.0.0.1 -p "$proxy" -U postgres -d postgres -qc 'create database tidelog'
    members >&2
    echo "DATABASE_URL=postgres://postgres:$su_pass@127.0.0.1:$proxy/tidelog"
    ;;
  status)
    members
    l=$(leader || true)
    echo "leader: ${l:+node$l}"
    ;;
  kill-leader)
    l=$(leader || true)
    [ -n "$l" ] || { echo "ha-cluster: no leader" >&2; exit 1; }
    pg_pid=$(head -1 "$dir/node$l/data/postmaster.pid")
    pkill -9 -f "patroni $dir/node$l/patroni.yml\$" 2>/dev/null || true
    # the postmaster and every backend of it at once: nothing of node$l answers now
    pkill -9 -P "$pg_pid" 2>/dev/null || true
    kill -9 "$pg_pid" 2>/dev/null || true
    echo "node$l"
    ;;
  restart-node)
    start_node "$node_arg"
    ;;
  stop)
    [ -s "$dir/haproxy.pid" ] && kill "$(cat "$dir/haproxy.pid")" 2>/dev/null || true
    # this DIR's Patroni processes (and runuser above them), by their config path
    for n in 1 2 3; do pkill -f "patroni $dir/node$n/patroni.yml\$" 2>/dev/null || true; done
    for n in 1 2 3; do
      for _ in $(seq 100); do pgrep -f "patroni $dir/node$n/patroni.yml\$" >/dev/null || break; sleep 0.2; done
      pkill -9 -f "patroni $dir/node$n/patroni.yml\$" 2>/dev/null || true
      # a PostgreSQL left without its Patroni (after kill-leader, or a Patroni killed)
      if [ -s "$dir/node$n/data/postmaster.pid" ]; then
        p=$(head -1 "$dir/node$n/data/postmaster.pid")
        if kill -0 "$p" 2>/dev/null; then
          as_pg "$bin_dir/pg_ctl" -D "$dir/node$n/data" -m immediate stop >/dev/null 2>&1 || kill -9 "$p" 2>/dev/null || true
        fi
      fi
    done
    [ -s "$dir/etcd.pid" ] && kill "$(cat "$dir/etcd.pid")" 2>/dev/null || true
    rm -f "$dir/etcd.pid" "$dir/haproxy.pid" "$dir"/node*/patroni.pid
    ;;
  *)
    echo "usage: $0 install|start|status|stop|kill-leader|restart-node N [DIR]" >&2
    exit 2
    ;;
esac
