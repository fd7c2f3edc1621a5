"""The Quix Streams peer of `bench_pipeline.py`: the same pricing, another stream framework.

    .venv-bench/bin/python bench/quix_peer.py BOOTSTRAP IN OUT LOCATIONS GROUP

Runs in its own venv (`.venv-bench`, made by `bench_pipeline.py`; quixstreams 3.28 pins
pydantic < 2.14, meterflow pins 2.14). Loads every profile of LOCATIONS into a dict first (the
worker holds them in its table), then runs a Quix Streams app that does per record what the
worker's agent does: `cost_payload(raw, profiles=ProfileLookup(...), source=<the record's
message context>)` then `models.dumps`, and produces the bytes to OUT under the input key.
Same guarantee as the worker: at-least-once, offsets committed every second after delivery.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from quixstreams import Application, message_context

from meterflow.contract.clock import utc_now
from meterflow.costing import cost_payload
from meterflow.models import dumps
from meterflow.stream.lookups import MarketPricesLookup, ProfileLookup

MAX_RECORD_HOURS = 744  # the worker's default (MF_MAX_RECORD_HOURS)


def load_table(bootstrap: str, topic: str) -> dict[bytes, bytes]:
    """Every key's last value on `topic` (a compacted topic read to its end)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "unused"})
    try:
        metadata = consumer.list_topics(topic, timeout=30)
        partitions = [
            TopicPartition(topic, p, OFFSET_BEGINNING) for p in metadata.topics[topic].partitions
        ]
        ends = {
            tp.partition: consumer.get_watermark_offsets(tp, timeout=30)[1] for tp in partitions
        }
        consumer.assign(partitions)
        table: dict[bytes, bytes] = {}
        done = {p for p, end in ends.items() if end == 0}
        while len(done) < len(ends):
            message = consumer.poll(1.0)
            if message is None or message.error():
                continue
            key, value = message.key(), message.value()
            if value is None:
                table.pop(key, None)
            else:
                table[key] = value
            if message.offset() + 1 >= ends[message.partition()]:
                done.add(message.partition())
        return table
    finally:
        consumer.close()


def _now_ms(value: Any, key: Any, timestamp: int, headers: Any) -> int:
    return time.time_ns() // 1_000_000


def main(bootstrap: str, source: str, sink: str, locations: str, group: str) -> None:
    profiles = ProfileLookup(load_table(bootstrap, locations))
    market_prices = MarketPricesLookup({})

    def price(value: bytes, key: Any, timestamp: int, headers: Any) -> bytes:
        result = cost_payload(
            value,
            profiles=profiles,
            market_prices=market_prices,
            now=utc_now(),
            source=message_context(),  # a `models.Position`, as the worker passes its message
            max_record_hours=MAX_RECORD_HOURS,
        )
        return dumps(result)

    app = Application(
        broker_address=bootstrap,
        consumer_group=group,
        auto_offset_reset="earliest",
        commit_interval=1.0,  # the worker's MF_COMMIT_INTERVAL_S
        processing_guarantee="at-least-once",
        loglevel="WARNING",
        auto_create_topics=False,
        use_changelog_topics=False,
    )
    records = app.topic(source, value_deserializer="bytes", key_deserializer="bytes")
    costs = app.topic(sink, value_serializer="bytes", key_serializer="bytes")
    # Quix writes an output with its input's timestamp unless told otherwise; the bench's rate is
    # taken from the outputs' timestamps, so they must say when each was produced, as the
    # worker's and the bare loop's do (with the input's, the rate was the preload's pace).
    app.dataframe(records).apply(price, metadata=True).set_timestamp(_now_ms).to_topic(costs)
    app.run()


if __name__ == "__main__":
    main(*sys.argv[1:6])
