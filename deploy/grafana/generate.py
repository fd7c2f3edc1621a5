"""Writes deploy/grafana/dashboards/*.json from the queries below.

The SQL and PromQL live here, readable, and the JSON Grafana loads is generated from them:
`.venv/bin/python deploy/grafana/generate.py` after an edit (a test fails when they differ).
Standard library only; why not grafana-foundation-sdk or grafanalib: docs/architecture.md.

Conventions of the "Energy costs" SQL (Grafana's PostgreSQL data source):
- `$__timeFilter(start_time)`: a record belongs to the range when it starts in it;
- a record's day is the local calendar day of its start in the location's time zone
  (`location_timezone`), the same rule as the API's DAY aggregation;
- IMPORT/EXPORT is the `tariff_direction`; net = import - export (an export's cost is what
  it earns);
- single-value variables are interpolated raw, hence `'$account'`; the multi-value `$location`
  is interpolated by Grafana as a quoted list, hence `IN ($location)`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DASHBOARDS = HERE / "dashboards"

PROMETHEUS = {"type": "prometheus", "uid": "meterflow-prometheus"}
POSTGRES = {"type": "grafana-postgresql-datasource", "uid": "meterflow-postgres"}

# --- Energy costs (PostgreSQL) --------------------------------------------------------------
SCOPE = """account_id = '$account'
  AND live_mode = $live_mode"""
FILTER = f"""$__timeFilter(start_time)
  AND {SCOPE}
  AND currency_code = '$currency'
  AND location_id IN ($location)"""
LOCAL_DAY = (
    "(date_trunc('day', start_time AT TIME ZONE location_timezone) AT TIME ZONE location_timezone)"
)
NET_COST = "sum(CASE WHEN tariff_direction = 'EXPORT' THEN -cost ELSE cost END)"
NET_KWH = "sum(CASE WHEN tariff_direction = 'EXPORT' THEN -energy_kwh ELSE energy_kwh END)"
IMPORT_COST = "coalesce(sum(cost) FILTER (WHERE tariff_direction = 'IMPORT'), 0)"
EXPORT_EARNINGS = "coalesce(sum(cost) FILTER (WHERE tariff_direction = 'EXPORT'), 0)"
IMPORT_KWH = "coalesce(sum(energy_kwh) FILTER (WHERE tariff_direction = 'IMPORT'), 0)"
EXPORT_KWH = "coalesce(sum(energy_kwh) FILTER (WHERE tariff_direction = 'EXPORT'), 0)"


def per_day_by(column: str, value: str, alias: str) -> str:
    return f"""SELECT {LOCAL_DAY} AS time,
  {column} AS metric,
  {value} AS {alias}
FROM energy_costs
WHERE {FILTER}
GROUP BY 1, 2
ORDER BY 1, 2"""


TOTALS_SQL = f"""SELECT {IMPORT_COST} AS import_cost,
  {EXPORT_EARNINGS} AS export_earnings,
  coalesce({NET_COST}, 0) AS net_cost,
  {IMPORT_KWH} AS import_kwh,
  {EXPORT_KWH} AS export_kwh,
  count(*) AS records
FROM energy_costs
WHERE {FILTER}"""

IMPORT_EXPORT_ENERGY_SQL = f"""SELECT {LOCAL_DAY} AS time,
  {IMPORT_KWH} AS import_kwh,
  {EXPORT_KWH} AS export_kwh,
  {NET_KWH} AS net_kwh
FROM energy_costs
WHERE {FILTER}
GROUP BY 1
ORDER BY 1"""

IMPORT_EXPORT_COST_SQL = f"""SELECT {LOCAL_DAY} AS time,
  {IMPORT_COST} AS import_cost,
  {EXPORT_EARNINGS} AS export_earnings,
  {NET_COST} AS net_cost
FROM energy_costs
WHERE {FILTER}
GROUP BY 1
ORDER BY 1"""

BY_CURRENCY_SQL = f"""SELECT currency_code,
  count(*) AS records,
  {IMPORT_KWH} AS import_kwh,
  {EXPORT_KWH} AS export_kwh,
  {IMPORT_COST} AS import_cost,
  {EXPORT_EARNINGS} AS export_earnings,
  {NET_COST} AS net_cost
FROM energy_costs
WHERE $__timeFilter(start_time)
  AND {SCOPE}
  AND location_id IN ($location)
GROUP BY currency_code
ORDER BY currency_code"""

TOP_LOCATIONS_SQL = f"""SELECT location_id,
  count(*) AS records,
  {IMPORT_KWH} AS import_kwh,
  {EXPORT_KWH} AS export_kwh,
  {NET_COST} AS net_cost
