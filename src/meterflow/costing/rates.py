"""Where the rate in force changes: a record's interval cut into parts of constant rate.

A profile is compiled once (cached by object identity) into versions sorted by start, each with
what it needs to answer "which rate, and until when": a FIXED rate, a TIME_OF_USE table walked
in local wall time, or sorted dynamic prices, with the version's surcharges already applied,
plus its components (a FIXED rate or a TIME_OF_USE table each). Walking costs one step per rate
change, DST change or local midnight inside the record, never one step per minute.

`rate_parts` gives the energy rate alone (the fast path of profiles without components);
`periods.rate_periods` stacks the components on it.
"""

from __future__ import annotations

import itertools
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import ROUND_HALF_EVEN, Context, Decimal, Inexact, InvalidOperation, Overflow
from functools import reduce
from typing import TYPE_CHECKING, NamedTuple

from meterflow.costing.layers import Layer, StackedTable
from meterflow.costing.money import CONTEXT, LENGTHS
from meterflow.costing.timeline import (
    US_PER_DAY,
    US_PER_MINUTE,
    ZoneOffsets,
    day_info,
    from_us,
    to_us,
    utc_date,
    utc_day_number,
    zone_offsets,
)
from meterflow.models import (
    ENERGY_COMPONENT,
    Component,
    DynamicTariff,
    ErrorCode,
    FixedComponent,
    FixedTariff,
    LocationProfile,
    MarketPrices,
    PricingError,
    TariffDirection,
    TimeOfUseRule,
    TimeOfUseTariff,
    Written,
    by_identity,
    written,
)
from meterflow.tariffs import ProfileError, TimeOfUseTable, describe_component, describe_version

if TYPE_CHECKING:
    from meterflow.costing.periods import Period

MarketPricesLookup = Callable[[str, date], MarketPrices | None]
Part = tuple[int, int, Decimal]
"""`[start_us, end_us)` priced at one rate (per kWh)."""

_OPEN_END = 1 << 62
_ZERO = Decimal(0)
_GAP = " (gap between dynamic prices)"


Weights = tuple[list[Decimal], Decimal]
"""Each part's rate × length in µs, and their sum, in the 50-digit context (exact for any sane
input): the cost is the record's energy per µs times the sum (design §3.2), an item's cost
its energy per µs times its weight."""


def weights_of(parts: list[Part]) -> Weights:
    """The `Weights` of any parts, one product each."""
    multiply = CONTEXT.multiply
    each = [multiply(rate, LENGTHS[stop - begin]) for begin, stop, rate in parts]
    return each, each[0] if len(each) == 1 else reduce(CONTEXT.add, each, _ZERO)


@dataclass(slots=True)
class Prices:
    """Non-overlapping prices sorted by start, surcharge already added, adjacent equal rates
    merged (as `_add` would merge them), so that a record's parts are a slice (`_walk_prices`).

    `gaps[i]` counts the holes before price `i` (an end that is not the next start): a stretch
    of prices is gapless when its first and last price count the same. `parts[i]` is price i
    as a `Part`, `weights[i]` its weight and `sums[i]` the sum of the weights before it, so
    that a record's weights are a slice and their sum two look-ups (`_walk_weighed`); both
    None when a sum is not exact in 50 digits (the record's own sum is computed then)."""

    starts: list[int]
    ends: list[int]
    rates: list[Decimal]
    gaps: list[int]
    parts: list[Part]
    weights: list[Decimal] | None
    sums: list[Decimal] | None
    written_rates: list[Written]
    """Each rate as a result writes it: a day's prices serve every meter's records."""
    length: int
    """The length (µs) every price has (half-hours, nearly always), else 0."""
    texts: dict[timedelta | None, tuple[list[Written], list[Written]]] = field(default_factory=dict)
    """Per UTC offset, each price's start and end as a breakdown writes them
    (`breakdown.run_breakdown` keeps them here: they live as long as the prices)."""


_EXACT = Context(prec=50, rounding=ROUND_HALF_EVEN, traps=[Inexact, InvalidOperation, Overflow])
"""The engine's context, but a rounding raises: a difference of sums stands for the sum of the
weights between them only when every figure is exact."""


