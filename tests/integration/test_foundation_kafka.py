"""The real broker: a consumer group resumes after its commit; topics are created and deleted."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from meterflow.contract.topics import TOPICS
from meterflow.kafka_admin import delete_topics_with_prefix, ensure_topics
from meterflow.settings import Settings

pytestmark = pytest.mark.integration


async def _consume(consumer: AIOKafkaConsumer, count: int) -> list[bytes]:
    values: list[bytes] = []
    while len(values) < count:
        batches = await consumer.getmany(timeout_ms=1000, max_records=count - len(values))
        for records in batches.values():
            values.extend(record.value for record in records if record.value is not None)
    return values


def _consumer(topic: str, bootstrap: str, group: str) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )


async def test_group_resumes_from_committed_offset(kafka_bootstrap: str, topic_prefix: str) -> None:
    topic = f"{topic_prefix}foundation"
    group = f"{topic_prefix}group-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
        assert topic in await admin.list_topics()
    finally:
        await admin.close()

    sent = [f"record-{i}".encode() for i in range(10)]
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for value in sent:
            await producer.send_and_wait(topic, value)
    finally:
        await producer.stop()

    first = _consumer(topic, kafka_bootstrap, group)
    await first.start()
    try:
        got_first = await _consume(first, 4)
        await first.commit()
        committed = await first.committed(TopicPartition(topic, 0))
    finally:
        await first.stop()
    assert got_first == sent[:4]
    assert committed == 4

    second = _consumer(topic, kafka_bootstrap, group)
    await second.start()
    try:
        got_rest = await _consume(second, 6)
        # Nothing beyond the rest: the committed records are not redelivered.
        assert await second.getmany(timeout_ms=500) == {}
    finally:
        await second.stop()
    assert got_rest == sent[4:]


async def test_topics_with_a_prefix_are_deleted_and_no_others(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    mine = Settings(kafka_bootstrap=kafka_bootstrap, topic_prefix=topic_prefix)
    neighbour = Settings(kafka_bootstrap=kafka_bootstrap, topic_prefix=f"{topic_prefix}x")
    created = await ensure_topics(mine)
    kept = await ensure_topics(
        Settings(kafka_bootstrap=kafka_bootstrap, topic_prefix=f"n{topic_prefix}")
    )
    assert len(created) == len(TOPICS)
    assert len(kept) == len(TOPICS)

    deleted = await delete_topics_with_prefix(neighbour, f"{topic_prefix}x")
    assert deleted == []
    deleted = await delete_topics_with_prefix(mine, topic_prefix)
    assert deleted == sorted(created)

    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        for _ in range(50):  # deletion is asynchronous on the broker
            left = set(await admin.list_topics())
            if not left & set(created):
                break
            await asyncio.sleep(0.1)
        assert not left & set(created)
        assert set(kept) <= left
        await admin.delete_topics(kept)
    finally:
        await admin.close()


async def test_an_empty_prefix_is_refused(kafka_bootstrap: str) -> None:
    with pytest.raises(ValueError, match="every topic"):
        await delete_topics_with_prefix(Settings(kafka_bootstrap=kafka_bootstrap), "")
