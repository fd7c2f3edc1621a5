"""Design §3: the monetary value of one meter record under a location profile.

Energy is spread evenly over `[start_time, end_time)`. The interval is cut where the rate in
force changes (`rates.rate_parts`), and cost = Σ energy_part × rate_part, computed as
`k × Σ(rate × duration)` with one exact multiplication per part and a single division, in a
50-digit decimal context, then rounded once, half-even, to 6 places.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Context, Decimal, DivisionByZero, InvalidOperation, Overflow
from typing import Any

from meterflow import ids
from meterflow.costing._trusted import trusted
from meterflow.costing.rates import Part, compiled, rate_parts
from meterflow.costing.timeline import US_PER_HOUR, to_us
from meterflow.models import (
    BreakdownItem,
    CostData,
    CostValue,
    EnergyCost,
    EnergyFlowDirection,
    EnergyUnit,
    EnergyValue,
    ErrorCode,
    LocationProfile,
    MarketPrices,
    MeterRecord,
    PricingError,
    TariffDirection,
)

MAX_ENERGY_KWH = Decimal("1e9")
"""Above this magnitude (1 TWh in one record) a record is absurd: `invalid_record`."""
MAX_INPUT_VALUE = Decimal("1e15")
"""Any `energy`/`value` beyond this magnitude is rejected before arithmetic (also absurd)."""

_CONTEXT = Context(
    prec=50, rounding=ROUND_HALF_EVEN, traps=[InvalidOperation, DivisionByZero, Overflow]
)
_SIX_PLACES = Decimal("0.000001")
_ZERO = Decimal("0.000000")
_THOUSAND = Decimal(1000)


def round_money(value: Decimal) -> Decimal:
    """Half-even to 6 decimal places; never a negative zero."""
    rounded = value.quantize(_SIX_PLACES, rounding=ROUND_HALF_EVEN, context=_CONTEXT)
    return rounded if rounded else _ZERO


def _energy_per_us(record: MeterRecord, duration_us: int) -> tuple[Decimal, Decimal]:
    """(numerator, denominator) of the signed energy per microsecond, in kWh.

    Kept as a fraction so that power units (W, KW: constant power over the period) and energy
    units price without an intermediate rounding.
    """
    if record.energy is not None:
        value, unit = record.energy, EnergyUnit.KWH
    else:
        assert record.value is not None
        assert record.units is not None
        value, unit = record.value, record.units
    if abs(value) > MAX_INPUT_VALUE:
        raise PricingError(ErrorCode.INVALID_RECORD, f"energy value {value} is absurd")
    duration = Decimal(duration_us)
    if unit is EnergyUnit.KWH:
        return value, duration
    if unit is EnergyUnit.WH:
        return value, duration * _THOUSAND
    if unit is EnergyUnit.KW:
        return value, Decimal(US_PER_HOUR)
    return value, Decimal(US_PER_HOUR) * _THOUSAND


def tariff_direction_of(record: MeterRecord) -> tuple[EnergyFlowDirection, TariffDirection]:
    """Design §3.1: (effective flow direction, tariff direction) of a record."""
    value = record.energy if record.energy is not None else record.value
    negative = value is not None and value < 0
    outbound = record.energy_flow_direction is EnergyFlowDirection.OUTBOUND
    if negative and outbound:
        raise PricingError(
            ErrorCode.DIRECTION_CONFLICT,
            "energy_flow_direction is OUTBOUND and the energy is negative: give one or the other",
        )
    exported = negative or outbound
    flow = EnergyFlowDirection.OUTBOUND if exported else EnergyFlowDirection.INBOUND
    default = TariffDirection.EXPORT if exported else TariffDirection.IMPORT
    return flow, record.tariff_direction or default


def _breakdown(
    record: MeterRecord,
    parts: list[Part],
    start: int,
    magnitude: Decimal,
    denominator: Decimal,
    total_energy: Decimal,
    total_cost: Decimal,
) -> list[BreakdownItem]:
    """One item per part, times in the end_time's offset, energy and cost rounded per item."""
    end_time = record.end_time
    first_start = record.start_time
    if first_start.utcoffset() != end_time.utcoffset():
        first_start = first_start.astimezone(end_time.tzinfo)
    if len(parts) == 1:
        item = {
            "start_time": first_start,
            "end_time": end_time,
            "rate": parts[0][2],
            "energy": total_energy,
            "cost": total_cost,
        }
        return [trusted(BreakdownItem, item)]
    ctx = _CONTEXT
    multiply, divide = ctx.multiply, ctx.divide
    last = len(parts) - 1
    items: list[BreakdownItem] = []
    part_end_time = first_start  # each part starts where the previous one ended
    for index, (part_start, part_end, rate) in enumerate(parts):
        part_start_time = part_end_time
        # fixed-offset arithmetic: the start's offset is the end_time's, so no conversion
        part_end_time = (
            end_time if index == last else first_start + timedelta(microseconds=part_end - start)
        )
        length = Decimal(part_end - part_start)
        energy = round_money(divide(multiply(magnitude, length), denominator))
        cost = round_money(divide(multiply(magnitude, multiply(rate, length)), denominator))
        items.append(
            trusted(
                BreakdownItem,
                {
                    "start_time": part_start_time,
                    "end_time": part_end_time,
                    "rate": rate,
                    "energy": energy,
                    "cost": cost,
                },
            )
        )
    return items


