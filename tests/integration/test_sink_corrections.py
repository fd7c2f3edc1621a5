"""Duplicates and corrections of one result id, through the sink's writer on PostgreSQL (§8).

A duplicate (same content) changes nothing; a correction (other content, read later in
partition order) archives the stored version with its breakdown and replaces it, revision + 1;
a version read earlier never replaces a later one, whatever the batch boundaries.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg
import pytest
import pytest_asyncio

from database_support import temporary_database
from meterflow.models import dumps
from meterflow.sink.batch import Batch
from meterflow.sink.decode import Persist, decode_cost
from meterflow.sink.rows import CostRows, Source
from meterflow.sink.text_rows import TextRows
from meterflow.sink.writer import FOREIGN_REASON, ForeignResultsError, PostgresWriter, WriteResult
from samples import Item, energy_cost

pytestmark = pytest.mark.integration

T0 = datetime(2026, 3, 29, tzinfo=UTC)
NOW = datetime(2026, 5, 1, tzinfo=UTC)
TOPIC = "energy-costs"


def version(n: int, energy: str, *, rate: str = "0.25", priced: int = 0, **more: Any) -> bytes:
    """Result `n` with this energy (two equal halves at `rate`); `priced` shifts time_created.
    A `session_reference_id` with a newline sends it past the text path (binary COPY)."""
    start = T0 + timedelta(hours=n)
    middle, end = start + timedelta(minutes=15), start + timedelta(minutes=30)
    half = Decimal(energy) / 2
    cost = (half * Decimal(rate)).quantize(Decimal("0.000001"))
    doc = energy_cost(
        f"ecs_{n:06d}",
        f"mre_{n:06d}",
        start,
        end,
        [
            Item(start, middle, Decimal(rate), half, cost),
            Item(middle, end, Decimal(rate), half, cost),
        ],
        request={"location_id": "loc_1", "energy": Decimal(energy)},
        time_created=NOW + timedelta(seconds=priced),
        session_reference_id=more.pop("session", f"s{n}"),
        record_reference_id=f"ref-{n}",
    )
    doc.update(more)
    return dumps(doc)


def batch(*reads: tuple[bytes, int, int] | tuple[bytes, int, int, int | None]) -> Batch:
    """A batch of (value, partition, offset[, Kafka timestamp in ms]) reads, in this order, as
    the sink builds it."""
    out = Batch()
    for value, partition, offset, *stamp in reads:
        source = Source(TOPIC, partition, offset, *stamp)
        outcome = decode_cost(b"loc_1", value, source, NOW)
        assert isinstance(outcome, Persist)
        out.add_cost(outcome, TOPIC, partition, offset, 0.0)
    return out


@pytest.fixture
def db(migrated_database: str) -> str:
    return migrated_database


@pytest_asyncio.fixture
async def writer(db: str) -> AsyncIterator[PostgresWriter]:
    w = PostgresWriter(db)
    try:
        yield w
    finally:
        await w.close()


async def state(url: str) -> dict[str, Any]:
    """Everything a report or an audit could read: rows, breakdowns, history."""
    conn = await asyncpg.connect(url)
    try:
        rows = {
            r["id"]: dict(r)
            for r in await conn.fetch(
                "SELECT id, revision, energy_kwh, cost, source_partition, source_offset "
                "FROM energy_costs"
            )
        }
        items: dict[str, list[tuple[int, Decimal, Decimal]]] = {}
        for r in await conn.fetch(
            "SELECT cost_id, seq, energy_kwh, rate FROM energy_cost_breakdown ORDER BY cost_id, seq"
        ):
            items.setdefault(r["cost_id"], []).append((r["seq"], r["energy_kwh"], r["rate"]))
        history = {
            (r["id"], r["revision"]): dict(r)
            for r in await conn.fetch(
                "SELECT id, revision, energy_kwh, cost, source_offset, breakdown::text AS items, "
                "replaced_at, inserted_at FROM energy_cost_history"
            )
        }
    finally:
        await conn.close()
    return {"rows": rows, "items": items, "history": history}


def halves(energy: str, rate: str = "0.25") -> list[tuple[int, Decimal, Decimal]]:
    half = Decimal(energy) / 2
    return [(0, half, Decimal(rate)), (1, half, Decimal(rate))]


async def test_duplicate_changes_nothing(writer: PostgresWriter, db: str) -> None:
    """Same content at a later offset, priced again at another time and rate: one row, as first
    stored (the price is not content: the first one stays), revision 1, no history."""
    first = await writer.write(batch((version(1, "1.5"), 0, 0)))
    assert first.costs_inserted == 1
    before = await state(db)
    again = version(1, "1.50", rate="0.99", priced=60)  # 1.50 == 1.5: numbers compare as such
    result = await writer.write(batch((again, 0, 7)))
    assert (result.costs_inserted, result.costs_replaced) == (0, 0)
    assert await state(db) == before
    assert before["rows"]["ecs_000001"]["revision"] == 1
    assert before["history"] == {}


@pytest.mark.parametrize("session", ["s1", "s\n1"], ids=["text-copy", "binary-copy"])
async def test_correction_replaces_row_and_breakdown_and_keeps_history(
    writer: PostgresWriter, db: str, session: str
) -> None:
    await writer.write(batch((version(1, "1.5", session=session), 0, 3)))
    stored = await state(db)
    correction = batch((version(1, "2.0", rate="0.30", session=session), 0, 9))
    assert {type(p.rows) for p in correction.costs.values()} == {
        TextRows if "\n" not in session else CostRows
    }
    result = await writer.write(correction)
    assert (result.costs_inserted, result.costs_replaced, result.breakdown_inserted) == (0, 1, 2)

    after = await state(db)
    row = after["rows"]["ecs_000001"]
    assert (row["revision"], row["energy_kwh"], row["source_offset"]) == (2, Decimal("2.0"), 9)
    assert row["cost"] == Decimal("0.600000")
    assert after["items"]["ecs_000001"] == halves("2.0", "0.30")
    ((key, old),) = after["history"].items()
    assert key == ("ecs_000001", 1)
    assert (old["energy_kwh"], old["cost"], old["source_offset"]) == (
        Decimal("1.5"),
        stored["rows"]["ecs_000001"]["cost"],
        3,
    )
    archived = json.loads(old["items"], parse_float=Decimal)
    assert [(i["seq"], i["energy_kwh"], i["rate"]) for i in archived] == halves("1.5")
    assert [i["cost"] for i in archived] == [Decimal("0.187500")] * 2
    assert archived[0]["start_time"].startswith("2026-03-29T01:00:00")
    assert old["inserted_at"] <= old["replaced_at"]


async def test_older_version_never_replaces_a_newer_one(writer: PostgresWriter, db: str) -> None:
    """A replay of the topic (or of a batch after a crash) brings the older version again."""
    v1, v2 = version(1, "1.5"), version(1, "2.0")
    await writer.write(batch((v1, 0, 10)))
    await writer.write(batch((v2, 0, 20)))
    corrected = await state(db)
    for replay in (
        batch((v1, 0, 10)),  # the replay of the older version alone
        batch((v1, 0, 10), (v2, 0, 20)),  # the whole partition again, one batch
        batch((version(1, "9.9"), 0, 15)),  # some other content, read before v2
    ):
        result = await writer.write(replay)
        assert (result.costs_inserted, result.costs_replaced) == (0, 0)
        assert await state(db) == corrected
    assert corrected["rows"]["ecs_000001"]["revision"] == 2


async def test_back_to_earlier_content_is_a_correction_too(writer: PostgresWriter, db: str) -> None:
    """v1, v2, then v1's content again at a later offset: the latest read wins, revision 3."""
    await writer.write(batch((version(1, "1.5"), 0, 1)))
    await writer.write(batch((version(1, "2.0"), 0, 2)))
    result = await writer.write(batch((version(1, "1.5"), 0, 3)))
    assert result.costs_replaced == 1
    after = await state(db)
    assert after["rows"]["ecs_000001"]["revision"] == 3
    assert after["rows"]["ecs_000001"]["energy_kwh"] == Decimal("1.5")
    assert sorted(after["history"]) == [("ecs_000001", 1), ("ecs_000001", 2)]


