"""`rates._walk_prices` (bisection and slices over merged prices) against the plain walk it
replaced: one step per price, `_add` merging equal neighbours, the error at the first hole;
`rates._walk_weighed`'s weights (from the prices' sums) against exact fractions; and
`breakdown.run_breakdown` (inner items written from the prices' own texts and rates) against
`plain_breakdown` (every item built from its part): the same bytes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from fractions import Fraction

from hypothesis import event, given, settings
from hypothesis import strategies as st

from meterflow.costing.breakdown import breakdown_edges, plain_breakdown, run_breakdown
from meterflow.costing.money import LENGTHS
from meterflow.costing.rates import NO_SURCHARGES as NONE
from meterflow.costing.rates import (
    Part,
    _add,
    _compile_prices,
    _no_rate,
    _walk_prices,
    _walk_weighed,
    weights_of,
)
from meterflow.models import PricingError, TariffDirection
from meterflow.models._base import fast_encode

IMPORT = TariffDirection.IMPORT


def plain_walk(
    parts: list[Part], points: list[tuple[int, int, Decimal]], start: int, end: int
) -> list[Part]:
    """One price at a time, as the engine walked before (the brute-force reference)."""
    t = start
    while t < end:
        covering = [p for p in points if p[0] <= t < p[1]]
        if not covering:
            raise _no_rate(IMPORT, t, " (gap between dynamic prices)")
        _, price_end, rate = covering[0]
        stop = min(price_end, end)
        _add(parts, t, stop, rate)
        t = stop
    return parts


@st.composite
def prices_and_span(draw: st.DrawFn) -> tuple[list[tuple[int, int, Decimal]], int, int]:
    points = []
    cursor = draw(st.integers(0, 5))
    for _ in range(draw(st.integers(1, 12))):
        cursor += draw(st.sampled_from([0, 0, 0, 1, 3]))  # mostly contiguous, some holes
        length = draw(st.integers(1, 6))
        rate = Decimal(draw(st.sampled_from(["0.1", "0.2", "0.2", "0.35"])))  # equal neighbours
        points.append((cursor, cursor + length, rate))
        cursor += length
    start = draw(st.integers(0, cursor + 2))
    end = draw(st.integers(start + 1, cursor + 4))
    return points, start, end


@settings(max_examples=500, deadline=None)
@given(prices_and_span(), st.booleans())
def test_sliced_walk_equals_the_plain_walk(
    case: tuple[list[tuple[int, int, Decimal]], int, int], after_a_part: bool
) -> None:
    points, start, end = case
    # a part of an earlier version just before `start`, at a rate that may merge with ours
    before: list[Part] = [(start - 1, start, points[0][2])] if after_a_part else []
    try:
        expected: list[Part] | str = plain_walk(list(before), points, start, end)
    except PricingError as error:
        expected = error.message
    parts = list(before)
    try:
        _walk_prices(parts, _compile_prices(points, NONE, "test"), IMPORT, start, end)
        found: list[Part] | str = parts
    except PricingError as error:
        found = error.message
    assert found == expected


_SANE_RATES = st.one_of(
    st.sampled_from(["0.1", "0.2", "0.2", "0.35", "-0.05", "0"]),  # equal neighbours, negatives
    st.decimals(allow_nan=False, allow_infinity=False, places=4, min_value=-1, max_value=1),
)
RATES = st.one_of(
    _SANE_RATES,
    _SANE_RATES,
    _SANE_RATES,
    # 40 digits at exponents 30 apart: some sums would need more than 50 digits
    st.builds(
        lambda digits, exponent: Decimal(f"{digits}e{exponent}"),
        st.integers(10**39, 10**40 - 1),
        st.integers(-40, -10),
    ),
)


@st.composite
def weighed_prices(draw: st.DrawFn) -> tuple[list[tuple[int, int, Decimal]], int, int]:
    points = []
    cursor = draw(st.integers(0, 5)) * 1_800_000_000
    for _ in range(draw(st.integers(1, 12))):
        length = draw(st.sampled_from([1_800_000_000, 900_000_000, 1]))
        points.append((cursor, cursor + length, Decimal(draw(RATES))))
        cursor += length
    # mostly from the first price's start or inside it, to the last's end or inside it
    start = draw(
        st.integers(points[0][0], points[0][1] - 1) | st.integers(points[0][0], cursor - 1)
    )
    end = draw(st.integers(max(points[-1][0], start + 1), cursor) | st.integers(start + 1, cursor))
    return points, start, end


@settings(max_examples=500, deadline=None)
@given(weighed_prices())
def test_weights_from_sums_are_each_parts_rate_times_length(
    case: tuple[list[tuple[int, int, Decimal]], int, int],
) -> None:
    """The parts are `_walk_prices`'; the weights, where the sums give them, are each part's
    rate × length and their total the exact sum (else None: the engine uses `weights_of`)."""
    points, start, end = case
    prices = _compile_prices(points, NONE, "test")
    expected: list[Part] = []
    reach = _walk_prices(expected, prices, IMPORT, start, end)
    parts, run, found_reach = _walk_weighed(prices, IMPORT, start, end)
    assert (parts, found_reach) == (expected, reach)
    each, total = run.weights() if run is not None else weights_of(parts)
    exact = [Fraction(rate) * (stop - begin) for begin, stop, rate in parts]
    if run is not None:
        assert parts[1:-1] == prices.parts[run.first + 1 : run.last]
        assert [Fraction(w) for w in each] == exact
        assert Fraction(total) == sum(exact)


def test_a_day_of_half_hour_prices_is_weighed_from_the_sums() -> None:
    half_hour = 1_800_000_000
    points = [(i * half_hour, (i + 1) * half_hour, Decimal(f"0.{100 + i}")) for i in range(96)]
    start, end = 10 * half_hour + 7, 58 * half_hour + 7  # 24 h, both ends inside a price
    parts, run, _ = _walk_weighed(_compile_prices(points, NONE, "test"), IMPORT, start, end)
    assert run is not None
    assert len(parts) == 49
    assert run.weights() == weights_of(parts)


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
OFFSETS = st.sampled_from([0, 60, -300, 330, 345]).map(lambda m: timezone(timedelta(minutes=m)))


@settings(max_examples=1000, deadline=None)
@given(
    weighed_prices(),
    st.decimals(allow_nan=False, allow_infinity=False, places=3, min_value=0, max_value=10**6),
    st.sampled_from([1, 1000]),  # kWh, Wh: the denominator is the duration, or 1000 × it
    OFFSETS,
    OFFSETS,
)
def test_a_run_is_written_as_its_parts_would_be(
    case: tuple[list[tuple[int, int, Decimal]], int, int],
    magnitude: Decimal,
    per_kwh: int,
    start_zone: timezone,
    end_zone: timezone,
) -> None:
    points, start, end = case
    prices = _compile_prices(points, NONE, "test")
    parts, run, _ = _walk_weighed(prices, IMPORT, start, end)
    if run is None:
        event("fewer than three parts or sums beyond 50 digits")
        return
    start_time = (EPOCH + timedelta(microseconds=start)).astimezone(start_zone)
    end_time = (EPOCH + timedelta(microseconds=end)).astimezone(end_zone)
    edges = breakdown_edges(start_time, end_time, start_time.isoformat(), end_time.isoformat())
    denominator = LENGTHS[end - start] * per_kwh
    weights, _ = run.weights()
    expected = plain_breakdown(
        parts, weights, start, magnitude, denominator, Decimal(0), Decimal(0), edges
    )
    found = run_breakdown(parts, run, start, magnitude, denominator, edges)
    assert fast_encode(found) == fast_encode(expected)
    # and again: the texts kept with the prices are the same ones
    assert fast_encode(run_breakdown(parts, run, start, magnitude, denominator, edges)) == (
        fast_encode(expected)
    )
