#!/usr/bin/env bash
# `make up`: sets up what is missing (system packages, the venv), starts every service listed in
# deploy/local/services in order, and prints where each one answers and how to stop.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=env.sh
source "$here/env.sh"

services() { grep -Ev '^\s*(#|$)' "$here/services"; }

"$here/system-packages.sh" install
"$here/venv.sh"
for svc in $(services); do
  "$here/$svc.sh" start
done

cat <<INFO

meterflow is up (state in $MF_STATE_DIR):
$(for svc in $(services); do "$here/$svc.sh" status 2>&1 | sed 's/^/  /' || true; done)

  MF_KAFKA_BOOTSTRAP=$MF_KAFKA_BOOTSTRAP
  MF_DATABASE_URL=$MF_DATABASE_URL

Run the tests with \`make test\`; stop everything with \`make down\`.
INFO