FROM energy_costs
WHERE $__timeFilter(start_time)
  AND {SCOPE}
  AND currency_code = '$currency'
GROUP BY location_id
ORDER BY net_cost DESC, location_id
LIMIT 10"""

SESSIONS_SQL = f"""SELECT session_reference_id,
  location_id,
  string_agg(DISTINCT object_id, ', ' ORDER BY object_id) AS objects,
  min(start_time) AS session_start,
  max(end_time) AS session_end,
  count(*) AS records,
  {NET_KWH} AS net_kwh,
  {NET_COST} AS net_cost
FROM energy_costs
WHERE {FILTER}
  AND session_reference_id IS NOT NULL
GROUP BY session_reference_id, location_id
ORDER BY session_start DESC, session_reference_id
LIMIT 100"""

# The bill per local day (design §11), import only: the records' energy cost and tax as the
# sink stored them, plus the standing charge of every local day of the selected locations,
# with or without records, as the API's DAY report charges it (docs/api.md, Bills in
# reports): the version of the location's current profile (the `locations` mirror) in force
# at the day's local midnight, counted when that midnight is in the range (a location deleted
# since keeps its last profile, as in the API's report). Its tax is the profile's
# `tax_percentage`, shown exact (the API's report rounds it once per row).
BILL_DAYS = """SELECT l.profile, d.day AT TIME ZONE l.timezone AS midnight
  FROM locations l
  CROSS JOIN LATERAL generate_series(
    date_trunc('day', $__timeFrom()::timestamptz AT TIME ZONE l.timezone),
    $__timeTo()::timestamptz AT TIME ZONE l.timezone,
    interval '1 day') AS d (day)
  WHERE l.account_id = '$account'
    AND l.live_mode = $live_mode
    AND l.currency_code = '$currency'
    AND l.location_id IN ($location)"""
STANDING = "(v ->> 'standing_charge')::numeric"
BILL_SQL = f"""WITH days AS (
  {BILL_DAYS}
), standing AS (
  SELECT days.midnight AS time,
    sum({STANDING}) AS standing_charge,
    sum({STANDING} * coalesce((days.profile ->> 'tax_percentage')::numeric, 0) / 100)
      AS standing_tax
  FROM days
  CROSS JOIN LATERAL jsonb_array_elements(
    coalesce(days.profile -> 'tariffs' -> 'IMPORT', '[]'::jsonb)) AS v
  WHERE days.midnight >= $__timeFrom() AND days.midnight < $__timeTo()
    AND v ->> 'standing_charge' IS NOT NULL
    AND (v ->> 'effective_from')::timestamptz <= days.midnight
    AND (v ->> 'effective_to' IS NULL OR days.midnight < (v ->> 'effective_to')::timestamptz)
  GROUP BY 1
), energy AS (
  SELECT {LOCAL_DAY} AS time,
    sum(cost) AS energy_cost,
    coalesce(sum(tax), 0) AS tax
  FROM energy_costs
  WHERE {FILTER}
    AND tariff_direction = 'IMPORT'
  GROUP BY 1
)
SELECT coalesce(e.time, s.time) AS time,
  coalesce(e.energy_cost, 0) AS energy_cost,
  coalesce(s.standing_charge, 0) AS standing_charge,
  coalesce(e.tax, 0) + coalesce(s.standing_tax, 0) AS tax
FROM energy e
FULL JOIN standing s ON s.time = e.time
ORDER BY 1"""

ACCOUNT_VARIABLE_SQL = "SELECT DISTINCT account_id FROM energy_costs ORDER BY 1"
CURRENCY_VARIABLE_SQL = f"""SELECT DISTINCT currency_code FROM energy_costs
WHERE {SCOPE}
ORDER BY 1"""
LOCATION_VARIABLE_SQL = f"""SELECT DISTINCT location_id FROM energy_costs
WHERE {SCOPE}
ORDER BY 1"""


class Layout:
    """Places panels left to right on Grafana's 24-column grid."""

    def __init__(self) -> None:
        self.x = 0
        self.y = 0
        self.row_height = 0
        self.next_id = 1

    def place(self, width: int, height: int) -> dict[str, int]:
        if self.x + width > 24:
            self.x, self.y, self.row_height = 0, self.y + self.row_height, 0
        position = {"x": self.x, "y": self.y, "w": width, "h": height}
        self.x += width
        self.row_height = max(self.row_height, height)
        return position

    def id(self) -> int:
        self.next_id += 1
        return self.next_id - 1


