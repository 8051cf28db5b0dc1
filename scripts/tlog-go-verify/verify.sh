#!/bin/sh
# Verify a tlog export directory (see main.go) with Go's golang.org/x/mod
# sumdb/note + sumdb/tlog, as packaged by Debian 12:
#   apt-get install -y golang-go golang-golang-x-mod-dev
# Usage: verify.sh DIR   (exit status 0 = every check passed)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
tmp=${TMPDIR:-/tmp}
# Debian's x/mod lives in a GOPATH tree; build in GOPATH mode, offline.
GOPATH=${TLOG_GOPATH:-/usr/share/gocode}
GO111MODULE=off
GOCACHE=${GOCACHE:-$tmp/tlog-go-verify-cache}
export GOPATH GO111MODULE GOCACHE
unset GOFLAGS
test -d "$GOPATH/src/golang.org/x/mod/sumdb/note" || {
  echo "missing golang.org/x/mod in $GOPATH: apt-get install -y golang-go golang-golang-x-mod-dev" >&2
  exit 2
}
bin="$tmp/tlog-go-verify.$(id -u)"
go build -o "$bin" "$here/main.go"
exec "$bin" "$@"
