"""Builders and a slow, obviously-correct reference pricer shared by the costing tests."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any
from zoneinfo import ZoneInfo

from meterflow.costing import cost_payload, cost_record, parse_record, price_payload
from meterflow.models import (
    DeadLetter,
    DynamicTariff,
    EnergyCost,
    FixedComponent,
    FixedTariff,
    LocationProfile,
    MarketPrices,
    TimeOfUseRule,
    TimeOfUseTariff,
    dumps,
)
from meterflow.models._base import dumps_generic
from meterflow.models.profiles import minutes_of

NOW = datetime(2025, 1, 1, tzinfo=UTC)
OPEN_FROM = "2000-01-01T00:00:00Z"


def profile(
    tariffs: dict[str, list[dict[str, Any]]],
    *,
    timezone: str = "Europe/London",
    devices: list[str] | None = None,
    live_mode: bool = False,
    tax_percentage: str | None = None,
) -> LocationProfile:
    return LocationProfile.model_validate(
        {
            "location_id": "loc_test",
            "account_id": "acc_test",
            "live_mode": live_mode,
            "timezone": timezone,
            "currency_code": "GBP",
            "devices": devices or [],
            "tariffs": tariffs,
            "tax_percentage": tax_percentage,
        }
    )


def fixed(
    rate: str, effective_from: str = OPEN_FROM, effective_to: str | None = None
) -> dict[str, Any]:
    return {
        "type": "FIXED",
        "rate": rate,
        "effective_from": effective_from,
        "effective_to": effective_to,
    }


def tou(
    rules: list[dict[str, Any]], effective_from: str = OPEN_FROM, effective_to: str | None = None
) -> dict[str, Any]:
    return {
        "type": "TIME_OF_USE",
        "rules": rules,
        "effective_from": effective_from,
        "effective_to": effective_to,
    }


def rule(start: str, end: str, rate: str, **extra: Any) -> dict[str, Any]:
    return {"from": start, "to": end, "rate": rate, **extra}


def record(start: str, end: str, energy: Any = "1", **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": "mre_test",
        "location_id": "loc_test",
        "start_time": start,
        "end_time": end,
    }
    if energy is not None:
        body["energy"] = energy
    body.update(extra)
    return body


def encode(body: dict[str, Any]) -> bytes:
    return json.dumps(body).encode()


def no_market(series_id: str, day: date) -> MarketPrices | None:
    return None


def price(
    body: dict[str, Any],
    location: LocationProfile,
    *,
    market: Callable[[str, date], MarketPrices | None] = no_market,
    max_record_hours: int = 744,
) -> EnergyCost | DeadLetter:
    return price_payload(
        encode(body),
        profiles=lambda lid: location if lid == location.location_id else None,
        market_prices=market,
        now=NOW,
        max_record_hours=max_record_hours,
    )


def written(body: dict[str, Any], location: LocationProfile) -> bytes:
    """The bytes an adapter sends for `body` (`cost_payload`'s result, written)."""
    return dumps(
        cost_payload(
            encode(body),
            profiles=lambda lid: location if lid == location.location_id else None,
            market_prices=no_market,
            now=NOW,
        )
    )


def generic_as_sent(result: EnergyCost, payload: bytes) -> bytes:
    """The reference writer's bytes for `result` with its `request` as the record's own text:
    what the engine sends for a record it read from `payload` (echoed as received)."""
    generic, echo = dumps_generic(result), b'"request":' + dumps_generic(result.request)
    assert generic.count(echo) == 1
    return generic.replace(echo, b'"request":' + payload.strip())


def priced(body: dict[str, Any], location: LocationProfile, **kwargs: Any) -> EnergyCost:
    result = price(body, location, **kwargs)
    assert isinstance(result, EnergyCost), result
    return result


def failed(body: dict[str, Any], location: LocationProfile, **kwargs: Any) -> str:
    result = price(body, location, **kwargs)
    assert isinstance(result, DeadLetter), result
    return result.error.code.value


def engine_cost(
    body: dict[str, Any], location: LocationProfile, market: Any = no_market
) -> Decimal:
    parsed, request = parse_record(encode(body))
    result = cost_record(
        parsed, location, meter_record_id="mre_x", request=request, market_prices=market, now=NOW
    )
    return result.model().data.cost.value


def _rule_rate(rules: list[TimeOfUseRule], local: datetime) -> Decimal | None:
    """The rate of the first rule covering a local wall time (validation forbids overlaps)."""
    minute = local.hour * 60 + local.minute
    day = ("MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN")[local.weekday()]
    for candidate in rules:
        if candidate.months is not None and local.month not in candidate.months:
            continue
        if candidate.days is not None and day not in {d.value for d in candidate.days}:
            continue
        if minutes_of(candidate.from_) <= minute < minutes_of(candidate.to):
            return candidate.rate
    return None


def _energy_rate(version: Any, local: datetime, instant: datetime, market: Any) -> Decimal | None:
    if isinstance(version, FixedTariff):
        return version.rate
    if isinstance(version, TimeOfUseTariff):
        return _rule_rate(version.rules, local)
    assert isinstance(version, DynamicTariff)
    points = version.prices
    if points is None:
        assert version.series_id is not None
        doc = market(version.series_id, instant.astimezone(UTC).date())
        points = [] if doc is None else doc.prices
    for point in points:
        if point.valid_from <= instant < point.valid_to:
            return point.rate
    return None


def rates_at(
    location: LocationProfile, direction: str, instant: datetime, market: Any = no_market
) -> dict[str, Decimal] | None:
    """Design §11 read literally at one instant: {"energy": (rate + fixed) × (1 + pct/100),
    component name: its rate, …}, or None if some rate is missing."""
    for version in location.tariffs.get(direction, []):  # type: ignore[call-overload]
        if instant < version.effective_from:
            continue
        if version.effective_to is not None and instant >= version.effective_to:
            continue
        local = instant.astimezone(ZoneInfo(location.timezone))
        energy = _energy_rate(version, local, instant, market)
        if energy is None:
            return None
        energy += version.surcharge_fixed or 0
        if version.surcharge_percentage is not None:
            energy *= 1 + version.surcharge_percentage / 100
        found = {"energy": energy}
        for component in version.components or []:
            if isinstance(component, FixedComponent):
                found[component.name] = component.rate
                continue
            rate = _rule_rate(component.rules, local)
            if rate is None:
                return None
            found[component.name] = rate
        return found
    return None


def _rate_at(
    location: LocationProfile, direction: str, instant: datetime, market: Any
) -> Decimal | None:
    found = rates_at(location, direction, instant, market)
    return None if found is None else sum(found.values(), Decimal(0))


def reference_cost(
    location: LocationProfile,
    direction: str,
    start: datetime,
    end: datetime,
    energy_kwh: Decimal,
    market: Any = no_market,
) -> Fraction | None:
    """The exact net cost: every second classified on its own (no splitting at all), in
    fractions (nothing rounded); None if a second has no rate."""
    seconds = int((end - start).total_seconds())
    total = Fraction(0)
    for step in range(seconds):
        rate = _rate_at(location, direction, start + timedelta(seconds=step), market)
        if rate is None:
            return None
        total += Fraction(rate)
    return abs(Fraction(energy_kwh)) * total / seconds


def reference_tax(location: LocationProfile, net: Fraction) -> tuple[Decimal, Decimal] | None:
    """(tax, total) of an exact net cost under the profile's `tax_percentage`, as written: the
    tax rounded once from its exact value, the total the written value + tax (design §11);
    None without a tax."""
    if location.tax_percentage is None:
        return None
    tax = money(net * Fraction(location.tax_percentage) / 100)
    return tax, money(net) + tax


def money(exact: Fraction) -> Decimal:
    """`exact` rounded half-even to 6 places, as design §3.4 rounds every written amount."""
    return Decimal(round(exact * 1_000_000)).scaleb(-6)
