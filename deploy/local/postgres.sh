#!/usr/bin/env bash
# A local PostgreSQL for meterflow from Debian's packages, bound to 127.0.0.1 only: installs the
# server if it is missing, creates a cluster under the state dir, the role and the database
# (idempotent), and stops exactly the server it started.
#
#   deploy/local/postgres.sh install|start|stop|status|psql|reset
#
# Environment (all optional):
#   MF_STATE_DIR      data, logs and socket            (default <repo>/.local)
#   MF_PG_PORT        port                             (default 5432)
#   MF_PG_USER / MF_PG_PASSWORD / MF_PG_DB             (default meterflow / meterflow / meterflow)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
state="${MF_STATE_DIR:-$repo/.local}/postgres"
port="${MF_PG_PORT:-5432}"
user="${MF_PG_USER:-meterflow}"
password="${MF_PG_PASSWORD:-meterflow}"
db="${MF_PG_DB:-meterflow}"
# The server runs as the `postgres` system user when we are root; if that user cannot reach the
# checkout (e.g. a clone under /root, mode 700), keep the cluster in a per-checkout dir it can reach.
pick_state() {
  if [[ "$(id -u)" -eq 0 ]] && id postgres >/dev/null 2>&1; then
    local probe="$state"
    while [[ ! -e "$probe" ]]; do probe="$(dirname "$probe")"; done
    if ! runuser -u postgres -- test -x "$probe"; then
      state="/var/tmp/meterflow-postgres-$(printf '%s' "$state" | sha1sum | cut -c1-12)"
    fi
  fi
  data="$state/data"
}
pick_state

log() { printf 'postgres: %s\n' "$*" >&2; }

bindir() {
  local dir
  dir="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)"
  [[ -n "$dir" && -x "$dir/initdb" ]] && echo "$dir"
}

install() {
  if bindir >/dev/null; then return; fi
  "$here/system-packages.sh" install
}

# The server refuses to run as root: run its tools as the `postgres` system user when we are root.
as_owner() {
  if [[ "$(id -u)" -eq 0 ]]; then (cd / && runuser -u postgres -- "$@"); else "$@"; fi
}

running() { as_owner "$(bindir)/pg_ctl" -D "$data" status >/dev/null 2>&1; }

start() {
  install
  pick_state  # again: installing the package creates the postgres user
  local bin; bin="$(bindir)"
  mkdir -p "$state"
  if [[ "$(id -u)" -eq 0 ]]; then chown postgres:postgres "$state"; fi
  if [[ ! -f "$data/PG_VERSION" ]]; then
    as_owner "$bin/initdb" -D "$data" -U postgres --auth-local=trust --auth-host=scram-sha-256 \
      --encoding=UTF8 --locale=C.UTF-8 >/dev/null
    cat >>"$data/postgresql.conf" <<CONF
# meterflow local settings
listen_addresses = '127.0.0.1'
unix_socket_directories = '$state'
max_connections = 200
shared_buffers = 256MB
fsync = on
synchronous_commit = on
CONF
  fi
  if running; then
    log "already running on 127.0.0.1:$port"
  elif (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    log "port $port is taken by another process; set MF_PG_PORT or stop it"
    exit 1
  else
    as_owner "$bin/pg_ctl" -D "$data" -l "$state/server.log" -o "-p $port" -w -t 60 start >/dev/null \
      || { tail -20 "$state/server.log" >&2; exit 1; }
  fi
  local q="$bin/psql -v ON_ERROR_STOP=1 -qAt -h $state -p $port -U postgres -d postgres"
  if [[ "$(as_owner $q -c "select 1 from pg_roles where rolname='$user'")" != "1" ]]; then
    as_owner $q -c "create role \"$user\" login createdb password '$password'"
  fi
  if [[ "$(as_owner $q -c "select 1 from pg_database where datname='$db'")" != "1" ]]; then
    as_owner $q -c "create database \"$db\" owner \"$user\""
  fi
  log "running on 127.0.0.1:$port, database $db (postgresql://$user:***@127.0.0.1:$port/$db)"
}

stop() {
  local bin; bin="$(bindir)" || { log "not installed"; return; }
  if [[ -f "$data/PG_VERSION" ]] && running; then
    as_owner "$bin/pg_ctl" -D "$data" -m fast -w -t 60 stop >/dev/null
    log "stopped"
  else
    log "not running"
  fi
}

status() {
  if bindir >/dev/null && [[ -f "$data/PG_VERSION" ]] && running; then
    echo "postgres: running on 127.0.0.1:$port (postgresql://$user:$password@127.0.0.1:$port/$db)"
  else
    echo "postgres: stopped"; return 1
  fi
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop ;;
  status) status ;;
  psql) shift; PGPASSWORD="$password" "$(bindir)/psql" -h 127.0.0.1 -p "$port" -U "$user" -d "$db" "$@" ;;
  reset) stop; rm -rf "$state"; log "removed $state" ;;
  *) echo "usage: $0 install|start|stop|status|psql|reset" >&2; exit 2 ;;
esac