def price_record(
    record: MeterRecord,
    profile: LocationProfile,
    *,
    meter_record_id: str,
    request: dict[str, Any],
    market_prices: Callable[[str, date], MarketPrices | None],
    now: datetime,
    max_record_hours: int = 744,
) -> EnergyCost:
    """Price one record (all of design §3); raise PricingError with the contract's code."""
    start = to_us(record.start_time)
    end = to_us(record.end_time)
    if end <= start:
        raise PricingError(ErrorCode.INVALID_TIME_RANGE, "end_time must be after start_time")
    duration = end - start
    if duration > max_record_hours * US_PER_HOUR:
        raise PricingError(
            ErrorCode.INVALID_TIME_RANGE,
            f"the record spans more than {max_record_hours} hours (MF_MAX_RECORD_HOURS)",
        )
    numerator, denominator = _energy_per_us(record, duration)
    flow, direction = tariff_direction_of(record)
    magnitude = _CONTEXT.abs(numerator)
    ctx = _CONTEXT
    total_energy = ctx.divide(ctx.multiply(magnitude, Decimal(duration)), denominator)
    if total_energy > MAX_ENERGY_KWH:
        raise PricingError(
            ErrorCode.INVALID_RECORD, f"energy {total_energy} kWh is absurd (limit 1e9 kWh)"
        )

    parts = rate_parts(compiled(profile), direction, start, end, market_prices)

    weighted = Decimal(0)
    for part_start, part_end, rate in parts:
        weighted = ctx.add(weighted, ctx.multiply(rate, Decimal(part_end - part_start)))
    total_cost = round_money(ctx.divide(ctx.multiply(magnitude, weighted), denominator))
    total_energy = round_money(total_energy)

    breakdown = _breakdown(record, parts, start, magnitude, denominator, total_energy, total_cost)
    data = trusted(
        CostData,
        {
            "start_time": record.start_time,
            "end_time": record.end_time,
            "session_reference_id": record.session_reference_id,
            "record_reference_id": record.record_reference_id,
            "energy": trusted(EnergyValue, {"value": total_energy}),
            "cost": trusted(CostValue, {"value": total_cost, "confidence": record.confidence}),
            "breakdown": breakdown,
        },
    )
    return trusted(
        EnergyCost,
        {
            "id": ids.energy_cost_id(meter_record_id),
            "object": "energy_cost",
            "account_id": profile.account_id,
            "object_id": record.device_id or record.location_id,
            "location_id": record.location_id,
            "device_id": record.device_id,
            "meter_record_id": meter_record_id,
            "live_mode": profile.live_mode,
            "non_persistent": record.non_persistent,
            "energy_flow_direction": flow,
            "tariff_direction": direction,
            "location_timezone": profile.timezone,
            "currency_code": profile.currency_code,
            "energy_units": "KWH",
            "request": request,
            "data": data,
            "time_created": now,
        },
    )
