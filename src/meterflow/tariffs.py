"""Whole-profile validation and the compact rate tables the cost engine walks.

The models check the shape of one tariff at a time; the rules that span a whole profile live
here: TIME_OF_USE rules (of a tariff or of a component) must cover every local minute of every
month and weekday exactly once, versions of one direction must not overlap, inline dynamic prices
must not overlap. Errors name the version (and component) and the gap or overlap precisely,
because a silent default would misprice records.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from meterflow.models import (
    DynamicTariff,
    FixedTariff,
    LocationProfile,
    PricePoint,
    TariffDirection,
    TimeOfUseComponent,
    TimeOfUseRule,
    TimeOfUseTariff,
)
from meterflow.models.profiles import minutes_of

__all__ = [
    "DAY_NAMES",
    "MINUTES_PER_DAY",
    "MONTH_NAMES",
    "DaySchedule",
    "ProfileError",
    "TimeOfUseTable",
    "describe_component",
    "describe_version",
    "validate_profile",
    "validate_tariffs",
]

MINUTES_PER_DAY = 1440
DAY_NAMES = ("MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN")
MONTH_NAMES = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

Version = FixedTariff | TimeOfUseTariff | DynamicTariff


class ProfileError(ValueError):
    """A profile that cannot be accepted; the message names the version and the problem."""


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def describe_version(direction: str, version: Version) -> str:
    """ "IMPORT version from 2024-01-01" (the full instant when it does not start at midnight)."""
    start = version.effective_from
    at_midnight = (start.hour, start.minute, start.second, start.microsecond) == (0, 0, 0, 0)
    when = start.date().isoformat() if at_midnight else start.isoformat()
    return f"{direction} version from {when}"


@dataclass(frozen=True, slots=True)
class DaySchedule:
    """The rates of one (month, weekday): segment `i` covers minutes `[ends[i-1], ends[i])`.

    Adjacent rules with the same rate are merged, so each segment end is a real rate change
    (or midnight).
    """

    ends: tuple[int, ...]
    rates: tuple[Decimal, ...]


def _schedule_problem(
    rules: Sequence[TimeOfUseRule], month: int, weekday: int
) -> tuple[DaySchedule | None, str | None]:
    """Build the schedule of one (month, weekday) or describe its first gap or overlap."""
    day = DAY_NAMES[weekday]
    spans: list[tuple[int, int, int]] = []
    for index, rule in enumerate(rules):
        if rule.months is not None and month not in rule.months:
            continue
        if rule.days is not None and all(d.value != day for d in rule.days):
            continue
        spans.append((minutes_of(rule.from_), minutes_of(rule.to), index))
    spans.sort()
    ends: list[int] = []
    rates: list[Decimal] = []
    covered = 0
    previous = -1
    for start, end, index in spans:
        if start < covered:
            overlap = f"{_hhmm(start)}–{_hhmm(min(covered, end))}"
            return None, (
                f"rules {previous + 1} and {index + 1} overlap on {_on(day, overlap, month)}"
            )
        if start > covered:
            return None, f"no rule covers {_on(day, f'{_hhmm(covered)}–{_hhmm(start)}', month)}"
        rate = rules[index].rate
        if rates and rates[-1] == rate:
            ends[-1] = end
        else:
            ends.append(end)
            rates.append(rate)
        covered = end
        previous = index
    if covered < MINUTES_PER_DAY:
        return None, f"no rule covers {_on(day, f'{_hhmm(covered)}–24:00', month)}"
    return DaySchedule(tuple(ends), tuple(rates)), None


def _on(day: str, span: str, month: int) -> str:
    """Where a gap or an overlap is, in the error's words: "SAT 07:00–08:00 in JUL"."""
    return f"{day} {span} in {MONTH_NAMES[month - 1]}"


@dataclass(slots=True)
class TimeOfUseTable:
    """Per (month, weekday) schedules of one TIME_OF_USE version, built on first use.

    Building lazily keeps a cold profile cheap: a half-hour record needs one or two of the 84
    schedules, not all of them.
    """

    rules: Sequence[TimeOfUseRule]
    label: str
    _days: dict[int, DaySchedule] = field(default_factory=dict)

    def schedule(self, month: int, weekday: int) -> DaySchedule:
        """The schedule for a month (1..12) and weekday (0 = Monday); ProfileError if broken."""
        key = month * 8 + weekday
        found = self._days.get(key)
        if found is None:
            found, problem = _schedule_problem(self.rules, month, weekday)
            if found is None:
                raise ProfileError(f"{self.label}: {problem}")
            self._days[key] = found
        return found


