"""Recover a memory-store table from its changelog in bulk, not one record at a time.

Why: with `memory://` every start reads each table's whole changelog. faust reads it with its
worker consumer: a fetch in the consumer's thread, the conductor building an event per record,
the changelog queue, then `Recovery._slurp_changelogs` taking one record per
`asyncio.wait_for`, with two formatted debug lines and a `need_recovery()` over every partition;
measured ~120-170 µs of CPU per record, so a 100,000-profile table cost ~12-20 s on every start
(docs/stream.md, "Profiles at scale"). A plain aiokafka consumer reads the same records with
`getmany` at ~4 µs each.

How: `Recovery._build_offsets` is where faust settles, per active changelog partition, the
offset its table already holds (a memory store holds nothing: the earliest offset - 1), right
after `_build_highwaters` settled the last offset to read. For the tables `bulk_recover` marks,
the wrapper then reads those partitions up to those highwaters with a consumer of its own,
hands each fetched batch to `table.apply_changelog_batch` (faust's own store code: tombstones,
the store's key→partition map) and moves the partition's offset to the last record applied.
faust then finds nothing left to read (`need_recovery()` false) and carries on exactly as for a
RocksDB table found up to date on disk: the same seek of the changelog, the same resume of
the streams. Stopped early (a new rebalance cancels it, faust's timeout, a partition that does
not reach its highwater), the offsets say how far it got and faust's own path reads the rest.

Only memory stores are read this way: a RocksDB table holds its offsets on disk and reads only
the tail. Values go in as the changelog holds them, so only raw tables (`key_type=bytes`,
`value_type=bytes`) may be marked.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import faust.stores.memory as faust_memory
from aiokafka import AIOKafkaConsumer, TopicPartition
from faust.tables.base import Collection
from faust.tables.recovery import Recovery
from faust.types import TP

from meterflow._guards import Names, Signature, replace
from meterflow.logs import event as log_event
from meterflow.stream.faust_fixes import BORROWED

log = logging.getLogger(__name__)

BULK_ATTR = "meterflow_bulk_recovery"
_PATCHED = "_meterflow_bulk_recovery"
FETCH_BYTES = 1024 * 1024  # per partition and fetch: ~2,000 profiles. 8 MiB read no faster
# and left a restarted worker 27 MB larger at 100,000 profiles (the allocator keeps the arenas)
IDLE_POLLS = 4  # empty polls in a row (IDLE_POLLS * POLL_MS) before faust takes over
POLL_MS = 500


class _Change:
    """A changelog record as faust's store reads one: `key`, `value`, `message.value`,
    `message.partition` (the event is its own message)."""

    __slots__ = ("key", "partition", "value")

    def __init__(self, key: bytes | None, value: bytes | None, partition: int) -> None:
        self.key = key
        self.value = value
        self.partition = partition

    @property
    def message(self) -> _Change:
        return self


class ChangelogReader(Protocol):
    """What `load` needs of an aiokafka consumer (a fake in the unit tests)."""

    def assign(self, partitions: list[TopicPartition]) -> None: ...

    def seek(self, partition: TopicPartition, offset: int) -> None: ...

    async def getmany(self, *partitions: TopicPartition, timeout_ms: int) -> Mapping[Any, Any]: ...

    async def position(self, partition: TopicPartition) -> int: ...


async def load(
    reader: ChangelogReader,
    starts: Mapping[TP, int],
    ends: Mapping[TP, int],
    apply: Callable[[TP, Sequence[_Change]], None],
    offsets: MutableMapping[TP, int],
) -> None:
    """Read each partition from `starts[tp] + 1` through `ends[tp]` (faust's "offset read up to"
    and highwater), `apply` each fetched batch, and keep `offsets[tp]` at the last offset
    applied (at `ends[tp]` once the reader's position passed it). Gives up on what is left after
    `IDLE_POLLS` polls in a row fetched nothing: faust's own recovery reads it then."""
    pending = {TopicPartition(tp.topic, tp.partition): tp for tp in starts if starts[tp] < ends[tp]}
    if not pending:
        return
    reader.assign(list(pending))
    for atp, tp in pending.items():
        reader.seek(atp, starts[tp] + 1)
    idle = 0
    while pending and idle < IDLE_POLLS:
        fetched = await reader.getmany(*pending, timeout_ms=POLL_MS)
        idle = 0 if any(fetched.values()) else idle + 1
        for atp, records in fetched.items():
            if atp not in pending or not records:
                continue
            tp = pending[atp]
            end = ends[tp]
            batch = [_Change(r.key, r.value, tp.partition) for r in records if r.offset <= end]
            if batch:
                apply(tp, batch)
                offsets[tp] = min(records[-1].offset, end)
        for atp, tp in list(pending.items()):
            if await reader.position(atp) > ends[tp]:
                offsets[tp] = ends[tp]
                del pending[atp]


@dataclass(frozen=True)
class _RunsBefore:
    """`Recovery._restart_recovery` (a mode `ServiceTask`) still builds the highwaters, then
    the offsets, then asks `need_recovery()`: the wrapper reads the highwaters just built."""

    names: tuple[str, ...] = ("_build_highwaters", "_build_offsets", "need_recovery")

    def mismatch(self) -> str | None:
        where = "faust.tables.recovery.Recovery._restart_recovery"
        task = Recovery.__dict__.get("_restart_recovery")
        fun = getattr(task, "fun", None)
        if fun is None or not inspect.isfunction(fun):
            return f"{where}: expected a mode ServiceTask over a function, found {task!r}"
        found = [n for n in inspect.unwrap(fun).__code__.co_names if n in self.names]
        if found[: len(self.names)] != list(self.names):
            expected = ", ".join(self.names)
            return f"{where}: expected its code to name {expected} in that order, found {found}"
        return None


def bulk_recover(table: Any, bootstrap: Sequence[str]) -> None:
    """Recover `table` (raw keys and values) in bulk whenever its store is a memory store."""
    if table.key_type is not bytes or table.value_type is not bytes:
        raise ValueError(f"bulk recovery needs a raw table (bytes keys and values): {table.name}")
    BORROWED.check_one("bulk_build_offsets")
    setattr(table, BULK_ATTR, tuple(bootstrap))
    _install_bulk_build_offsets()


@BORROWED.patch(
    Signature(Recovery, "_build_offsets", "async (self, consumer, tps, destination, title)"),
    Names(Recovery, "__init__", ("active_offsets", "active_highwaters", "tp_to_table")),
    _RunsBefore(),
    Signature(Collection, "apply_changelog_batch", "(self, batch)"),
    Names(faust_memory.Store, "_create_batch_iterator", ("key", "value", "message", "partition")),
)
def _install_bulk_build_offsets() -> None:
    """Wrap `Recovery._build_offsets`: for the active partitions of marked memory-store
    tables, read the changelog in bulk right after faust built their offsets."""
    original = Recovery._build_offsets
    if getattr(original, _PATCHED, False):
        return

    async def _build_offsets(
        self: Any, consumer: Any, tps: Any, destination: Any, title: str
    ) -> None:
        await original(self, consumer, tps, destination, title)
        if destination is not self.active_offsets:
            return  # standby partitions: faust's path
        await recover_in_bulk(self, tps, destination)

    setattr(_build_offsets, _PATCHED, True)
    replace(Recovery, "_build_offsets", _build_offsets, original)


async def recover_in_bulk(
    recovery: Any,
    tps: Any,
    offsets: MutableMapping[TP, int],
    reader_factory: Callable[[Sequence[str]], Awaitable[Any]] | None = None,
) -> None:
    """Read the marked memory-store tables' partitions among `tps` (see the module doc)."""
    by_bootstrap: dict[tuple[str, ...], list[TP]] = {}
    for tp in tps:
        table = recovery.tp_to_table.get(tp)
        bootstrap = getattr(table, BULK_ATTR, None)
        if not bootstrap or not isinstance(getattr(table, "data", None), faust_memory.Store):
            continue
        start = offsets.get(tp)
        if (-1 if start is None else start) < recovery.active_highwaters.get(tp, -1):
            by_bootstrap.setdefault(bootstrap, []).append(tp)
    for bootstrap, chosen in by_bootstrap.items():
        reader = await (reader_factory or _start_reader)(bootstrap)
        try:
            await _read_tables(recovery, reader, chosen, offsets)
        finally:
            await reader.stop()


async def _read_tables(
    recovery: Any, reader: Any, tps: Sequence[TP], offsets: MutableMapping[TP, int]
) -> None:
    ends = {tp: int(recovery.active_highwaters.get(tp, -1)) for tp in tps}
    starts = {tp: -1 if offsets.get(tp) is None else offsets[tp] for tp in tps}
    started = time.monotonic()
    applied = 0

    def apply(tp: TP, batch: Sequence[_Change]) -> None:
        nonlocal applied
        recovery.tp_to_table[tp].apply_changelog_batch(batch)
        applied += len(batch)

    await load(reader, starts, ends, apply, offsets)
    log_event(
        log,
        "changelog_bulk_recovered",
        records=applied,
        partitions=sum(1 for tp in tps if starts[tp] < ends[tp]),
        left_to_faust=sum(1 for tp in tps if offsets.get(tp, -1) < ends[tp]),
        seconds=round(time.monotonic() - started, 3),
    )


async def _start_reader(bootstrap: Sequence[str]) -> AIOKafkaConsumer:
    reader = AIOKafkaConsumer(
        bootstrap_servers=list(bootstrap),
        group_id=None,
        enable_auto_commit=False,
        isolation_level="read_committed",  # as the worker's consumer (faust_fixes)
        max_partition_fetch_bytes=FETCH_BYTES,
        fetch_max_bytes=8 * FETCH_BYTES,
        fetch_max_wait_ms=100,
    )
    await reader.start()
    return reader
