"""Message keys (design §1): what each topic is keyed by, written and read in one place.

`meter-records`, `energy-costs` and `locations` are keyed by the location id (co-partitioned);
`market-prices` by `{series_id}/{YYYY-MM-DD}`, the UTC day of the prices.
"""

from __future__ import annotations

from datetime import date

from meterflow.models import MarketPrices


def location_key(location_id: str) -> bytes:
    """The key of a message about one location, on every topic keyed by location."""
    return location_id.encode()


def market_prices_key(series_id: str, day: date) -> str:
    """The key of one series' prices for one UTC day."""
    return f"{series_id}/{day.isoformat()}"


def market_prices_key_of(prices: MarketPrices) -> str:
    """The key a MarketPrices document must be published under."""
    return market_prices_key(prices.series_id, prices.day)


def key_text(key: bytes | None) -> str | None:
    """A key as text; None when missing, empty or not UTF-8 (no document can be keyed so)."""
    if not key:
        return None
    try:
        return key.decode("utf-8")
    except UnicodeDecodeError:
        return None
