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

from decimal import Decimal
from enum import StrEnum
from typing import NamedTuple

from meterflow.costing.money import CONTEXT, round_money
from meterflow.costing.periods import Period, rate_periods
from meterflow.costing.rates import MarketPricesLookup, compiled
from meterflow.costing.timeline import US_PER_DAY, US_PER_MINUTE
from meterflow.models import LocationProfile, TariffDirection

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
    """QuoteError(invalid_time_range) unless `start < end` and the window is at most 31 days."""
    if end <= start:
        raise QuoteError("invalid_time_range", "end_time must be after start_time")
    if end - start > MAX_WINDOW_US:
        raise QuoteError("invalid_time_range", "a window may span at most 31 days")


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
    return rate_periods(compiled(profile), direction, start, end, market_prices)


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


def _totals_at(blocks: list[_Block], points: list[int]) -> list[Decimal]:
    """Total weight of the minutes before each of `points` (ascending, on whole minutes): one
    walk over the blocks with running sums, no search."""
    add, multiply = CONTEXT.add, CONTEXT.multiply
    totals: list[Decimal] = []
    index, before = 0, _ZERO
    last = len(blocks) - 1
    for point in points:
        while index < last and blocks[index + 1].start <= point:
            block = blocks[index]
            before = add(before, multiply(block.weight, block.size))
            index += 1
        block = blocks[index]
        inside = min(max(point - block.start, 0) // US_PER_MINUTE, block.size)
        totals.append(add(before, multiply(block.weight, inside)))
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
    weights = map(
        subtract, _totals_at(blocks, [s + span for s in starts]), _totals_at(blocks, starts)
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
    when any instant of the window's whole minutes has no rate; QuoteError for bad input."""
    first, last = minute_window(start, end, duration_minutes)
    periods = rate_periods(compiled(profile), direction, first, last, market_prices)
    blocks = _blocks(periods)
    if contiguous:
        return _one_window(blocks, first, last, duration_minutes, segment)
    return _merged(_any_minutes(blocks, duration_minutes, segment))
