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

from pydantic import ValidationError

from meterflow.models import LocationProfile, MarketPrices, loads

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
        return self.market_prices.get(f"{series_id}/{day.isoformat()}")

    def apply_location_message(self, key: bytes | None, value: bytes | None, pos: Position) -> None:
        if key is None:
            return
        location_id = key.decode("utf-8", "replace")
        profile: LocationProfile | None = None
        if value is not None:
            try:
                profile = LocationProfile.model_validate(loads(value))
            except (ValidationError, ValueError):
                log.warning("skipping an invalid profile on locations", extra={"key": location_id})
                return
        self.locations.apply(location_id, profile, pos)

    def apply_market_prices_message(
        self, key: bytes | None, value: bytes | None, pos: Position
    ) -> None:
        if key is None:
            return
        series_day = key.decode("utf-8", "replace")
        prices: MarketPrices | None = None
        if value is not None:
            try:
                prices = MarketPrices.model_validate(loads(value))
            except (ValidationError, ValueError):
                log.warning("skipping invalid prices on market-prices", extra={"key": series_day})
                return
        self.market_prices.apply(series_day, prices, pos)
