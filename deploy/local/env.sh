# Shared defaults for the local services: sourced by up.sh, down.sh and .ci/run (not executed).
# Every value can be overridden from the environment, so a second checkout (or CI next to a
# running dev stack) can use its own ports and state dir.
# shellcheck shell=bash
MF_REPO="${MF_REPO:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
export MF_STATE_DIR="${MF_STATE_DIR:-$MF_REPO/.local}"
export MF_KAFKA_PORT="${MF_KAFKA_PORT:-9092}"
export MF_KAFKA_CONTROLLER_PORT="${MF_KAFKA_CONTROLLER_PORT:-9093}"
export MF_PG_PORT="${MF_PG_PORT:-5432}"
export MF_KAFKA_BOOTSTRAP="${MF_KAFKA_BOOTSTRAP:-127.0.0.1:$MF_KAFKA_PORT}"
export MF_DATABASE_URL="${MF_DATABASE_URL:-postgresql://${MF_PG_USER:-meterflow}:${MF_PG_PASSWORD:-meterflow}@127.0.0.1:$MF_PG_PORT/${MF_PG_DB:-meterflow}}"
export MF_VENV="${MF_VENV:-$MF_REPO/.venv}"