def sql_target(sql: str, fmt: str, ref: str = "A") -> dict[str, Any]:
    return {
        "refId": ref,
        "datasource": POSTGRES,
        "editorMode": "code",
        "rawQuery": True,
        "format": fmt,
        "rawSql": sql,
    }


def promql_target(expr: str, legend: str, ref: str) -> dict[str, Any]:
    return {
        "refId": ref,
        "datasource": PROMETHEUS,
        "editorMode": "code",
        "expr": expr,
        "legendFormat": legend,
        "range": True,
    }


def panel(
    layout: Layout,
    title: str,
    kind: str,
    datasource: dict[str, str],
    targets: list[dict[str, Any]],
    *,
    width: int = 12,
    height: int = 8,
    unit: str | None = None,
    description: str = "",
    bars: bool = False,
) -> dict[str, Any]:
    defaults: dict[str, Any] = {}
    if unit:
        defaults["unit"] = unit
    if bars:
        defaults["custom"] = {"drawStyle": "bars", "fillOpacity": 80, "stacking": {"mode": "none"}}
    return {
        "id": layout.id(),
        "type": kind,
        "title": title,
        "description": description,
        "datasource": datasource,
        "gridPos": layout.place(width, height),
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": {},
        "targets": targets,
    }


def dashboard(
    uid: str,
    title: str,
    panels: list[dict[str, Any]],
    variables: list[dict[str, Any]],
    **extra: Any,
) -> dict[str, Any]:
    return {
        "uid": uid,
        "title": title,
        "tags": ["meterflow"],
        "timezone": "browser",
        "editable": False,
        "graphTooltip": 1,
        "schemaVersion": 39,
        "version": 1,
        "refresh": extra.get("refresh", ""),
        "time": extra.get("time", {"from": "now-30d", "to": "now"}),
        "templating": {"list": variables},
        "annotations": {"list": []},
        "links": [],
        "panels": panels,
    }


def sql_variable(
    name: str, label: str, sql: str, *, multi: bool = False, refresh: int = 1
) -> dict[str, Any]:
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": POSTGRES,
        "query": sql,
        "definition": sql,
        "refresh": refresh,
        "multi": multi,
        "includeAll": multi,
        "sort": 1,
        "current": {},
        "options": [],
        "hide": 0,
    }


def energy_costs() -> dict[str, Any]:
    layout = Layout()
    money = "none"  # values are in the selected currency; Grafana has no per-row currency unit
    panels = [
        panel(
            layout,
            "Totals ($currency)",
            "stat",
            POSTGRES,
            [sql_target(TOTALS_SQL, "table")],
            width=24,
            height=4,
            description="Import cost, export earnings, net (import - export), energy in kWh.",
        ),
        panel(
            layout,
            "Net cost per day by location ($currency)",
            "timeseries",
            POSTGRES,
            [sql_target(per_day_by("location_id", NET_COST, "net_cost"), "time_series")],
            unit=money,
            bars=True,
            description="Import cost minus export earnings, per local day of each location.",
        ),
        panel(
            layout,
            "Net energy per day by location (kWh)",
            "timeseries",
            POSTGRES,
            [sql_target(per_day_by("location_id", NET_KWH, "net_kwh"), "time_series")],
            unit="kwatth",
            bars=True,
            description="Imported minus exported kWh, per local day of each location.",
        ),
        panel(
            layout,
            "Net cost per day by device ($currency)",
            "timeseries",
            POSTGRES,
            [sql_target(per_day_by("object_id", NET_COST, "net_cost"), "time_series")],
            unit=money,
            bars=True,
            description="By object: the device when the record names one, else the location.",
        ),
        panel(
            layout,
            "Net energy per day by device (kWh)",
            "timeseries",
            POSTGRES,
            [sql_target(per_day_by("object_id", NET_KWH, "net_kwh"), "time_series")],
            unit="kwatth",
            bars=True,
            description="By object: the device when the record names one, else the location.",
        ),
        panel(
            layout,
            "Import vs export energy per day (kWh)",
            "timeseries",
            POSTGRES,
            [sql_target(IMPORT_EXPORT_ENERGY_SQL, "time_series")],
            unit="kwatth",
        ),
        panel(
            layout,
            "Import cost vs export earnings per day ($currency)",
            "timeseries",
            POSTGRES,
            [sql_target(IMPORT_EXPORT_COST_SQL, "time_series")],
            unit=money,
        ),
        panel(
            layout,
            "Bill per day: energy, standing charges, tax ($currency)",
            "timeseries",
            POSTGRES,
            [sql_target(BILL_SQL, "time_series")],
            unit=money,
            bars=True,
            width=24,
            description="Import only, per local day: the records' energy cost (net), each "
            "day's standing charge (every day of the range, records or not: the tariff "
            "version in force at local midnight) and tax (the records' plus the standing "
            "charge's). Their sum is the bill's total (design §11).",
        ),
        panel(
            layout,
            "By currency",
            "table",
            POSTGRES,
            [sql_target(BY_CURRENCY_SQL, "table")],
            width=12,
            description="All currencies of the account (ignores the currency variable).",
        ),
        panel(
            layout,
            "Top locations by net cost ($currency)",
            "table",
            POSTGRES,
            [sql_target(TOP_LOCATIONS_SQL, "table")],
            width=12,
            description="All locations of the account (ignores the location variable).",
        ),
        panel(
            layout,
            "Sessions",
            "table",
            POSTGRES,
            [sql_target(SESSIONS_SQL, "table")],
            width=24,
            height=10,
            description="Records sharing a session_reference_id (e.g. an EV charge), newest first.",
        ),
    ]
    variables = [
        sql_variable("account", "Account", ACCOUNT_VARIABLE_SQL),
        {
            "name": "live_mode",
            "label": "Live mode",
            "type": "custom",
            "query": "false,true",
            "current": {"text": "false", "value": "false"},
            "options": [
                {"text": "false", "value": "false", "selected": True},
                {"text": "true", "value": "true", "selected": False},
            ],
            "multi": False,
            "includeAll": False,
            "hide": 0,
        },
        sql_variable("currency", "Currency", CURRENCY_VARIABLE_SQL, refresh=2),
        sql_variable("location", "Location", LOCATION_VARIABLE_SQL, multi=True, refresh=2),
    ]
    return dashboard("meterflow-energy-costs", "Energy costs", panels, variables)


