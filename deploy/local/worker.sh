#!/usr/bin/env bash
# `meterflow worker` (Faust cost agent + tables) as a local service; /metrics on its Faust web
# port (MF_WORKER_WEB_PORT, default 6066). Table files live in $MF_STATE_DIR/worker.
set -euo pipefail
# shellcheck source=proc.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/proc.sh"
export MF_DATA_DIR="${MF_DATA_DIR:-$MF_STATE_DIR/worker}"
port="${MF_WORKER_WEB_PORT:-6066}"
service_main worker "http://127.0.0.1:$port/metrics" "${1:-}" -- worker
