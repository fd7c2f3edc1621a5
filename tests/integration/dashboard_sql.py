"""Run the "Energy costs" dashboard's SQL as Grafana would, and compute what each panel must
show from the `energy_costs` rows themselves (plain Python, no SQL), for the dashboard tests.

Grafana expands its macros and variables before a query reaches PostgreSQL; `render_sql` does the
same for the subset the dashboard uses, so the SQL under test is what Grafana would send.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg

from meterflow.costing.standing import standing_days
from meterflow.models import LocationProfile, TariffDirection

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "deploy" / "grafana" / "dashboards" / "energy-costs.json"


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


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def panel_queries() -> dict[str, str]:
    """Panel title -> rawSql (one target per panel in this dashboard)."""
    return {
        panel["title"]: target["rawSql"]
        for panel in dashboard()["panels"]
        for target in panel.get("targets", [])
    }


def variable_queries() -> dict[str, str]:
    return {
        v["name"]: v["query"] for v in dashboard()["templating"]["list"] if v["type"] == "query"
    }


# --- the rows and the dashboard's selection -------------------------------------------------
@dataclass(frozen=True)
class Row:
    """The columns of one `energy_costs` row that the dashboard reads."""

    id: str
    account_id: str
    live_mode: bool
    location_id: str
    device_id: str | None
    session: str | None
    direction: str  # tariff_direction: IMPORT | EXPORT
    currency: str
    timezone: str
    start: datetime
    end: datetime
    kwh: Decimal
    cost: Decimal
    tax: Decimal | None = None  # design §11: stored for a location with `tax_percentage`

    @classmethod
    def build(
        cls,
        id: str,
        account_id: str,
        live_mode: bool,
        location_id: str,
        device_id: str | None,
        session: str | None,
        direction: str,
        currency: str,
        timezone: str,
        start: datetime,
        minutes: int,
        kwh: Decimal,
        cost: Decimal,
        tax: Decimal | None = None,
    ) -> Row:
        return cls(
            id, account_id, live_mode, location_id, device_id, session, direction, currency,
            timezone, start, start + timedelta(minutes=minutes), kwh, cost, tax,
        )  # fmt: skip

    @classmethod
    def from_record(cls, r: asyncpg.Record) -> Row:
        return cls(
            r["id"], r["account_id"], r["live_mode"], r["location_id"], r["device_id"],
            r["session_reference_id"], r["tariff_direction"], r["currency_code"],
            r["location_timezone"], r["start_time"], r["end_time"], r["energy_kwh"], r["cost"],
            r["tax"],
        )  # fmt: skip

    @property
    def object_id(self) -> str:
        return self.device_id or self.location_id

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


@dataclass(frozen=True)
class Scope:
    """The dashboard's time range and variable values."""

    account: str
    currency: str
    locations: list[str]
    time_from: datetime
    time_to: datetime
    live_mode: bool = False
    extra: dict[str, str] = field(default_factory=dict)

    def variables(self) -> dict[str, str | list[str]]:
        return {
            "account": self.account,
            "live_mode": "true" if self.live_mode else "false",
            "currency": self.currency,
            "location": self.locations,
            **self.extra,
        }

    def select(
        self, rows: Iterable[Row], *, by_currency: bool = True, by_location: bool = True
    ) -> list[Row]:
        return [
            r
            for r in rows
            if r.account_id == self.account
            and r.live_mode == self.live_mode
            and self.time_from <= r.start <= self.time_to
            and (not by_currency or r.currency == self.currency)
            and (not by_location or r.location_id in self.locations)
        ]


async def run_panel(url: str, sql: str, scope: Scope) -> list[dict[str, Any]]:
    conn = await asyncpg.connect(url)
    try:
        rendered = render_sql(sql, scope.variables(), scope.time_from, scope.time_to)
        return [dict(r) for r in await conn.fetch(rendered)]
    finally:
        await conn.close()


# --- what each panel must return ------------------------------------------------------------
def total(rows: Iterable[Row], value: Callable[[Row], Decimal]) -> Decimal:
    return sum((value(r) for r in rows), Decimal(0))


def grouped(rows: Iterable[Row], key: Callable[[Row], Any]) -> dict[Any, list[Row]]:
    groups: dict[Any, list[Row]] = defaultdict(list)
    for r in rows:
        groups[key(r)].append(r)
    return dict(groups)


def summary(rows: list[Row]) -> dict[str, Decimal | int]:
    imports = [r for r in rows if r.direction == "IMPORT"]
    exports = [r for r in rows if r.direction == "EXPORT"]
    return {
        "records": len(rows),
        "import_kwh": total(imports, lambda r: r.kwh),
        "export_kwh": total(exports, lambda r: r.kwh),
        "import_cost": total(imports, lambda r: r.cost),
        "export_earnings": total(exports, lambda r: r.cost),
        "net_cost": total(rows, lambda r: r.signed_cost),
        "net_kwh": total(rows, lambda r: r.signed_kwh),
    }


def _pick(group: list[Row], keys: Iterable[str]) -> dict[str, Any]:
    values = summary(group)
    return {k: values[k] for k in keys}


