"""The real broker: a consumer group resumes after its commit; topics are created and deleted."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from meterflow.contract.topics import (
    DEAD_LETTERS,
    MAX_DEAD_LETTER_BYTES,
    MAX_RECORD_BYTES,
    METER_RECORDS,
    TOPICS,
)
from meterflow.kafka_admin import delete_topics_with_prefix, ensure_topics, raise_size_limits
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


async def _own_configs(admin: AIOKafkaAdminClient, topic: str) -> dict[str, str]:
    """The configs set on `topic` itself (DescribeConfigs v1+: `config_source` 1)."""
    [response] = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    [(_, _, _, _, entries, *_)] = response.resources
    return {entry[0]: entry[1] for entry in entries if entry[3] == 1}


async def test_dead_letters_take_a_letter_larger_than_its_record_on_new_and_older_topics(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    """`dead-letters` is created with room for a letter six times its record
    (`MAX_DEAD_LETTER_BYTES`), and one created before that (an older release, with a config of
    its operator's) gets the room at the next start and keeps its own config."""
    fresh = Settings(kafka_bootstrap=kafka_bootstrap, topic_prefix=topic_prefix)
    older = Settings(kafka_bootstrap=kafka_bootstrap, topic_prefix=f"{topic_prefix}o")
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        letters = older.topic(DEAD_LETTERS)
        await admin.create_topics(
            [NewTopic(letters, 1, 1, topic_configs={"retention.ms": "3600000"})]
        )
        await ensure_topics(fresh)
        await ensure_topics(older)
        limit = str(MAX_DEAD_LETTER_BYTES)
        assert (await _own_configs(admin, fresh.topic(DEAD_LETTERS)))["max.message.bytes"] == limit
        wanted = {"retention.ms": "3600000", "max.message.bytes": limit}
        for _ in range(50):  # a config change reaches the broker that answers a moment later
            if await _own_configs(admin, letters) == wanted:
                break
            await asyncio.sleep(0.1)
        assert await _own_configs(admin, letters) == wanted
        assert "max.message.bytes" not in await _own_configs(admin, fresh.topic(METER_RECORDS))
        assert await raise_size_limits(older, TOPICS) == []  # once is enough

        producer = AIOKafkaProducer(
            bootstrap_servers=kafka_bootstrap, max_request_size=MAX_DEAD_LETTER_BYTES
        )
        await producer.start()
        try:
            letter = b"x" * (6 * MAX_RECORD_BYTES)
            await producer.send_and_wait(letters, letter)
        finally:
            await producer.stop()
    finally:
        await admin.close()
        await delete_topics_with_prefix(fresh, topic_prefix)
