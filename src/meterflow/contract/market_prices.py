"""The `market-prices` topic: the one decision on a message, shared by every reader.

Readers: the stream's global table (and its lookup), the API's pricing view. The key must be
`keys.market_prices_key_of(document)`: a document under another key would price other days.
"""

from __future__ import annotations

from pydantic import ValidationError

from meterflow.contract.decisions import Apply, Delete, Reject
from meterflow.contract.keys import key_text, market_prices_key_of
from meterflow.models import MarketPrices, loads, validation_summary

MarketPricesDecision = Apply[MarketPrices] | Delete | Reject


def parse_market_prices(raw: bytes) -> MarketPrices:
    """A validated MarketPrices document; raises ValueError (JSON or shape)."""
    return MarketPrices.model_validate(loads(raw))


def decide_market_prices(key: bytes | None, value: bytes | None) -> MarketPricesDecision:
    """A null value deletes the key; a value applies when it is valid MarketPrices whose own
    key (`{series_id}/{day}`) is the message key; anything else is rejected with the reason."""
    key_str = key_text(key)
    if key_str is None:
        return Reject("a message on `market-prices` must be keyed by {series_id}/{day} (UTF-8)")
    if value is None:
        return Delete(key_str)
    try:
        prices = parse_market_prices(value)
    except ValidationError as exc:
        return Reject(f"invalid market prices: {validation_summary(exc, limit=3)}")
    except (ValueError, RecursionError) as exc:
        return Reject(f"invalid market prices: {str(exc)[:500]}")
    expected = market_prices_key_of(prices)
    if expected != key_str:
        return Reject(f"key {key_str!r} is not the document's {expected!r}")
    return Apply(key_str, prices, value)