_WRITTEN_RATES: dict[str, Written] = {}
_WRITTEN_RATES_LIMIT = 65536


def _written_rate(rate: Decimal) -> Written:
    """`written(rate)`, shared by text: every location on a series compiles its own prices."""
    text = str(rate)  # the key: 0.1 and 0.10 are equal Decimals, written differently
    shared = _WRITTEN_RATES.get(text)
    if shared is None:
        if len(_WRITTEN_RATES) >= _WRITTEN_RATES_LIMIT:
            _WRITTEN_RATES.clear()
        shared = _WRITTEN_RATES[text] = written(rate)
    return shared


def _merged(points: list[tuple[int, int, Decimal]]) -> Prices:
    """Sorted, non-overlapping points as `Prices`."""
    starts: list[int] = []
    ends: list[int] = []
    rates: list[Decimal] = []
    gaps: list[int] = []
    holes = 0
    for start, end, rate in points:
        if ends and ends[-1] == start and rates[-1] == rate:
            ends[-1] = end
            continue
        if ends and ends[-1] != start:
            holes += 1
        starts.append(start)
        ends.append(end)
        rates.append(rate)
        gaps.append(holes)
    parts = list(zip(starts, ends, rates, strict=True))
    weights: list[Decimal] | None = None
    sums: list[Decimal] | None = None
    try:
        weights = [_EXACT.multiply(rate, Decimal(end - start)) for start, end, rate in parts]
        sums = [_ZERO, *itertools.accumulate(weights, _EXACT.add)]
    except Inexact:
        weights = sums = None
    lengths = {end - start for start, end in zip(starts, ends, strict=True)}
    return Prices(
        starts,
        ends,
        rates,
        gaps,
        parts,
        weights,
        sums,
        list(map(_written_rate, rates)),
        lengths.pop() if len(lengths) == 1 else 0,
    )


_CONTEXT = Context(prec=50, rounding=ROUND_HALF_EVEN, traps=[InvalidOperation, Overflow])
_HUNDRED = Decimal(100)


@dataclass(frozen=True, slots=True)
class Surcharges:
    """`(rate + fixed) × multiplier` (design §11): the fixed surcharge first, then the percentage.

    `multiplier` is None without a `surcharge_percentage`, so an old profile's rates go through
    exactly the arithmetic they always did (`rate + fixed`).
    """

    fixed: Decimal = Decimal(0)
    multiplier: Decimal | None = None

    def apply(self, rate: Decimal) -> Decimal:
        if self.fixed:
            rate = _CONTEXT.add(rate, self.fixed)
        if self.multiplier is not None:
            rate = _CONTEXT.multiply(rate, self.multiplier)
        # −0.05 × 0 (a −100 % surcharge) is −0.0000, which would be written so: a zero is 0
        return rate if rate else rate.copy_abs()

    def __bool__(self) -> bool:
        return bool(self.fixed) or self.multiplier is not None


NO_SURCHARGES = Surcharges()


@dataclass(frozen=True, slots=True)
class CompiledComponent:
    """One component of a version: a FIXED rate or a TIME_OF_USE table (local wall time)."""

    name: str
    fixed: Decimal | None = None
    table: TimeOfUseTable | None = None


@dataclass(slots=True)
class CompiledVersion:
    start: int
    end: int
    label: str
    fixed: Decimal | None = None
    table: TimeOfUseTable | None = None
    prices: Prices | None = None
    series_id: str | None = None
    surcharges: Surcharges = NO_SURCHARGES
    """Already applied to `fixed`, `table` and `prices`; applied to series prices on use."""
    components: tuple[CompiledComponent, ...] = ()
    names: tuple[str, ...] = (ENERGY_COMPONENT,)
    """`"energy"`, then the components' names in the profile's order (one shared tuple)."""
    standing_charge: Decimal | None = None
    stacked: StackedTable | None = None
    """Energy and components merged per local day: set when the version has components and
    its energy rate is FIXED or TIME_OF_USE (a DYNAMIC one is merged per record instead)."""