async def test_several_versions_in_one_batch_end_as_if_read_one_by_one(
    db: str, database_url: str
) -> None:
    """The reads of one partition, written in one batch or one record per batch, give the
    same rows, breakdowns and history (revisions included): batch boundaries never matter."""
    reads = [
        (version(1, "1.0"), 0, 0),
        (version(2, "1.0"), 0, 1),
        (version(1, "1.1"), 0, 2),  # correction
        (version(1, "1.1", priced=5), 0, 3),  # its duplicate
        (version(3, "1.0"), 0, 4),
        (version(1, "1.2"), 0, 5),  # second correction
        (version(2, "2.0"), 0, 6),
        (version(1, "1.1"), 0, 2),  # a re-read of an older offset (after a rebalance)
    ]
    one = PostgresWriter(db)
    try:
        result = await one.write(batch(*reads))
    finally:
        await one.close()
    assert (result.costs_inserted, result.costs_replaced) == (3, 3)
    whole = await state(db)
    assert {k: r["revision"] for k, r in whole["rows"].items()} == {
        "ecs_000001": 3,
        "ecs_000002": 2,
        "ecs_000003": 1,
    }
    assert whole["rows"]["ecs_000001"]["energy_kwh"] == Decimal("1.2")
    assert sorted(whole["history"]) == [
        ("ecs_000001", 1),
        ("ecs_000001", 2),
        ("ecs_000002", 1),
    ]

    async with temporary_database(database_url, migrated=True) as single:
        w = PostgresWriter(single)
        try:
            for read in reads:
                await w.write(batch(read))
        finally:
            await w.close()
        separate = await state(single)

    def comparable(s: dict[str, Any]) -> dict[str, Any]:
        history = {
            k: {c: v for c, v in h.items() if c not in ("replaced_at", "inserted_at")}
            for k, h in s["history"].items()
        }
        return {"rows": s["rows"], "items": s["items"], "history": history}

    assert comparable(separate) == comparable(whole)


