"""The rate in force with its components: `[start, end)` cut at every change of any of them.

Design §11: the rate in force is the energy rate (surcharges applied) plus every component's
rate at that instant. `rate_periods` answers "which rates, and until when" for any interval:
the cost engine prices records with stacked components from it, and the views of the timeline
ahead of time (`GET /tariffs/rates`, `GET /slots/time`, design §12) read it too, so a record and
a quote can never disagree.

Components' TIME_OF_USE rules are in local wall time (DST as design §3.2). With a FIXED or
TIME_OF_USE energy rate, a version's layers are merged once per local day (`layers`) and walked
as one table; with a DYNAMIC one, each layer is walked on its own and the walks are merged with
one sweep. Either way: one step per change of any layer, never per minute.
"""

from __future__ import annotations

from bisect import bisect_right
from decimal import ROUND_HALF_EVEN, Context, Decimal, InvalidOperation, Overflow
from typing import NamedTuple

from meterflow.costing.layers import StackedTable
from meterflow.costing.rates import (
    CompiledProfile,
    MarketPricesLookup,
    Part,
    component_parts,
    energy_parts,
    versions_over,
)
from meterflow.costing.timeline import US_PER_DAY, US_PER_MINUTE, ZoneOffsets, day_info
from meterflow.models import ErrorCode, PricingError, TariffDirection
from meterflow.tariffs import ProfileError

_period = tuple.__new__
_CONTEXT = Context(prec=50, rounding=ROUND_HALF_EVEN, traps=[InvalidOperation, Overflow])


class Period(NamedTuple):
    """`[start, end)` (µs since the epoch) over which every rate below is constant.

    `rates[i]` is the rate of `names[i]`: `names[0]` is `"energy"` (the energy rate with the
    version's surcharges applied), then the version's components in the profile's order. `rate`
    is their exact sum, the rate in force. A version without components gives one name.
    """

    start: int
    end: int
    rate: Decimal
    rates: tuple[Decimal, ...]
    names: tuple[str, ...]


def _extend(periods: list[Period], period: Period) -> None:
    """Append, merging with the previous period when it continues at the same rates."""
    if periods:
        last = periods[-1]
        if (
            last.end == period.start
            and last.rates == period.rates
            and (last.names is period.names or last.names == period.names)
        ):
            periods[-1] = last._replace(end=period.end)
            return
    periods.append(period)


def _stack(periods: list[Period], layers: list[list[Part]], names: tuple[str, ...]) -> None:
    """Merge layers that each partition the same stretch into periods of constant rates."""
    add = _CONTEXT.add
    cursors = [0] * len(layers)
    t = layers[0][0][0]
    stop = layers[0][-1][1]
    while t < stop:
        current = [layer[i] for layer, i in zip(layers, cursors, strict=True)]
        end = min(part[1] for part in current)
        rates = tuple(part[2] for part in current)
        total = rates[0]
        for rate in rates[1:]:
            total = add(total, rate)
        _extend(periods, Period(t, end, total, rates, names))
        for k, part in enumerate(current):
            if part[1] == end:
                cursors[k] += 1
        t = end


def _walk_stacked(
    periods: list[Period],
    table: StackedTable,
    zone: ZoneOffsets,
    start: int,
    end: int,
    names: tuple[str, ...],
) -> int:
    """As `rates._walk_time_of_use`, on a version's merged day tables (local wall time, the
    walk restarting at each DST change); returns how far the last period's rates hold."""
    t = start
    reach = end
    while t < end:
        offset, offset_until = zone.offset_at(t)
        day, in_day = divmod(t + offset, US_PER_DAY)
        month, weekday = day_info(day)
        schedule = table.schedule(month, weekday)
        index = bisect_right(schedule.ends, in_day // US_PER_MINUTE)
        reach = min(day * US_PER_DAY + schedule.ends[index] * US_PER_MINUTE - offset, offset_until)
        stop = min(reach, end)
        _extend(periods, Period(t, stop, schedule.totals[index], schedule.rates[index], names))
        t = stop
    return reach


def rate_periods(
    profile: CompiledProfile,
    direction: TariffDirection,
    start: int,
    end: int,
    market_prices: MarketPricesLookup,
) -> list[Period]:
    """Cut `[start, end)` into maximal periods of constant rates (energy and each component).

    Raises PricingError(tariff_not_available) when any instant has no rate in force, like
    `rates.rate_parts`. Adjacent periods with equal names and rates are merged (also across
    versions); periods with the same total but different component rates are not.

    As `rates.rate_parts` does for parts, the last period's stretch is remembered per direction
    when its version's layers are merged (`CompiledProfile.periods`), and a record inside it is
    one period without a walk.
    """
    span = profile.periods.get(direction)
    if span is not None and span.start <= start and end <= span.end:
        # built as its tuple: `Period(...)` runs the NamedTuple's Python `__new__`
        return [_period(Period, (start, end, span.rate, span.rates, span.names))]
    periods: list[Period] = []
    reach: int | None = None
    try:
        for version, t, stop in versions_over(profile, direction, start, end):
            names = version.names
            reach = None
            if version.stacked is not None:
                walked = _walk_stacked(periods, version.stacked, profile.zone, t, stop, names)
                reach = min(walked, version.end)
                continue
            energy: list[Part] = []
            energy_parts(energy, profile, version, direction, t, stop, market_prices)
            if not version.components:
                for part_start, part_end, rate in energy:
                    _extend(periods, Period(part_start, part_end, rate, (rate,), names))
                continue
            layers = [energy]
            for component in version.components:
                layer: list[Part] = []
                component_parts(layer, profile.zone, component, t, stop)
                layers.append(layer)
            _stack(periods, layers, names)
    except ProfileError as error:
        raise PricingError(ErrorCode.TARIFF_NOT_AVAILABLE, str(error)) from None
    if reach is not None:
        last = periods[-1]  # within the last version only, as in `rate_parts`
        since = max(last.start, t)
        profile.periods[direction] = Period(since, reach, last.rate, last.rates, last.names)
    return periods
