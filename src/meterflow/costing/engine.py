"""Design §3 and §11: the monetary value of one meter record under a location profile.

Energy is spread evenly over `[start_time, end_time)`. The interval is cut where the rate in
force changes (`rates.rate_parts`; `periods.rate_periods` when the tariff has components), and
cost = Σ energy_part × rate_part, computed as `k × Σ(rate × duration)` (`rates.Weights`: one
exact multiplication per part, or for dynamic prices a difference of their running sums) and a
single division, in a 50-digit decimal context, then rounded
once, half-even, to 6 places. Tax (a profile's `tax_percentage`) is rounded once from its exact
value, net × rate, through `money.quotient_times` (never a product of a net rounded to 50
digits: docs/pricing.md, "Splitting and summing"), and the total is value + tax (design §11).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal
from functools import reduce
from typing import NamedTuple

from meterflow import ids
from meterflow.costing.breakdown import (
    Edges,
    breakdown_edges,
    one_period_breakdown,
    plain_breakdown,
    run_breakdown,
    stacked_breakdown,
)
from meterflow.costing.money import (
    CONTEXT,
    LENGTHS,
    is_exact_quotient,
    quotient_times,
    round_money,
)
from meterflow.costing.periods import Period, rate_periods
from meterflow.costing.rates import compiled, rate_parts, weights_of
from meterflow.costing.timeline import (
    SUPPORTED_YEARS,
    US_PER_HOUR,
    to_us,
    within_supported_years,
)
from meterflow.models import (
    MAX_EXPONENT,
    MAX_INPUT_VALUE,
    EnergyFlowDirection,
    EnergyUnit,
    ErrorCode,
    LocationProfile,
    MarketPrices,
    MeterRecord,
    PricedCost,
    PricingError,
    RequestEcho,
    TariffDirection,
    WireCost,
    exponent_in_range,
    iso,
    wire_energy_cost,
)

MAX_ENERGY_KWH = Decimal("1e9")
"""Above this magnitude (1 TWh in one record) a record is absurd: `invalid_record`."""
MAX_INPUT_DIGITS = CONTEXT.prec
"""A record's `energy`/`value` has at most this many significant digits: the engine's context
holds the value itself, never rounds it (`invalid_record` beyond; when its products are exact
too: docs/pricing.md, "Splitting and summing")."""
_ABSURD_ADJUSTED = MAX_INPUT_VALUE.adjusted()
"""A value whose leading digit lies above `MAX_INPUT_VALUE`'s is absurd before any arithmetic
(which would overflow the context for 1e1000000)."""
_PLACES_UNSURE = -MAX_EXPONENT + MAX_INPUT_DIGITS - 1
"""Below this `adjusted()`, a value of at most `MAX_INPUT_DIGITS` digits may be written with an
exponent below -`MAX_EXPONENT`; above it none is, so the exact check (1 µs) runs only there."""

_CONTEXT = CONTEXT
_THOUSAND = Decimal(1000)
_ZERO = Decimal(0)


_KWH, _WH, _KW = EnergyUnit.KWH, EnergyUnit.WH, EnergyUnit.KW
_INBOUND, _OUTBOUND = EnergyFlowDirection.INBOUND, EnergyFlowDirection.OUTBOUND
_FLOWS = {
    False: (_INBOUND, TariffDirection.IMPORT),
    True: (_OUTBOUND, TariffDirection.EXPORT),
}
"""(flow, default tariff direction) of a record, by whether it is exported. Enum members are
read once here: `EnergyUnit.KWH` costs 0.16 µs a look-up, a module name 0.01."""
_US_PER_HOUR = Decimal(US_PER_HOUR)


def _energy(record: MeterRecord, duration: Decimal) -> tuple[Decimal, Decimal, Decimal, Decimal]:
    """The record's energy over `duration` µs: (magnitude, denominator, magnitude × duration,
    energy in kWh), once every energy rule holds (else PricingError(invalid_record): a value
    that is absurd, that the engine would round, or that the database could not store).

    The energy per µs is magnitude ÷ denominator, kept as a fraction so that power units (W,
    KW: constant power over the period) and energy units price without an intermediate
    rounding.
    """
    fields = record.__dict__  # read as `models.Document` says
    value: Decimal | None = fields["energy"]
    unit: EnergyUnit | None = _KWH
    if value is None:
        value, unit = fields["value"], fields["units"]
        assert value is not None
        assert unit is not None
    adjusted = value.adjusted()  # the leading digit's exponent (a zero's: its exponent)
    if (adjusted < _PLACES_UNSURE or not value) and not exponent_in_range(value):
        raise PricingError(
            ErrorCode.INVALID_RECORD,
            f"the energy value is written with an exponent beyond ±{MAX_EXPONENT}",
        )
    if value and adjusted > _ABSURD_ADJUSTED:  # before any arithmetic
        raise PricingError(ErrorCode.INVALID_RECORD, f"energy value {value} is absurd")
    magnitude = _CONTEXT.abs(value)  # rounded to the context's digits if it has more
    if magnitude > MAX_INPUT_VALUE:
        raise PricingError(ErrorCode.INVALID_RECORD, f"energy value {value} is absurd")
    if not magnitude.same_quantum(value):  # rounded
        raise PricingError(
            ErrorCode.INVALID_RECORD,
            f"the energy value has more than {MAX_INPUT_DIGITS} significant digits",
        )
    if unit is _KWH:
        denominator = duration
    elif unit is _WH:
        denominator = duration * _THOUSAND
    elif unit is _KW:
        denominator = _US_PER_HOUR
    else:
        denominator = _US_PER_HOUR * _THOUSAND
    energy_scaled = _CONTEXT.multiply(magnitude, duration)  # the energy × denominator, exact
    exact_energy = _CONTEXT.divide(energy_scaled, denominator)
    if exact_energy > MAX_ENERGY_KWH:
        raise PricingError(
            ErrorCode.INVALID_RECORD, f"energy {exact_energy} kWh is absurd (limit 1e9 kWh)"
        )
    return magnitude, denominator, energy_scaled, exact_energy


def check_energy(record: MeterRecord, duration: int) -> None:
    """The engine's energy rules for a record lasting `duration` µs (PricingError with its
    code), for an adapter that checks a record before it is priced (a batch)."""
    _energy(record, LENGTHS[duration])
    tariff_direction_of(record)


def tariff_direction_of(record: MeterRecord) -> tuple[EnergyFlowDirection, TariffDirection]:
    """Design §3.1: (effective flow direction, tariff direction) of a record."""
    fields = record.__dict__  # read as `models.Document` says
    value = fields["energy"]
    if value is None:
        value = fields["value"]
    negative = value is not None and value < _ZERO
    outbound = fields["energy_flow_direction"] is _OUTBOUND
    if negative and outbound:
        raise PricingError(
            ErrorCode.DIRECTION_CONFLICT,
            "energy_flow_direction is OUTBOUND and the energy is negative: give one or the other",
        )
    flow, default = _FLOWS[negative or outbound]
    return flow, fields["tariff_direction"] or default


def check_time_range(start: int, end: int, max_record_hours: int) -> None:
    """A record's instants (µs) are a priceable range; else PricingError(invalid_time_range)."""
    if end <= start:
        raise PricingError(ErrorCode.INVALID_TIME_RANGE, "end_time must be after start_time")
    if end - start > max_record_hours * US_PER_HOUR:
        raise PricingError(
            ErrorCode.INVALID_TIME_RANGE,
            f"the record spans more than {max_record_hours} hours (MF_MAX_RECORD_HOURS)",
        )
    if not within_supported_years(start, end):
        raise PricingError(ErrorCode.INVALID_TIME_RANGE, f"a record must lie {SUPPORTED_YEARS}")


