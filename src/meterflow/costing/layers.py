"""A version's energy rate and its components merged into one day table per (month, weekday).

When the energy rate is FIXED or TIME_OF_USE, every layer of a version is a function of local
wall time, so their sum can be tabulated once per (month, weekday), like a TIME_OF_USE table:
pricing then walks one table, one step per change of any layer, instead of walking every layer
and merging the walks for each record (which cost more than the rest of pricing together).
Built lazily: a record needs one or two of the 84 days.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Context, Decimal, InvalidOperation, Overflow

from meterflow.tariffs import MINUTES_PER_DAY, DaySchedule, TimeOfUseTable

_CONTEXT = Context(prec=50, rounding=ROUND_HALF_EVEN, traps=[InvalidOperation, Overflow])

Layer = Decimal | TimeOfUseTable
"""A FIXED rate, or a TIME_OF_USE table in local wall time."""


@dataclass(frozen=True, slots=True)
class StackedDay:
    """Segment `i` covers minutes `[ends[i-1], ends[i])` at `rates[i]` (one per layer), whose
    exact sum is `totals[i]`. Each segment end is a change of at least one layer (or midnight)."""

    ends: tuple[int, ...]
    totals: tuple[Decimal, ...]
    rates: tuple[tuple[Decimal, ...], ...]


def _day_of(layer: Layer, month: int, weekday: int) -> DaySchedule:
    if isinstance(layer, Decimal):
        return DaySchedule((MINUTES_PER_DAY,), (layer,))
    return layer.schedule(month, weekday)  # ProfileError when the table has a gap


def merge_days(days: Sequence[DaySchedule]) -> StackedDay:
    """The union of the layers' segment ends, with every layer's rate on each segment."""
    add = _CONTEXT.add
    ends = sorted({end for day in days for end in day.ends})
    totals: list[Decimal] = []
    rates: list[tuple[Decimal, ...]] = []
    for end in ends:
        minute = end - 1  # the segment ending at `end` contains minute `end - 1`
        current = tuple(day.rates[bisect_right(day.ends, minute)] for day in days)
        total = current[0]
        for rate in current[1:]:
            total = add(total, rate)
        totals.append(total)
        rates.append(current)
    return StackedDay(tuple(ends), tuple(totals), tuple(rates))


@dataclass(slots=True)
class StackedTable:
    """Per (month, weekday) merged schedules of a version's layers (energy first)."""

    layers: tuple[Layer, ...]
    _days: dict[int, StackedDay] = field(default_factory=dict)

    def schedule(self, month: int, weekday: int) -> StackedDay:
        """The merged day for a month (1..12) and weekday (0 = Monday); ProfileError if a
        layer's table is broken (named by that layer's label)."""
        key = month * 8 + weekday
        found = self._days.get(key)
        if found is None:
            found = merge_days([_day_of(layer, month, weekday) for layer in self.layers])
            self._days[key] = found
        return found
