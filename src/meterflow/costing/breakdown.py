"""`data.breakdown`: the record's interval, item by item (design §2, §11).

Without components: one item per maximal stretch at one rate, no `component` key (exactly the
first release's shape). With components: per period of constant rates, one item per component,
`"energy"` first, each with that component's rate and cost and the period's energy. Every
item's `energy` and `cost` are rounded on their own (design §3.4), so their sum may differ from
the rounded totals by rounding.

Items are built in their written form (`models.WireItem`: instants as text), never as models.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta, timezone
from decimal import Decimal, getcontext, setcontext
from itertools import repeat
from typing import TypeVar

from meterflow.costing.money import (
    CONTEXT,
    LENGTHS,
    quotient_times,
    round_money,
    rounded_quotients,
)
from meterflow.costing.periods import Period
from meterflow.costing.rates import Part, Prices, Run
from meterflow.models import WireItem, Written, iso, written


def _first_start(start_time: datetime, end_time: datetime) -> datetime:
    """A record's start_time in its end_time's UTC offset (Flatpeak: "end_time wins")."""
    zone = start_time.tzinfo
    if zone is end_time.tzinfo and type(zone) is timezone:
        return start_time  # one fixed offset (both in `Z`, nearly always): no look-up
    if start_time.utcoffset() != end_time.utcoffset():
        return start_time.astimezone(end_time.tzinfo)
    return start_time


Edges = tuple[datetime, str, str]
"""A breakdown's first start (the start_time in the end_time's offset), its text, and the
text of its last end."""


def breakdown_edges(
    start_time: datetime, end_time: datetime, start_text: str, end_text: str
) -> Edges:
    """The breakdown's `Edges` of a record's `start_time` and `end_time`, given their texts
    (the document's own `data` writes them too: each is written once)."""
    first_start = _first_start(start_time, end_time)
    first_text = start_text if first_start is start_time else iso(first_start)
    return first_start, first_text, end_text


_T = TypeVar("_T")
_BOUNDARIES: dict[timedelta | None, dict[int, str]] = {}
"""Boundary texts per UTC offset, then per instant (µs)."""
_WRITTEN_BOUNDARIES: dict[timedelta | None, dict[int, Written]] = {}
"""The same, written: shared by the compiled prices of every location on one series."""
_BOUNDARIES_LIMIT = 8192  # texts per offset
_OFFSETS_LIMIT = 64  # offsets: a zone has one or two, input may bring others


def _per_offset(
    tables: dict[timedelta | None, dict[int, _T]], offset: timedelta | None
) -> dict[int, _T]:
    """`tables`' table of one offset, bounded (emptied when full)."""
    known = tables.get(offset)
    if known is None or len(known) >= _BOUNDARIES_LIMIT:
        if len(tables) >= _OFFSETS_LIMIT:
            tables.clear()
        known = tables[offset] = {}
    return known


def _text_at(first_start: datetime, start: int, instant: int) -> str:
    """The text of `instant` (µs) in the offset of `first_start`, which lies at `start`:
    fixed-offset arithmetic, no conversion (the start's offset is the end_time's)."""
    return (first_start + timedelta(microseconds=instant - start)).isoformat()


def _texts(ends: list[int], start: int, edges: Edges) -> list[str]:
    """The text of each boundary of the record's spans, in the end_time's UTC offset: its
    start_time, the spans' inner `ends`, its end_time (span i runs from text i to text i + 1);
    the first and the last are `edges`'.

    An inner boundary's text is kept per offset and instant, shared by every record that has it
    (records of many meters end their parts on the same half-hours): building the datetime
    costs about 1.5 µs and writing it 1 µs, a look-up 0.07 µs (keyed by the instant alone, an
    int, within its offset's table: a tuple key cost twice as much)."""
    first_start, first_text, end_text = edges
    known = _per_offset(_BOUNDARIES, first_start.utcoffset())
    found_at = known.get
    texts: list[str] = [first_text]
    for span_end in ends:
        found = found_at(span_end)
        if found is None:
            found = known[span_end] = _text_at(first_start, start, span_end)
        texts.append(found)
    texts.append(end_text)
    return texts


def _energy(length: int, magnitude: Decimal, denominator: Decimal) -> Decimal:
    """A part's energy, rounded: the record's energy per µs × the part's length. Run in the
    engine's context."""
    return round_money(magnitude * LENGTHS[length] / denominator)


def plain_breakdown(
    parts: list[Part],
    weights: list[Decimal],
    start: int,
    magnitude: Decimal,
    denominator: Decimal,
    total_energy: Decimal,
    total_cost: Decimal,
    edges: Edges,
) -> list[WireItem]:
    """One item per part; a single part carries exactly the totals. `weights[i]` is part i's
    rate × length in µs, exact (the engine's sum is made of them)."""
    if len(parts) == 1:
        _, start_time, end_time = edges
        return [WireItem(start_time, end_time, parts[0][2], total_energy, total_cost)]
    energies: dict[int, Decimal] = {}  # parts of one length share their energy
    values: list[WireItem] = []
    texts = _texts([part[1] for part in parts[:-1]], start, edges)
    outer = getcontext()
    # The operators compute in the thread's context: the engine's, for this loop only. They
    # skip the argument parsing of `CONTEXT.multiply(a, b)` (0.2 µs an item; 0.6 µs to switch).
    setcontext(CONTEXT)
    try:
        costs = rounded_quotients(weights, magnitude, denominator)
        for (part_start, part_end, rate), cost, start_time, end_time in zip(
            parts, costs, texts[:-1], texts[1:], strict=True
        ):
            length = part_end - part_start
            energy = energies.get(length)
            if energy is None:
                energy = energies[length] = _energy(length, magnitude, denominator)
            values.append(WireItem(start_time, end_time, rate, energy, cost))
    finally:
        setcontext(outer)
    return values


def _run_texts(prices: Prices, start: int, edges: Edges) -> tuple[list[Written], list[Written]]:
    """Each of `prices`' starts and ends as written in the end_time's UTC offset (a record's
    breakdown is written in it), listed once per offset and kept with the prices; the written
    texts themselves are shared (every location on a series has its own prices)."""
    first_start = edges[0]
    offset = first_start.utcoffset()
    kept = prices.texts
    found = kept.get(offset)
    if found is None:
        if len(kept) >= _OFFSETS_LIMIT:
            kept.clear()
        known = _per_offset(_WRITTEN_BOUNDARIES, offset)

        def text(instant: int) -> Written:
            shared = known.get(instant)
            if shared is None:
                shared = known[instant] = written(_text_at(first_start, start, instant))
            return shared

        found = kept[offset] = (list(map(text, prices.starts)), list(map(text, prices.ends)))
    return found


def run_breakdown(
    parts: list[Part], run: Run, start: int, magnitude: Decimal, denominator: Decimal, edges: Edges
) -> list[WireItem]:
    """`plain_breakdown` of parts that are a `Run` of prices (a day of dynamic prices): the
    inner items' texts and rates are the prices' own, written once per day and offset, their
    energy is one value per length, and only their costs are computed per record; the items
    are built by `map` (no Python frame per item)."""
    prices, first, last = run.prices, run.first, run.last
    _, first_text, end_text = edges
    starts, ends = _run_texts(prices, start, edges)
    rates = prices.written_rates
    inner = slice(first + 1, last)
    weights = prices.weights
    assert weights is not None  # a Run's prices have their weights
    (head_start, head_end, _), (tail_start, tail_end, _) = parts[0], parts[-1]
    head_length, tail_length = head_end - head_start, tail_end - tail_start
    # one energy per length: the prices' (one, unless equal neighbours were merged), and the
    # first and last parts' (the same when the record starts and ends where prices do)
    lengths = None if prices.length else [stop - begin for begin, stop, _ in prices.parts[inner]]
    outer = getcontext()
    setcontext(CONTEXT)  # as in `plain_breakdown`
    try:
        costs = rounded_quotients(weights[inner], magnitude, denominator)
        head_cost, tail_cost = rounded_quotients([run.head, run.tail], magnitude, denominator)
        energy_of = {
            length: written(_energy(length, magnitude, denominator))
            for length in {head_length, tail_length, *(lengths or (prices.length,))}
        }
    finally:
        setcontext(outer)
    energies: Iterator[Written] = (
        repeat(energy_of[prices.length]) if lengths is None else map(energy_of.__getitem__, lengths)
    )
    return [
        WireItem(first_text, ends[first], rates[first], energy_of[head_length], head_cost),
        *map(WireItem, starts[inner], ends[inner], rates[inner], energies, costs),
        WireItem(starts[last], end_text, rates[last], energy_of[tail_length], tail_cost),
    ]


def one_period_breakdown(
    period: Period, energy: Decimal, total_energy: Decimal, edges: Edges
) -> list[WireItem]:
    """A record within one period of rates, its (exact) energy known: one item per component,
    each cost the energy × its rate, exact, rounded once. Most stacked records are this one."""
    return _period_items(
        period, map(CONTEXT.multiply, repeat(energy), period.rates), total_energy, edges
    )


def _period_items(
    period: Period, costs: Iterable[Decimal], total_energy: Decimal, edges: Edges
) -> list[WireItem]:
    """A one-period record's items from each component's exact cost (rounded here), built by
    `map`: no Python frame per item."""
    _, start_time, end_time = edges
    return list(
        map(
            WireItem,
            repeat(start_time),
            repeat(end_time),
            period.rates,
            repeat(total_energy),
            map(round_money, costs),
            period.names,
        )
    )


def stacked_breakdown(
    periods: list[Period],
    start: int,
    magnitude: Decimal,
    denominator: Decimal,
    energies: tuple[Decimal, Decimal, Decimal],
    edges: Edges,
) -> list[WireItem]:
    """Per period, one item per component (`"energy"` first), each cost rounded once from its
    exact value (`quotient_times`). `energies` are the record's: its energy × `denominator`
    (exact), the quotient (50 digits) and its rounded total."""
    energy_scaled, exact_energy, total_energy = energies
    if len(periods) == 1:  # a short record whose energy is a quotient: no cut
        costs = quotient_times(exact_energy, energy_scaled, denominator, periods[0].rates)
        return _period_items(periods[0], costs, total_energy, edges)
    multiply, divide = CONTEXT.multiply, CONTEXT.divide
    texts = _texts([period.end for period in periods[:-1]], start, edges)
    values: list[WireItem] = []
    for period, start_time, end_time in zip(periods, texts[:-1], texts[1:], strict=True):
        period_scaled = multiply(magnitude, Decimal(period.end - period.start))  # exact
        kwh = divide(period_scaled, denominator)
        energy = round_money(kwh)
        costs = quotient_times(kwh, period_scaled, denominator, period.rates)
        for name, rate, cost in zip(period.names, period.rates, costs, strict=True):
            values.append(WireItem(start_time, end_time, rate, energy, round_money(cost), name))
    return values
