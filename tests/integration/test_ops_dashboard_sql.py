"""Every SQL query of the "Energy costs" dashboard runs on a real PostgreSQL, migrated by
`meterflow db migrate`, and returns the expected columns and sums, computed here from the rows
(tests/integration/dashboard_sql.py: Grafana's macro/variable expansion and the expectations).

The rows are chosen to catch the mistakes such SQL makes: other accounts, live mode and records
outside the range must not count; exports subtract; days are the location's local calendar days
(a New York record at 03:00Z belongs to the day before); currencies are not mixed.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import pytest_asyncio
from dashboard_sql import (
    PANELS,
    Row,
    Scope,
    dashboard,
    expected_panel,
    panel_queries,
    render_sql,
    run_panel,
    variable_queries,
)

from database_support import temporary_database
from meterflow.contract.columns import LOCATION_COLUMNS, location_row
from meterflow.models import LocationProfile

pytestmark = pytest.mark.integration

TIME_FROM = datetime(2026, 3, 1, tzinfo=UTC)
TIME_TO = datetime(2026, 3, 10, tzinfo=UTC)


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


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


LON, NYC = "Europe/London", "America/New_York"
D = Decimal
ROWS = [
    # 23:30Z on 2 March is still 2 March in London (UTC+0 before the end-of-March change).
    Row.build("c1", "acc_A", False, "loc_lon", "dev_ev", "ses_1", "IMPORT", "GBP", LON,
        at("2026-03-02T23:30:00Z"), 30, D("2.5"), D("0.625"), D("0.03125")),
    Row.build("c2", "acc_A", False, "loc_lon", "dev_ev", "ses_1", "IMPORT", "GBP", LON,
        at("2026-03-03T00:00:00Z"), 30, D("2.5"), D("0.25"), D("0.0125")),
    Row.build("c3", "acc_A", False, "loc_lon", None, None, "EXPORT", "GBP", LON,
        at("2026-03-03T12:00:00Z"), 60, D("1.2"), D("0.18"), D("0.009")),  # export: no bill
    # 03:00Z on 4 March is 22:00 on 3 March in New York: the local day is the 3rd.
    Row.build("c4", "acc_A", False, "loc_nyc", None, "ses_2", "IMPORT", "USD", NYC,
        at("2026-03-04T03:00:00Z"), 60, D("3.0"), D("0.45")),
    Row.build("c5", "acc_A", False, "loc_lon2", "dev_hp", None, "IMPORT", "GBP", LON,
        at("2026-03-05T10:00:00Z"), 60, D("4.0"), D("1.2")),
    Row.build("c6", "acc_A", False, "loc_lon2", "dev_hp", None, "IMPORT", "GBP", LON,
        at("2026-03-06T10:00:00Z"), 60, D("1.000001"), D("0.300007")),
    Row.build("c7", "acc_A", False, "loc_lon", "dev_ev", "ses_3", "EXPORT", "GBP", LON,
        at("2026-03-06T18:00:00Z"), 60, D("0.5"), D("0.075")),
    Row.build("c8", "acc_A", False, "loc_nyc", "dev_car", "ses_2", "IMPORT", "USD", NYC,
        at("2026-03-04T06:00:00Z"), 60, D("2.0"), D("0.3")),
    # Rows every query must leave out: another account, live mode, outside the time range.
    Row.build("x1", "acc_B", False, "loc_b", None, "ses_1", "IMPORT", "GBP", LON,
        at("2026-03-03T10:00:00Z"), 60, D("10"), D("5")),
    Row.build("x2", "acc_A", True, "loc_lon", "dev_ev", "ses_1", "IMPORT", "GBP", LON,
        at("2026-03-03T10:00:00Z"), 60, D("10"), D("5")),
    Row.build("x3", "acc_A", False, "loc_lon", "dev_ev", "ses_1", "IMPORT", "GBP", LON,
        at("2026-02-20T10:00:00Z"), 60, D("10"), D("5")),
]  # fmt: skip


def _profile(location: str, account: str, currency: str, zone: str, **bill: Any) -> LocationProfile:
    """A mirrored profile; `bill` gives IMPORT versions as (from, to, standing charge)."""
    versions = [
        {"type": "FIXED", "rate": "0.2", "effective_from": start, "effective_to": end}
        | ({} if charge is None else {"standing_charge": charge})
        for start, end, charge in bill.pop("versions", [("2026-01-01T00:00:00Z", None, None)])
    ]
    return LocationProfile.model_validate(
        {"location_id": location, "account_id": account, "timezone": zone,
         "currency_code": currency, "tariffs": {"IMPORT": versions}, **bill}
    )  # fmt: skip


# The bill panel: loc_lon changes its standing charge at midnight of 5 March, loc_lon2 has
# none, loc_nyc's is in USD, loc_b is another account's (only loc_lon's days count in GBP).
PROFILES = [
    _profile("loc_lon", "acc_A", "GBP", LON, tax_percentage=5, versions=[
        ("2026-01-01T00:00:00Z", "2026-03-05T00:00:00Z", "0.5353"),
        ("2026-03-05T00:00:00Z", None, "0.60117"),
    ]),
    _profile("loc_lon2", "acc_A", "GBP", LON),
    _profile("loc_nyc", "acc_A", "USD", NYC, versions=[("2026-01-01T00:00:00Z", None, "0.4")]),
    _profile("loc_b", "acc_B", "GBP", LON, versions=[("2026-01-01T00:00:00Z", None, "9")]),
]  # fmt: skip


# --- database -------------------------------------------------------------------------------
@pytest_asyncio.fixture(scope="module")
async def costs_db(database_url: str) -> AsyncIterator[str]:
    """A fresh database, migrated by `meterflow db migrate`, holding ROWS."""
    async with temporary_database(database_url) as url:
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
                    energy_kwh, cost, confidence, request, time_created, tax)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16,
                    1, $17, $18, $19)""",
                [
                    (
                        f"ecs_{r.id}", r.account_id, r.live_mode, r.object_id, r.location_id,
                        r.device_id, f"mre_{r.id}", r.session,
                        "OUTBOUND" if r.direction == "EXPORT" else "INBOUND", r.direction,
                        r.currency, r.timezone, r.start, r.end, r.kwh, r.cost,
                        json.dumps({"location_id": r.location_id}), r.end, r.tax,
                    )
                    for r in ROWS
                ],
            )  # fmt: skip
            await conn.executemany(
                f"INSERT INTO locations ({', '.join(LOCATION_COLUMNS)}) "
                "VALUES ($1, $2, $3, $4, $5, $6, $7::text::jsonb)",
                [location_row(profile) for profile in PROFILES],
            )
        finally:
            await conn.close()
        yield url