@dataclass(slots=True)
class CompiledProfile:
    zone: ZoneOffsets
    currency_code: str
    directions: dict[TariffDirection, tuple[list[int], list[CompiledVersion]]]
    stacked: frozenset[TariffDirection] = frozenset()
    """Directions with at least one version that has components."""
    tax_rate: Decimal | None = None
    """The profile's `tax_percentage` / 100, exact: the net's factor for `tax`; None when the
    profile has no tax."""
    spans: dict[TariffDirection, Part] = field(default_factory=dict)
    """Per direction, the last stretch `rate_parts` found at one rate (energy alone)."""
    periods: dict[TariffDirection, Period] = field(default_factory=dict)
    """Per direction, the last stretch `periods.rate_periods` found at one set of rates."""


def _compile_prices(
    points: list[tuple[int, int, Decimal]], surcharges: Surcharges, what: str
) -> Prices:
    points = sorted(set(points))
    for (_, end, _), (start, _, _) in itertools.pairwise(points):
        if start < end:
            raise PricingError(
                ErrorCode.TARIFF_NOT_AVAILABLE, f"{what}: overlapping prices at {from_us(start)}"
            )
    if surcharges:
        apply = surcharges.apply
        points = [(start, end, apply(rate)) for start, end, rate in points]
    return _merged(points)


def _surcharged_rules(
    rules: Sequence[TimeOfUseRule], surcharges: Surcharges
) -> list[TimeOfUseRule]:
    if not surcharges:
        return list(rules)
    return [r.model_copy(update={"rate": surcharges.apply(r.rate)}) for r in rules]


def _compile_component(label: str, component: Component) -> CompiledComponent:
    if isinstance(component, FixedComponent):
        return CompiledComponent(component.name, fixed=component.rate)
    where = describe_component(label, component.name)
    return CompiledComponent(component.name, table=TimeOfUseTable(component.rules, where))


def _compile_version(
    direction: str, version: FixedTariff | TimeOfUseTariff | DynamicTariff
) -> CompiledVersion:
    label = describe_version(direction, version)
    percentage = version.surcharge_percentage
    surcharges = Surcharges(
        version.surcharge_fixed or Decimal(0),
        None if percentage is None else _CONTEXT.add(1, percentage.scaleb(-2, _CONTEXT)),
    )
    components = tuple(_compile_component(label, c) for c in version.components or ())
    compiled = CompiledVersion(
        start=to_us(version.effective_from),
        end=_OPEN_END if version.effective_to is None else to_us(version.effective_to),
        label=label,
        surcharges=surcharges,
        components=components,
        names=(ENERGY_COMPONENT, *(c.name for c in components)),
        standing_charge=version.standing_charge,
    )
    if isinstance(version, FixedTariff):
        compiled.fixed = surcharges.apply(version.rate)
    elif isinstance(version, TimeOfUseTariff):
        compiled.table = TimeOfUseTable(_surcharged_rules(version.rules, surcharges), label)
    elif version.prices is not None:
        points = [(to_us(p.valid_from), to_us(p.valid_to), p.rate) for p in version.prices]
        compiled.prices = _compile_prices(points, surcharges, label)
    else:
        compiled.series_id = version.series_id
    energy = compiled.fixed if compiled.fixed is not None else compiled.table
    if components and energy is not None:
        compiled.stacked = StackedTable((energy, *map(_layer, components)))
    return compiled


def _layer(component: CompiledComponent) -> Layer:
    if component.fixed is not None:
        return component.fixed
    assert component.table is not None
    return component.table


def compile_profile(profile: LocationProfile) -> CompiledProfile:
    directions: dict[TariffDirection, tuple[list[int], list[CompiledVersion]]] = {}
    for direction, versions in profile.tariffs.items():
        compiled = sorted(
            (_compile_version(direction.value, v) for v in versions), key=lambda c: c.start
        )
        directions[direction] = ([c.start for c in compiled], compiled)
    stacked = frozenset(
        d for d, (_, versions) in directions.items() if any(v.components for v in versions)
    )
    tax = profile.tax_percentage
    return CompiledProfile(
        zone_offsets(profile.timezone),
        profile.currency_code,
        directions,
        stacked,
        None if tax is None else tax.scaleb(-2, _CONTEXT),
    )


