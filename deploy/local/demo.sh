#!/usr/bin/env bash
# The last step of `make up`: a demo location with a time-of-use tariff and one meter record,
# both through the HTTP API, then the EnergyCost and where to look next.
#   start   create (once) a test API key for acc_demo, PUT /locations/loc_demo, POST /costs/instant
#   stop    nothing to stop (the key and the location stay, like any API data)
#   status  where the demo's key is kept
# The record (deploy/local/demo/record.json): 7.4 kWh over 06:00-08:00 UTC on 15 January, half in
# the 00:00-07:00 off-peak band (0.075/kWh) and half in the day band (0.245/kWh): cost 1.184 GBP.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=env.sh
source "$here/env.sh"
api="http://127.0.0.1:${MF_HTTP_PORT:-8080}"
keyfile="$MF_STATE_DIR/demo/api-key"
account="${MF_DEMO_ACCOUNT:-acc_demo}"

call() {  # call <method> <path> <body-file>: print the body; fail with the API's error object
  local out status
  out="$(mktemp)"
  status="$(curl -sS -o "$out" -w '%{http_code}' -X "$1" "$api$2" \
    -H "Authorization: Bearer $(cat "$keyfile")" -H 'Content-Type: application/json' \
    --data-binary "@$3")" || { rm -f "$out"; echo "demo: $1 $2 failed: API not reachable at $api" >&2; return 1; }
  if [[ "$status" != 2* ]]; then
    echo "demo: $1 $2 answered $status: $(cat "$out")" >&2
    rm -f "$out"
    return 1
  fi
  cat "$out"; rm -f "$out"
}

pretty() { "$MF_VENV/bin/python" -m json.tool; }

# "<records> <records> record(s), <kWh> kWh, cost <value> GBP" for the demo session, from the
# report endpoint (which reads PostgreSQL, i.e. what the sink stored); "0 none" when empty.
session_totals() {
  printf '{}' >"$MF_STATE_DIR/demo/empty.json"
  call POST /costs/session/ses_demo_1 "$MF_STATE_DIR/demo/empty.json" 2>/dev/null \
    | "$MF_VENV/bin/python" -c '
import json, sys
try:
    row = json.load(sys.stdin)["data"][0]
except Exception:
    print("0 none")
    sys.exit(0)
print("%s %s record(s), %s kWh, cost %s GBP" % (
    row["records"], row["records"], row["energy"]["value"], row["cost"]["value"]))
' 2>/dev/null || echo "0 none"
}

# The sink's count of events read (its /healthz), "" when no sink answers: a duplicate demo record
# finds the row a former `make up` stored, so the row alone does not show that the sink runs now.
sink_read() {
  curl -fsS --max-time 2 "http://127.0.0.1:${MF_SINK_HTTP_PORT:-8081}/healthz" 2>/dev/null \
    | "$MF_VENV/bin/python" -c 'import json, sys; print(json.load(sys.stdin)["stats"]["records_read"])' \
    2>/dev/null || true
}

# Whether the demo record (device dev_demo_ev, reference rec_demo_1) has its row in PostgreSQL,
# from the per-record report rows.
demo_record_stored() {
  printf '{"start_time": "2026-01-15T00:00:00Z", "end_time": "2026-01-16T00:00:00Z"}' \
    >"$MF_STATE_DIR/demo/day.json"
  call POST /costs/interval/dev_demo_ev "$MF_STATE_DIR/demo/day.json" 2>/dev/null \
    | "$MF_VENV/bin/python" -c '
import json, sys
rows = json.load(sys.stdin).get("data", [])
sys.exit(0 if any(r.get("record_reference_id") == "rec_demo_1" for r in rows) else 1)
' 2>/dev/null
}

start() {
  mkdir -p "$(dirname "$keyfile")"
  if [[ ! -s "$keyfile" ]]; then
    "$MF_VENV/bin/meterflow" keys create --account "$account" --mode test >"$keyfile.tmp" 2>/dev/null
    mv "$keyfile.tmp" "$keyfile"
    chmod 600 "$keyfile"
  fi
  call PUT /locations/loc_demo "$here/demo/location.json" >/dev/null
  echo "demo: location loc_demo (Europe/London, GBP, time-of-use import, fixed export) stored" >&2
  local before cost read_before
  before="$(session_totals)"
  read_before="$(sink_read)"
  cost="$(call POST /costs/instant "$here/demo/record.json")"
  # The record carries record_reference_id, so a second `make up` sends a duplicate (design §8):
  # stored once, the session's totals unchanged. So wait for the record's own row, not a count.
  local stored="not yet in PostgreSQL (is the sink running? see $MF_STATE_DIR/logs/sink.log)"
  for _ in $(seq 1 40); do
    local read_now; read_now="$(sink_read)"
    if [[ -n "$read_now" && -n "$read_before" && "$read_now" -gt "$read_before" ]] && demo_record_stored; then
      local now; now="$(session_totals)"
      stored="stored by the sink; session ses_demo_1 now totals ${now#* }"
      [[ "${now%% *}" == "${before%% *}" ]] && stored+=" (the same reference as before: a duplicate, stored once)"
      break
    fi
    sleep 0.5
  done
  cat <<INFO

Sample record (deploy/local/demo/record.json) priced through POST $api/costs/instant:
$(printf '%s' "$cost" | pretty)
PostgreSQL: $stored (POST $api/costs/session/ses_demo_1)

Where to look next:
  API              $api   (key for $account in $keyfile; OpenAPI at $api/openapi.json)
                   curl -H "Authorization: Bearer \$(cat $keyfile)" $api/locations/loc_demo
  metrics          worker http://127.0.0.1:${MF_WORKER_WEB_PORT:-6066}/metrics
                   sink   http://127.0.0.1:${MF_SINK_HTTP_PORT:-8081}/metrics
                   api    $api/metrics
  Prometheus       http://127.0.0.1:${MF_PROMETHEUS_PORT:-9090}  (alerts: deploy/prometheus/alerts.yml) when installed
  dashboards       with Docker, \`docker compose up\` runs this stack plus Grafana on
                   http://localhost:3000 ("Energy costs", "Pipeline health"); docs/operations.md
  logs             $MF_STATE_DIR/logs/
INFO
}

case "${1:-}" in
  start) start ;;
  stop) ;;
  status) echo "demo: account $account, key in $keyfile, location loc_demo" ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