async def test_across_partitions_the_later_priced_version_wins(
    writer: PostgresWriter, db: str
) -> None:
    """The same id read from two partitions (the topic re-partitioned): no offset order, so the
    version priced later wins, and a replay of either decides the same way."""
    early, late = version(1, "1.5", priced=0), version(1, "2.0", priced=30)
    await writer.write(batch((late, 2, 5)))
    result = await writer.write(batch((early, 0, 900)))  # higher offset, other partition
    assert result.costs_replaced == 0
    await writer.write(batch((early, 0, 900), (late, 2, 5)))
    after = await state(db)
    assert after["rows"]["ecs_000001"]["energy_kwh"] == Decimal("2.0")
    assert after["rows"]["ecs_000001"]["revision"] == 1
    assert after["history"] == {}


@pytest.mark.parametrize("slow_path", [False, True])
async def test_the_version_received_later_wins_whenever_it_is_read(
    writer: PostgresWriter, db: str, slow_path: bool
) -> None:
    """An original sent to `meter-records` and its correction sent through the API a moment
    later: the worker may emit the original after the API emitted the correction, so it is read
    later; its timestamp (its record's) is older, and it replaces nothing (design §8.3)."""
    more = {"session": "s\n1"} if slow_path else {}  # binary COPY rather than COPY text
    sent, corrected = 1_780_000_000_000, 1_780_000_000_050  # ms
    original, correction = version(1, "1.0", **more), version(1, "2.0", **more)
    await writer.write(batch((correction, 3, 7, corrected)))
    result = await writer.write(batch((original, 3, 8, sent)))  # same partition, read later
    assert result.costs_replaced == 0
    result = await writer.write(batch((original, 0, 900, sent)))  # or from another partition
    assert result.costs_replaced == 0
    after = await state(db)
    assert after["rows"]["ecs_000001"]["energy_kwh"] == Decimal("2.0")
    assert after["rows"]["ecs_000001"]["revision"] == 1
    # received later: replaces, whatever the partition and offset it is read at
    result = await writer.write(batch((version(1, "3.0", **more), 0, 1, corrected + 1)))
    assert result.costs_replaced == 1
    # the same millisecond, or no timestamp on one side: the partition order decides
    result = await writer.write(batch((version(1, "4.0", **more), 0, 0, corrected + 1)))
    assert result.costs_replaced == 0
    result = await writer.write(batch((version(1, "5.0", **more), 0, 2, corrected + 1)))
    assert result.costs_replaced == 1
    result = await writer.write(batch((version(1, "6.0", **more), 0, 3, None)))
    assert result.costs_replaced == 1
    conn = await asyncpg.connect(db)
    try:
        stored = await conn.fetchrow(
            "SELECT energy_kwh, revision, received_at FROM energy_costs WHERE id = 'ecs_000001'"
        )
        kept = await conn.fetchval(
            "SELECT received_at FROM energy_cost_history WHERE id = 'ecs_000001' AND revision = 3"
        )
    finally:
        await conn.close()
    assert (stored["energy_kwh"], stored["revision"], stored["received_at"]) == (
        Decimal("6.0"),
        4,
        None,
    )
    assert kept == datetime(2026, 5, 28, 20, 26, 40, 51000, tzinfo=UTC)


