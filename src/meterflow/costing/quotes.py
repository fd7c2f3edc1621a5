"""Rates and cheapest (or dearest) slots ahead of time: pure views of the pricing timeline.

Design §12. Both read `periods.rate_periods`, the timeline the engine prices records with, so
a quote can never disagree with the cost of the energy later used in it. No I/O, no clock.

`rates` gives the periods as they are. `slots` picks whole clock minutes: it never walks
minute by minute, it turns the periods into runs of minutes of one rate ("blocks"), then
- any minutes: sorts the blocks by (rate, start) and takes whole minutes from the front;
- one window (`contiguous`): the window's cost is linear in its start between two places where
  its start or its end crosses a block edge, so only those starts (and the range's ends) can
  be best; all are priced with running (prefix) sums in one walk over the blocks.
Money stays exact: a minute's weight is Σ rate × microseconds, compared as exact decimals.
"""

from __future__ import annotations

from bisect import bisect_right
from decimal import Decimal
from enum import StrEnum
from typing import NamedTuple

from meterflow.costing.money import CONTEXT, round_money
from meterflow.costing.periods import Period, rate_periods
from meterflow.costing.rates import CompiledProfile, MarketPricesLookup, compiled, versions_over
from meterflow.costing.timeline import (
    SUPPORTED_YEARS,
    US_PER_DAY,
    US_PER_MINUTE,
    within_supported_years,
)
from meterflow.models import LocationProfile, PricingError, TariffDirection

MAX_WINDOW_US = 31 * US_PER_DAY
"""Longest window a quote may ask for (exactly 31 days is allowed)."""
CONFIDENCE = CONTEXT.create_decimal(1)
"""Every rate a profile or a market-prices day states is known, not forecast."""
_MINUTE = CONTEXT.create_decimal(US_PER_MINUTE)
_ZERO = CONTEXT.create_decimal(0)


class Segment(StrEnum):
    LOW = "LOW"
    HIGH = "HIGH"


class QuoteError(ValueError):
    """A request no quote can answer; `code` is the API's 422 code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class Slot(NamedTuple):
    """`[start, end)` (µs since the epoch, on whole minutes) and its average rate per kWh,
    rounded once, half-even, to 6 places."""

    start: int
    end: int
    rate_avg: Decimal


class _Block(NamedTuple):
    """`size` whole minutes from `start`, each of weight `weight` (Σ rate × µs)."""

    start: int
    size: int
    weight: Decimal


def check_window(start: int, end: int) -> None:
    """QuoteError(invalid_time_range) unless `start < end`, the window is at most 31 days and
    it lies within the supported years (`timeline.EARLIEST`..`LATEST`)."""
    if end <= start:
        raise QuoteError("invalid_time_range", "end_time must be after start_time")
    if end - start > MAX_WINDOW_US:
        raise QuoteError("invalid_time_range", "a window may span at most 31 days")
    if not within_supported_years(start, end):
        raise QuoteError("invalid_time_range", f"a window must lie {SUPPORTED_YEARS}")


def minute_window(start: int, end: int, duration_minutes: int) -> tuple[int, int]:
    """The whole clock minutes of `[start, end)` (a start at 21:47:13 begins at 21:48:00), or
    QuoteError when they are fewer than `duration_minutes` or the duration is not positive."""
    check_window(start, end)
    if duration_minutes < 1:
        raise QuoteError("invalid_duration", "duration must be a positive whole number of minutes")
    first = -(-start // US_PER_MINUTE) * US_PER_MINUTE
    last = end // US_PER_MINUTE * US_PER_MINUTE
    available = max(last - first, 0) // US_PER_MINUTE
    if duration_minutes > available:
        raise QuoteError(
            "invalid_duration",
            f"duration {duration_minutes} is longer than the {available} whole minute(s) "
            "of the window",
        )
    return first, last


class _Day(NamedTuple):
    """One whole UTC day of a profile's timeline in one direction, as periods and blocks."""

    profile: CompiledProfile  # held, so that the id in the key stays this profile's
    periods: list[Period]
    blocks: list[_Block]


_DAY_LIMIT = 512
"""Cached days (73 location-weeks). Each holds ~100 GC-tracked tuples for 30-minute prices,
walked by every full collection: 512 days add ~7 ms to one, 2048 would add ~30 ms."""
_days: dict[tuple[int, TariffDirection, int], _Day] = {}


def _day(
    profile: CompiledProfile,
    direction: TariffDirection,
    day_start: int,
    market_prices: MarketPricesLookup,
) -> _Day | None:
    """The day's timeline, computed once per compiled profile (a new profile version is a new
    compiled profile). None when the day reads market-price series (documents that change
    under the same profile; priced per request as before) or some instant of it has no rate
    (the caller then prices only the part it needs, which raises the window's own error)."""
    key = (id(profile), direction, day_start)
    hit = _days.get(key)
    if hit is not None and hit.profile is profile:
        return hit
    day_end = day_start + US_PER_DAY
    try:
        if any(
            v.series_id is not None
            for v, _, _ in versions_over(profile, direction, day_start, day_end)
        ):
            return None
        periods = rate_periods(profile, direction, day_start, day_end, market_prices)
    except PricingError:
        return None
    found = _Day(profile, periods, _blocks(periods))
    if len(_days) >= _DAY_LIMIT:
        _days.clear()
    _days[key] = found
    return found


