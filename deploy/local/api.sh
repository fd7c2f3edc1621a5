#!/usr/bin/env bash
# `meterflow api` (the HTTP API) as a local service on MF_HTTP_PORT (default 8080); ready when
# GET /readyz answers 200 (Kafka and PostgreSQL reachable, profiles loaded).
set -euo pipefail
# shellcheck source=proc.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/proc.sh"
port="${MF_HTTP_PORT:-8080}"
MF_PORT_VARIABLE=MF_HTTP_PORT service_main api "http://127.0.0.1:$port/readyz" "${1:-}" -- api
