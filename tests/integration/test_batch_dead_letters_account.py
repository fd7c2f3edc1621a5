"""A batch record's dead letter carries its batch's account and mode (design §6, migration 0007).

The API publishes a batch's records before it commits the batch, so the sink can read a letter
of one of them first: it must wait for that commit (the batch id's advisory lock) and then take
the account from the batch's rows. Real PostgreSQL, the API's and the sink's own functions.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime

import asyncpg
import pytest

from meterflow.api import batch_store
from meterflow.api.batch_store import BatchEntry, Meter, ReadingKey
from meterflow.api.batches import accepted, accepted_reading
from meterflow.api.credentials import Principal
from meterflow.sink.batch_failures import BatchFailure, Identity, write_batch_failures
from meterflow.sink.rows import Source

pytestmark = pytest.mark.integration

WHEN = datetime(2026, 5, 1, 12, tzinfo=UTC)
PRINCIPAL = Principal(account_id="acc_letters", live_mode=True, key_id="key_1")
METER = Meter("loc_mine", "dev_mine")


def mine(index: int) -> BatchEntry:
    """The batch's record `index`: id `mre_{index}`, reference `R{index}`, on `METER`."""
    return accepted(index, f"mre_{index}", f"R{index}", METER)


def ours(**identity: str) -> Identity:
    """An identity on `METER`, as the letter of one of the batch's records gives it."""
    return Identity(location_id=METER.location_id, object_id=METER.object_id, **identity)


def failure(
    batch_id: str, index: int, offset: int, identity: Identity | None = None
) -> BatchFailure:
    """A letter of the record `mine(index)` stored, unless `identity` says it is another
    record."""
    return BatchFailure(
        batch_id,
        index,
        "unknown_device",
        "no such device",
        WHEN,
        Source("dead-letters", 0, offset),
        identity or ours(record_id=f"mre_{index}"),
    )


async def insert_batch(api: asyncpg.Connection, batch_id: str, entries: list[BatchEntry]) -> None:
    """What the API stores for a batch of `entries`, all accepted."""
    await batch_store.insert_batch(
        api,
        batch_id=batch_id,
        principal=PRINCIPAL,
        records_submitted=len(entries),
        records_accepted=len(entries),
        time_created=WHEN,
        entries=entries,
    )


async def store_letters(url: str, failures: list[BatchFailure]) -> None:
    """What the sink's writer does: the letters in one transaction of their own."""
    conn = await asyncpg.connect(url)
    try:
        async with conn.transaction():
            await write_batch_failures(conn, failures)
    finally:
        await conn.close()


async def test_a_letter_read_before_its_batch_commits_waits_and_gets_its_account(
    migrated_database: str,
) -> None:
    api = await asyncpg.connect(migrated_database)
    try:
        transaction = api.transaction()
        await transaction.start()
        await insert_batch(api, "bat_0a", [mine(0), mine(1)])
        # The records are on Kafka now, priced, dead-lettered and read by the sink:
        sink = asyncio.create_task(store_letters(migrated_database, [failure("bat_0a", 1, 5)]))
        await asyncio.sleep(1.0)
        assert not sink.done()  # waiting for the API's commit, not storing nothing
        await transaction.commit()
        await sink
        rows = await api.fetch(
            "SELECT batch_id, batch_index, account_id, live_mode FROM batch_dead_letters"
        )
        assert [tuple(r) for r in rows] == [("bat_0a", 1, "acc_letters", True)]
    finally:
        await api.close()


async def test_a_letter_without_a_stored_batch_is_not_stored(migrated_database: str) -> None:
    """Its batch's commit failed after the publish (or a producer set `batch_id` itself): no
    account to give it, and no batch status could ever show it."""
    await store_letters(migrated_database, [failure("bat_0b", 0, 6)])
    conn = await asyncpg.connect(migrated_database)
    try:
        assert await conn.fetchval("SELECT count(*) FROM batch_dead_letters") == 0
    finally:
        await conn.close()


async def test_a_letter_claiming_another_records_batch_fields_is_not_stored(
    migrated_database: str,
) -> None:
    """A producer of `meter-records` who learnt a batch id sets its `batch_id` and
    `batch_index` on a record of its own: the letter names another record than the row's, so
    the batch's record is not marked FAILED; its own letters, by id or by reference, are."""
    api = await asyncpg.connect(migrated_database)
    try:
        async with api.transaction():
            await insert_batch(api, "bat_0c", [mine(i) for i in range(3)])
        theirs = {"location_id": "loc_theirs", "object_id": "dev_mine"}  # another account's
        forged = [
            failure("bat_0c", 0, 7, ours(record_id="mre_forged")),
            failure("bat_0c", 1, 8, ours(reference="R0")),  # record 0's reference
            failure("bat_0c", 2, 9, Identity()),  # no identity at all
            # the record's own reference and id, from another meter: another account's record
            failure("bat_0c", 0, 14, Identity(reference="R0", **theirs)),
            failure("bat_0c", 1, 15, Identity(record_id="mre_1", **theirs)),
            failure("bat_0c", 2, 16, replace(ours(reference="R2"), object_id="dev_other")),
        ]
        await store_letters(migrated_database, forged)
        assert await api.fetchval("SELECT count(*) FROM batch_dead_letters") == 0

        real = [
            failure("bat_0c", 0, 10),  # by the id the API gave it
            failure("bat_0c", 1, 11, ours(reference="R1")),  # by its reference
            # two letters matching one row in one statement: one row, the later read
            failure("bat_0c", 2, 12, ours(reference="R2")),
            failure("bat_0c", 2, 13, ours(record_id="mre_2")),
        ]
        await store_letters(migrated_database, real)
        rows = await api.fetch(
            "SELECT batch_index, source_offset FROM batch_dead_letters ORDER BY batch_index"
        )
        assert [tuple(r) for r in rows] == [(0, 10), (1, 11), (2, 13)]
    finally:
        await api.close()


async def test_a_reading_s_letter_must_come_from_its_meter(migrated_database: str) -> None:
    """A device id two accounts list: a reading of the other account's location at the same
    time, carrying this batch's fields, marked this account's reading FAILED."""
    key = ReadingKey("loc_mine", "dev_mine", "INBOUND", WHEN, WHEN)
    api = await asyncpg.connect(migrated_database)
    try:
        async with api.transaction():
            await insert_batch(api, "bat_0d", [accepted_reading(0, None, key)])
        device_and_time = {"object_id": "dev_mine", "at": WHEN}
        forged = failure("bat_0d", 0, 20, Identity(location_id="loc_theirs", **device_and_time))
        await store_letters(migrated_database, [forged])
        assert await api.fetchval("SELECT count(*) FROM batch_dead_letters") == 0
        real = failure("bat_0d", 0, 21, Identity(location_id="loc_mine", **device_and_time))
        await store_letters(migrated_database, [real])
        assert await api.fetchval("SELECT source_offset FROM batch_dead_letters") == 21
    finally:
        await api.close()
