"""Batch status end to end (design §9): `meterflow worker` (agents + API), `meterflow sink`.

One batch with good records, a record refused at acceptance and one the worker dead-letters
(`unknown_device`): ACCEPTED while no sink runs, then PRICED and FAILED once it does. Another
account's key (and the same account in live mode) gets 404. A second sink group replaying the
whole `dead-letters` topic stores no letter twice and changes none.
"""

from __future__ import annotations

import secrets
from typing import Any

import aiohttp
import asyncpg
import pytest
from api_harness import Client, Stack, eventually, worker_stack

from meterflow import ids
from samples import NIGHT_AND_DAY, london, time_of_use

pytestmark = pytest.mark.integration

ACCOUNT = "acc_batch"
LOCATION = "loc_batch"
PROFILE = london(time_of_use(*NIGHT_AND_DAY)) | {"devices": ["dev_known"]}


stack = worker_stack()


def record(hour: int, **extra: Any) -> dict[str, Any]:
    return {
        "location_id": LOCATION,
        "energy": "0.5",
        "start_time": f"2025-01-15T{hour:02d}:00:00Z",
        "end_time": f"2025-01-15T{hour:02d}:30:00Z",
        **extra,
    }


async def put_batch(client: Client, key: str, records: list[Any]) -> dict[str, Any]:
    status, batch, _ = await client.call("PUT", "/meters/interval", key=key, json=records)
    assert status == 200, batch
    return dict(batch)


async def get_batch(client: Client, key: str, batch_id: str) -> tuple[int, Any]:
    status, doc, _ = await client.call(
        "GET", "/meters/batch", key=key, params={"batch_id": batch_id}
    )
    return status, doc


async def worker_and_sink_work(client: Client, key: str) -> None:
    """The worker may read a record before the location's profile (two topics, no order
    between them) and dead-letter it: wait until a probe batch is priced and stored."""
    for attempt in range(60):
        probe = await put_batch(client, key, [record(1, record_reference_id=f"probe-{attempt}")])

        async def priced(batch_id: str = probe["id"]) -> bool | None:
            _, doc = await get_batch(client, key, batch_id)
            status = doc["data"][0]["status"]
            return None if status == "ACCEPTED" else status == "PRICED"

        if await eventually(priced, "the probe to be priced or to fail"):
            return
    raise AssertionError("the worker never priced a record")


async def letters(conn: asyncpg.Connection, batch_id: str) -> list[tuple[Any, ...]]:
    rows = await conn.fetch(
        "SELECT batch_index, error_code, time_created, source_partition, source_offset, "
        "inserted_at, account_id, live_mode FROM batch_dead_letters WHERE batch_id = $1 "
        "ORDER BY batch_index",
        batch_id,
    )
    return [tuple(row) for row in rows]


