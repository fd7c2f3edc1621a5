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


MAX_RECORD_BYTES = 1_048_588
"""The largest message an input topic takes: the broker's default `message.max.bytes`, which
the contract's topics keep (all but `dead-letters`)."""

MAX_DEAD_LETTER_BYTES = 8 * 1024 * 1024
"""`dead-letters`' `max.message.bytes`, and the `max_request_size` of every producer that sends
letters (the worker's, the sink's). A letter writes its record as JSON text, in which a control
character takes 6 bytes (`\\u0001`) and a line feed 2, so the letter of a record the broker
took can be six times its size: with the broker's own limit on `dead-letters`, a record of
1 MiB padded with line feeds stopped the worker at every start (docs/stream.md, "Delivery").
6 × `MAX_RECORD_BYTES` and the letter's envelope fit in 8 MiB."""


@dataclass(frozen=True, slots=True)
class TopicSpec:
    name: str
    compacted: bool
    max_message_bytes: int | None = None  # None: the broker's `message.max.bytes`

    def configs(self) -> dict[str, str]:
        """The topic-level configs the topic is created with."""
        configs = {"cleanup.policy": "compact" if self.compacted else "delete"}
        if self.max_message_bytes is not None:
            configs["max.message.bytes"] = str(self.max_message_bytes)
        return configs


TOPICS: tuple[TopicSpec, ...] = (
    TopicSpec(METER_RECORDS, compacted=False),
    TopicSpec(METER_READINGS, compacted=False),
    TopicSpec(ENERGY_COSTS, compacted=False),
    TopicSpec(LOCATIONS, compacted=True),
    TopicSpec(MARKET_PRICES, compacted=True),
    TopicSpec(DEAD_LETTERS, compacted=False, max_message_bytes=MAX_DEAD_LETTER_BYTES),
)
