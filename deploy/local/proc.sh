# Runs one meterflow subcommand as a background service with a PID file and a log file; sourced
# by worker.sh, sink.sh and api.sh (not executed). `stop` signals exactly the PID it recorded,
# after checking that this PID is still a meterflow process (never a recycled PID).
#
#   service_main <name> <ready-url> <start|stop|status|logs> -- <meterflow args…>
#
# State: $MF_STATE_DIR/run/<name>.pid and $MF_STATE_DIR/logs/<name>.log.
# shellcheck shell=bash
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=env.sh
source "$here/env.sh"

_pidfile() { echo "$MF_STATE_DIR/run/$1.pid"; }
_logfile() { echo "$MF_STATE_DIR/logs/$1.log"; }

# True when the PID file names a live process whose command line is a meterflow command.
_running() {
  local pidfile pid; pidfile="$(_pidfile "$1")"
  [[ -f "$pidfile" ]] || return 1
  pid="$(cat "$pidfile")"
  kill -0 "$pid" 2>/dev/null || return 1
  # Read the name into a variable: under pipefail, `… | grep -q` fails when grep quits early.
  local cmdline; cmdline="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null || true)"
  [[ "$cmdline" == *meterflow* ]]
}

_ready() { curl -fsS -o /dev/null --max-time 2 "$1" 2>/dev/null; }

_start() {  # _start <name> <ready-url> <meterflow args…>
  local name="$1" url="$2"; shift 2
  local pidfile logfile; pidfile="$(_pidfile "$name")"; logfile="$(_logfile "$name")"
  if _running "$name"; then
    echo "$name: already running (pid $(cat "$pidfile"))" >&2
    return 0
  fi
  if _ready "$url"; then
    echo "$name: another process already answers at $url; stop it or choose another port" >&2
    return 1
  fi
  local port="${url#http://127.0.0.1:}"; port="${port%%/*}"
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then  # as kafka.sh and postgres.sh do
    echo "$name: port $port is taken by another process; set ${MF_PORT_VARIABLE:-its MF_ port variable} or stop it" >&2
    return 1
  fi
  mkdir -p "$(dirname "$pidfile")" "$(dirname "$logfile")"
  [[ -x "$MF_VENV/bin/meterflow" ]] || { echo "$name: $MF_VENV/bin/meterflow missing (make venv)" >&2; return 1; }
  # setsid: its own session, so a Ctrl-C in the terminal that ran `make up` does not reach it.
  (cd "$MF_REPO" && exec setsid "$MF_VENV/bin/meterflow" "$@" >>"$logfile" 2>&1 </dev/null) &
  local pid=$!
  echo "$pid" >"$pidfile"
  local waited=0 limit="${MF_START_TIMEOUT_S:-120}"
  until _ready "$url"; do
    # Liveness by pid alone, as prometheus.sh: until the subshell has exec'd, its cmdline is
    # this script's, and `_running` (which checks it) reported a starting service as exited.
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "$name: exited during start; last log lines ($logfile):" >&2
      tail -n 20 "$logfile" >&2
      rm -f "$pidfile"
      return 1
    fi
    if ((waited >= limit * 2)); then
      echo "$name: not ready at $url after ${limit}s (still running; see $logfile)" >&2
      return 1
    fi
    sleep 0.5; waited=$((waited + 1))
  done
  sleep 0.5
  if ! _running "$name"; then
    echo "$name: exited right after start; last log lines ($logfile):" >&2
    tail -n 20 "$logfile" >&2
    rm -f "$pidfile"
    return 1
  fi
  echo "$name: ready (pid $(cat "$pidfile")) at $url" >&2
}

_stop() {
  local name="$1" pidfile pid; pidfile="$(_pidfile "$name")"
  if ! _running "$name"; then
    rm -f "$pidfile"
    echo "$name: not running" >&2
    return 0
  fi
  pid="$(cat "$pidfile")"
  kill -TERM "$pid"
  for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  if kill -0 "$pid" 2>/dev/null; then
    echo "$name: pid $pid did not stop in 20s; killing it" >&2
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
  echo "$name: stopped (pid $pid)" >&2
}

service_main() {  # service_main <name> <ready-url> <action> -- <meterflow args…>
  local name="$1" url="$2" action="$3"; shift 3
  [[ "${1:-}" == "--" ]] && shift
  case "$action" in
    start) _start "$name" "$url" "$@" ;;
    stop) _stop "$name" ;;
    status)
      if _running "$name"; then echo "$name: running (pid $(cat "$(_pidfile "$name")")) at $url, log $(_logfile "$name")"
      else echo "$name: not running"; return 1; fi ;;
    logs) tail -n 50 -f "$(_logfile "$name")" ;;
    *) echo "usage: $0 start|stop|status|logs" >&2; return 2 ;;
  esac
}
