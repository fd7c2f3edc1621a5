"""The `market-prices` topic: the one decision on a message, shared by every reader.

Readers: the stream's global table (and its lookup), the API's pricing view. The key must be
`keys.market_prices_key_of(document)`: a document under another key would price other days.
"""

from __future__ import annotations

from meterflow.contract.decisions import Apply, Delete, Reject, decide
from meterflow.contract.keys import market_prices_key_of
from meterflow.contract.topics import MARKET_PRICES
from meterflow.models import MarketPrices, loads

MarketPricesDecision = Apply[MarketPrices] | Delete | Reject


def parse_market_prices(raw: bytes) -> MarketPrices:
    """A validated MarketPrices document; raises ValueError (JSON or shape)."""
    return MarketPrices.model_validate(loads(raw))


def decide_market_prices(key: bytes | None, value: bytes | None) -> MarketPricesDecision:
    """A null value deletes the key; a value applies when it is valid MarketPrices whose own
    key (`{series_id}/{day}`) is the message key; anything else is rejected with the reason."""
    return decide(
        key,
        value,
        parse=parse_market_prices,
        key_of=market_prices_key_of,
        topic=MARKET_PRICES,
        keyed_by="{series_id}/{YYYY-MM-DD}",
        document="market prices",
    )
