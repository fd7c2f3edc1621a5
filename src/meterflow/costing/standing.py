"""Standing charges per local calendar day (design §11), for the interval reports.

A version's `standing_charge` is money per local day while the version is in force, charged at
the day's **local midnight**: a day carries the charge of the version in force at the instant
its midnight happens (a 23 h or 25 h DST day still carries exactly one), and belongs to a
report's range when that instant is in `[start, end)`, as a record belongs to the range in which
it starts. Pure: the caller passes the profile it holds (docs/pricing.md, "Standing charges").
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import NamedTuple
from zoneinfo import ZoneInfo

from meterflow.models import LocationProfile, TariffDirection, TariffVersion

MAX_STANDING_DAYS = 36_600
"""At most about a century of charged days per report: an open-ended version and a range to
the year 9999 would otherwise ask for millions of rows."""


class StandingDay(NamedTuple):
    """One charged local day: its date, its local midnight (an instant) and the charge."""

    day: date
    midnight: datetime
    charge: Decimal


class TooManyDaysError(ValueError):
    """The range holds more than `MAX_STANDING_DAYS` charged days."""


def local_midnight(day: date, zone: ZoneInfo) -> datetime:
    """The instant a local day starts. Where a DST change skips midnight itself, the first
    local instant of the day (zoneinfo's fold=0 reading, as PostgreSQL's `AT TIME ZONE`)."""
    return datetime(day.year, day.month, day.day, tzinfo=zone)


def _happened(day: date, midnight: datetime, zone: ZoneInfo) -> bool:
    """Whether the zone lived through `day`: a few skipped a whole date when they crossed the
    date line (Pacific/Apia went from 29 to 31 December 2011), and a date that never began is
    never charged. The skipped date's "midnight" is the next date's first instant."""
    try:
        return midnight.astimezone(UTC).astimezone(zone).date() == day
    except OverflowError:  # within a day of year 1 or 9999: no zone skipped a date there
        return True


def _days(zone: ZoneInfo, start: datetime, end: datetime) -> Iterator[tuple[date, datetime]]:
    """Every local day whose midnight is in `[start, end)`, with that midnight."""
    try:
        day = start.astimezone(zone).date()
    except OverflowError:  # within a day of year 1 or 9999: its own date is near enough
        day = start.date()
    while True:
        midnight = local_midnight(day, zone)
        if midnight >= end:
            return
        if midnight >= start and _happened(day, midnight, zone):
            yield day, midnight
        if day == date.max:
            return
        day += timedelta(days=1)


def _charged(versions: Sequence[TariffVersion]) -> list[TariffVersion]:
    return [v for v in versions if v.standing_charge is not None]


def standing_days(
    profile: LocationProfile, direction: TariffDirection, start: datetime, end: datetime
) -> list[StandingDay]:
    """The charged local days of `[start, end)` in one direction, in order.

    Only the stretches of versions with a standing charge are walked, so a long range over a
    profile without one costs nothing. TooManyDaysError past `MAX_STANDING_DAYS`.
    """
    zone = ZoneInfo(profile.timezone)
    found: list[StandingDay] = []
    for version in _charged(profile.tariffs.get(direction, [])):
        low = max(start, version.effective_from)
        high = end if version.effective_to is None else min(end, version.effective_to)
        if low >= high:
            continue
        charge = version.standing_charge
        assert charge is not None
        for day, midnight in _days(zone, low, high):
            found.append(StandingDay(day, midnight, charge))
            if len(found) > MAX_STANDING_DAYS:
                raise TooManyDaysError(
                    f"the range holds more than {MAX_STANDING_DAYS} days with a standing charge"
                )
    found.sort()
    return found
