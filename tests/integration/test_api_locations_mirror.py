"""Both writers of the `locations` mirror store the same document: the API's PUT, and the sink
applying the message that PUT published (`contract.columns.location_row`). Before the contract
package the PUT stored rates as JSON strings and the sink as numbers."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import aiohttp
import asyncpg
import pytest
import pytest_asyncio
from aiokafka import AIOKafkaConsumer
from api_harness import Client, Stack, api_stack

from meterflow.contract.topics import LOCATIONS
from meterflow.sink.batch import Batch
from meterflow.sink.decode import LocationUpsert, decode_location
from meterflow.sink.writer import PostgresWriter

pytestmark = pytest.mark.integration

BODY = {
    "timezone": "Europe/London",
    "currency_code": "GBP",
    "devices": ["dev_1"],
    "tariffs": {
        "IMPORT": [{"type": "FIXED", "rate": "0.250", "effective_from": "2024-01-01T00:00:00Z"}],
        "EXPORT": [{"type": "FIXED", "rate": 0.15, "effective_from": "2024-01-01T00:00:00Z"}],
    },
}


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def stack(kafka_bootstrap: str, database_url: str) -> AsyncIterator[Stack]:
    async with api_stack(kafka_bootstrap, database_url) as running:
        yield running


async def _published(stack: Stack, location_id: str) -> tuple[bytes | None, bytes | None]:
    consumer = AIOKafkaConsumer(
        stack.topic_prefix + LOCATIONS,
        bootstrap_servers=stack.kafka_bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        async for message in consumer:
            if message.key == location_id.encode():
                return message.key, message.value
    finally:
        await consumer.stop()
    raise AssertionError("unreachable")


async def _put(stack: Stack) -> tuple[str, dict[str, Any], LocationUpsert]:
    """A new location PUT with `BODY` under a new account: (its id, the answer, the upsert
    the sink makes of the message the PUT published)."""
    location_id = f"loc_{secrets.token_hex(6)}"
    _, key = await stack.new_key(f"acc_{secrets.token_hex(6)}")
    async with aiohttp.ClientSession() as session:
        status, doc, _ = await Client(session, stack.base_url).call(
            "PUT", f"/locations/{location_id}", key=key, json=BODY
        )
    assert status == 200, doc
    change = decode_location(*await _published(stack, location_id))
    assert isinstance(change, LocationUpsert)
    return location_id, doc, change


async def test_the_put_and_the_sink_store_the_same_profile(stack: Stack) -> None:
    location_id, _, change = await _put(stack)
    sink_profile = change.row[-1]  # what the sink writes for the message the PUT published

    conn = await asyncpg.connect(stack.database_url)
    try:
        row = await conn.fetchrow(
            """
            SELECT profile = $2::text::jsonb AS same,
                   jsonb_typeof(profile #> '{tariffs,IMPORT,0,rate}') AS import_type,
                   profile #>> '{tariffs,IMPORT,0,rate}' AS import_rate,
                   jsonb_typeof(profile #> '{tariffs,EXPORT,0,rate}') AS export_type
            FROM locations WHERE location_id = $1
            """,
            location_id,
            sink_profile,
        )
    finally:
        await conn.close()
    assert row is not None
    assert (row["import_type"], row["export_type"]) == ("number", "number")
    assert row["import_rate"] == "0.250"  # the digits as given, never via float
    assert row["same"] is True


async def test_the_sink_applying_the_put_profile_again_leaves_its_time_updated(
    stack: Stack,
) -> None:
    """`time_updated` is the row's `updated_at`: the sink reading back the profile a PUT had
    just stored moved it a moment later (a client comparing it saw a change that never was).
    The sink's upsert now changes a row only when the profile differs."""
    location_id, doc, change = await _put(stack)

    async def apply(upsert: LocationUpsert) -> datetime:
        """As the sink does, then the row's `updated_at`."""
        batch = Batch()
        batch.add_location(upsert, LOCATIONS, 0, 0, 0.0)
        writer = PostgresWriter(stack.database_url)
        try:
            await writer.write(batch)
        finally:
            await writer.close()
        conn = await asyncpg.connect(stack.database_url)
        try:
            updated: datetime = await conn.fetchval(
                "SELECT updated_at FROM locations WHERE location_id = $1", location_id
            )
        finally:
            await conn.close()
        return updated

    put_at = datetime.fromisoformat(doc["time_updated"])
    assert await apply(change) == put_at  # the same profile, read back: nothing changed
    moved = LocationUpsert(location_id, (*change.row[:5], ["dev_2"], change.row[6]))
    assert await apply(moved) > put_at  # a profile that differs is a change