_CACHE_LIMIT = 4096

compiled: Callable[[LocationProfile], CompiledProfile] = by_identity(compile_profile, _CACHE_LIMIT)
"""The compiled form of a profile, cached while the same (frozen) object is in use."""


def _points_of(doc: MarketPrices) -> list[tuple[int, int, Decimal]]:
    """A day's prices, clipped to its UTC day: a day's document prices that day's instants and
    no other, so an instant's rate never depends on which days a record (or a rates window)
    touches. A price running past midnight counts up to it; the next day's document
    prices the rest (a 23:30-00:30 slot is published in both)."""
    begin = utc_day_number(doc.day) * US_PER_DAY
    end = begin + US_PER_DAY
    points: list[tuple[int, int, Decimal]] = []
    for price in doc.prices:
        low, high = max(to_us(price.valid_from), begin), min(to_us(price.valid_to), end)
        if low < high:
            points.append((low, high, price.rate))
    return points


_market_points = by_identity(_points_of, _CACHE_LIMIT)


_series_cache: dict[tuple[int, ...], tuple[CompiledVersion, tuple[MarketPrices, ...], Prices]] = {}


def _no_rate(direction: TariffDirection, at_us: int, why: str = "") -> PricingError:
    return PricingError(
        ErrorCode.TARIFF_NOT_AVAILABLE,
        f"no {direction.value} rate in force at {from_us(at_us).isoformat()}{why}",
    )


def _add(parts: list[Part], start: int, end: int, rate: Decimal) -> None:
    """Append a part, extending the last one when it continues at the same rate."""
    if parts:
        last = parts[-1]
        if last[2] == rate and last[1] == start:
            parts[-1] = (last[0], end, last[2])
            return
    parts.append((start, end, rate))


def _walk_time_of_use(
    parts: list[Part], table: TimeOfUseTable, zone: ZoneOffsets, start: int, end: int
) -> int:
    """Rate by local wall time: within one UTC offset, wall time is the instant plus the offset.

    At a DST change the walk restarts with the new offset, so at fall-back the repeated local
    hour is priced (twice) by its rule and at spring-forward the skipped hour never occurs.
    Returns how far the last part's rate holds at least (its rule's end, or the offset's).
    """
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
        _add(parts, t, stop, schedule.rates[index])
        t = stop
    return reach


def _price_span(
    prices: Prices, direction: TariffDirection, start: int, end: int
) -> tuple[int, int]:
    """The first and last of `prices` over `[start, end)`, found by bisection; PricingError at
    the first instant no price covers."""
    starts, ends = prices.starts, prices.ends
    first = max(bisect_right(starts, start) - 1, 0)
    last = bisect_left(ends, end, first)  # the first price that reaches `end`
    count = len(starts)
    if first >= count or starts[first] > start or ends[first] <= start:
        raise _no_rate(direction, start, _GAP)
    if last >= count or prices.gaps[last] != prices.gaps[first]:
        gaps = prices.gaps
        hole = next(  # the first price followed by a hole, or the last price there is
            (i for i in range(first, count - 1) if gaps[i + 1] != gaps[first]), count - 1
        )
        raise _no_rate(direction, ends[hole], _GAP)
    return first, last


def _walk_prices(
    parts: list[Part], prices: Prices, direction: TariffDirection, start: int, end: int
) -> int:
    """The prices over `[start, end)` as parts: a slice of them, the first and last clipped.
    Returns how far the last part's price holds (its end)."""
    first, last = _price_span(prices, direction, start, end)
    head, *rest = _span_parts(prices, first, last, start, end)
    _add(parts, *head)  # may continue the previous version's last part
    parts.extend(rest)
    return prices.ends[last]


def _span_parts(prices: Prices, first: int, last: int, start: int, end: int) -> list[Part]:
    """Prices `first` to `last` over `[start, end)` as parts: the inner ones as they are (a
    slice), the first and last clipped."""
    rates = prices.rates
    if first == last:
        return [(start, end, rates[first])]
    parts = [(start, prices.ends[first], rates[first]), *prices.parts[first + 1 : last]]
    parts.append((prices.starts[last], end, rates[last]))
    return parts


