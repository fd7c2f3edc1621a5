"""Bulk recovery and end offsets asked apart, real broker: a memory table read from a changelog
topic ends as the changelog says; the end offsets are the topic's."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import faust
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from faust.types import TP

from meterflow.stream.bulk_recovery import bulk_recover, recover_in_bulk
from meterflow.stream.end_offsets import end_offsets_apart

pytestmark = pytest.mark.integration

PARTITIONS = 3


@dataclass
class Recovery:
    """What `recover_in_bulk` reads of faust's `Recovery` once the highwaters are built."""

    tp_to_table: dict[TP, Any]
    active_highwaters: Counter[TP]


async def test_a_memory_table_is_recovered_in_bulk_from_its_changelog(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    topic = f"{topic_prefix}bench-profiles-changelog"
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, PARTITIONS, 1)])
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, linger_ms=5)
        await producer.start()
        expected: dict[bytes, bytes] = {}
        sent = Counter[int]()
        try:
            for n in range(3000):  # several fetches per partition; a key keeps its partition
                key, partition = b"loc_%04d" % (n % 1000), n % 1000 % PARTITIONS
                value = None if n % 7 == 0 else b"profile %d" % n
                await producer.send(topic, value, key=key, partition=partition)
                sent[partition] += 1
                if value is None:
                    expected.pop(key, None)
                else:
                    expected[key] = value
            await producer.flush()
        finally:
            await producer.stop()

        ends = await end_offsets_apart([kafka_bootstrap], topic, list(range(PARTITIONS)))
        assert ends == {p: sent[p] for p in range(PARTITIONS)}

        app = faust.App("mf-bulk-it", broker=f"kafka://{kafka_bootstrap}", store="memory://")
        table = app.Table("profiles", partitions=PARTITIONS, key_type=bytes, value_type=bytes)
        bulk_recover(table, [kafka_bootstrap])
        tps = {TP(topic, p) for p in range(PARTITIONS)}
        recovery = Recovery(
            dict.fromkeys(tps, table), Counter({tp: ends[tp.partition] - 1 for tp in tps})
        )
        offsets: Counter[TP] = Counter(dict.fromkeys(tps, -1))
        await recover_in_bulk(recovery, tps, offsets)

        assert dict(table.data.items()) == expected
        assert offsets == recovery.active_highwaters  # faust is left nothing to read
    finally:
        await admin.delete_topics([topic])
        await admin.close()