class Interval(NamedTuple):
    """A record's instants as the engine reads them, worked out once per pair of instant
    objects (`interval_of`)."""

    start_time: datetime
    end_time: datetime
    start: int  # µs (`to_us`)
    end: int
    length: Decimal  # `LENGTHS[end - start]`
    start_text: str  # `iso`
    end_text: str
    edges: Edges  # the breakdown's


_INTERVALS: dict[tuple[int, int], Interval] = {}
_INTERVALS_LIMIT = 8192


def interval_of(start_time: datetime, end_time: datetime, max_record_hours: int) -> Interval:
    """A record's `Interval`, once its instants are a priceable range (`check_time_range`).

    Remembered per pair of objects (the entry holds both, which keeps their ids unique): the
    instants of the common shape are shared objects (`models._base._instant`), and a stream
    repeats the same half-hours for every meter. One look-up (0.24 µs) replaced the µs and
    text of each bound, the range's checks, its length and the breakdown's edges (0.44 µs).
    Only a range that passed is remembered, and only its length can fail another record's
    `max_record_hours`."""
    known = _INTERVALS.get((id(start_time), id(end_time)))
    if known is not None and known.start_time is start_time and known.end_time is end_time:
        if known.end - known.start > max_record_hours * US_PER_HOUR:
            check_time_range(known.start, known.end, max_record_hours)  # raises
        return known
    start, end = to_us(start_time), to_us(end_time)
    check_time_range(start, end, max_record_hours)
    start_text, end_text = start_time.isoformat(), end_time.isoformat()
    interval = Interval(
        start_time,
        end_time,
        start,
        end,
        LENGTHS[end - start],
        start_text,
        end_text,
        breakdown_edges(start_time, end_time, start_text, end_text),
    )
    if len(_INTERVALS) >= _INTERVALS_LIMIT:
        _INTERVALS.clear()
    _INTERVALS[id(start_time), id(end_time)] = interval
    return interval


