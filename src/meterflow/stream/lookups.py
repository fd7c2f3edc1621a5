"""Read-side adapters from faust tables (raw JSON bytes) to the cost engine's lookups.

Tables hold the documents exactly as published, so recovery needs no codec; each document is
parsed once and cached next to the bytes it came from, so an update is seen on the next record.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import date

from pydantic import ValidationError

from meterflow.logs import event
from meterflow.models import LocationProfile, MarketPrices, loads

log = logging.getLogger(__name__)


def market_prices_key(series_id: str, day: date) -> str:
    """Key on `market-prices`: `{series_id}/{YYYY-MM-DD}` (UTC day), design §1."""
    return f"{series_id}/{day.isoformat()}"


class ProfileLookup:
    """`location_id -> LocationProfile | None` over the profiles table.

    Profiles were validated before they were stored, so parsing them again cannot fail short of a
    model change; such a profile is reported and treated as absent.
    """

    def __init__(self, table: Mapping[bytes, bytes]) -> None:
        self._table = table
        self._parsed: dict[str, tuple[bytes, LocationProfile]] = {}

    def __call__(self, location_id: str) -> LocationProfile | None:
        raw = self._table.get(location_id.encode())
        if raw is None:
            self._parsed.pop(location_id, None)
            return None
        cached = self._parsed.get(location_id)
        if cached is not None and cached[0] == raw:
            return cached[1]
        try:
            profile = LocationProfile.model_validate(loads(raw))
        except (ValueError, ValidationError) as exc:
            event(
                log,
                "stored_profile_unreadable",
                logging.ERROR,
                location_id=location_id,
                error=str(exc),
            )
            return None
        self._parsed[location_id] = (raw, profile)
        return profile


class MarketPricesLookup:
    """`(series_id, utc_day) -> MarketPrices | None` over the market prices global table.

    A document that does not parse, or whose body names another series or day than its key, is
    reported and treated as absent (the record then fails as `tariff_not_available`).
    """

    def __init__(self, table: Mapping[bytes, bytes]) -> None:
        self._table = table
        self._parsed: dict[str, tuple[bytes, MarketPrices | None]] = {}

    def __call__(self, series_id: str, day: date) -> MarketPrices | None:
        key = market_prices_key(series_id, day)
        raw = self._table.get(key.encode())
        if raw is None:
            return None
        cached = self._parsed.get(key)
        if cached is not None and cached[0] == raw:
            return cached[1]
        prices: MarketPrices | None
        try:
            prices = MarketPrices.model_validate(loads(raw))
        except (ValueError, ValidationError) as exc:
            event(log, "market_prices_unreadable", logging.ERROR, key=key, error=str(exc))
            prices = None
        if prices is not None and prices.key != key:
            event(log, "market_prices_key_mismatch", logging.ERROR, key=key, body_key=prices.key)
            prices = None
        self._parsed[key] = (raw, prices)
        return prices
