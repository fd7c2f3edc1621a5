#!/usr/bin/env bash
# `meterflow sink` (energy-costs -> PostgreSQL) as a local service; /healthz and /metrics on
# MF_SINK_HTTP_PORT (default 8081).
set -euo pipefail
# shellcheck source=proc.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/proc.sh"
port="${MF_SINK_HTTP_PORT:-8081}"
MF_PORT_VARIABLE=MF_SINK_HTTP_PORT service_main sink "http://127.0.0.1:$port/healthz" "${1:-}" -- sink
