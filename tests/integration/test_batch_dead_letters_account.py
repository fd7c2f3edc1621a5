"""A batch record's dead letter carries its batch's account and mode (design §6, migration 0007).

The API publishes a batch's records before it commits the batch, so the sink can read a letter
of one of them first: it must wait for that commit (the batch id's advisory lock) and then take
the account from the batch's rows. Real PostgreSQL, the API's and the sink's own functions.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import asyncpg
import pytest

from meterflow.api import batch_store
from meterflow.api.batches import accepted
from meterflow.api.credentials import Principal
from meterflow.sink.batch_failures import BatchFailure, write_batch_failures
from meterflow.sink.rows import Source

pytestmark = pytest.mark.integration

WHEN = datetime(2026, 5, 1, 12, tzinfo=UTC)
PRINCIPAL = Principal(account_id="acc_letters", live_mode=True, key_id="key_1")


def failure(batch_id: str, index: int, offset: int) -> BatchFailure:
    return BatchFailure(
        batch_id, index, "unknown_device", "no such device", WHEN, Source("dead-letters", 0, offset)
    )


async def store_letters(url: str, failures: list[BatchFailure]) -> None:
    """What the sink's writer does: the letters in one transaction of their own."""
    conn = await asyncpg.connect(url)
    try:
        async with conn.transaction():
            await write_batch_failures(conn, failures, timeout_s=60)
    finally:
        await conn.close()


async def test_a_letter_read_before_its_batch_commits_waits_and_gets_its_account(
    migrated_database: str,
) -> None:
    api = await asyncpg.connect(migrated_database)
    try:
        transaction = api.transaction()
        await transaction.start()
        await batch_store.insert_batch(
            api,
            batch_id="bat_0a",
            principal=PRINCIPAL,
            records_submitted=2,
            records_accepted=2,
            time_created=WHEN,
            entries=[accepted(0, "mre_a", "R0"), accepted(1, "mre_b", "R1")],
        )
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
