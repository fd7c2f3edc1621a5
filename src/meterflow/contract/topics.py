"""The contract's topics (design §1): names and cleanup policies.

Creating them on a broker is an adapter's job (`meterflow.kafka_admin.ensure_topics`); every
process prefixes the names with `MF_TOPIC_PREFIX` through `Settings.topic`.
"""

from __future__ import annotations

from dataclasses import dataclass

METER_RECORDS = "meter-records"
METER_READINGS = "meter-readings"  # cumulative registers (design §10); keyed like meter-records
ENERGY_COSTS = "energy-costs"
LOCATIONS = "locations"
MARKET_PRICES = "market-prices"
DEAD_LETTERS = "dead-letters"


@dataclass(frozen=True, slots=True)
class TopicSpec:
    name: str
    compacted: bool


TOPICS: tuple[TopicSpec, ...] = (
    TopicSpec(METER_RECORDS, compacted=False),
    TopicSpec(METER_READINGS, compacted=False),
    TopicSpec(ENERGY_COSTS, compacted=False),
    TopicSpec(LOCATIONS, compacted=True),
    TopicSpec(MARKET_PRICES, compacted=True),
    TopicSpec(DEAD_LETTERS, compacted=False),
)