def describe_component(version_label: str, name: str) -> str:
    """ "IMPORT version from 2024-01-01, component 'duos'": how errors name a component."""
    return f"{version_label}, component {name!r}"


def _time_of_use_problem(rules: Sequence[TimeOfUseRule]) -> str | None:
    """Every (month, weekday) in calendar order; the first one with a gap or overlap is named.

    The rules in force on a (month, weekday) depend only on which rules' `months` leave the
    month out and which rules' `days` leave the weekday out. Two months that leave out the
    same rules have the same days, so only the first month of each such class is checked, and
    likewise for weekdays: rules without filters need one check instead of 84, and the first
    failing day in calendar order is still the one named. All 84 cost ~1.3 ms per profile, most
    of the time a worker took to read `locations` (docs/stream.md, "Profiles at scale"), and
    the 19 class keys, when no rule filters at all, ~20 µs of the ~38 left.
    """
    months = [(i, set(rule.months)) for i, rule in enumerate(rules) if rule.months is not None]
    days = [
        (i, {d.value for d in rule.days}) for i, rule in enumerate(rules) if rule.days is not None
    ]
    month_classes: dict[tuple[int, ...], int] = {(): 1}  # no rule filters months: one class
    if months:
        month_classes = {}
        for month in range(1, 13):
            month_classes.setdefault(tuple(i for i, held in months if month not in held), month)
    day_classes: dict[tuple[int, ...], int] = {(): 0}
    if days:
        day_classes = {}
        for weekday, day in enumerate(DAY_NAMES):
            day_classes.setdefault(tuple(i for i, held in days if day not in held), weekday)
    for month in month_classes.values():  # insertion order: calendar order
        for weekday in day_classes.values():
            _, problem = _schedule_problem(rules, month, weekday)
            if problem is not None:
                return problem
    return None


def _prices_problem(prices: Sequence[PricePoint]) -> str | None:
    ordered = sorted(prices, key=lambda p: p.valid_from)
    for before, after in itertools.pairwise(ordered):
        if after.valid_from < before.valid_to:
            return (
                f"dynamic prices [{before.valid_from.isoformat()}, "
                f"{before.valid_to.isoformat()}) and [{after.valid_from.isoformat()}, "
                f"{after.valid_to.isoformat()}) overlap"
            )
    return None


def _version_problem(version: Version) -> str | None:
    """The first gap or overlap inside one version (its TIME_OF_USE rules, its dynamic prices,
    then each TIME_OF_USE component's rules, which cover every local minute exactly once like
    a tariff's), as the text that follows the version's label; None when there is none."""
    problem = None
    if isinstance(version, TimeOfUseTariff):
        problem = _time_of_use_problem(version.rules)
    elif isinstance(version, DynamicTariff) and version.prices is not None:
        problem = _prices_problem(version.prices)
    if problem is not None:
        return f": {problem}"
    for component in version.components or ():
        if isinstance(component, TimeOfUseComponent):
            problem = _time_of_use_problem(component.rules)
            if problem is not None:
                return f"{describe_component('', component.name)}: {problem}"
    return None


def _validate_versions(direction: str, versions: Sequence[Version]) -> None:
    ordered = sorted(versions, key=lambda v: v.effective_from)
    for before, after in itertools.pairwise(ordered):
        if before.effective_to is None or after.effective_from < before.effective_to:
            ends = (
                "open-ended"
                if before.effective_to is None
                else (f"to {before.effective_to.isoformat()}")
            )
            raise ProfileError(
                f"{describe_version(direction, before)} ({ends}) overlaps "
                f"{describe_version(direction, after)}"
            )


def validate_profile(profile: LocationProfile) -> None:
    """Check the rules that span a whole profile; raise ProfileError naming the first problem.

    Gaps *between* versions are allowed (records there are `tariff_not_available`); gaps or
    overlaps *inside* a TIME_OF_USE version, and overlapping versions or prices, are not.
    """
    validate_tariffs(profile.tariffs)


def validate_tariffs(tariffs: Mapping[TariffDirection, Sequence[Version]]) -> None:
    """`validate_profile`'s rules for some directions: each direction's versions are judged on
    their own (nothing else of the profile is read)."""
    for direction, versions in tariffs.items():
        name = direction.value
        _validate_versions(name, versions)
        for version in versions:
            # the label (a date's text, ~3 µs) only for an error: a worker reading `locations`
            # validates every profile
            problem = _version_problem(version)
            if problem is not None:
                raise ProfileError(describe_version(name, version) + problem)
