"""Sample tariffs, locations and EnergyCost documents shared by the tests and the benchmarks.

Written once so that a change to the contract (a new field, a renamed key) is made in one place,
and so that a test's expected numbers can be traced to one named set of rates. Plain data only
(no hypothesis, no services): the benchmarks import it too, after putting `tests/` on sys.path.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any, NamedTuple

EFFECTIVE_FROM = "2024-01-01T00:00:00Z"

NIGHT_AND_DAY = (("00:00", "07:00", "0.10"), ("07:00", "24:00", "0.30"))
"""Night 0.10, day 0.30 per kWh: the rates behind the API and `meterflow cost` tests' figures."""


def time_of_use(
    *bands: tuple[str, str, str], effective_from: str = EFFECTIVE_FROM
) -> dict[str, Any]:
    """A TIME_OF_USE tariff version whose (from, to, rate) bands apply every day."""
    return {
        "type": "TIME_OF_USE",
        "effective_from": effective_from,
        "rules": [{"from": start, "to": end, "rate": rate} for start, end, rate in bands],
    }


def london(
    *imports: dict[str, Any], exports: Sequence[dict[str, Any]] = (), **fields: Any
) -> dict[str, Any]:
    """A Europe/London location priced in GBP: the API's PUT body as it is, or a `locations`
    message (a full LocationProfile) when `fields` add `location_id` and `account_id`."""
    tariffs: dict[str, list[dict[str, Any]]] = {"IMPORT": list(imports)}
    if exports:
        tariffs["EXPORT"] = list(exports)
    return {**fields, "timezone": "Europe/London", "currency_code": "GBP", "tariffs": tariffs}


DUOS_WEEKDAY_BANDS = (
    ("00:00", "07:00", "0.0021"),  # green
    ("07:00", "16:00", "0.0153"),  # amber
    ("16:00", "19:00", "0.0987"),  # red
    ("19:00", "23:00", "0.0153"),  # amber
    ("23:00", "24:00", "0.0021"),  # green
)
"""UK DUoS-style network charges per kWh on weekdays; weekends are green all day."""
WEEKDAYS = ["MON", "TUE", "WED", "THU", "FRI"]


def duos(name: str = "duos") -> dict[str, Any]:
    """A TIME_OF_USE NON_COMMODITY component: DUOS_WEEKDAY_BANDS on weekdays, green at weekends."""
    rules: list[dict[str, Any]] = [
        {"days": WEEKDAYS, "from": start, "to": end, "rate": rate}
        for start, end, rate in DUOS_WEEKDAY_BANDS
    ]
    rules.append({"days": ["SAT", "SUN"], "from": "00:00", "to": "24:00", "rate": "0.0021"})
    return {"name": name, "kind": "NON_COMMODITY", "type": "TIME_OF_USE", "rules": rules}


def quote_tariff(**extra: Any) -> dict[str, Any]:
    """Night 0.10, day 0.25 from 2024, with the DUoS bands: what the rates and slots tests
    quote, the CLI's and the API's alike, so their figures can be compared."""
    bands = (("00:00", "07:00", "0.10"), ("07:00", "24:00", "0.25"))
    return time_of_use(*bands) | {"components": [duos()]} | extra


def levy(name: str, rate: str) -> dict[str, Any]:
    """A FIXED LEVY component."""
    return {"name": name, "kind": "LEVY", "type": "FIXED", "rate": rate}


def market_day(series: str = "agile", day: str = "2026-01-05") -> dict[str, Any]:
    """A `market-prices` message: one price (0.1) of `series` from 00:00 to 12:00 UTC on `day`."""
    return {
        "series_id": series,
        "day": day,
        "prices": [
            {"valid_from": f"{day}T00:00:00Z", "valid_to": f"{day}T12:00:00Z", "rate": "0.1"},
        ],
    }


class Item(NamedTuple):
    """One breakdown item of an EnergyCost."""

    start: datetime
    end: datetime
    rate: Decimal
    energy: Decimal
    cost: Decimal


def energy_cost(
    cost_id: str,
    meter_record_id: str,
    start: datetime,
    end: datetime,
    items: Sequence[Item],
    *,
    request: dict[str, Any],
    time_created: datetime,
    account_id: str = "acc_1",
    location_id: str = "loc_1",
    device_id: str | None = None,
    live_mode: bool = False,
    simulated: bool = False,
    export: bool = False,
    session_reference_id: str | None = None,
    record_reference_id: str | None = None,
    confidence: Decimal = Decimal(1),
) -> dict[str, Any]:
    """An EnergyCost document as the cost agent publishes it; its energy and cost are the sums
    of its items (so a sample never disagrees with itself)."""
    energy = sum((item.energy for item in items), Decimal(0))
    cost = sum((item.cost for item in items), Decimal(0))
    return {
        "id": cost_id,
        "object": "energy_cost",
        "account_id": account_id,
        "object_id": device_id or location_id,
        "location_id": location_id,
        "device_id": device_id,
        "meter_record_id": meter_record_id,
        "live_mode": live_mode,
        "non_persistent": simulated,
        "energy_flow_direction": "OUTBOUND" if export else "INBOUND",
        "tariff_direction": "EXPORT" if export else "IMPORT",
        "location_timezone": "Europe/London",
        "currency_code": "GBP",
        "energy_units": "KWH",
        "request": request,
        "data": {
            "start_time": start.isoformat(),
            "end_time": end.isoformat(),
            "session_reference_id": session_reference_id,
            "record_reference_id": record_reference_id,
            "energy": {"value": energy},
            "cost": {"value": cost, "confidence": confidence},
            "breakdown": [
                {
                    "start_time": item.start.isoformat(),
                    "end_time": item.end.isoformat(),
                    "rate": item.rate,
                    "energy": item.energy,
                    "cost": item.cost,
                }
                for item in items
            ],
        },
        "time_created": time_created.isoformat(),
    }
