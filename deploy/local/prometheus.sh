#!/usr/bin/env bash
# A local Prometheus (Debian's `prometheus` package) scraping the local meterflow processes, with
# meterflow's alert rules; skipped with a note when Prometheus is not installed.
#   deploy/local/prometheus.sh start|stop|status
# The config is deploy/prometheus/prometheus.local.yml with the ports of this environment
# (MF_WORKER_WEB_PORT, MF_SINK_HTTP_PORT, MF_HTTP_PORT, MF_PROMETHEUS_PORT), written to the state dir.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=env.sh
source "$here/env.sh"
state="$MF_STATE_DIR/prometheus"
pidfile="$MF_STATE_DIR/run/prometheus.pid"
port="${MF_PROMETHEUS_PORT:-9090}"
binary="$(command -v prometheus || true)"

running() {
  [[ -f "$pidfile" ]] || return 1
  local pid; pid="$(cat "$pidfile")"
  kill -0 "$pid" 2>/dev/null || return 1
  # Read the name into a variable: under pipefail, `… | grep -q` fails when grep quits early.
  local cmdline; cmdline="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null || true)"
  [[ "$cmdline" == *prometheus* ]]
}

write_config() {
  mkdir -p "$state"
  sed -e "s#127.0.0.1:6066#127.0.0.1:${MF_WORKER_WEB_PORT:-6066}#" \
      -e "s#127.0.0.1:8081#127.0.0.1:${MF_SINK_HTTP_PORT:-8081}#" \
      -e "s#127.0.0.1:8080#127.0.0.1:${MF_HTTP_PORT:-8080}#" \
      -e "s#127.0.0.1:9090#127.0.0.1:$port#" \
      -e "s#^  - alerts.yml#  - $MF_REPO/deploy/prometheus/alerts.yml#" \
      "$MF_REPO/deploy/prometheus/prometheus.local.yml" >"$state/prometheus.yml"
}

start() {
  if [[ -z "$binary" ]]; then
    echo "prometheus: not installed (apt-get install prometheus); skipped" >&2
    return 0
  fi
  if running; then echo "prometheus: already running (pid $(cat "$pidfile"))" >&2; return 0; fi
  write_config
  mkdir -p "$(dirname "$pidfile")" "$MF_STATE_DIR/logs"
  (exec setsid "$binary" --config.file="$state/prometheus.yml" --storage.tsdb.path="$state/data" \
    --storage.tsdb.retention.time=2d --web.listen-address="127.0.0.1:$port" \
    >>"$MF_STATE_DIR/logs/prometheus.log" 2>&1 </dev/null) &
  local pid=$!
  echo "$pid" >"$pidfile"
  for _ in $(seq 1 120); do
    if curl -fsS -o /dev/null --max-time 2 "http://127.0.0.1:$port/-/ready" 2>/dev/null; then
      echo "prometheus: ready (pid $pid) at http://127.0.0.1:$port" >&2
      return 0
    fi
    # Liveness by pid only: while the subshell execs into prometheus its cmdline can read as
    # empty, and `running` (which also checks the name) then sent us to wait on a live child.
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.5
  done
  local status=running
  if ! kill -0 "$pid" 2>/dev/null; then
    status="exited"
    wait "$pid" 2>/dev/null || status="exited with $?"
  fi
  echo "prometheus: did not become ready ($status); see $MF_STATE_DIR/logs/prometheus.log" >&2
  tail -n 15 "$MF_STATE_DIR/logs/prometheus.log" >&2 || true
  return 1
}

stop() {
  if ! running; then rm -f "$pidfile"; return 0; fi
  local pid; pid="$(cat "$pidfile")"
  kill -TERM "$pid"
  for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
  rm -f "$pidfile"
  echo "prometheus: stopped (pid $pid)" >&2
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status)
    if [[ -z "$binary" ]]; then echo "prometheus: not installed"
    elif running; then echo "prometheus: running (pid $(cat "$pidfile")) at http://127.0.0.1:$port"
    else echo "prometheus: not running"; fi ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