class Run(NamedTuple):
    """A record's parts taken from its prices: the first clipped from price `first`, the inner
    ones prices `first + 1` to `last - 1` as they are, the last clipped from price `last`;
    `head` and `tail` are the clipped parts' weights, `total` the sum of every part's. A
    breakdown writes the inner items from what the prices hold (`breakdown.run_breakdown`)."""

    prices: Prices
    first: int
    last: int
    head: Decimal
    tail: Decimal
    total: Decimal

    def weights(self) -> Weights:
        weights = self.prices.weights
        assert weights is not None
        return [self.head, *weights[self.first + 1 : self.last], self.tail], self.total


def _walk_weighed(
    prices: Prices, direction: TariffDirection, start: int, end: int
) -> tuple[list[Part], Run | None, int]:
    """`_walk_prices` for a record inside one version, with its `Run` where it has inner
    parts: their weights are the prices' (a slice, and their sum a difference of two sums), so
    a day of half-hour prices costs two products and three additions instead of 48 products
    and 47 additions."""
    first, last = _price_span(prices, direction, start, end)
    parts = _span_parts(prices, first, last, start, end)
    ends, sums = prices.ends, prices.sums
    if last - first < 2 or sums is None:
        return parts, None, ends[last]
    rates = prices.rates
    multiply = CONTEXT.multiply
    head = multiply(rates[first], LENGTHS[ends[first] - start])
    tail = multiply(rates[last], LENGTHS[end - prices.starts[last]])
    try:
        inner = _EXACT.subtract(sums[last], sums[first + 1])
        total = _EXACT.add(_EXACT.add(head, inner), tail)
    except Inexact:
        return parts, None, ends[last]
    # built as the tuple it is: a NamedTuple's `__new__` is a Python frame
    return parts, tuple.__new__(Run, (prices, first, last, head, tail, total)), ends[last]


