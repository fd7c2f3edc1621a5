"""Message keys (design §1): what each topic is keyed by, written and read in one place.

`meter-records`, `energy-costs` and `locations` are keyed by the location id (co-partitioned);
`market-prices` by `{series_id}/{YYYY-MM-DD}`, the UTC day of the prices.
"""

from __future__ import annotations

from datetime import date

from meterflow.models import ErrorCode, MarketPrices, PricingError


def location_key(location_id: str) -> bytes:
    """The key of a message about one location, on every topic keyed by location."""
    return location_id.encode()


def misplaced(key: bytes | None, location_id: str) -> PricingError | None:
    """Why a message about `location_id` is not under its key (`invalid_record`), or None.

    The key picks the partition, and a location's partition holds its profile (RocksDB reads
    that partition's database only), its meters' readings state, and the order of a record's
    versions (design §8.3). Under another key a record would be priced, ordered or derived
    against the wrong partition, and with a memory store it would happen to work: refused on
    both stores, with a reason that names the key."""
    if key == location_key(location_id):
        return None
    shown = "no key" if key is None else f"the key {key.decode(errors='replace')!r}"
    return PricingError(
        ErrorCode.INVALID_RECORD,
        f"sent under {shown}, not its location_id {location_id!r}: this topic is keyed by"
        " location_id (design §1), so the location's partition holds its profile and state",
    )


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
