"""`ProducerTopic.send_many`, real broker: each message where `send` would put it, in order,
with the timestamp it was given (its input record's: the sink orders corrections by it)."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.partitioner import DefaultPartitioner

from meterflow.contract.topics import ENERGY_COSTS
from meterflow.kafka_admin import delete_topics_with_prefix, ensure_topics
from meterflow.settings import Settings
from meterflow.stream.agents import ProducerTopic
from meterflow.stream.app import create_app

pytestmark = pytest.mark.integration

PARTITIONS = 6


Seen = tuple[int, bytes, bytes, int]  # partition, key, value, timestamp (ms)


async def _read_all(bootstrap: str, topic: str, count: int) -> list[Seen]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, p) for p in range(PARTITIONS)])
        await consumer.seek_to_beginning()
        seen: list[Seen] = []
        for _ in range(100):
            batches = await consumer.getmany(timeout_ms=200)
            for tp, messages in sorted(batches.items()):
                seen.extend(
                    (tp.partition, m.key or b"", m.value or b"", m.timestamp) for m in messages
                )
            if len(seen) >= count:
                break
        return seen
    finally:
        await consumer.stop()


async def test_send_many_puts_messages_on_the_default_partitions_in_order(
    kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    settings = Settings(
        kafka_bootstrap=kafka_bootstrap,
        topic_prefix=topic_prefix,
        topic_partitions=PARTITIONS,
        data_dir=str(tmp_path),
    )
    await ensure_topics(settings)
    try:
        app = create_app(settings)
        await app.producer.start()
        topic = ProducerTopic(app, settings.topic(ENERGY_COSTS))
        # Three calls, so a partition's batches queue behind each other; three 100 kB values on one
        # key fill a produce batch (262,144 bytes), and one 300 kB value is larger than a whole
        # batch, so it takes the per-message path in between.
        keys = [f"loc_{n % 37:03d}".encode() for n in range(400)]
        stamp = 1_700_000_000_123  # ms; even n: given, odd n: the producer's clock
        sent = [(key, b"%d " % n, stamp + n if n % 2 == 0 else None) for n, key in enumerate(keys)]
        for n in (130, 131, 132):
            sent[n] = (b"loc_007", b"%d " % n + b"x" * 100_000, stamp + n)
        sent[250] = (b"loc_000", b"250 " + b"y" * 300_000, stamp + 250)  # the per-message path
        try:
            await topic.send_many(sent[:120])
            await topic.send_many(sent[120:260])
            await topic.send_many(sent[260:])
            await app.producer.flush()
        finally:
            await app.producer.stop()

        seen = await _read_all(kafka_bootstrap, settings.topic(ENERGY_COSTS), len(sent))

        default = DefaultPartitioner()
        assert sorted(value for _, _, value, _ in seen) == sorted(value for _, value, _ in sent)
        for _, _, value, timestamp in seen:
            n = int(value.split()[0])
            if sent[n][2] is not None:
                assert timestamp == sent[n][2], n
            else:
                assert timestamp > stamp + 10**9, n  # now, not a given one
        for partition, key, _, _ in seen:
            assert partition == default(key, list(range(PARTITIONS)), list(range(PARTITIONS)))
        for partition in range(PARTITIONS):
            order = [int(value.split()[0]) for p, _, value, _ in seen if p == partition]
            assert order == sorted(order), f"partition {partition} out of order"
        assert {p for p, _, _, _ in seen} == set(range(PARTITIONS))
    finally:
        await delete_topics_with_prefix(settings, topic_prefix)