def _per_day(rows: list[Row], key: Callable[[Row], str], value: str) -> list[dict[str, Any]]:
    groups = grouped(rows, lambda r: (r.local_midnight, key(r)))
    return [
        {"time": day, "metric": metric, value: summary(group)[value]}
        for (day, metric), group in sorted(groups.items())
    ]


def _per_day_totals(rows: list[Row], keys: tuple[str, ...]) -> list[dict[str, Any]]:
    groups = grouped(rows, lambda r: r.local_midnight)
    return [{"time": day, **_pick(g, keys)} for day, g in sorted(groups.items())]


def _sessions(rows: list[Row]) -> list[dict[str, Any]]:
    groups = grouped([r for r in rows if r.session], lambda r: (r.session, r.location_id))
    expected = [
        {
            "session_reference_id": session,
            "location_id": location,
            "objects": ", ".join(sorted({r.object_id for r in g})),
            "session_start": min(r.start for r in g),
            "session_end": max(r.end for r in g),
            **_pick(g, ("records", "net_kwh", "net_cost")),
        }
        for (session, location), g in groups.items()
    ]
    expected.sort(key=lambda e: e["session_reference_id"])
    expected.sort(key=lambda e: e["session_start"], reverse=True)
    return expected[:100]


def _top_locations(rows: list[Row]) -> list[dict[str, Any]]:
    groups = grouped(rows, lambda r: r.location_id)
    keys = ("records", "import_kwh", "export_kwh", "net_cost")
    expected = [{"location_id": loc, **_pick(g, keys)} for loc, g in groups.items()]
    expected.sort(key=lambda e: (-e["net_cost"], e["location_id"]))
    return expected[:10]


def _bill(
    rows: list[Row], scope: Scope, profiles: Iterable[LocationProfile]
) -> list[dict[str, Any]]:
    """Import energy cost and tax per local day, plus every charged day's standing charge and
    its (exact) tax, charged by the API's own rule (`costing.standing.standing_days`)."""
    days: dict[datetime, dict[str, Decimal]] = defaultdict(
        lambda: {"energy_cost": Decimal(0), "standing_charge": Decimal(0), "tax": Decimal(0)}
    )
    for r in rows:
        if r.direction == "IMPORT":
            days[r.local_midnight]["energy_cost"] += r.cost
            days[r.local_midnight]["tax"] += r.tax or 0
    for profile in profiles:
        if (profile.account_id, profile.live_mode) != (scope.account, scope.live_mode):
            continue
        if profile.currency_code != scope.currency or profile.location_id not in scope.locations:
            continue
        rate = profile.tax_percentage or Decimal(0)
        charged = standing_days(profile, TariffDirection.IMPORT, scope.time_from, scope.time_to)
        for day in charged:
            days[day.midnight]["standing_charge"] += day.charge
            days[day.midnight]["tax"] += day.charge * rate / 100
    return [{"time": t, **values} for t, values in sorted(days.items())]


def expected_panel(
    title: str, rows: list[Row], scope: Scope, profiles: Iterable[LocationProfile] = ()
) -> list[dict[str, Any]]:
    """The records the panel titled `title` must return for `scope`, from `rows` (and the
    locations mirror's `profiles`, for the bill)."""
    chosen = scope.select(rows)
    if title == "Bill per day: energy, standing charges, tax ($currency)":
        return _bill(chosen, scope, profiles)
    if title == "Totals ($currency)":
        keys = ("import_cost", "export_earnings", "net_cost", "import_kwh", "export_kwh")
        return [{**_pick(chosen, keys), "records": len(chosen)}]
    if title == "Net cost per day by location ($currency)":
        return _per_day(chosen, lambda r: r.location_id, "net_cost")
    if title == "Net energy per day by location (kWh)":
        return _per_day(chosen, lambda r: r.location_id, "net_kwh")
    if title == "Net cost per day by device ($currency)":
        return _per_day(chosen, lambda r: r.object_id, "net_cost")
    if title == "Net energy per day by device (kWh)":
        return _per_day(chosen, lambda r: r.object_id, "net_kwh")
    if title == "Import vs export energy per day (kWh)":
        return _per_day_totals(chosen, ("import_kwh", "export_kwh", "net_kwh"))
    if title == "Import cost vs export earnings per day ($currency)":
        return _per_day_totals(chosen, ("import_cost", "export_earnings", "net_cost"))
    if title == "By currency":
        groups = grouped(scope.select(rows, by_currency=False), lambda r: r.currency)
        keys = ("records", "import_kwh", "export_kwh", "import_cost", "export_earnings")
        return [
            {"currency_code": currency, **_pick(g, (*keys, "net_cost"))}
            for currency, g in sorted(groups.items())
        ]
    if title == "Top locations by net cost ($currency)":
        return _top_locations(scope.select(rows, by_location=False))
    if title == "Sessions":
        return _sessions(chosen)
    raise KeyError(f"no expectation for panel {title!r}")


PANELS = (
    "Totals ($currency)",
    "Net cost per day by location ($currency)",
    "Net energy per day by location (kWh)",
    "Net cost per day by device ($currency)",
    "Net energy per day by device (kWh)",
    "Import vs export energy per day (kWh)",
    "Import cost vs export earnings per day ($currency)",
    "Bill per day: energy, standing charges, tax ($currency)",
    "By currency",
    "Top locations by net cost ($currency)",
    "Sessions",
)