def cost_record(
    record: MeterRecord,
    profile: LocationProfile,
    *,
    meter_record_id: str,
    request: RequestEcho,
    market_prices: Callable[[str, date], MarketPrices | None],
    now: datetime,
    max_record_hours: int = 744,
) -> PricedCost:
    """Price one record (all of design §3); raise PricingError with the contract's code.

    The result is built in its written form (`PricedCost`): building pydantic objects for it,
    one per breakdown item, cost more than the pricing."""
    fields = record.__dict__  # read as `models.Document` says
    _, _, start, end, length, start_text, end_text, edges = interval_of(
        fields["start_time"], fields["end_time"], max_record_hours
    )
    magnitude, denominator, energy_scaled, exact_energy = _energy(record, length)
    flow, direction = tariff_direction_of(record)
    ctx = _CONTEXT

    timeline = compiled(profile)
    periods: list[Period] | None = None
    if direction in timeline.stacked:
        periods = rate_periods(timeline, direction, start, end, market_prices)
        for period in periods:
            if len(period.names) > 1:
                break
        else:  # no component in this record: the first release's breakdown
            periods = None
    total_energy = round_money(exact_energy)
    net_scaled: Decimal | None = None  # the net × denominator, when the net is a quotient
    if periods is None:
        parts, run = rate_parts(timeline, direction, start, end, market_prices)
        if run is not None:  # a stretch of dynamic prices: their weights were summed ahead
            weighted = run.total
        elif len(parts) == 1:  # the common case: the whole record at one rate, no sum
            weighted = ctx.multiply(parts[0][2], length)
            weights = [weighted]
        else:
            weights, weighted = weights_of(parts)
        net_scaled = ctx.multiply(magnitude, weighted)  # exact
        net = ctx.divide(net_scaled, denominator)
        total_cost = round_money(net)
        if run is not None:
            breakdown = run_breakdown(parts, run, start, magnitude, denominator, edges)
        else:
            breakdown = plain_breakdown(
                parts, weights, start, magnitude, denominator, total_energy, total_cost, edges
            )
    elif len(periods) == 1 and is_exact_quotient(exact_energy, energy_scaled, denominator):
        # the common stacked case (a short record, its energy exact): every amount is one
        # exact product of the energy (design §3.4), no quotient to check again
        net = ctx.multiply(exact_energy, periods[0].rate)
        total_cost = round_money(net)
        breakdown = one_period_breakdown(periods[0], exact_energy, total_energy, edges)
    else:
        multiply = ctx.multiply
        weights = [multiply(p.rate, LENGTHS[p.end - p.start]) for p in periods]
        # in the 50-digit context: exact
        weighted = weights[0] if len(weights) == 1 else reduce(ctx.add, weights, _ZERO)
        net_scaled = ctx.multiply(magnitude, weighted)
        net = ctx.divide(net_scaled, denominator)
        total_cost = round_money(net)
        energies = (energy_scaled, exact_energy, total_energy)
        breakdown = stacked_breakdown(periods, start, magnitude, denominator, energies, edges)
    tax_rate = timeline.tax_rate
    if tax_rate is None:
        cost = WireCost(total_cost, fields["confidence"])
    else:  # the tax rounded once from its exact value, the total = value + tax (design §11)
        if net_scaled is None:  # the net is exact
            tax = round_money(ctx.multiply(net, tax_rate))
        else:
            (tax,) = quotient_times(net, net_scaled, denominator, (tax_rate,))
            tax = round_money(tax)
        cost = WireCost(total_cost, fields["confidence"], tax, ctx.add(total_cost, tax))
    return PricedCost(
        wire_energy_cost(
            record,
            profile,
            ids.energy_cost_id(meter_record_id),
            meter_record_id,
            flow,
            direction,
            request,
            start_text,
            end_text,
            total_energy,
            cost,
            breakdown,
            iso(now),
        )
    )
