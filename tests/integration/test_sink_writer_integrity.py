"""The sink's writer keeps costs and breakdown consistent on PostgreSQL without a foreign key.

Migration 0002 dropped `energy_cost_breakdown.cost_id REFERENCES energy_costs` (its per-row
check was a third of PostgreSQL's CPU per result). The guarantee is now the writer's: a cost row
and its breakdown rows are written in one transaction from the same record, and a replay (the
staging + `ON CONFLICT (id) DO NOTHING` path) inserts breakdown rows only for the costs it
inserted. These tests replay results whose breakdown differs from the stored one, sequentially
and from two writers at once (a rebalance), and check that every breakdown row has its cost and
every cost has exactly the breakdown of the write that stored it.
"""

from __future__ import annotations

import asyncio
import copy
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg
import pytest

from meterflow.db import migrate
from meterflow.models import dumps
from meterflow.sink.batch import Batch
from meterflow.sink.decode import Persist, decode_cost
from meterflow.sink.rows import CostRows, Source
from meterflow.sink.text_rows import TextRows
from meterflow.sink.writer import PostgresWriter, WriteResult
from sink_documents import NOW, valid

pytestmark = pytest.mark.integration

T0 = datetime(2026, 3, 29, tzinfo=UTC)

ORPHANS = """
SELECT count(*) FROM energy_cost_breakdown b
LEFT JOIN energy_costs c ON c.id = b.cost_id
WHERE c.id IS NULL
"""


def document(n: int, write: int, *, items: int = 2) -> dict[str, Any]:
    """Result `n` as write `write` produced it: `write` is in every breakdown rate, so a stored
    item tells which write it came from. Every third result has a newline in a string, which
    sends it past the text path to the binary COPY (both COPY forms are exercised)."""
    doc = copy.deepcopy(valid())
    doc["id"] = f"ecs_{n:06d}"
    doc["meter_record_id"] = f"mre_{n:06d}"
    doc["data"]["session_reference_id"] = f"session\n{n}" if n % 3 == 0 else f"session {n}"
    start = T0 + timedelta(minutes=30 * n)
    doc["data"]["start_time"] = start.isoformat()
    doc["data"]["end_time"] = (start + timedelta(minutes=30)).isoformat()
    doc["data"]["breakdown"] = [
        {
            "start_time": (start + timedelta(minutes=10 * seq)).isoformat(),
            "end_time": (start + timedelta(minutes=10 * seq + 10)).isoformat(),
            "rate": Decimal(f"{write}.{n:06d}{seq}"),
            "energy": Decimal("0.1"),
            "cost": Decimal("0.01"),
        }
        for seq in range(items)
    ]
    return doc


def batch_of(docs: list[dict[str, Any]], partition: int) -> Batch:
    """A batch as the sink builds it: each record decoded, the first read of an id wins."""
    batch = Batch()
    for offset, doc in enumerate(docs):
        source = Source("energy-costs", partition, offset)
        outcome = decode_cost(b"loc_1", dumps(doc), source, NOW)
        assert isinstance(outcome, Persist)
        batch.add_cost(outcome, "energy-costs", partition, offset, 0.0)
    return batch


async def write(writer: PostgresWriter, batch: Batch) -> WriteResult:
    """Like the sink: a failed write (here, a deadlock between two writers) is retried whole."""
    for _ in range(10):
        try:
            return await writer.write(batch)
        except asyncpg.DeadlockDetectedError:
            continue
    raise AssertionError("ten deadlocks in a row")


async def stored(url: str) -> tuple[dict[str, int], dict[str, list[tuple[int, Decimal]]], int]:
    """(cost id -> partition it was read from, cost id -> its (seq, rate) items, orphans)."""
    conn = await asyncpg.connect(url)
    try:
        costs = {
            r["id"]: r["source_partition"]
            for r in await conn.fetch("SELECT id, source_partition FROM energy_costs")
        }
        items: dict[str, list[tuple[int, Decimal]]] = {}
        for r in await conn.fetch(
            "SELECT cost_id, seq, rate FROM energy_cost_breakdown ORDER BY cost_id, seq"
        ):
            items.setdefault(r["cost_id"], []).append((r["seq"], r["rate"]))
        orphans = await conn.fetchval(ORPHANS)
    finally:
        await conn.close()
    return costs, items, orphans


