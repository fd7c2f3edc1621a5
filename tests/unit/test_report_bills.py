"""Standing charges per local day (`costing.standing`) and summed bill rows (`api.bills`).

The rules (docs/api.md, "Bills in reports"): a day is charged by the version in force at its
local midnight, and belongs to a range when that midnight does; a DST day is charged once; the
tax on a row's standing charge is rounded once per row.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from meterflow.api.bills import Bill, summed_rows
from meterflow.api.schemas import Aggregation
from meterflow.costing.standing import (
    MAX_STANDING_DAYS,
    StandingDay,
    TooManyDaysError,
    standing_days,
)
from meterflow.models import LocationProfile, TariffDirection
from samples import london

LONDON = ZoneInfo("Europe/London")
IMPORT = TariffDirection.IMPORT


def profile(*versions: dict[str, Any], **fields: Any) -> LocationProfile:
    return LocationProfile.model_validate(
        london(*versions, location_id="loc_1", account_id="acc_1", **fields)
    )


def fixed(start: str, end: str | None = None, charge: str | None = "0.5") -> dict[str, Any]:
    version: dict[str, Any] = {"type": "FIXED", "rate": "0.2", "effective_from": start}
    if end is not None:
        version["effective_to"] = end
    if charge is not None:
        version["standing_charge"] = charge
    return version


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def test_a_dst_month_has_one_charge_per_local_day() -> None:
    days = standing_days(
        profile(fixed("2025-01-01T00:00:00Z")),
        IMPORT,
        at("2025-10-01T00:00:00+01:00"),
        at("2025-11-01T00:00:00+00:00"),
    )
    assert [d.day.day for d in days] == list(range(1, 32))
    long_day = days[25]
    assert long_day.midnight == at("2025-10-26T00:00:00+01:00")
    hours = (days[26].midnight.astimezone(UTC) - long_day.midnight.astimezone(UTC)) / 3600
    assert hours.total_seconds() == 25  # the 25-hour day, charged once
    spring = standing_days(
        profile(fixed("2025-01-01T00:00:00Z")),
        IMPORT,
        at("2025-03-30T00:00:00Z"),
        at("2025-03-31T00:00:00+01:00"),
    )
    assert [d.day.isoformat() for d in spring] == ["2025-03-30"]  # the 23-hour day, once


def test_the_version_in_force_at_local_midnight_charges_the_day() -> None:
    # A changes to B at local midnight of the 20th; C starts at noon (not a midnight): the
    # 25th is still B's; a gap (no version at midnight) charges nothing.
    versions = (
        fixed("2025-10-01T00:00:00+01:00", "2025-10-20T00:00:00+01:00", "0.5"),
        fixed("2025-10-20T00:00:00+01:00", "2025-10-25T12:00:00+01:00", "0.6"),
        fixed("2025-10-25T12:00:00+01:00", "2025-10-27T12:00:00Z", "0.7"),
    )
    days = standing_days(
        profile(*versions), IMPORT, at("2025-09-30T00:00:00Z"), at("2025-11-01T00:00:00Z")
    )
    charges = {d.day.day: d.charge for d in days if d.day.month == 10}
    assert charges[19] == Decimal("0.5")
    assert charges[20] == Decimal("0.6")
    assert charges[25] == Decimal("0.6")
    assert charges[26] == charges[27] == Decimal("0.7")
    assert sorted(charges) == list(range(1, 28))  # 28th onwards: no version at midnight
    assert all(d.day.month == 10 for d in days)  # 30 Sep: before the first version


def test_a_range_counts_the_days_whose_midnight_it_holds() -> None:
    charged = profile(fixed("2025-01-01T00:00:00Z"))
    noon_to_noon = standing_days(charged, IMPORT, at("2025-06-01T12:00Z"), at("2025-06-03T12:00Z"))
    assert [d.day.day for d in noon_to_noon] == [2, 3]
    assert (
        standing_days(
            charged, TariffDirection.EXPORT, at("2025-06-01T00:00Z"), at("2026-01-01T00:00Z")
        )
        == []
    )
    uncharged = profile(fixed("2025-01-01T00:00:00Z", charge=None))
    assert standing_days(uncharged, IMPORT, at("2025-01-01T00:00Z"), at("9999-01-01T00:00Z")) == []
    with pytest.raises(TooManyDaysError):
        standing_days(charged, IMPORT, at("2025-01-01T00:00Z"), at("9999-12-31T00:00Z"))
    century = standing_days(charged, IMPORT, at("2025-01-01T00:00Z"), at("2125-01-01T00:00Z"))
    assert len(century) <= MAX_STANDING_DAYS


def charged_in(zone: str, since: str) -> LocationProfile:
    """A location in `zone` charged 0.5 a day since `since`."""
    located = london(fixed(since), location_id="loc_1", account_id="acc_1")
    return LocationProfile.model_validate(located | {"timezone": zone})


def test_a_date_the_zone_never_lived_is_not_charged() -> None:
    # Pacific/Apia crossed the date line from 29 to 31 December 2011: 30 local days that month
    apia = ZoneInfo("Pacific/Apia")
    days = standing_days(
        charged_in("Pacific/Apia", "2011-01-01T00:00:00Z"),
        IMPORT,
        datetime(2011, 12, 1, tzinfo=apia),
        datetime(2012, 1, 1, tzinfo=apia),
    )
    assert [d.day.day for d in days] == [*range(1, 30), 31]
    (month,) = summed_rows([], Bill(days), Aggregation.MONTH, apia)
    assert month.standing_charge is not None
    assert month.standing_charge.days == 30


def test_a_day_whose_midnight_was_skipped_starts_as_its_clocks_showed() -> None:
    # São Paulo went from 00:00 -03:00 straight to 01:00 -02:00 on 4 November 2018
    sao_paulo = ZoneInfo("America/Sao_Paulo")
    days = standing_days(
        charged_in("America/Sao_Paulo", "2018-01-01T00:00:00Z"),
        IMPORT,
        at("2018-11-03T00:00:00-03:00"),
        at("2018-11-05T00:00:00-02:00"),
    )
    rows = summed_rows([], Bill(days), Aggregation.DAY, sao_paulo)
    assert [(row.start_time.isoformat(), row.end_time.isoformat()) for row in rows] == [
        ("2018-11-03T00:00:00-03:00", "2018-11-04T01:00:00-02:00"),  # a 23-hour day
        ("2018-11-04T01:00:00-02:00", "2018-11-05T00:00:00-02:00"),
    ]


def test_the_last_day_a_datetime_holds_ends_its_row() -> None:
    days = standing_days(
        profile(fixed("9999-01-01T00:00:00Z")),
        IMPORT,
        at("9999-12-30T00:00:00Z"),
        at("9999-12-31T23:00:00Z"),
    )
    rows = summed_rows([], Bill(days), Aggregation.DAY, LONDON)
    assert [row.end_time for row in rows] == [
        datetime(9999, 12, 31, tzinfo=LONDON),
        datetime.max.replace(tzinfo=UTC),
    ]
    (month,) = summed_rows([], Bill(days), Aggregation.MONTH, LONDON)
    assert month.end_time == datetime.max.replace(tzinfo=UTC)


def test_a_rows_standing_charge_is_its_exact_sum_rounded_once() -> None:
    # 0.5353475 a day has seven places: a day's row rounds it (half-even), a month's row rounds
    # the month's exact sum, not the sum of rounded days (30 × 0.535348 = 16.060440)
    month = [_day(f"2025-06-{day:02}", "0.5353475") for day in range(1, 31)]
    bill = Bill(month, Decimal(5))
    first = summed_rows([], bill, Aggregation.DAY, LONDON)[0]
    assert first.standing_charge is not None
    assert first.standing_charge.value == Decimal("0.535348")
    assert first.cost.tax == Decimal("0.026767")  # 0.026767375 from the exact charge
    assert first.cost.total == Decimal("0.562115")
    (row,) = summed_rows([], bill, Aggregation.MONTH, LONDON)
    assert row.standing_charge is not None
    assert row.standing_charge.value == Decimal("16.060425")
    assert row.cost.tax == Decimal("0.803021")  # 0.80302125
    assert row.cost.total == Decimal("16.863446")
    for each in (first, row):
        assert each.cost.total is not None
        assert each.cost.tax is not None
        assert each.standing_charge is not None
        assert each.cost.total.as_tuple().exponent == -6
        assert each.cost.total == each.cost.value + each.standing_charge.value + each.cost.tax
        # a row of standing charge only: its energy and cost are written as amounts are
        assert (str(each.energy.value), str(each.cost.value)) == ("0.000000", "0.000000")


def test_an_export_reports_standing_charge_counts_against_the_earnings() -> None:
    # EXPORT amounts are what the energy earned: a charge the customer pays lowers the total
    days = [_day("2025-06-02", "0.5")]
    earned = [_bucket("2025-06-02", "1.00", "0.05", "1.05")]
    (row,) = summed_rows(earned, Bill(days, Decimal(5), credited=True), Aggregation.DAY, LONDON)
    assert row.standing_charge is not None
    assert row.standing_charge.value == Decimal("-0.5")
    assert row.cost.value == Decimal("1.00")
    assert row.cost.tax == Decimal("0.025")  # 0.05 on the earnings, -0.025 on the charge
    assert row.cost.total == Decimal("0.525")  # 1.05 - 0.5 - 0.025
    (imported,) = summed_rows(earned, Bill(days, Decimal(5)), Aggregation.DAY, LONDON)
    assert imported.cost.total == Decimal("1.575")


def _bucket(day: str, cost: str, tax: str | None, total: str | None) -> dict[str, Any]:
    return {
        "local_start": datetime.fromisoformat(day),
        "energy_kwh": Decimal("1.0"),
        "cost": Decimal(cost),
        "confidence": Decimal("0.9"),
        "records": 1,
        "tax": None if tax is None else Decimal(tax),
        "total": Decimal(total or cost),
        "taxed": int(tax is not None),
    }


def _day(day: str, charge: str) -> StandingDay:
    date = datetime.fromisoformat(day).date()
    return StandingDay(
        date, datetime(date.year, date.month, date.day, tzinfo=LONDON), Decimal(charge)
    )


def test_summed_rows_add_standing_charges_and_tax_them_once_per_row() -> None:
    days = [_day("2025-10-01", "0.60117"), _day("2025-10-02", "0.60117")]
    buckets = [_bucket("2025-10-02", "0.52", "0.026", "0.546")]
    bill = Bill(days, Decimal(5))
    daily = summed_rows(buckets, bill, Aggregation.DAY, LONDON)
    assert [row.records for row in daily] == [0, 1]
    quiet, busy = daily
    assert quiet.cost.confidence == 1
    assert quiet.energy.value == 0
    assert (quiet.cost.tax, quiet.cost.total) == (Decimal("0.030058"), Decimal("0.631228"))
    assert quiet.standing_charge is not None
    assert quiet.standing_charge.days == 1
    assert busy.cost.tax == Decimal("0.056058")
    assert busy.cost.total == Decimal("0.546") + Decimal("0.60117") + Decimal("0.030058")
    monthly = summed_rows(
        [_bucket("2025-10-01", "0.52", "0.026", "0.546")], bill, Aggregation.MONTH, LONDON
    )
    (month,) = monthly
    assert month.standing_charge is not None
    assert (month.standing_charge.value, month.standing_charge.days) == (Decimal("1.20234"), 2)
    assert month.cost.tax == Decimal("0.026") + Decimal("0.060117")  # not 2 × 0.030058
    assert month.end_time == datetime(2025, 11, 1, tzinfo=LONDON)


def test_rows_without_a_bill_are_the_first_releases() -> None:
    buckets = [_bucket("2025-10-02", "0.52", None, None)]
    (row,) = summed_rows(buckets, Bill(), Aggregation.DAY, LONDON)
    assert (row.cost.tax, row.cost.total, row.standing_charge) == (None, None, None)
    # tax but no standing charge (a device, or a profile without one): tax and total, no field
    (taxed,) = summed_rows(buckets, Bill((), Decimal(5)), Aggregation.DAY, LONDON)
    assert (taxed.cost.tax, taxed.cost.total) == (Decimal(0), Decimal("0.52"))
    assert taxed.standing_charge is None
    assert datetime(2025, 10, 2, tzinfo=UTC) != taxed.start_time  # local midnight, BST
