"""`rates._walk_prices` (bisection and slices over merged prices) against the plain walk it
replaced: one step per price, `_add` merging equal neighbours, the error at the first hole."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from meterflow.costing.rates import NO_SURCHARGES as NONE
from meterflow.costing.rates import Part, _add, _compile_prices, _no_rate, _walk_prices
from meterflow.models import PricingError, TariffDirection

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
