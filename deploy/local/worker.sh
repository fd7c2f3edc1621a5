#!/usr/bin/env bash
# `meterflow worker` (Faust cost agent + tables) as a local service; /metrics on its Faust web
# port (MF_WORKER_WEB_PORT, default 6066). Table files live in $MF_STATE_DIR/worker.
#
# Each runs without its in-process HTTP API (`--no-api`) while the `api` service is in
# deploy/local/services: `meterflow api` holds MF_HTTP_PORT (docs/api.md).
#
# MF_WORKERS=N (default 1) runs N worker processes in the one consumer group: the first as
# above; worker-2 … worker-N with web ports MF_WORKER_WEB_PORT+1 …, state dirs
# $MF_STATE_DIR/worker-I, and never with the in-process HTTP API. Partitions are the
# unit of work: N workers need at least N partitions (MF_TOPIC_PARTITIONS, default 6); sizing in
# docs/operations.md. `stop` and `status` cover every worker-I found running, whatever N is now.
set -euo pipefail
# shellcheck source=proc.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/proc.sh"
action="${1:-}"
base_port="${MF_WORKER_WEB_PORT:-6066}"
workers="${MF_WORKERS:-1}"
[[ "$workers" =~ ^[1-9][0-9]*$ ]] || { echo "worker: MF_WORKERS must be a positive integer, got '$workers'" >&2; exit 2; }
state_dir="$MF_STATE_DIR"

first_args=(worker)
grep -qx api "$(dirname "${BASH_SOURCE[0]}")/services" && first_args=(worker --no-api)

one() {  # one <index> <action>: the index-th worker (1 = the classic `worker` service)
  local index="$1" name="worker" port="$base_port" args=("${first_args[@]}")
  if ((index > 1)); then
    name="worker-$index"; port=$((base_port + index - 1)); args=(worker --no-api)
  fi
  (
    export MF_DATA_DIR="${MF_DATA_DIR:-$state_dir/$name}"
    [[ "$index" == 1 ]] || export MF_DATA_DIR="$state_dir/$name"
    export MF_WORKER_WEB_PORT="$port"
    MF_PORT_VARIABLE="MF_WORKER_WEB_PORT (worker-I takes it + I - 1)" \
      service_main "$name" "http://127.0.0.1:$port/metrics" "$2" -- "${args[@]}"
  )
}

# the extra workers that have a PID file (started with a larger MF_WORKERS, maybe)
extra_indices() {
  local f
  for f in "$state_dir"/run/worker-*.pid; do
    [[ -e "$f" ]] || continue
    f="${f##*/worker-}"; echo "${f%.pid}"
  done
}

case "$action" in
  start)
    for ((i = 1; i <= workers; i++)); do one "$i" start; done ;;
  stop)
    for i in $( (extra_indices; seq 2 "$workers") | sort -rnu); do one "$i" stop; done
    one 1 stop ;;
  status)
    rc=0
    one 1 status || rc=$?
    for i in $( (extra_indices; seq 2 "$workers") | sort -nu); do one "$i" status || rc=$?; done
    exit "$rc" ;;
  *) one 1 "$action" ;;
esac
