"""Bulk recovery of a memory-store table from its changelog (`stream/bulk_recovery.py`): the
table ends up as faust's own recovery would leave it, faust is left what was not read, and the
faust internals it wraps are guarded."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import faust
import pytest
from aiokafka import TopicPartition
from faust.tables.recovery import Recovery
from faust.types import TP

from meterflow.stream import bulk_recovery, faust_fixes
from meterflow.stream.bulk_recovery import bulk_recover, load, recover_in_bulk

CHANGELOG = "app-profiles-changelog"
P0, P1 = TP(CHANGELOG, 0), TP(CHANGELOG, 1)


@dataclass
class Record:
    offset: int
    key: bytes | None
    value: bytes | None


@dataclass
class FakeReader:
    """A changelog partition per TP; each `getmany` hands out up to `per_fetch` records of
    each assigned partition from its position, as aiokafka's consumer does."""

    logs: Mapping[TP, list[Record]]
    per_fetch: int = 2
    end: Mapping[TP, int] = field(default_factory=dict)  # position once the log is read
    positions: dict[TopicPartition, int] = field(default_factory=dict)
    assigned: list[TopicPartition] = field(default_factory=list)
    stopped: bool = False

    def assign(self, partitions: list[TopicPartition]) -> None:
        self.assigned = list(partitions)

    def seek(self, partition: TopicPartition, offset: int) -> None:
        self.positions[partition] = offset

    def _log(self, atp: TopicPartition) -> list[Record]:
        return self.logs[TP(atp.topic, atp.partition)]

    async def getmany(self, *partitions: TopicPartition, timeout_ms: int) -> dict[Any, Any]:
        fetched = {}
        for atp in partitions:
            left = [r for r in self._log(atp) if r.offset >= self.positions[atp]]
            records = left[: self.per_fetch]
            if records:
                fetched[atp] = records
                self.positions[atp] = records[-1].offset + 1
            else:
                tp = TP(atp.topic, atp.partition)
                self.positions[atp] = max(self.positions[atp], self.end.get(tp, 0))
        return fetched

    async def position(self, partition: TopicPartition) -> int:
        return self.positions[partition]

    async def stop(self) -> None:
        self.stopped = True


def changes(batches: list[tuple[TP, list[Any]]]) -> list[tuple[int, bytes | None, bytes | None]]:
    return [(c.message.partition, c.key, c.message.value) for _, batch in batches for c in batch]


async def test_load_applies_each_partition_from_its_offset_through_its_highwater() -> None:
    logs = {
        P0: [Record(o, f"k{o}".encode(), f"v{o}".encode()) for o in range(5)],
        P1: [Record(0, b"a", b"1"), Record(1, b"a", None), Record(2, b"b", b"2")],
    }
    applied: list[tuple[TP, list[Any]]] = []
    offsets: Counter[TP] = Counter({P0: 1, P1: -1})
    await load(
        FakeReader(logs),
        starts={P0: 1, P1: -1},
        ends={P0: 3, P1: 2},  # offset 4 of P0 came after faust's highwater: not read
        apply=lambda tp, batch: applied.append((tp, list(batch))),
        offsets=offsets,
    )
    assert changes([a for a in applied if a[0] == P0]) == [(0, b"k2", b"v2"), (0, b"k3", b"v3")]
    assert changes([a for a in applied if a[0] == P1]) == [
        (1, b"a", b"1"),
        (1, b"a", None),  # a tombstone stays a tombstone
        (1, b"b", b"2"),
    ]
    assert offsets == {P0: 3, P1: 2}


async def test_a_partition_whose_last_offsets_hold_no_record_counts_as_read() -> None:
    """Compaction or a transaction marker: the position passes the highwater, no record
    there; faust must not be left waiting for it."""
    logs = {P0: [Record(0, b"a", b"1")]}
    offsets: Counter[TP] = Counter({P0: -1})
    reader = FakeReader(logs, end={P0: 3})
    await load(reader, {P0: -1}, {P0: 2}, lambda tp, batch: None, offsets)
    assert offsets[P0] == 2


async def test_what_never_arrives_is_left_to_faust_with_the_offset_reached() -> None:
    logs = {P0: [Record(0, b"a", b"1"), Record(1, b"b", b"2")]}
    offsets: Counter[TP] = Counter({P0: -1})
    await load(FakeReader(logs), {P0: -1}, {P0: 5}, lambda tp, batch: None, offsets)
    assert offsets[P0] == 1  # faust reads from here on (its own path)


async def test_nothing_is_read_when_every_partition_is_up_to_date() -> None:
    reader = FakeReader({P0: []})
    offsets: Counter[TP] = Counter({P0: 4})
    await load(reader, {P0: 4}, {P0: 4}, lambda tp, batch: None, offsets)
    assert reader.assigned == []


