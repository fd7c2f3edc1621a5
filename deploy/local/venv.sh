#!/usr/bin/env bash
# Creates <repo>/.venv with Python 3.11 and installs meterflow editable with all extras, when the
# venv is missing or pyproject.toml changed since the last install. Idempotent and fast when done.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=env.sh
source "$here/env.sh"
stamp="$MF_VENV/.meterflow-installed"

python="${MF_PYTHON:-}"
if [[ -z "$python" ]]; then
  for candidate in python3.11 python3; do
    if command -v "$candidate" >/dev/null \
      && "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
      python="$candidate"; break
    fi
  done
fi
[[ -n "$python" ]] || { echo "venv: Python 3.11 is required (set MF_PYTHON)" >&2; exit 1; }

if [[ ! -x "$MF_VENV/bin/python" ]]; then
  echo "venv: creating $MF_VENV with $($python --version)" >&2
  "$python" -m venv "$MF_VENV"
fi
if [[ ! -f "$stamp" || "$MF_REPO/pyproject.toml" -nt "$stamp" || ! -x "$MF_VENV/bin/meterflow" ]]; then
  echo "venv: installing meterflow[test,dev,rocksdb] (editable)" >&2
  "$MF_VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
  "$MF_VENV/bin/python" -m pip install -q --disable-pip-version-check -e "$MF_REPO[test,dev,rocksdb]"
  touch "$stamp"
else
  echo "venv: $MF_VENV up to date" >&2
fi
