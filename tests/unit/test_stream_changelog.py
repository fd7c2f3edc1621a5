"""`TableChangelog.send`: a batch's changelog records reach aiokafka as closed batches, one per
partition, in order, before `send` returns (the readings agent's crash-safety argument rests on
it, docs/stream.md "Readings: crash safety"), and RocksDB's persisted offset is a batch's last
record. Real aiokafka batch builders, a fake producer in place of the broker."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka.producer.message_accumulator import BatchBuilder
from aiokafka.record.default_records import DefaultRecordBatch
from faust.types import TP

from meterflow.stream.readings import TableChangelog


class FakeAiokafka:
    """Keeps each shipped batch's records (decoded back) with its delivery future."""

    def __init__(self, batch_size: int) -> None:
        self.batch_size = batch_size
        self.shipped: list[tuple[int, list[tuple[bytes, bytes]], asyncio.Future[Any]]] = []

    def create_batch(self) -> BatchBuilder:
        return BatchBuilder(self.batch_size, 0)

    async def send_batch(self, batch: BatchBuilder, topic: str, *, partition: int) -> Any:
        assert topic == "app-readings-changelog"
        assert batch._closed, "a batch is closed before it is handed over"
        records = [(r.key, r.value) for r in _records(batch)]
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.shipped.append((partition, records, future))
        return future


def _records(batch: BatchBuilder) -> list[Any]:
    return list(DefaultRecordBatch(bytes(batch._build())))


class FakeStore(dict[bytes, bytes]):
    def __init__(self) -> None:
        super().__init__()
        self.persisted: dict[TP, int] = {}

    def set_persisted_offset(self, tp: TP, offset: int) -> None:
        self.persisted[tp] = offset


@pytest.fixture(autouse=True)
def stopped(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """What `stop_worker` was asked (it would end the test process)."""
    calls: list[tuple[str, str]] = []
    monkeypatch.setattr(
        "meterflow.stream.readings.stop_worker", lambda kind, error: calls.append((kind, error))
    )
    return calls


def changelog(batch_size: int) -> tuple[TableChangelog, FakeAiokafka, FakeStore]:
    kafka = FakeAiokafka(batch_size)
    store = FakeStore()
    table = SimpleNamespace(
        data=store,
        changelog_topic=SimpleNamespace(get_topic_name=lambda: "app-readings-changelog"),
    )
    app = SimpleNamespace(producer=SimpleNamespace(_ensure_producer=lambda: kafka))
    return TableChangelog(app, table), kafka, store


async def test_one_closed_batch_per_partition_in_order(stopped: list[tuple[str, str]]) -> None:
    log, kafka, _ = changelog(batch_size=16384)
    writes = [(p, f"k{i}".encode(), f"v{i}".encode()) for i, p in enumerate([2, 0, 2, 1, 0, 2])]
    await log.send(writes)
    assert stopped == []
    assert sorted((p, records) for p, records, _ in kafka.shipped) == [
        (0, [(b"k1", b"v1"), (b"k4", b"v4")]),
        (1, [(b"k3", b"v3")]),
        (2, [(b"k0", b"v0"), (b"k2", b"v2"), (b"k5", b"v5")]),
    ]


async def test_a_full_batch_is_shipped_and_the_next_follows_in_order(
    stopped: list[tuple[str, str]],
) -> None:
    log, kafka, _ = changelog(batch_size=200)
    writes = [(3, f"k{i}".encode(), bytes(60)) for i in range(7)]
    writes.insert(2, (3, b"big", bytes(1000)))  # larger than a batch: one of its own
    await log.send(writes)
    assert stopped == []
    assert len(kafka.shipped) > 2
    assert {p for p, _, _ in kafka.shipped} == {3}
    assert [k for _, records, _ in kafka.shipped for k, _ in records] == [k for _, k, _ in writes]


async def test_the_persisted_offset_is_the_batch_s_last_record() -> None:
    log, kafka, store = changelog(batch_size=16384)
    await log.send([(1, b"a", b"1"), (1, b"b", b"2"), (1, b"c", b"3")])
    ((_, _, future),) = kafka.shipped
    future.set_result(SimpleNamespace(topic="app-readings-changelog", partition=1, offset=40))
    await asyncio.sleep(0)  # done callbacks run on the loop
    assert store.persisted == {TP("app-readings-changelog", 1): 42}


async def test_a_failed_delivery_stops_the_worker(stopped: list[tuple[str, str]]) -> None:
    log, kafka, store = changelog(batch_size=16384)
    await log.send([(0, b"a", b"1")])
    assert stopped == []
    kafka.shipped[0][2].set_exception(RuntimeError("broker gone"))
    await asyncio.sleep(0)
    assert [kind for kind, _ in stopped] == ["changelog delivery to app-readings-changelog"]
    assert store.persisted == {}
