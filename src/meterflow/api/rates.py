"""Rates and slots ahead of time (design §12): `GET /tariffs/rates/{id}`, `GET /slots/time/{id}`.

Both read the API's in-memory pricing view (the profiles and market prices `POST /costs/instant`
prices with) through `costing.quotes`, so a quote and the cost of a record can never disagree.
Nothing is stored or published. Another account's location answers 404, as for locations.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any, TypeVar

from aiohttp import web
from pydantic import ValidationError

from meterflow.api.context import CONTEXT
from meterflow.api.costs import visible_profiles
from meterflow.api.errors import ApiError, not_found
from meterflow.api.http import (
    answer,
    principal_of,
    query_bool,
    query_choice,
    query_direction,
    query_value,
)
from meterflow.api.schemas import (
    ComponentRate,
    RatePeriod,
    RateTariff,
    SlotPeriod,
    SlotTariff,
    SlotTime,
    TariffRates,
)
from meterflow.costing import quotes
from meterflow.costing.timeline import US_PER_MINUTE, from_us, to_us
from meterflow.models import (
    LocationProfile,
    PricingError,
    TariffDirection,
    parse_instant,
    validation_summary,
)

_MAX_MINUTES = quotes.MAX_WINDOW_US // US_PER_MINUTE
_MINUTES_TEXT = re.compile(r"-?[0-9]+(?:\.[0-9]*)?", re.ASCII)
T = TypeVar("T")


def _location(request: web.Request) -> LocationProfile:
    ctx = request.app[CONTEXT]
    location_id = request.match_info["location_id"]
    profile = visible_profiles(ctx, principal_of(request))(location_id)
    if profile is None:
        raise not_found(f"location {location_id!r}")
    return profile


def _instant(request: web.Request, name: str) -> datetime | None:
    raw = query_value(request, name)
    if raw is None:
        return None
    try:
        return parse_instant(raw)
    except ValidationError as exc:  # the record's words: not RFC 3339, finer than a µs, …
        raise ApiError(400, "invalid_request", validation_summary(exc, whole=f"`{name}`")) from None


def _window(request: web.Request) -> tuple[datetime, datetime]:
    """(start, end); `start_time` defaults to now (Flatpeak), `end_time` is required."""
    end = _instant(request, "end_time")
    if end is None:
        raise ApiError(400, "invalid_request", "`end_time` is required")
    start = _instant(request, "start_time") or request.app[CONTEXT].clock()
    return start, end


def _choice(request: web.Request, name: str, allowed: tuple[str, ...]) -> str:
    """The query's `name` (`http.query_choice`: repeated, the same), `allowed[0]` when absent."""
    return query_choice(request, (name,), allowed, also=None) or allowed[0]


def _duration(request: web.Request) -> int:
    """Whole minutes (`60` or `60.0`: ASCII digits, as the OpenAPI file's integer; `Decimal`
    alone also read `60_0` as 600, other scripts' digits and spaces); anything else is a 422
    `invalid_duration`."""
    raw = query_value(request, "duration")
    if raw is None:
        raise ApiError(400, "invalid_request", "`duration` (minutes) is required")
    value = Decimal(raw) if _MINUTES_TEXT.fullmatch(raw) else Decimal("NaN")
    if not value.is_finite() or value != value.to_integral_value() or value < 1:
        raise ApiError(
            422, "invalid_duration", "`duration` must be a positive whole number of minutes"
        )
    if value > _MAX_MINUTES:  # longer than any window; also keeps int() small
        raise ApiError(422, "invalid_duration", "`duration` is longer than a 31-day window")
    return int(value)


def _common(
    request: web.Request, profile: LocationProfile, direction: TariffDirection
) -> dict[str, Any]:
    principal = principal_of(request)
    return {
        "account_id": principal.account_id,
        "live_mode": principal.live_mode,
        "location_id": profile.location_id,
        "location_timezone": profile.timezone,
        "currency_code": profile.currency_code,
        "direction": direction,
        "time_created": request.app[CONTEXT].clock(),
    }


def _echo(start: datetime, end: datetime, direction: TariffDirection) -> dict[str, Any]:
    return {
        "start_time": start.isoformat(),
        "end_time": end.isoformat(),
        "direction": direction.value,
    }


def _quoted(quote: Callable[[], T]) -> T:
    """`quote()`'s answer; a request no quote can answer, or no tariff in force, is a 422."""
    try:
        return quote()
    except (quotes.QuoteError, PricingError) as error:
        raise ApiError(422, str(error.code), error.message) from None


async def tariff_rates(request: web.Request) -> web.Response:
    profile = _location(request)
    direction = query_direction(request, also=None)
    start, end = _window(request)
    prices = request.app[CONTEXT].view.prices
    periods = _quoted(lambda: quotes.rates(profile, direction, to_us(start), to_us(end), prices))
    zone = end.tzinfo  # Flatpeak: times in the request's offset, end_time's when they differ
    data = [
        RatePeriod(
            valid_from=from_us(period.start, zone),
            valid_to=from_us(period.end, zone),
            tariff=RateTariff(rate=period.rate, confidence=quotes.CONFIDENCE),
            components=[
                ComponentRate(name=name, rate=rate)
                for name, rate in zip(period.names, period.rates, strict=True)
            ],
        )
        for period in periods
    ]
    return answer(
        TariffRates(
            **_common(request, profile, direction),
            request=_echo(start, end, direction),
            data=data,
        )
    )


async def slot_time(request: web.Request) -> web.Response:
    profile = _location(request)
    direction = query_direction(request, also=None)
    segment = _choice(request, "segment", ("LOW", "HIGH"))
    contiguous = bool(query_bool(request, "contiguous"))
    start, end = _window(request)
    duration = _duration(request)
    prices = request.app[CONTEXT].view.prices
    found = _quoted(
        lambda: quotes.slots(
            profile,
            direction,
            to_us(start),
            to_us(end),
            prices,
            duration_minutes=duration,
            segment=quotes.Segment(segment),
            contiguous=contiguous,
        )
    )
    zone = end.tzinfo
    data = [
        SlotPeriod(
            start_time=from_us(slot.start, zone),
            end_time=from_us(slot.end, zone),
            tariff=SlotTariff(rate_avg=slot.rate_avg, confidence=quotes.CONFIDENCE),
        )
        for slot in found
    ]
    echo = _echo(start, end, direction) | {
        "segment": segment,
        "duration": duration,
        "contiguous": contiguous,
    }
    return answer(SlotTime(**_common(request, profile, direction), request=echo, data=data))
