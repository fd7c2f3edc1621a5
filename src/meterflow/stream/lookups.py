"""Read-side adapters from faust tables (raw JSON bytes) to the cost engine's lookups.

Tables hold the documents exactly as published, so recovery needs no codec; each document is
read once with the contract's decision on its topic and cached next to the bytes it came from,
so an update is seen on the next record.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import date

from meterflow.contract.decisions import Apply
from meterflow.contract.keys import location_key, market_prices_key
from meterflow.contract.locations import decide_location
from meterflow.contract.market_prices import decide_market_prices
from meterflow.logs import event
from meterflow.models import LocationProfile, MarketPrices

log = logging.getLogger(__name__)


class ProfileLookup:
    """`location_id -> LocationProfile | None` over the profiles table.

    Profiles were decided valid before they were stored, so reading them again cannot fail
    short of a model change; such a profile is reported and treated as absent.
    """

    def __init__(self, table: Mapping[bytes, bytes]) -> None:
        self._table = table
        self._parsed: dict[str, tuple[bytes, LocationProfile | None]] = {}

    def __call__(self, location_id: str) -> LocationProfile | None:
        key = location_key(location_id)
        raw = self._table.get(key)
        if raw is None:
            self._parsed.pop(location_id, None)
            return None
        cached = self._parsed.get(location_id)
        if cached is not None and cached[0] == raw:
            return cached[1]
        decision = decide_location(key, raw)
        profile = decision.document if isinstance(decision, Apply) else None
        if profile is None:
            reason = getattr(decision, "reason", "a tombstone")
            event(
                log,
                "stored_profile_unreadable",
                logging.ERROR,
                location_id=location_id,
                error=reason,
            )
        self._parsed[location_id] = (raw, profile)
        return profile


class MarketPricesLookup:
    """`(series_id, utc_day) -> MarketPrices | None` over the market prices global table.

    A document that the contract rejects (it does not parse, or its body names another series or
    day than its key) is reported and treated as absent (the record then fails as
    `tariff_not_available`).
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
        decision = decide_market_prices(key.encode(), raw)
        prices = decision.document if isinstance(decision, Apply) else None
        if prices is None:
            reason = getattr(decision, "reason", "a tombstone")
            event(log, "market_prices_unreadable", logging.ERROR, key=key, error=reason)
        self._parsed[key] = (raw, prices)
        return prices