# --- Pipeline health (Prometheus) -----------------------------------------------------------
RATE = "[$__rate_interval]"
NOT_PROBES = 'route!~"/metrics|/healthz|/readyz"'
"""HTTP probes: not API traffic, left out of the error ratio."""


def quantiles(metric: str, by: str = "") -> list[dict[str, Any]]:
    group = f"le{', ' + by if by else ''}"
    legend_suffix = f" {{{{{by}}}}}" if by else ""
    return [
        promql_target(
            f"histogram_quantile({q}, sum by ({group}) (rate({metric}_bucket{RATE})))",
            f"p{int(q * 100)}{legend_suffix}",
            ref,
        )
        for q, ref in ((0.5, "A"), (0.95, "B"), (0.99, "C"))
    ]


def pipeline_health() -> dict[str, Any]:
    layout = Layout()
    p = PROMETHEUS
    panels = [
        panel(
            layout,
            "Throughput (records/s)",
            "timeseries",
            p,
            [
                promql_target(
                    f"sum by (topic) (rate(meterflow_records_consumed_total{RATE}))",
                    "consumed {{topic}}",
                    "A",
                ),
                promql_target(
                    f"sum by (input) (rate(meterflow_records_priced_total{RATE}))",
                    "priced from {{input}}",
                    "B",
                ),
                promql_target(
                    f"sum by (input) (rate(meterflow_records_dead_lettered_total{RATE}))",
                    "dead-lettered from {{input}}",
                    "C",
                ),
            ],
            unit="ops",
        ),
        panel(
            layout,
            "End-to-end latency (record accepted → cost emitted)",
            "timeseries",
            p,
            quantiles("meterflow_end_to_end_latency_seconds"),
            unit="s",
            description="From the record's Kafka timestamp to the EnergyCost handed to Kafka.",
        ),
        panel(
            layout,
            "Consumer lag (records)",
            "timeseries",
            p,
            [
                promql_target(
                    "sum by (job, topic) (meterflow_consumer_lag_records)", "{{job}} {{topic}}", "A"
                )
            ],
            unit="short",
        ),
        panel(
            layout,
            "Dead letters by code (records/s)",
            "timeseries",
            p,
            [
                promql_target(
                    f"sum by (input, code) (rate(meterflow_records_dead_lettered_total{RATE}))",
                    "{{input}}: {{code}}",
                    "A",
                )
            ],
            unit="ops",
        ),
        panel(
            layout,
            "Pricing duration",
            "timeseries",
            p,
            quantiles("meterflow_pricing_duration_seconds"),
            unit="s",
        ),
        panel(
            layout,
            "Worker tables (entries)",
            "timeseries",
            p,
            [promql_target("sum by (table) (meterflow_table_entries)", "{{table}}", "A")],
            unit="short",
        ),
        panel(
            layout,
            "Sink rate",
            "timeseries",
            p,
            [
                promql_target(f"sum(rate(meterflow_sink_rows_written_total{RATE}))", "rows/s", "A"),
                promql_target(
                    f"sum(rate(meterflow_sink_rows_duplicate_total{RATE}))", "duplicates/s", "B"
                ),
                promql_target(
                    f"sum(rate(meterflow_sink_batches_written_total{RATE}))", "batches/s", "C"
                ),
            ],
            unit="ops",
        ),
        panel(
            layout,
            "Sink write duration (per batch)",
            "timeseries",
            p,
            quantiles("meterflow_sink_write_duration_seconds"),
            unit="s",
        ),
        panel(
            layout,
            "Sink healthy",
            "stat",
            p,
            [promql_target("min(meterflow_sink_healthy)", "healthy", "A")],
            width=6,
            description="1 = writing; 0 = retrying (database or Kafka unavailable).",
        ),
        panel(
            layout,
            "Database errors (/s)",
            "timeseries",
            p,
            [
                promql_target(
                    f"sum by (job, operation) (rate(meterflow_database_errors_total{RATE}))",
                    "{{job}} {{operation}}",
                    "A",
                )
            ],
            width=18,
            unit="ops",
        ),
        panel(
            layout,
            "API requests by route and status (/s)",
            "timeseries",
            p,
            [
                promql_target(
                    f"sum by (route, status) (rate(meterflow_http_requests_total{RATE}))",
                    "{{route}} {{status}}",
                    "A",
                )
            ],
            unit="reqps",
        ),
        panel(
            layout,
            "API latency p95 by route",
            "timeseries",
            p,
            [
                promql_target(
                    "histogram_quantile(0.95, sum by (le, route) "
                    f"(rate(meterflow_http_request_duration_seconds_bucket{RATE})))",
                    "{{route}}",
                    "A",
                )
            ],
            unit="s",
        ),
        panel(
            layout,
            "API error ratio (5xx)",
            "timeseries",
            p,
            [
                promql_target(
                    # no 5xx series yet is a ratio of 0, not "No data" (as a broken query shows)
                    f'(sum(rate(meterflow_http_requests_total{{status=~"5..",{NOT_PROBES}}}{RATE}))'
                    " or vector(0))"
                    f" / sum(rate(meterflow_http_requests_total{{{NOT_PROBES}}}{RATE}))",
                    "5xx ratio",
                    "A",
                )
            ],
            unit="percentunit",
        ),
        panel(
            layout,
            "Processes",
            "table",
            p,
            [
                {
                    **promql_target('up{job=~"meterflow-.*"}', "", "A"),
                    "format": "table",
                    "instant": True,
                    "range": False,
                }
            ],
            description="Scraped meterflow processes: 1 = up, 0 = not answering /metrics.",
        ),
        panel(
            layout,
            "Register readings (per minute)",
            "timeseries",
            p,
            [
                promql_target(
                    f"sum(rate(meterflow_readings_consumed_total{RATE})) * 60", "consumed", "A"
                ),
                promql_target(
                    f"sum(rate(meterflow_reading_intervals_derived_total{RATE})) * 60",
                    "intervals derived",
                    "B",
                ),
            ],
            unit="short",
            description=(
                "The readings agent (design §10): readings taken from meter-readings, and the "
                "interval records derived from them (a baseline, a duplicate, a reset derive none)."
            ),
        ),
        panel(
            layout,
            "Register resets and stale readings (per minute)",
            "timeseries",
            p,
            [
                promql_target(
                    f"sum(rate(meterflow_reading_resets_total{RATE})) * 60", "register_reset", "A"
                ),
                promql_target(
                    f"sum(rate(meterflow_readings_stale_total{RATE})) * 60", "stale_reading", "B"
                ),
            ],
            unit="short",
            description=(
                "Readings dead-lettered by the readings agent: a register that went down (reset, "
                "rollover, meter swap: a new baseline), a reading not after the latest one. "
                "Alert MeterflowRegisterResetsSpike; runbook in docs/operations.md."
            ),
        ),
    ]
    return dashboard(
        "meterflow-pipeline-health",
        "Pipeline health",
        panels,
        [],
        refresh="30s",
        time={"from": "now-1h", "to": "now"},
    )


def render() -> dict[str, str]:
    """File name -> JSON text of every dashboard."""
    return {
        "energy-costs.json": json.dumps(energy_costs(), indent=2, ensure_ascii=False) + "\n",
        "pipeline-health.json": json.dumps(pipeline_health(), indent=2, ensure_ascii=False) + "\n",
    }


def main() -> int:
    DASHBOARDS.mkdir(parents=True, exist_ok=True)
    for name, text in render().items():
        (DASHBOARDS / name).write_text(text)
        print(f"wrote {DASHBOARDS / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
