#!/usr/bin/env bash
# `make down`: stops the services of deploy/local/services in reverse order. Each script stops only
# the process it started itself (PID file / data dir under the state dir), never anything else.
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=env.sh
source "$here/env.sh"

rc=0
for svc in $(grep -Ev '^\s*(#|$)' "$here/services" | tac); do
  "$here/$svc.sh" stop || rc=1
done
exit $rc
