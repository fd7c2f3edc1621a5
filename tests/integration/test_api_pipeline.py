"""End to end through every process: `meterflow worker` (Faust agents + the HTTP API in one
process, as deployed) and `meterflow sink`.

An instant cost answered by the API is the row the sink stores (same id, same numbers); a
simulated one is never stored; records submitted in a batch are priced by the worker, stored by
the sink, and come back in the API's reports.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from decimal import Decimal
from typing import Any, TypeVar

import aiohttp
import asyncpg
import pytest
import pytest_asyncio
from api_harness import Client, Stack, api_stack

from samples import NIGHT_AND_DAY, london, time_of_use

pytestmark = pytest.mark.integration

T = TypeVar("T")

PROFILE = london(time_of_use(*NIGHT_AND_DAY))


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def stack(kafka_bootstrap: str, database_url: str) -> AsyncIterator[Stack]:
    async with api_stack(kafka_bootstrap, database_url, via_worker=True) as running:
        await running.spawn("sink", "sink")
        yield running


async def eventually(
    probe: Callable[[], Awaitable[T | None]], what: str, seconds: float = 120
) -> T:
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        found = await probe()
        if found is not None:
            return found
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.5)


async def test_instant_cost_is_the_row_the_sink_stores(stack: Stack) -> None:
    _, key = await stack.new_key("acc_e2e")
    async with aiohttp.ClientSession() as session:
        client = Client(session, stack.base_url)
        status, _, _ = await client.call("PUT", "/locations/loc_e2e", key=key, json=PROFILE)
        assert status == 200
        record = {
            "location_id": "loc_e2e",
            "energy": "1.5",
            "start_time": "2025-06-01T05:30:00Z",  # 06:30-07:30 local: half at 0.10, half 0.30
            "end_time": "2025-06-01T06:30:00Z",
            "session_reference_id": "S-e2e",
        }
        status, simulated, _ = await client.call(
            "POST", "/costs/instant", key=key, json=record, params={"non_persistent": "true"}
        )
        assert status == 200, simulated
        status, cost, _ = await client.call("POST", "/costs/instant", key=key, json=record)
        assert status == 200, cost
    assert cost["data"]["cost"]["value"] == Decimal("0.3")
    assert len(cost["data"]["breakdown"]) == 2

    conn = await asyncpg.connect(stack.database_url)
    try:

        async def stored() -> asyncpg.Record | None:
            return await conn.fetchrow("SELECT * FROM energy_costs WHERE id = $1", cost["id"])

        row = await eventually(stored, "the sink to store the instant cost")
        assert row["meter_record_id"] == cost["meter_record_id"]
        assert row["account_id"] == "acc_e2e"
        assert row["live_mode"] is False
        assert row["cost"] == cost["data"]["cost"]["value"]
        assert row["energy_kwh"] == cost["data"]["energy"]["value"]
        assert row["confidence"] == cost["data"]["cost"]["confidence"]
        assert row["session_reference_id"] == "S-e2e"
        assert row["start_time"].isoformat() == cost["data"]["start_time"]
        breakdown = await conn.fetch(
            "SELECT rate, cost FROM energy_cost_breakdown WHERE cost_id = $1 ORDER BY seq",
            cost["id"],
        )
        assert [(b["rate"], b["cost"]) for b in breakdown] == [
            (item["rate"], item["cost"]) for item in cost["data"]["breakdown"]
        ]
        # the simulation went through the same partition first, and was skipped
        assert (
            await conn.fetchval("SELECT count(*) FROM energy_costs WHERE id = $1", simulated["id"])
            == 0
        )
    finally:
        await conn.close()


async def worker_is_pricing(stack: Stack, client: Client, key: str) -> None:
    """Wait until the worker prices this location's records at all.

    A worker that starts with records already waiting can read a record before the location's
    profile (two topics, no order between them) and dead-letter it; this test is about the
    API's path, so it first waits for a probe record to be priced.
    """
    conn = await asyncpg.connect(stack.database_url)
    try:
        for attempt in range(60):
            probe = {
                "location_id": "loc_e2e_batch",
                "energy": "0.001",
                "start_time": "2024-06-01T00:00:00Z",
                "end_time": "2024-06-01T00:30:00Z",
                "record_reference_id": f"probe-{attempt}",
            }
            status, _, _ = await client.call("PUT", "/meters/interval", key=key, json=[probe])
            assert status == 200
            for _ in range(4):
                await asyncio.sleep(0.5)
                if await conn.fetchval(
                    "SELECT 1 FROM energy_costs WHERE location_id = 'loc_e2e_batch' LIMIT 1"
                ):
                    return
        raise AssertionError("the worker never priced a record")
    finally:
        await conn.close()


async def test_batch_records_are_priced_stored_and_reported(stack: Stack) -> None:
    _, key = await stack.new_key("acc_e2e_batch")
    records = [
        {
            "location_id": "loc_e2e_batch",
            "units": "WH",
            "value": 500,
            "start_time": f"2025-01-15T{hour:02d}:00:00Z",
            "end_time": f"2025-01-15T{hour:02d}:30:00Z",
            "record_reference_id": f"R{hour}",
        }
        for hour in range(24)
    ]
    async with aiohttp.ClientSession() as session:
        client = Client(session, stack.base_url)
        status, _, _ = await client.call("PUT", "/locations/loc_e2e_batch", key=key, json=PROFILE)
        assert status == 200
        await worker_is_pricing(stack, client, key)
        status, batch, _ = await client.call("PUT", "/meters/interval", key=key, json=records)
        assert status == 200, batch
        assert batch["records_accepted"] == 24

        async def day_report() -> dict[str, Any] | None:
            status, report, _ = await client.call(
                "POST",
                "/costs/interval/loc_e2e_batch",
                key=key,
                json={"start_time": "2025-01-15T00:00:00Z", "end_time": "2025-01-16T00:00:00Z"},
                params={"aggregation": "DAY"},
            )
            assert status == 200, report
            done = report["data"] and report["data"][0]["records"] == 24
            return report if done else None

        report = await eventually(day_report, "the worker and the sink to store 24 records")
    day = report["data"][0]
    assert day["energy"]["value"] == Decimal("12")  # 24 × 0.5 kWh
    # 7 night hours at 0.10, 17 day hours at 0.30 (January: local time = UTC)
    assert day["cost"]["value"] == Decimal(7) * Decimal("0.05") + 17 * Decimal("0.15")