def new_app(store: str = "memory://") -> faust.App:
    return faust.App(
        "mf-unit-bulk",
        broker="kafka://127.0.0.1:1",  # never connected: nothing here starts the app
        store=store,
        autodiscover=False,
        web_enabled=False,
    )


@dataclass
class FakeRecovery:
    tp_to_table: dict[TP, Any]
    active_highwaters: Counter[TP]


async def test_a_marked_memory_table_ends_as_the_changelog_says() -> None:
    app = new_app()
    table = app.Table("profiles", partitions=2, key_type=bytes, value_type=bytes)
    other = app.Table("other", partitions=2, key_type=bytes, value_type=bytes)  # not marked
    bulk_recover(table, ["127.0.0.1:1"])
    table.data[b"stale"] = b"x"  # also in the changelog, deleted there
    other_tp = TP("app-other-changelog", 0)
    logs = {
        P0: [Record(0, b"loc_a", b"A1"), Record(1, b"stale", None), Record(2, b"loc_a", b"A2")],
        P1: [Record(0, b"loc_b", b"B1")],
        other_tp: [Record(0, b"k", b"v")],
    }
    recovery = FakeRecovery({P0: table, P1: table, other_tp: other}, Counter({P0: 2, P1: 0}))
    recovery.active_highwaters[other_tp] = 0
    offsets: Counter[TP] = Counter({P0: -1, P1: -1, other_tp: -1})
    readers: list[FakeReader] = []

    async def reader_factory(bootstrap: Any) -> FakeReader:
        assert list(bootstrap) == ["127.0.0.1:1"]
        readers.append(FakeReader(logs))
        return readers[-1]

    await recover_in_bulk(recovery, {P0, P1, other_tp}, offsets, reader_factory)

    assert dict(table.data.items()) == {b"loc_a": b"A2", b"loc_b": b"B1"}
    assert offsets == {P0: 2, P1: 0, other_tp: -1}  # `other` is faust's to read
    assert len(other.data) == 0
    assert [r.stopped for r in readers] == [True]


async def test_a_rocksdb_table_or_an_up_to_date_one_is_left_to_faust() -> None:
    app = new_app()
    table = app.Table("profiles", partitions=1, key_type=bytes, value_type=bytes)
    bulk_recover(table, ["127.0.0.1:1"])
    table._data = object()  # type: ignore[attr-defined]  # any store but faust's memory one (RocksDB)
    fresh = FakeRecovery({P0: table}, Counter({P0: 3}))

    async def no_reader(bootstrap: Any) -> Any:
        raise AssertionError("no reader is needed")

    await recover_in_bulk(fresh, {P0}, Counter({P0: -1}), no_reader)
    up_to_date = new_app().Table("p2", partitions=1, key_type=bytes, value_type=bytes)
    bulk_recover(up_to_date, ["127.0.0.1:1"])
    _ = up_to_date.data  # faust makes the store on first use
    await recover_in_bulk(
        FakeRecovery({P0: up_to_date}, Counter({P0: 3})), {P0}, Counter({P0: 3}), no_reader
    )


def test_only_raw_tables_may_be_recovered_in_bulk() -> None:
    table = new_app().Table("json", partitions=1)
    with pytest.raises(ValueError, match="raw table"):
        bulk_recover(table, ["127.0.0.1:1"])


async def test_the_wrapper_reads_in_bulk_for_active_partitions_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app = new_app()
    bulk_recover(app.Table("profiles", partitions=1, key_type=bytes, value_type=bytes), ["x:1"])
    seen: list[Any] = []

    async def fake_bulk(recovery: Any, tps: Any, offsets: Any) -> None:
        seen.append(offsets)

    monkeypatch.setattr(bulk_recovery, "recover_in_bulk", fake_bulk)

    class Consumer:
        async def earliest_offsets(self, *tps: TP) -> dict[TP, int]:
            return dict.fromkeys(tps, 0)

    recovery = Recovery(app, tables=app.tables)
    recovery.active_offsets[P0] = None  # type: ignore[assignment]  # as `Recovery.add_active`
    consumer: Any = Consumer()
    await recovery._build_offsets(consumer, {P0}, recovery.active_offsets, "active")
    await recovery._build_offsets(consumer, {P0}, recovery.standby_offsets, "standby")
    assert seen == [recovery.active_offsets]
    assert recovery.active_offsets[P0] == -1  # faust's own offsets were built first


def test_the_guard_declares_the_bulk_recovery_patch() -> None:
    faust_fixes.BORROWED.check()
    assert "bulk_build_offsets" in {patch.name for patch in faust_fixes.BORROWED.patches}


def test_the_guard_fails_when_recovery_stops_building_highwaters_first() -> None:
    assert bulk_recovery._RunsBefore().mismatch() is None
    reordered = bulk_recovery._RunsBefore(("_build_offsets", "_build_highwaters"))
    problem = reordered.mismatch()
    assert problem is not None
    assert "in that order" in problem