async def test_a_plain_batch_keeps_the_fast_path(writer: PostgresWriter) -> None:
    """New ids only: one COPY per table, as before. A batch meeting stored ids goes through
    staging, and the one after it too; the first clean batch goes back to the fast path."""
    assert (await writer.write(batch((version(1, "1"), 0, 0)))).fast_path
    assert (await writer.write(batch((version(2, "1"), 0, 1)))).fast_path
    met = await writer.write(batch((version(2, "1"), 0, 1), (version(3, "1"), 0, 2)))
    assert (met.fast_path, met.costs_inserted) == (False, 1)
    clean = await writer.write(batch((version(4, "1"), 0, 3)))
    assert (clean.fast_path, clean.costs_inserted) == (False, 1)
    assert (await writer.write(batch((version(5, "1"), 0, 4)))).fast_path


async def test_two_writers_applying_the_same_corrections_at_once(db: str) -> None:
    """Two members holding the same batch during a rebalance: each correction is applied once
    (revision 2, one history row), whichever writer gets there first; the other finds its
    version already stored. New ids in the same batches are inserted once."""
    firsts = batch(*[(version(n, "1.0"), 0, n) for n in range(200)])
    both = [(version(n, "2.0"), 0, 1000 + n) for n in range(200)]
    both += [(version(n, "1.0"), 0, 2000 + n) for n in range(200, 300)]
    setup = PostgresWriter(db)
    writers = [PostgresWriter(db), PostgresWriter(db)]
    try:
        await setup.write(firsts)
        results = await asyncio.gather(*(write_retrying(w, batch(*both)) for w in writers))
    finally:
        for w in (setup, *writers):
            await w.close()
    assert sum(r.costs_replaced for r in results) == 200
    assert sum(r.costs_inserted for r in results) == 100
    after = await state(db)
    assert {k: r["revision"] for k, r in after["rows"].items()} == {
        f"ecs_{n:06d}": 2 if n < 200 else 1 for n in range(300)
    }
    assert sorted(after["history"]) == [(f"ecs_{n:06d}", 1) for n in range(200)]
    assert all(after["items"][f"ecs_{n:06d}"] == halves("2.0") for n in range(200))


async def test_an_unstorable_version_is_refused_alone(writer: PostgresWriter, db: str) -> None:
    """A later version PostgreSQL refuses (a number beyond NUMERIC in `request`) is found by
    the per-row probe under its own key and dead-lettered; the other versions are stored. (The
    probe once kept each probed row: two versions of result 2 then collided in staging.)"""
    huge = {"location_id": "loc_1", "energy": Decimal("1E+200000")}
    reads = batch(
        (version(1, "1.0"), 0, 0),
        (version(2, "1.0"), 0, 1),
        (version(2, "2.0"), 0, 2),
        (version(1, "2.0", request=huge), 0, 3),
    )
    with pytest.raises(asyncpg.DataError):
        await writer.write(reads)
    costs, locations = await writer.find_unstorable(reads)
    assert (list(costs), locations) == (["ecs_000001@0:3"], {})
    reads.reject(costs, {}, NOW)
    result = await writer.write(reads)
    assert (result.costs_inserted, result.costs_replaced) == (2, 1)
    after = await state(db)
    assert {i: (r["revision"], r["energy_kwh"]) for i, r in after["rows"].items()} == {
        "ecs_000001": (1, Decimal("1.0")),
        "ecs_000002": (2, Decimal("2.0")),
    }
    assert [letter.source.offset for _, letter in reads.dead_letters if letter.source] == [3]


