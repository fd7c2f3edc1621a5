"""The API's in-memory view of the compacted `locations` and `market-prices` topics.

The instant-cost endpoint prices with the same engine call as the stream agent, so it needs the
same profiles and market prices. They are kept here, fed by a consumer reading both topics from
the beginning, plus the API's own writes applied as soon as Kafka acknowledges them
(read-your-writes). Every entry remembers the topic position it came from, so a late consumer
message never overwrites a newer write.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date
from typing import Generic, TypeVar

from meterflow.contract.decisions import Apply, Delete, Reject
from meterflow.contract.keys import market_prices_key
from meterflow.contract.locations import decide_location
from meterflow.contract.market_prices import decide_market_prices
from meterflow.models import LocationProfile, MarketPrices

log = logging.getLogger("meterflow.api.views")

T = TypeVar("T")


@dataclass(frozen=True)
class Position:
    partition: int
    offset: int


class TopicView(Generic[T]):
    """Latest value per key of one compacted topic; `None` values (tombstones) delete."""

    def __init__(self) -> None:
        self._values: dict[str, T] = {}
        self._positions: dict[str, Position] = {}

    def get(self, key: str) -> T | None:
        return self._values.get(key)

    def __len__(self) -> int:
        return len(self._values)

    def apply(self, key: str, value: T | None, position: Position | None) -> bool:
        """Apply one change; False when an equal-or-newer change of this key was applied already."""
        known = self._positions.get(key)
        if (
            known is not None
            and position is not None
            and position.partition == known.partition
            and position.offset < known.offset
        ):
            return False
        if position is not None:
            self._positions[key] = position
        if value is None:
            self._values.pop(key, None)
        else:
            self._values[key] = value
        return True


class PricingView:
    """Profiles by location id and market prices by `{series_id}/{day}`: what the engine reads."""

    def __init__(self) -> None:
        self.locations: TopicView[LocationProfile] = TopicView()
        self.market_prices: TopicView[MarketPrices] = TopicView()

    def profile(self, location_id: str) -> LocationProfile | None:
        return self.locations.get(location_id)

    def prices(self, series_id: str, day: date) -> MarketPrices | None:
        return self.market_prices.get(market_prices_key(series_id, day))

    def apply_location_message(self, key: bytes | None, value: bytes | None, pos: Position) -> None:
        """Apply one `locations` message as the contract decides; a rejected one is skipped
        (the stream dead-letters it), so the view prices with what the stream's table holds."""
        _apply(self.locations, decide_location(key, value), pos, "locations")

    def apply_market_prices_message(
        self, key: bytes | None, value: bytes | None, pos: Position
    ) -> None:
        _apply(self.market_prices, decide_market_prices(key, value), pos, "market-prices")


def _apply(
    view: TopicView[T], decision: Apply[T] | Delete | Reject, pos: Position, topic: str
) -> None:
    if isinstance(decision, Apply):
        view.apply(decision.key, decision.document, pos)
    elif isinstance(decision, Delete):
        view.apply(decision.key, None, pos)
    else:
        log.warning(
            "skipping a rejected message",
            extra={"fields": {"topic": topic, "offset": pos.offset, "reason": decision.reason}},
        )
