#!/usr/bin/env bash
# Applies the database migrations with `meterflow db migrate` once that subcommand exists.
# Listed in deploy/local/services so `make up` runs it right after PostgreSQL starts.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=env.sh
source "$here/env.sh"
meterflow="$MF_VENV/bin/meterflow"

has_migrate() { [[ -x "$meterflow" ]] && "$meterflow" db migrate --help >/dev/null 2>&1; }

case "${1:-}" in
  start)
    if has_migrate; then
      "$meterflow" db migrate
      echo "migrate: database migrated ($MF_DATABASE_URL)" >&2
    else
      echo "migrate: \`meterflow db migrate\` not available yet; skipped" >&2
    fi ;;
  stop) ;;
  status) if has_migrate; then echo "migrate: \`make up\` runs \`meterflow db migrate\`"; else echo "migrate: \`meterflow db migrate\` not available yet"; fi ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