@pytest.mark.parametrize(
    "other", [{"account_id": "acc_other"}, {"live_mode": True}], ids=["account", "mode"]
)
async def test_a_version_of_another_account_or_mode_is_refused(
    writer: PostgresWriter, db: str, other: dict[str, Any]
) -> None:
    """A record sent to `meter-records` with another account's `id` is priced under its own
    location's account, so its result carries that account's result id: it is neither a
    duplicate nor a correction of the stored result (§8.1), which stays as it was, in a first
    read and in a later round of one batch alike; both are refused under their own keys."""
    await writer.write(batch((version(1, "1.0"), 0, 0)))
    before = await state(db)
    reads = batch(
        (version(1, "5.0", **other), 0, 1),  # round 0: a stored id
        (version(2, "1.0"), 0, 2),
        (version(2, "7.0", **other), 0, 3),  # round 1: the id stored by round 0
    )
    refused: dict[str, str] = {}
    while True:
        try:
            result = await writer.write(reads)
            break
        except ForeignResultsError as error:
            refused |= error.versions
            reads.reject(error.versions, {}, NOW)
    assert refused == {"ecs_000001": FOREIGN_REASON, "ecs_000002@0:3": FOREIGN_REASON}
    assert (result.costs_inserted, result.costs_replaced) == (1, 0)
    after = await state(db)
    assert after["rows"]["ecs_000001"] == before["rows"]["ecs_000001"]
    assert after["items"]["ecs_000001"] == before["items"]["ecs_000001"]
    assert (after["rows"]["ecs_000002"]["revision"], after["history"]) == (1, {})
    assert [letter.source.offset for _, letter in reads.dead_letters if letter.source] == [1, 3]


async def write_retrying(writer: PostgresWriter, b: Batch) -> WriteResult:
    """Like the sink: a failed write (a deadlock between two writers' inserts) is retried."""
    for _ in range(10):
        try:
            return await writer.write(b)
        except asyncpg.DeadlockDetectedError:
            continue
    raise AssertionError("ten deadlocks in a row")


def bill_version(energy: str, *, session: str) -> bytes:
    """Result 1 as a taxed location with a `duos` component prices it (design §11): the
    breakdown items are named, the cost carries tax and total (5 %)."""
    raw = json.loads(version(1, energy, session=session), parse_float=Decimal)
    data = raw["data"]
    value = sum((item["cost"] for item in data["breakdown"]), Decimal(0))
    tax = (value * Decimal("0.05")).quantize(Decimal("0.000001"))
    data["cost"] |= {"value": value, "tax": tax, "total": value + tax}
    for item, name in zip(data["breakdown"], ("energy", "duos"), strict=True):
        item["component"] = name
    return dumps(raw)


@pytest.mark.parametrize("session", ["s1", "s\n1"], ids=["text-copy", "binary-copy"])
async def test_tax_total_and_components_are_stored_and_kept_in_history(
    writer: PostgresWriter, db: str, session: str
) -> None:
    """Migration 0005: both COPY paths store the bill fields, and a correction archives them
    (the row's twins in `energy_cost_history`, `component` in its jsonb breakdown)."""
    first = batch((bill_version("1.5", session=session), 0, 3))
    assert {type(p.rows) for p in first.costs.values()} == {
        TextRows if "\n" not in session else CostRows
    }
    await writer.write(first)
    await writer.write(batch((bill_version("2.0", session=session), 0, 9)))
    conn = await asyncpg.connect(db)
    try:
        row = await conn.fetchrow("SELECT revision, cost, tax, total FROM energy_costs")
        items = await conn.fetch("SELECT component FROM energy_cost_breakdown ORDER BY seq")
        old = await conn.fetchrow(
            "SELECT tax, total, breakdown::text AS b FROM energy_cost_history"
        )
    finally:
        await conn.close()
    assert tuple(row) == (2, Decimal("0.500000"), Decimal("0.025000"), Decimal("0.525000"))
    assert [r["component"] for r in items] == ["energy", "duos"]
    assert (old["tax"], old["total"]) == (Decimal("0.018750"), Decimal("0.393750"))
    assert [i["component"] for i in json.loads(old["b"])] == ["energy", "duos"]