def expected_items(doc: dict[str, Any]) -> list[tuple[int, Decimal]]:
    return [(seq, item["rate"]) for seq, item in enumerate(doc["data"]["breakdown"])]


async def test_migrated_breakdown_has_its_primary_key_and_no_foreign_key(
    empty_database: str,
) -> None:
    await migrate(empty_database)
    conn = await asyncpg.connect(empty_database)
    try:
        constraints = {
            r["contype"]: r["definition"]
            for r in await conn.fetch(
                "SELECT contype::text, pg_get_constraintdef(oid) AS definition FROM pg_constraint "
                "WHERE conrelid = 'energy_cost_breakdown'::regclass"
            )
        }
    finally:
        await conn.close()
    assert constraints == {"p": "PRIMARY KEY (cost_id, seq)"}


async def test_replays_keep_each_cost_with_the_breakdown_it_was_stored_with(
    empty_database: str,
) -> None:
    await migrate(empty_database)
    first = [document(n, 1) for n in range(20)]
    # A later write of results 10..29: the stored ten come back with three different items
    # (which must not be added), plus in-batch duplicates of new ones (the first read wins).
    second = [document(n, 2, items=3 if n < 20 else 2) for n in range(10, 30)]
    second += [document(n, 3) for n in range(20, 25)]
    writer = PostgresWriter(empty_database)
    try:
        batch = batch_of(first, partition=1)
        kinds = {type(p.rows) for p in batch.costs.values()}
        assert kinds == {TextRows, CostRows}  # both COPY forms are written
        result = await write(writer, batch)
        assert (result.fast_path, result.costs_inserted, result.breakdown_inserted) == (
            True,
            20,
            40,
        )
        result = await write(writer, batch_of(second, partition=2))
        assert (result.fast_path, result.costs_inserted, result.breakdown_inserted) == (
            False,
            10,
            20,
        )
        result = await write(writer, batch_of(second + first, partition=3))  # all stored
        assert (result.fast_path, result.costs_inserted, result.breakdown_inserted) == (
            False,
            0,
            0,
        )
    finally:
        await writer.close()

    costs, items, orphans = await stored(empty_database)
    assert orphans == 0
    by_write = {1: {d["id"]: d for d in first}, 2: {d["id"]: d for d in second[:20]}}
    assert costs == {f"ecs_{n:06d}": 1 if n < 20 else 2 for n in range(30)}
    assert set(items) == set(costs)
    for cost_id, partition in costs.items():
        assert items[cost_id] == expected_items(by_write[partition][cost_id]), cost_id


async def test_two_writers_at_once_keep_each_cost_with_its_own_breakdown(
    empty_database: str,
) -> None:
    """Two sink members writing overlapping batches (a rebalance): whichever stores a result,
    its breakdown comes with it, whole, and the other adds nothing to it."""
    await migrate(empty_database)
    # In each half of the overlap one writer has an extra item: whichever loses, a loser's
    # item added to the winner's cost would show.
    ours = [document(n, 1, items=3 if n >= 450 else 2) for n in range(0, 600)]
    theirs = [document(n, 2, items=3 if n < 450 else 2) for n in range(300, 900)]
    writers = [PostgresWriter(empty_database), PostgresWriter(empty_database)]
    try:
        results = await asyncio.gather(
            write(writers[0], batch_of(ours, partition=1)),
            write(writers[1], batch_of(theirs, partition=2)),
        )
    finally:
        for writer in writers:
            await writer.close()

    assert sum(r.costs_inserted for r in results) == 900
    costs, items, orphans = await stored(empty_database)
    assert orphans == 0
    assert set(costs) == {f"ecs_{n:06d}" for n in range(900)}
    assert set(items) == set(costs)
    by_write = {1: {d["id"]: d for d in ours}, 2: {d["id"]: d for d in theirs}}
    for cost_id, partition in costs.items():
        assert items[cost_id] == expected_items(by_write[partition][cost_id]), cost_id
    assert sum(r.breakdown_inserted for r in results) == sum(len(v) for v in items.values())