ALL_LOCATIONS = ["loc_lon", "loc_lon2", "loc_nyc"]


def scope(locations: list[str], currency: str = "GBP") -> Scope:
    return Scope("acc_A", currency, locations, TIME_FROM, TIME_TO)


def test_every_panel_and_variable_query_is_checked() -> None:
    assert set(panel_queries()) == set(PANELS)
    assert set(variable_queries()) == {"account", "currency", "location"}
    for panel in dashboard()["panels"]:
        assert panel["datasource"]["uid"] == "meterflow-postgres"


@pytest.mark.parametrize("locations", [ALL_LOCATIONS, ["loc_lon"]], ids=["all", "one-location"])
@pytest.mark.parametrize("title", PANELS)
async def test_panel_query(costs_db: str, title: str, locations: list[str]) -> None:
    records = await run_panel(costs_db, panel_queries()[title], scope(locations))
    assert records, f"{title}: no rows"
    assert records == expected_panel(title, ROWS, scope(locations), PROFILES)


async def test_totals_columns_and_values(costs_db: str) -> None:
    (totals,) = await run_panel(costs_db, panel_queries()["Totals ($currency)"], scope(["loc_lon"]))
    assert list(totals) == [
        "import_cost",
        "export_earnings",
        "net_cost",
        "import_kwh",
        "export_kwh",
        "records",
    ]
    # loc_lon in range, GBP: imports c1, c2; exports c3, c7
    assert totals == {
        "import_cost": D("0.875"),
        "export_earnings": D("0.255"),
        "net_cost": D("0.62"),
        "import_kwh": D("5.0"),
        "export_kwh": D("1.7"),
        "records": 4,
    }


async def test_local_day_is_the_locations_calendar_day(costs_db: str) -> None:
    """A record at 03:00Z on 4 March in New York belongs to 3 March (local midnight 05:00Z)."""
    sql = panel_queries()["Net cost per day by location ($currency)"]
    records = await run_panel(costs_db, sql, scope(["loc_nyc"], currency="USD"))
    assert records == [
        {"time": at("2026-03-03T05:00:00Z"), "metric": "loc_nyc", "net_cost": D("0.45")},
        {"time": at("2026-03-04T05:00:00Z"), "metric": "loc_nyc", "net_cost": D("0.3")},
    ]


async def test_rankings(costs_db: str) -> None:
    top = await run_panel(
        costs_db, panel_queries()["Top locations by net cost ($currency)"], scope(["loc_lon"])
    )
    assert [r["location_id"] for r in top] == ["loc_lon2", "loc_lon"]  # 1.500007 > 0.62
    sessions = await run_panel(costs_db, panel_queries()["Sessions"], scope(ALL_LOCATIONS))
    assert [r["session_reference_id"] for r in sessions] == ["ses_3", "ses_1"]  # newest first
    currencies = await run_panel(costs_db, panel_queries()["By currency"], scope(ALL_LOCATIONS))
    assert [r["currency_code"] for r in currencies] == ["GBP", "USD"]


async def test_variable_queries(costs_db: str) -> None:
    queries = variable_queries()
    variables: dict[str, str | list[str]] = {"account": "acc_A", "live_mode": "false"}

    async def first_column(sql: str) -> list[str]:
        conn = await asyncpg.connect(costs_db)
        try:
            rendered = render_sql(sql, variables, TIME_FROM, TIME_TO)
            return [r[0] for r in await conn.fetch(rendered)]
        finally:
            await conn.close()

    assert await first_column(queries["account"]) == ["acc_A", "acc_B"]
    assert await first_column(queries["currency"]) == ["GBP", "USD"]
    assert await first_column(queries["location"]) == ["loc_lon", "loc_lon2", "loc_nyc"]
