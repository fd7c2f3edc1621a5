"""Every SQL query of the "Energy costs" dashboard runs on a real PostgreSQL, migrated by
`meterflow db migrate`, and returns the expected columns and sums, computed here from the rows.

Grafana expands its macros and variables before the query reaches PostgreSQL; `render_sql` does
the same for the subset the dashboard uses (documented on the function), so the SQL under test is
byte-for-byte what Grafana would send.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import sys
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlparse, urlunparse
from zoneinfo import ZoneInfo

import asyncpg
import pytest
import pytest_asyncio

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "deploy" / "grafana" / "dashboards" / "energy-costs.json"
TIME_FROM = datetime(2026, 3, 1, tzinfo=UTC)
TIME_TO = datetime(2026, 3, 10, tzinfo=UTC)


# --- Grafana's interpolation, the part the dashboard uses ----------------------------------
def _sql_quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def render_sql(
    sql: str, variables: dict[str, str | list[str]], time_from: datetime, time_to: datetime
) -> str:
    """Expand what Grafana's PostgreSQL data source expands before sending a query:
    - `$__timeFilter(col)` -> `col BETWEEN '<from>' AND '<to>'` (RFC 3339, UTC);
    - `$__timeFrom()` / `$__timeTo()` -> the quoted instants;
    - `$name` / `${name}`: a single value is inserted raw (the SQL quotes it itself); a list (a
      multi-value or "All" variable) becomes a comma-separated list of quoted literals.
    Anything else starting with `$` is an error, so an unsupported macro cannot slip through."""
    start, end = (
        _sql_quote(t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")) for t in (time_from, time_to)
    )
    sql = re.sub(r"\$__timeFilter\(([^)]+)\)", rf"\1 BETWEEN {start} AND {end}", sql)
    sql = sql.replace("$__timeFrom()", start).replace("$__timeTo()", end)

    def variable(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in variables:
            raise KeyError(f"unknown Grafana variable or macro ${name}")
        value = variables[name]
        return ",".join(_sql_quote(v) for v in value) if isinstance(value, list) else value

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", variable, sql)


def test_render_sql_expands_like_grafana() -> None:
    sql = "WHERE $__timeFilter(t) AND a = '$account' AND l IN ($location) AND m = ${mode}"
    rendered = render_sql(
        sql,
        {"account": "acc_1", "location": ["x", "o'k"], "mode": "false"},
        datetime(2026, 1, 1, tzinfo=UTC),
        datetime(2026, 1, 2, 12, tzinfo=UTC),
    )
    assert rendered == (
        "WHERE t BETWEEN '2026-01-01T00:00:00Z' AND '2026-01-02T12:00:00Z' AND a = 'acc_1' "
        "AND l IN ('x','o''k') AND m = false"
    )
    with pytest.raises(KeyError):
        render_sql("$__unknown(x)", {}, TIME_FROM, TIME_TO)


# --- rows -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Row:
    id: str
    account_id: str
    live_mode: bool
    location_id: str
    device_id: str | None
    session: str | None
    direction: str  # tariff_direction IMPORT | EXPORT
    currency: str
    timezone: str
    start: datetime
    minutes: int
    kwh: Decimal
    cost: Decimal

    @property
    def object_id(self) -> str:
        return self.device_id or self.location_id

    @property
    def end(self) -> datetime:
        return self.start + timedelta(minutes=self.minutes)

    @property
    def local_midnight(self) -> datetime:
        tz = ZoneInfo(self.timezone)
        return datetime.combine(self.start.astimezone(tz).date(), time(0), tz)

    @property
    def signed_cost(self) -> Decimal:
        return -self.cost if self.direction == "EXPORT" else self.cost

    @property
    def signed_kwh(self) -> Decimal:
        return -self.kwh if self.direction == "EXPORT" else self.kwh


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


LON, NYC = "Europe/London", "America/New_York"
D = Decimal
ROWS = [
    # 23:30Z on 2 March is still 2 March in London (UTC+0 before the end-of-March change).
    Row("c1", "acc_A", False, "loc_lon", "dev_ev", "ses_1", "IMPORT", "GBP", LON,
        at("2026-03-02T23:30:00Z"), 30, D("2.5"), D("0.625")),
    Row("c2", "acc_A", False, "loc_lon", "dev_ev", "ses_1", "IMPORT", "GBP", LON,
        at("2026-03-03T00:00:00Z"), 30, D("2.5"), D("0.25")),
    Row("c3", "acc_A", False, "loc_lon", None, None, "EXPORT", "GBP", LON,
        at("2026-03-03T12:00:00Z"), 60, D("1.2"), D("0.18")),
    # 03:00Z on 4 March is 22:00 on 3 March in New York: the local day is the 3rd.
    Row("c4", "acc_A", False, "loc_nyc", None, "ses_2", "IMPORT", "USD", NYC,
        at("2026-03-04T03:00:00Z"), 60, D("3.0"), D("0.45")),
    Row("c5", "acc_A", False, "loc_lon2", "dev_hp", None, "IMPORT", "GBP", LON,
        at("2026-03-05T10:00:00Z"), 60, D("4.0"), D("1.2")),
    Row("c6", "acc_A", False, "loc_lon2", "dev_hp", None, "IMPORT", "GBP", LON,
        at("2026-03-06T10:00:00Z"), 60, D("1.000001"), D("0.300007")),
    Row("c7", "acc_A", False, "loc_lon", "dev_ev", "ses_3", "EXPORT", "GBP", LON,
        at("2026-03-06T18:00:00Z"), 60, D("0.5"), D("0.075")),
    Row("c8", "acc_A", False, "loc_nyc", "dev_car", "ses_2", "IMPORT", "USD", NYC,
        at("2026-03-04T06:00:00Z"), 60, D("2.0"), D("0.3")),
    # Rows every query must leave out: another account, live mode, outside the time range.
    Row("x1", "acc_B", False, "loc_b", None, "ses_1", "IMPORT", "GBP", LON,
        at("2026-03-03T10:00:00Z"), 60, D("10"), D("5")),
    Row("x2", "acc_A", True, "loc_lon", "dev_ev", "ses_1", "IMPORT", "GBP", LON,
        at("2026-03-03T10:00:00Z"), 60, D("10"), D("5")),
    Row("x3", "acc_A", False, "loc_lon", "dev_ev", "ses_1", "IMPORT", "GBP", LON,
        at("2026-02-20T10:00:00Z"), 60, D("10"), D("5")),
]  # fmt: skip


# --- database -------------------------------------------------------------------------------
@pytest_asyncio.fixture(scope="module")
async def costs_db(database_url: str) -> AsyncIterator[str]:
    """A fresh database, migrated by `meterflow db migrate`, holding ROWS."""
    name = f"mf_test_ops_{secrets.token_hex(5)}"
    admin = await asyncpg.connect(database_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = urlunparse(urlparse(database_url)._replace(path=f"/{name}"))
    try:
        migrate = await asyncio.create_subprocess_exec(
            str(Path(sys.executable).parent / "meterflow"),
            "db",
            "migrate",
            env={**os.environ, "MF_DATABASE_URL": url},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await asyncio.wait_for(migrate.communicate(), timeout=120)
        assert migrate.returncode == 0, output.decode()
        conn = await asyncpg.connect(url)
        try:
            await conn.executemany(
                """INSERT INTO energy_costs (id, account_id, live_mode, object_id, location_id,
                    device_id, meter_record_id, session_reference_id, energy_flow_direction,
                    tariff_direction, currency_code, location_timezone, start_time, end_time,
                    energy_kwh, cost, confidence, request, time_created)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16,
                    1, $17, $18)""",
                [
                    (
                        f"ecs_{r.id}", r.account_id, r.live_mode, r.object_id, r.location_id,
                        r.device_id, f"mre_{r.id}", r.session,
                        "OUTBOUND" if r.direction == "EXPORT" else "INBOUND", r.direction,
                        r.currency, r.timezone, r.start, r.end, r.kwh, r.cost,
                        json.dumps({"location_id": r.location_id}), r.end,
                    )
                    for r in ROWS
                ],
            )  # fmt: skip
        finally:
            await conn.close()
        yield url
    finally:
        admin = await asyncpg.connect(database_url)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def panel_queries() -> dict[str, str]:
    """Panel title -> rawSql (one target per panel in this dashboard)."""
    queries: dict[str, str] = {}
    for panel in dashboard()["panels"]:
        for target in panel.get("targets", []):
            queries[panel["title"]] = target["rawSql"]
    return queries


def variable_queries() -> dict[str, str]:
    return {
        v["name"]: v["query"] for v in dashboard()["templating"]["list"] if v["type"] == "query"
    }


async def run(url: str, sql: str, variables: dict[str, str | list[str]]) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url)
    try:
        return list(await conn.fetch(render_sql(sql, variables, TIME_FROM, TIME_TO)))
    finally:
        await conn.close()


# --- expectations, computed from ROWS without SQL -------------------------------------------
ALL_LOCATIONS = ["loc_lon", "loc_lon2", "loc_nyc"]


def selection(
    location: list[str], currency: str | None = "GBP", use_location: bool = True
) -> list[Row]:
    return [
        r
        for r in ROWS
        if r.account_id == "acc_A"
        and not r.live_mode
        and TIME_FROM <= r.start <= TIME_TO
        and (currency is None or r.currency == currency)
        and (not use_location or r.location_id in location)
    ]


def total(rows: Iterable[Row], value: Callable[[Row], Decimal]) -> Decimal:
    return sum((value(r) for r in rows), Decimal(0))


def imports(rows: list[Row]) -> list[Row]:
    return [r for r in rows if r.direction == "IMPORT"]


def exports(rows: list[Row]) -> list[Row]:
    return [r for r in rows if r.direction == "EXPORT"]


def grouped(rows: list[Row], key: Callable[[Row], Any]) -> dict[Any, list[Row]]:
    groups: dict[Any, list[Row]] = defaultdict(list)
    for r in rows:
        groups[key(r)].append(r)
    return dict(groups)


def summary(rows: list[Row]) -> dict[str, Decimal | int]:
    return {
        "records": len(rows),
        "import_kwh": total(imports(rows), lambda r: r.kwh),
        "export_kwh": total(exports(rows), lambda r: r.kwh),
        "import_cost": total(imports(rows), lambda r: r.cost),
        "export_earnings": total(exports(rows), lambda r: r.cost),
        "net_cost": total(rows, lambda r: r.signed_cost),
        "net_kwh": total(rows, lambda r: r.signed_kwh),
    }


def records_as_dicts(records: list[asyncpg.Record]) -> list[dict[str, Any]]:
    return [dict(r) for r in records]


def per_day(rows: list[Row], key: Callable[[Row], str], value: str) -> list[dict[str, Any]]:
    groups = grouped(rows, lambda r: (r.local_midnight, key(r)))
    return [
        {"time": day, "metric": metric, value: summary(group)[value]}
        for (day, metric), group in sorted(groups.items())
    ]


# --- the tests ------------------------------------------------------------------------------
def test_every_panel_and_variable_query_is_checked() -> None:
    assert set(panel_queries()) == set(PANEL_CHECKS)
    assert set(variable_queries()) == {"account", "currency", "location"}
    for panel in dashboard()["panels"]:
        assert panel["datasource"]["uid"] == "meterflow-postgres"


@pytest.fixture(params=[ALL_LOCATIONS, ["loc_lon"]], ids=["all-locations", "one-location"])
def location(request: pytest.FixtureRequest) -> list[str]:
    value: list[str] = request.param
    return value


def variables_for(location: list[str]) -> dict[str, str | list[str]]:
    return {"account": "acc_A", "live_mode": "false", "currency": "GBP", "location": location}


def check_totals(records: list[dict[str, Any]], location: list[str]) -> None:
    rows = selection(location)
    expected = summary(rows)
    assert list(records[0]) == [
        "import_cost",
        "export_earnings",
        "net_cost",
        "import_kwh",
        "export_kwh",
        "records",
    ]
    assert records == [{k: expected[k] for k in records[0]}]


def check_per_day_location_cost(records: list[dict[str, Any]], location: list[str]) -> None:
    assert records == per_day(selection(location), lambda r: r.location_id, "net_cost")


def check_per_day_location_energy(records: list[dict[str, Any]], location: list[str]) -> None:
    assert records == per_day(selection(location), lambda r: r.location_id, "net_kwh")


def check_per_day_device_cost(records: list[dict[str, Any]], location: list[str]) -> None:
    assert records == per_day(selection(location), lambda r: r.object_id, "net_cost")


def check_per_day_device_energy(records: list[dict[str, Any]], location: list[str]) -> None:
    assert records == per_day(selection(location), lambda r: r.object_id, "net_kwh")


def check_import_export_energy(records: list[dict[str, Any]], location: list[str]) -> None:
    groups = grouped(selection(location), lambda r: r.local_midnight)
    assert records == [
        {"time": day, **{k: summary(g)[k] for k in ("import_kwh", "export_kwh", "net_kwh")}}
        for day, g in sorted(groups.items())
    ]


def check_import_export_cost(records: list[dict[str, Any]], location: list[str]) -> None:
    groups = grouped(selection(location), lambda r: r.local_midnight)
    assert records == [
        {"time": day, **{k: summary(g)[k] for k in ("import_cost", "export_earnings", "net_cost")}}
        for day, g in sorted(groups.items())
    ]


def check_by_currency(records: list[dict[str, Any]], location: list[str]) -> None:
    groups = grouped(selection(location, currency=None), lambda r: r.currency)
    keys = ("records", "import_kwh", "export_kwh", "import_cost", "export_earnings", "net_cost")
    assert records == [
        {"currency_code": currency, **{k: summary(g)[k] for k in keys}}
        for currency, g in sorted(groups.items())
    ]
    if location == ALL_LOCATIONS:
        assert [r["currency_code"] for r in records] == ["GBP", "USD"]


def check_top_locations(records: list[dict[str, Any]], location: list[str]) -> None:
    groups = grouped(selection(location, use_location=False), lambda r: r.location_id)
    keys = ("records", "import_kwh", "export_kwh", "net_cost")
    expected = [
        {"location_id": loc, **{k: summary(g)[k] for k in keys}} for loc, g in groups.items()
    ]
    expected.sort(key=lambda e: (-e["net_cost"], e["location_id"]))
    assert records == expected
    assert [r["location_id"] for r in records] == ["loc_lon2", "loc_lon"]  # 1.500007 > 0.62


def check_sessions(records: list[dict[str, Any]], location: list[str]) -> None:
    rows = [r for r in selection(location) if r.session is not None]
    groups = grouped(rows, lambda r: (r.session, r.location_id))
    expected = [
        {
            "session_reference_id": session,
            "location_id": loc,
            "objects": ", ".join(sorted({r.object_id for r in g})),
            "session_start": min(r.start for r in g),
            "session_end": max(r.end for r in g),
            "records": len(g),
            "net_kwh": summary(g)["net_kwh"],
            "net_cost": summary(g)["net_cost"],
        }
        for (session, loc), g in groups.items()
    ]
    expected.sort(key=lambda e: e["session_reference_id"])
    expected.sort(key=lambda e: e["session_start"], reverse=True)
    assert records == expected
    assert [r["session_reference_id"] for r in records] == ["ses_3", "ses_1"]


PANEL_CHECKS: dict[str, Callable[[list[dict[str, Any]], list[str]], None]] = {
    "Totals ($currency)": check_totals,
    "Net cost per day by location ($currency)": check_per_day_location_cost,
    "Net energy per day by location (kWh)": check_per_day_location_energy,
    "Net cost per day by device ($currency)": check_per_day_device_cost,
    "Net energy per day by device (kWh)": check_per_day_device_energy,
    "Import vs export energy per day (kWh)": check_import_export_energy,
    "Import cost vs export earnings per day ($currency)": check_import_export_cost,
    "By currency": check_by_currency,
    "Top locations by net cost ($currency)": check_top_locations,
    "Sessions": check_sessions,
}


@pytest.mark.parametrize("title", list(PANEL_CHECKS))
async def test_panel_query(costs_db: str, title: str, location: list[str]) -> None:
    records = records_as_dicts(await run(costs_db, panel_queries()[title], variables_for(location)))
    assert records, f"{title}: no rows"
    PANEL_CHECKS[title](records, location)


async def test_local_day_is_the_locations_calendar_day(costs_db: str) -> None:
    """A record at 03:00Z on 4 March in New York belongs to 3 March (local midnight 05:00Z)."""
    sql = panel_queries()["Net cost per day by location ($currency)"]
    variables = {**variables_for(["loc_nyc"]), "currency": "USD"}
    records = records_as_dicts(await run(costs_db, sql, variables))
    assert records == [
        {"time": at("2026-03-03T05:00:00Z"), "metric": "loc_nyc", "net_cost": D("0.45")},
        {"time": at("2026-03-04T05:00:00Z"), "metric": "loc_nyc", "net_cost": D("0.3")},
    ]


async def test_variable_queries(costs_db: str) -> None:
    queries = variable_queries()
    scope: dict[str, str | list[str]] = {"account": "acc_A", "live_mode": "false"}
    accounts = [r[0] for r in await run(costs_db, queries["account"], {})]
    currencies = [r[0] for r in await run(costs_db, queries["currency"], scope)]
    locations = [r[0] for r in await run(costs_db, queries["location"], scope)]
    assert accounts == ["acc_A", "acc_B"]
    assert currencies == ["GBP", "USD"]
    assert locations == ["loc_lon", "loc_lon2", "loc_nyc"]
