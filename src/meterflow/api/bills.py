"""Summed report rows that make a bill (design §11): energy cost, standing charges, tax, total.

The SQL sums what the sink stored per local day or month (`repository.cost_buckets`); this
module adds the standing charge of every charged local day (`costing.standing`), with or
without records, and the tax on it. Rules (docs/api.md, "Bills in reports"):

- a row's `standing_charge.value` is the sum of its days' charges, rounded once per row,
  half-even to 6 places (exact for charges of 6 places or fewer), `days` how many;
- the profile's `tax_percentage` applies to the standing charge too (UK VAT does), computed on
  the row's exact standing charge and rounded once per row, half-even to 6 places; the
  records' own `tax` is summed as stored (each was rounded once by the engine);
- an EXPORT report's amounts are what the energy earns, and a standing charge is paid: there
  it counts negative, with its tax, so that the total is what the customer is left with;
- `cost.value` stays the records' energy cost; `cost.tax` = records' tax + standing tax;
  `cost.total` = records' totals + standing charge + standing tax;
- a report "makes a bill" when the location has `tax_percentage`, or a charged day in the
  range, or a summed record carries tax: then every row has `tax` and `total`; otherwise rows
  are exactly the first release's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from functools import reduce
from typing import Any
from zoneinfo import ZoneInfo

from meterflow.api.schemas import Aggregation, ReportRow, StandingChargeValue
from meterflow.costing.money import CONTEXT, ZERO, round_money
from meterflow.costing.standing import StandingDay, local_midnight
from meterflow.models import CostValue, EnergyValue

_ONE = Decimal(1)
_HUNDRED = Decimal(100)


@dataclass(frozen=True)
class Bill:
    """What the location's profile adds to a summed report."""

    days: Sequence[StandingDay] = ()
    tax_percentage: Decimal | None = None
    credited: bool = False
    """An EXPORT report: the charges count against what the energy earned."""


@dataclass
class _Bucket:
    sums: dict[str, Any] | None = None
    charges: list[Decimal] = field(default_factory=list)


def _key(day: date, aggregation: Aggregation) -> date:
    return day if aggregation is Aggregation.DAY else day.replace(day=1)


def _end(key: date, aggregation: Aggregation, zone: ZoneInfo) -> datetime:
    """A row's end: the next day's or month's local midnight, or the last instant a datetime
    holds for a row of the year 9999's last day or month."""
    try:
        if aggregation is Aggregation.DAY:
            following = date.fromordinal(key.toordinal() + 1)
        elif key.month == 12:
            following = date(key.year + 1, 1, 1)
        else:
            following = date(key.year, key.month + 1, 1)
    except ValueError:  # past date.max
        return datetime.max.replace(tzinfo=UTC)
    return local_midnight(following, zone)


def _as_lived(instant: datetime, zone: ZoneInfo) -> datetime:
    """The instant with the offset the zone had then. A midnight a DST change skipped is the
    day's first instant (`local_midnight`) but reads 00:00 at the offset before the change:
    São Paulo's 4 November 2018 began at 01:00-02:00, which 00:00-03:00 is, but no clock
    showed that."""
    try:
        return instant.astimezone(UTC).astimezone(zone)
    except OverflowError:  # the last instant a datetime holds: no zone changed there
        return instant


def summed_rows(
    buckets: Sequence[dict[str, Any]], bill: Bill, aggregation: Aggregation, zone: ZoneInfo
) -> list[ReportRow]:
    """One row per local day or month holding records or a charged day, in order."""
    grouped: dict[date, _Bucket] = {}
    for sums in buckets:
        grouped.setdefault(sums["local_start"].date(), _Bucket()).sums = sums
    for standing in bill.days:
        grouped.setdefault(_key(standing.day, aggregation), _Bucket()).charges.append(
            standing.charge
        )
    billing = (
        bill.tax_percentage is not None or bool(bill.days) or any(sums["taxed"] for sums in buckets)
    )
    return [
        _row(key, grouped[key], bill, aggregation, zone, billing=billing) for key in sorted(grouped)
    ]


def _row(
    key: date,
    bucket: _Bucket,
    bill: Bill,
    aggregation: Aggregation,
    zone: ZoneInfo,
    *,
    billing: bool,
) -> ReportRow:
    sums = bucket.sums or {}
    cost = sums.get("cost", ZERO)
    confidence = sums.get("confidence", _ONE)  # a day of standing charge only is certain
    value = CostValue(value=cost, confidence=confidence)
    standing = None
    if billing:
        charge = standing_tax = ZERO
        if bucket.charges:
            exact = reduce(CONTEXT.add, bucket.charges, ZERO)
            if bill.credited:
                exact = CONTEXT.minus(exact)
            charge = round_money(exact)
            standing = StandingChargeValue(value=charge, days=len(bucket.charges))
            if bill.tax_percentage is not None:
                taxed = CONTEXT.multiply(exact, bill.tax_percentage)
                standing_tax = round_money(CONTEXT.divide(taxed, _HUNDRED))
        tax = CONTEXT.add(sums.get("tax") or ZERO, standing_tax)
        total = reduce(CONTEXT.add, (sums.get("total", cost), charge, standing_tax))
        value = CostValue(value=cost, confidence=confidence, tax=tax, total=total)
    return ReportRow(
        start_time=_as_lived(local_midnight(key, zone), zone),
        end_time=_as_lived(_end(key, aggregation, zone), zone),
        records=sums.get("records", 0),
        energy=EnergyValue(value=sums.get("energy_kwh", ZERO)),
        cost=value,
        standing_charge=standing,
    )


def taxed_value(row: dict[str, Any]) -> CostValue:
    """A per-record or session row's cost: `tax` and `total` when its records carry tax."""
    if row.get("tax") is None:
        return CostValue(value=row["cost"], confidence=row["confidence"])
    return CostValue(
        value=row["cost"], confidence=row["confidence"], tax=row["tax"], total=row["total"]
    )