async def test_batch_status_follows_every_record(stack: Stack) -> None:
    _, key = await stack.new_key(ACCOUNT)
    _, other_key = await stack.new_key("acc_batch_other")
    _, live_key = await stack.new_key(ACCOUNT, live_mode=True)
    sink = await stack.spawn("sink", "sink")
    conn = await asyncpg.connect(stack.database_url)
    async with aiohttp.ClientSession() as session:
        client = Client(session, stack.base_url)
        status, _, _ = await client.call("PUT", f"/locations/{LOCATION}", key=key, json=PROFILE)
        assert status == 200
        await worker_and_sink_work(client, key)
        await sink.stop()  # no sink: nothing accepted can be PRICED or FAILED yet

        records = [
            record(3, record_reference_id="R0"),
            record(4, end_time="2025-01-15T03:00:00Z"),  # refused at acceptance
            record(9, device_id="dev_known"),  # no reference: a fresh id
            record(10, device_id="dev_unknown", record_reference_id="R3"),  # fails in the worker
        ]
        batch = await put_batch(client, key, records)
        assert batch["records_accepted"] == 3
        status, doc = await get_batch(client, key, batch["id"])
        assert status == 200, doc
        assert [item["status"] for item in doc["data"]] == [
            "ACCEPTED",
            "FAILED",
            "ACCEPTED",
            "ACCEPTED",
        ]
        assert (doc["records_submitted"], doc["records_accepted"]) == (4, 3)
        assert (doc["records_processed"], doc["records_failed"]) == (1, 1)
        refused = doc["data"][1]
        assert refused["error"]["code"] == "invalid_time_range"
        assert refused["meter_record_id"] is None
        first = doc["data"][0]
        assert first["meter_record_id"] == ids.meter_record_id_for_reference(
            ACCOUNT, False, LOCATION, "R0"
        )
        assert first["energy_cost_id"] is None
        assert first["error"] is None

        for denied in (other_key, live_key):  # another account, another mode: not found
            status, doc = await get_batch(client, denied, batch["id"])
            assert status == 404, doc
            assert doc["code"] == "not_found"
        status, doc = await get_batch(client, key, ids.new_batch_id())
        assert status == 404, doc
        status, doc, _ = await client.call("GET", "/meters/batch", key=key)
        assert status == 400, doc

        sink = await stack.spawn("sink-again", "sink")

        async def settled() -> dict[str, Any] | None:
            _, doc = await get_batch(client, key, batch["id"])
            return doc if doc["records_processed"] == 4 else None

        done = await eventually(settled, "the sink to store the batch's results and letter")
        assert [item["status"] for item in done["data"]] == ["PRICED", "FAILED", "PRICED", "FAILED"]
        assert done["records_failed"] == 2
        for item in (done["data"][0], done["data"][2]):
            assert item["energy_cost_id"] == ids.energy_cost_id(item["meter_record_id"])
            stored = await conn.fetchval(
                "SELECT cost FROM energy_costs WHERE id = $1", item["energy_cost_id"]
            )
            assert stored is not None
        late = done["data"][3]
        assert late["error"]["code"] == "unknown_device"
        assert late["energy_cost_id"] is None
        failed = {item["record_num"]: item for item in done["failed_records"]}
        assert sorted(failed) == [1, 3]
        assert failed[3]["record_reference_id"] == "R3"
        assert failed[3]["error"].startswith("unknown_device: ")
        before = await letters(conn, batch["id"])
        assert [row[:2] for row in before] == [(3, "unknown_device")]
        assert before[0][-2:] == (ACCOUNT, False)  # the batch's (design §6, migration 0007)

        # A new sink group reads `dead-letters` from the start: every letter again. (The other
        # sink stops first: the marker's letter must be stored by the replaying one.)
        await sink.stop()
        await stack.spawn("sink-replay", "sink", "--group-id", f"replay-{secrets.token_hex(4)}")
        marker = await put_batch(client, key, [record(11, device_id="dev_unknown")])

        async def marker_stored() -> bool | None:
            # Same location, so same partition as the first letter, read after it.
            return True if await letters(conn, marker["id"]) else None

        await eventually(marker_stored, "the replaying sink to reach the marker's letter")
        assert await letters(conn, batch["id"]) == before  # not doubled, not rewritten
        _, again = await get_batch(client, key, batch["id"])
        assert again["data"] == done["data"]
    await conn.close()


async def test_a_record_and_its_correction_in_one_batch_read_in_their_order(
    stack: Stack,
) -> None:
    """The worker prices a batch's records in one of its own batches, one `time_created` for
    them all, and a record's status compares its letter's time with its stored result's: a
    record that failed, then its correction priced, read FAILED (a tie) though the
    correction was stored. What follows a dead letter is now stamped after it."""
    _, key = await stack.new_key(ACCOUNT)
    await stack.spawn("sink-order", "sink", "--group-id", f"order-{secrets.token_hex(4)}")
    before_tariff = {"start_time": "2019-01-15T03:00:00Z", "end_time": "2019-01-15T03:30:00Z"}
    async with aiohttp.ClientSession() as session:
        client = Client(session, stack.base_url)
        status, _, _ = await client.call("PUT", f"/locations/{LOCATION}", key=key, json=PROFILE)
        assert status == 200
        await worker_and_sink_work(client, key)
        fixed = await put_batch(
            client,
            key,
            [
                record(5, record_reference_id="T1", **before_tariff),
                record(5, record_reference_id="T1"),
            ],
        )
        broken = await put_batch(
            client,
            key,
            [
                record(6, record_reference_id="T2"),
                record(6, record_reference_id="T2", **before_tariff),
            ],
        )

        async def settled(batch_id: str) -> dict[str, Any] | None:
            _, doc = await get_batch(client, key, batch_id)
            return doc if doc["records_processed"] == 2 else None

        done = await eventually(lambda: settled(fixed["id"]), "the corrected batch to settle")
        assert [item["status"] for item in done["data"]] == ["PRICED", "PRICED"], done
        assert done["records_failed"] == 0
        done = await eventually(lambda: settled(broken["id"]), "the broken batch to settle")
        assert [item["status"] for item in done["data"]] == ["PRICED", "FAILED"], done
        assert done["data"][1]["error"]["code"] == "tariff_not_available"
