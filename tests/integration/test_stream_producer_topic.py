"""`ProducerTopic.send_many`, real broker: each message where `send` would put it, in order."""

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


async def _read_all(bootstrap: str, topic: str, count: int) -> list[tuple[int, bytes, bytes]]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, p) for p in range(PARTITIONS)])
        await consumer.seek_to_beginning()
        seen: list[tuple[int, bytes, bytes]] = []
        for _ in range(100):
            batches = await consumer.getmany(timeout_ms=200)
            for tp, messages in sorted(batches.items()):
                seen.extend((tp.partition, m.key or b"", m.value or b"") for m in messages)
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
        sent = [(key, b"%d " % n) for n, key in enumerate(keys)]
        for n in (130, 131, 132):
            sent[n] = (b"loc_007", b"%d " % n + b"x" * 100_000)
        sent[250] = (b"loc_000", b"250 " + b"y" * 300_000)
        try:
            await topic.send_many(sent[:120])
            await topic.send_many(sent[120:260])
            await topic.send_many(sent[260:])
            await app.producer.flush()
        finally:
            await app.producer.stop()

        seen = await _read_all(kafka_bootstrap, settings.topic(ENERGY_COSTS), len(sent))

        default = DefaultPartitioner()
        assert sorted(value for _, _, value in seen) == sorted(value for _, value in sent)
        for partition, key, _ in seen:
            assert partition == default(key, list(range(PARTITIONS)), list(range(PARTITIONS)))
        for partition in range(PARTITIONS):
            order = [int(value.split()[0]) for p, _, value in seen if p == partition]
            assert order == sorted(order), f"partition {partition} out of order"
        assert {p for p, _, _ in seen} == set(range(PARTITIONS))
    finally:
        await delete_topics_with_prefix(settings, topic_prefix)