def _series_prices(
    version: CompiledVersion,
    currency_code: str,
    lookup: MarketPricesLookup,
    start: int,
    end: int,
) -> Prices:
    series_id = version.series_id
    assert series_id is not None
    docs: list[MarketPrices] = []
    for day_number in range(start // US_PER_DAY, (end - 1) // US_PER_DAY + 1):  # UTC days
        day = utc_date(day_number)
        doc = lookup(series_id, day)
        if doc is None:
            raise PricingError(
                ErrorCode.TARIFF_NOT_AVAILABLE,
                f"{version.label}: no market prices for series {series_id!r} on {day.isoformat()}",
            )
        if doc.currency_code is not None and doc.currency_code != currency_code:
            raise PricingError(
                ErrorCode.TARIFF_NOT_AVAILABLE,
                f"{version.label}: series {series_id!r} is in {doc.currency_code}, "
                f"the location in {currency_code}",
            )
        docs.append(doc)
    used = tuple(docs)
    key = (id(version), *map(id, used))
    hit = _series_cache.get(key)
    # the entry holds its objects, so their ids are theirs; a tuple compares items by identity first
    if hit is not None and hit[0] is version and hit[1] == used:
        return hit[2]
    points = [point for doc in used for point in _market_points(doc)]
    what = f"{version.label}: series {series_id!r}"
    prices = _compile_prices(points, version.surcharges, what)
    if len(_series_cache) >= _CACHE_LIMIT:
        _series_cache.clear()
    _series_cache[key] = (version, used, prices)
    return prices


def _whole_version(
    profile: CompiledProfile, direction: TariffDirection, start: int, end: int
) -> CompiledVersion | None:
    """The one version in force over all of `[start, end)`, or None (several, or a stretch
    without one: `versions_over` walks them and names the gap). Most records lie in one, and
    a bisection is cheaper than the walk's generator."""
    found = profile.directions.get(direction)
    if found is None:
        return None
    starts, versions = found
    index = bisect_right(starts, start) - 1
    if index < 0:
        return None
    version = versions[index]
    return version if version.start <= start and end <= version.end else None


def versions_over(
    profile: CompiledProfile, direction: TariffDirection, start: int, end: int
) -> Iterator[tuple[CompiledVersion, int, int]]:
    """The versions in force over `[start, end)`, in order, each with the stretch it prices.

    PricingError(tariff_not_available) at the first instant no version covers.
    """
    found = profile.directions.get(direction)
    if found is None:
        raise PricingError(
            ErrorCode.TARIFF_NOT_AVAILABLE, f"the location has no {direction.value} tariff"
        )
    starts, versions = found
    t = start
    index = max(bisect_right(starts, t) - 1, 0)
    while t < end:
        if index >= len(versions) or versions[index].start > t:
            raise _no_rate(direction, t, " (no tariff version)")
        version = versions[index]
        index += 1
        if version.end <= t:
            continue
        stop = min(version.end, end)
        yield version, t, stop
        t = stop


def energy_parts(
    parts: list[Part],
    profile: CompiledProfile,
    version: CompiledVersion,
    direction: TariffDirection,
    start: int,
    stop: int,
    market_prices: MarketPricesLookup,
) -> int | None:
    """Append the energy rate's parts of one version over `[start, stop)`, surcharges applied.

    Returns how far the last part's rate holds at least (within the version), or None where
    that may change without the profile changing (market prices of a series).
    May raise ProfileError (a TIME_OF_USE table that skipped validation).
    """
    if version.fixed is not None:
        _add(parts, start, stop, version.fixed)
        return version.end
    if version.table is not None:
        return min(_walk_time_of_use(parts, version.table, profile.zone, start, stop), version.end)
    if version.prices is not None:
        return min(_walk_prices(parts, version.prices, direction, start, stop), version.end)
    series = _series_prices(version, profile.currency_code, market_prices, start, stop)
    _walk_prices(parts, series, direction, start, stop)
    return None


def component_parts(
    parts: list[Part], zone: ZoneOffsets, component: CompiledComponent, start: int, stop: int
) -> None:
    """Append one component's parts over `[start, stop)` (its rules in local wall time)."""
    if component.fixed is not None:
        _add(parts, start, stop, component.fixed)
    else:
        assert component.table is not None
        _walk_time_of_use(parts, component.table, zone, start, stop)


def rate_parts(
    profile: CompiledProfile,
    direction: TariffDirection,
    start: int,
    end: int,
    market_prices: MarketPricesLookup,
) -> tuple[list[Part], Run | None]:
    """Cut `[start, end)` into maximal parts of constant energy rate (surcharges applied),
    with their `Run` where dynamic prices give their weights ready (else None: `weights_of`);
    PricingError if any instant has none. Components are not included:
    `periods.rate_periods` stacks them.

    The last part's stretch of constant rate is remembered per direction (`CompiledProfile.
    spans`): a meter's next record nearly always lies in it (a TIME_OF_USE period lasts hours,
    a record half an hour), and is then one part without a walk. A record inside one version
    of dynamic prices takes its weights from the prices' sums (`_walk_weighed`)."""
    span = profile.spans.get(direction)
    if span is not None and span[0] <= start and end <= span[1]:
        return [(start, end, span[2])], None
    parts: list[Part] = []
    run: Run | None = None
    reach: int | None = None
    since = start
    try:
        whole = _whole_version(profile, direction, start, end)
        if whole is not None and whole.fixed is None and whole.table is None:
            # the whole record in one version of dynamic prices
            inline = whole.prices
            prices = inline or _series_prices(
                whole, profile.currency_code, market_prices, start, end
            )
            parts, run, last_end = _walk_weighed(prices, direction, start, end)
            # a series' prices may change without the profile changing: never remembered
            reach = None if inline is None else min(last_end, whole.end)
        elif whole is not None:
            reach = energy_parts(parts, profile, whole, direction, start, end, market_prices)
        else:
            for version, since, stop in versions_over(profile, direction, start, end):
                reach = energy_parts(parts, profile, version, direction, since, stop, market_prices)
    except ProfileError as error:
        raise PricingError(ErrorCode.TARIFF_NOT_AVAILABLE, str(error)) from None
    if reach is not None:
        # within the last version only: a part merged across versions may begin in one whose
        # rate comes from market prices, which may change
        last_start, _, rate = parts[-1]
        profile.spans[direction] = (max(last_start, since), reach, rate)
    return parts, run