def _clip_periods(periods: list[Period], start: int, end: int) -> list[Period]:
    first = bisect_right(periods, start, key=lambda p: p.start) - 1
    last = bisect_right(periods, end - 1, key=lambda p: p.start)
    part = periods[first:last]
    part[0] = part[0]._replace(start=start)
    part[-1] = part[-1]._replace(end=end)
    return part


def _clip_blocks(blocks: list[_Block], start: int, end: int) -> list[_Block]:
    """`[start, end)` (whole minutes) of a day's blocks."""
    first = bisect_right(blocks, start, key=lambda b: b.start) - 1
    last = bisect_right(blocks, end - 1, key=lambda b: b.start)
    part = blocks[first:last]
    head = part[0]
    skipped = (start - head.start) // US_PER_MINUTE
    part[0] = _Block(start, head.size - skipped, head.weight)
    tail = part[-1]
    part[-1] = tail._replace(size=min(tail.size, (end - tail.start) // US_PER_MINUTE))
    return part


def _timeline(
    profile: CompiledProfile,
    direction: TariffDirection,
    start: int,
    end: int,
    market_prices: MarketPricesLookup,
    *,
    blocks: bool,
) -> tuple[list[Period], list[_Block]]:
    """`rate_periods` (and `_blocks` of it when `blocks`, for whole-minute bounds), read from
    cached whole UTC days where it can be: a 7-day quote reuses the days instead of walking
    and stacking every layer again. Equal to the uncached result, merges at midnight included."""
    periods: list[Period] = []
    found: list[_Block] = []
    day_start = start - start % US_PER_DAY
    while day_start < end:
        low, high = max(start, day_start), min(end, day_start + US_PER_DAY)
        day = _day(profile, direction, day_start, market_prices)
        if day is None:
            part = rate_periods(profile, direction, low, high, market_prices)
            part_blocks = _blocks(part) if blocks else []
        elif high - low == US_PER_DAY:
            part, part_blocks = day.periods, day.blocks
        else:
            part = _clip_periods(day.periods, low, high)
            part_blocks = _clip_blocks(day.blocks, low, high) if blocks else []
        _join_periods(periods, part)
        if part_blocks:
            _append(found, part_blocks[0])
            found.extend(part_blocks[1:])
        day_start += US_PER_DAY
    return periods, found


def _join_periods(periods: list[Period], part: list[Period]) -> None:
    """Append `part`, merging across the seam as `rate_periods` merges adjacent periods."""
    if periods and part:
        last, head = periods[-1], part[0]
        if last.end == head.start and last.rates == head.rates and last.names == head.names:
            periods[-1] = last._replace(end=head.end)
            periods.extend(part[1:])
            return
    periods.extend(part)


def rates(
    profile: LocationProfile,
    direction: TariffDirection,
    start: int,
    end: int,
    market_prices: MarketPricesLookup,
) -> list[Period]:
    """The periods of `[start, end)`: maximal stretches over which the total rate and every
    component's rate are constant (a change of either cuts, DST included, as the engine
    prices). PricingError(tariff_not_available) at any gap; QuoteError for a bad window."""
    check_window(start, end)
    return _timeline(compiled(profile), direction, start, end, market_prices, blocks=False)[0]


def _blocks(periods: list[Period]) -> list[_Block]:
    """Runs of whole minutes of one weight, in time order. A minute that a rate change cuts is
    a block of its own, weighted by the exact time each rate holds in it. The periods must tile
    a stretch that starts and ends on whole minutes."""
    multiply, add = CONTEXT.multiply, CONTEXT.add
    blocks: list[_Block] = []
    partial = _ZERO  # weight so far of the minute a rate change cuts
    for period in periods:
        start, end, rate = period.start, period.end, period.rate
        cut = start % US_PER_MINUTE
        if cut:
            minute = start - cut
            upto = min(end, minute + US_PER_MINUTE)
            partial = add(partial, multiply(rate, CONTEXT.create_decimal(upto - start)))
            if upto == minute + US_PER_MINUTE:
                _append(blocks, _Block(minute, 1, partial))
                partial = _ZERO
            start = upto
            if start == end:
                continue
        whole_end = end - end % US_PER_MINUTE
        if whole_end > start:
            count = (whole_end - start) // US_PER_MINUTE
            _append(blocks, _Block(start, count, multiply(rate, _MINUTE)))
        if end > whole_end:
            partial = multiply(rate, CONTEXT.create_decimal(end - max(whole_end, start)))
    assert partial == _ZERO, "the periods must end on a whole minute"
    return blocks


def _append(blocks: list[_Block], block: _Block) -> None:
    if blocks:
        last = blocks[-1]
        if last.weight == block.weight and last.start + last.size * US_PER_MINUTE == block.start:
            blocks[-1] = last._replace(size=last.size + block.size)
            return
    blocks.append(block)


def _key(segment: Segment, weight: Decimal, start: int) -> tuple[Decimal, int]:
    """Sort key: the better weight first (lower for LOW), then the earlier start."""
    return (weight if segment is Segment.LOW else weight.copy_negate(), start)


def _any_minutes(blocks: list[_Block], minutes: int, segment: Segment) -> list[_Block]:
    """The `minutes` best minutes, as blocks in time order (adjacent ones merged later)."""
    chosen: list[_Block] = []
    for block in sorted(blocks, key=lambda b: _key(segment, b.weight, b.start)):
        take = min(block.size, minutes)
        chosen.append(block._replace(size=take))
        minutes -= take
        if minutes == 0:
            break
    chosen.sort(key=lambda b: b.start)
    return chosen


def _totals_at(blocks: list[_Block], before: list[Decimal], points: list[int]) -> list[Decimal]:
    """Total weight of the minutes before each of `points` (ascending, on whole minutes), with
    `before[i]` the total before block `i`: one walk over the blocks, no search."""
    add, multiply = CONTEXT.add, CONTEXT.multiply
    totals: list[Decimal] = []
    index = 0
    last = len(blocks) - 1
    for point in points:
        while index < last and blocks[index + 1].start <= point:
            index += 1
        block = blocks[index]
        inside = min(max(point - block.start, 0) // US_PER_MINUTE, block.size)
        total = before[index]
        totals.append(add(total, multiply(block.weight, inside)) if inside else total)
    return totals


def _before(blocks: list[_Block]) -> list[Decimal]:
    """The running total of the blocks' weights: `[i]` is the weight of all blocks before `i`."""
    add, multiply = CONTEXT.add, CONTEXT.multiply
    totals = [_ZERO]
    for block in blocks[:-1]:
        totals.append(add(totals[-1], multiply(block.weight, block.size)))
    return totals


def _one_window(
    blocks: list[_Block], first: int, last: int, minutes: int, segment: Segment
) -> list[Slot]:
    """The best window of `minutes` consecutive minutes (the earliest among equals).

    Its total is linear in its start between two starts where the start or the end crosses a
    block edge; so the best (earliest) start is one of those, or an end of the range."""
    span = minutes * US_PER_MINUTE
    latest = last - span
    candidates = {first, latest}
    for edge in (*(block.start for block in blocks), last):
        candidates.add(edge)
        candidates.add(edge - span)
    starts = sorted(c for c in candidates if first <= c <= latest)
    subtract = CONTEXT.subtract
    before = _before(blocks)
    weights = map(
        subtract,
        _totals_at(blocks, before, [s + span for s in starts]),
        _totals_at(blocks, before, starts),
    )
    best_key, best_weight = None, _ZERO
    for start, weight in zip(starts, weights, strict=True):
        key = _key(segment, weight, start)
        if best_key is None or key < best_key:
            best_key, best_weight = key, weight
    assert best_key is not None
    return [_slot(best_key[1], best_key[1] + span, best_weight)]


def _merged(chosen: list[_Block]) -> list[Slot]:
    """Chosen minutes in time order; adjacent ones become one slot with their average rate."""
    runs: list[tuple[int, int, Decimal]] = []
    for block in chosen:
        end = block.start + block.size * US_PER_MINUTE
        weight = CONTEXT.multiply(block.weight, block.size)
        if runs and runs[-1][1] == block.start:
            runs[-1] = (runs[-1][0], end, CONTEXT.add(runs[-1][2], weight))
        else:
            runs.append((block.start, end, weight))
    return [_slot(*run) for run in runs]


def _slot(start: int, end: int, weight: Decimal) -> Slot:
    """A slot of total weight Σ rate × µs: its average rate is weight / µs, rounded once."""
    average = CONTEXT.divide(weight, CONTEXT.create_decimal(end - start))
    return Slot(start, end, round_money(average))


def slots(
    profile: LocationProfile,
    direction: TariffDirection,
    start: int,
    end: int,
    market_prices: MarketPricesLookup,
    *,
    duration_minutes: int,
    segment: Segment = Segment.LOW,
    contiguous: bool = False,
) -> list[Slot]:
    """The cheapest (LOW) or dearest (HIGH) `duration_minutes` whole clock minutes of
    `[start, end)`, merged into slots in time order; `contiguous` → the single best window.
    Among equal minutes (or windows) the earliest wins. PricingError(tariff_not_available)
    when any instant of the window has no rate (the rates' rule, part-minutes at its ends
    included, though no slot uses them); QuoteError for bad input."""
    first, last = minute_window(start, end, duration_minutes)
    timeline = compiled(profile)
    _, blocks = _timeline(timeline, direction, first, last, market_prices, blocks=True)
    for low, high in ((start, first), (last, end)):
        if low < high:
            rate_periods(timeline, direction, low, high, market_prices)
    if contiguous:
        return _one_window(blocks, first, last, duration_minutes, segment)
    return _merged(_any_minutes(blocks, duration_minutes, segment))
