#!/usr/bin/env bash
# The system packages every part of meterflow needs, from Debian's packages: PostgreSQL (the
# database) and Prometheus (the local scraper, and `promtool`, which the tests use). One script for
# `make up` and `.ci/run`, so a fresh machine that ran the README's setup can run every test.
# Idempotent: installs only what is missing; a no-op (and no apt call) when all is present.
#   deploy/local/system-packages.sh [install|check]
# Debian's own services are not started (policy-rc.d): our scripts run PostgreSQL and Prometheus
# from the checkout's state dir, and Debian's defaults would take ports 5432 and 9090.
set -euo pipefail

missing() {
  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || echo postgresql
  { command -v prometheus && command -v promtool; } >/dev/null || echo prometheus
}

install() {
  local packages; mapfile -t packages < <(missing)
  if ((${#packages[@]} == 0)); then echo "system packages: present (postgresql, prometheus)" >&2; return; fi
  local sudo=""
  if [[ "$(id -u)" -ne 0 ]]; then
    command -v sudo >/dev/null || { echo "system packages: need root or sudo to install ${packages[*]}" >&2; exit 1; }
    sudo="sudo"
  fi
  echo "system packages: installing ${packages[*]} from Debian's packages" >&2
  local policy=/usr/sbin/policy-rc.d added=""
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
    $sudo chmod +x "$policy"; added=1
  fi
  local rc=0
  { $sudo apt-get update -qq \
      && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
        "${packages[@]}" </dev/null >/dev/null; } || rc=$?
  [[ -n "$added" ]] && $sudo rm -f "$policy"
  ((rc == 0)) || { echo "system packages: apt-get failed (exit $rc)" >&2; exit "$rc"; }
  # Should a Debian default cluster be running anyway (policy-rc.d was there and allowed it), stop
  # it: ours runs from the state dir on the same port.
  if command -v pg_lsclusters >/dev/null; then
    pg_lsclusters -h 2>/dev/null | while read -r ver name _; do
      $sudo pg_ctlcluster "$ver" "$name" stop >/dev/null 2>&1 || true
    done
  fi
  echo "system packages: installed ${packages[*]}" >&2
}

case "${1:-install}" in
  install) install ;;
  check)
    left="$(missing | tr '\n' ' ')"
    [[ -z "$left" ]] || { echo "system packages missing: $left" >&2; exit 1; } ;;
  *) echo "usage: $0 install|check" >&2; exit 2 ;;
esac
