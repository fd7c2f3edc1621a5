"""Record identity under retry storms and failed corrections (design §8), every process real:
`meterflow api`, `meterflow worker` and `meterflow sink` as separate processes (so the worker can
be SIGKILLed while the API keeps answering), the real broker and a fresh database.

1. The same 1,000 referenced records sent 3 times over HTTP (`PUT /meters/interval`) and 3 times
   straight onto `meter-records`, the worker and then the sink SIGKILLed and restarted in between:
   exactly 1,000 rows, all at revision 1, no history, and the reports sum to what `meterflow
   cost`'s pricing function gives offline for the same records (same ids too).
2. A correction the worker cannot price (its new time range has no tariff in force): a dead
   letter (the batch status shows it FAILED), and the stored version stays exactly as it was.
"""

from __future__ import annotations

import io
import signal
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import aiohttp
import asyncpg
import pytest
import pytest_asyncio
from api_harness import Client, Stack, api_stack, eventually
from processes import Process
from test_sink_pipeline import produce

from meterflow import ids
from meterflow.cli.cost import price_lines
from meterflow.contract.keys import location_key
from meterflow.contract.locations import parse_profile
from meterflow.models import dumps, loads
from samples import NIGHT_AND_DAY, london, time_of_use

pytestmark = pytest.mark.integration

TOTAL = 1000
T0 = datetime(2025, 1, 1, tzinfo=UTC)
SESSION = "storm-session"
PROFILE = london(time_of_use(*NIGHT_AND_DAY))  # tariffs in force from 2024-01-01


@pytest_asyncio.fixture(loop_scope="session")
async def stack(kafka_bootstrap: str, database_url: str) -> AsyncIterator[Stack]:
    """`meterflow api` alone (the tests start the worker and the sink themselves)."""
    async with api_stack(kafka_bootstrap, database_url) as running:
        yield running


def storm_record(n: int) -> dict[str, Any]:
    """Record n: its own half hour (night and day rates both occur), its own energy."""
    start = T0 + timedelta(minutes=30 * n)
    return {
        "location_id": "",  # set per test
        "energy": str(Decimal("0.1") + Decimal(n) / 1000),
        "start_time": start.isoformat().replace("+00:00", "Z"),
        "end_time": (start + timedelta(minutes=30)).isoformat().replace("+00:00", "Z"),
        "session_reference_id": SESSION,
        "record_reference_id": f"storm-{n}",
    }


async def sigkill(process: Process) -> None:
    process.proc.send_signal(signal.SIGKILL)
    await process.proc.wait()
    assert process.proc.returncode == -signal.SIGKILL


async def put_batch(client: Client, key: str, records: list[dict[str, Any]]) -> str:
    status, batch, _ = await client.call("PUT", "/meters/interval", key=key, json=records)
    assert status == 200, batch
    assert batch["records_accepted"] == len(records), batch
    return str(batch["id"])


async def batch_status(client: Client, key: str, batch_id: str) -> dict[str, Any]:
    status, doc, _ = await client.call(
        "GET", "/meters/batch", key=key, params={"batch_id": batch_id}
    )
    assert status == 200, doc
    return dict(doc)


async def priced_once(client: Client, key: str, record: dict[str, Any]) -> None:
    """Send `record` until it is PRICED: the worker may read it before the location's profile
    (two topics, no order between them) and dead-letter it. Re-sending a referenced record is
    safe (design §8.2)."""
    for _ in range(40):
        batch_id = await put_batch(client, key, [record])

        async def settled(batch_id: str = batch_id) -> str | None:
            status = (await batch_status(client, key, batch_id))["data"][0]["status"]
            return None if status == "ACCEPTED" else str(status)

        if await eventually(settled, "a probe record to be priced or to fail") == "PRICED":
            return
    raise AssertionError("the worker never priced the probe record")


def offline(account_id: str, location_id: str, records: list[dict[str, Any]]) -> list[Any]:
    """What `meterflow cost` prints for these records and the location's profile."""
    profile = parse_profile(
        dumps(PROFILE | {"location_id": location_id, "account_id": account_id, "live_mode": False})
    )
    lines = io.BytesIO(b"".join(dumps(r) + b"\n" for r in records))
    out = io.BytesIO()
    priced, failed = price_lines(
        lines, out, profile, lambda *_: None, datetime.now(UTC), max_record_hours=744
    )
    assert (priced, failed) == (len(records), 0)
    return [loads(line) for line in out.getvalue().splitlines()]


async def test_retry_storms_over_http_and_kafka_store_each_record_once(stack: Stack) -> None:
    account, location = "acc_storm", "loc_storm"
    _, key = await stack.new_key(account)
    records = [storm_record(n) | {"location_id": location} for n in range(TOTAL)]
    expected = offline(account, location, records)
    expected_cost = sum((Decimal(c["data"]["cost"]["value"]) for c in expected), Decimal(0))
    expected_kwh = sum((Decimal(c["data"]["energy"]["value"]) for c in expected), Decimal(0))
    meter_records = stack.topic_prefix + "meter-records"
    on_kafka = [(location_key(location), dumps(r)) for r in records]

    worker = await stack.spawn("worker-1", "worker")
    sink = await stack.spawn("sink-1", "sink")
    conn = await asyncpg.connect(stack.database_url)
    async with aiohttp.ClientSession() as session:
        client = Client(session, stack.base_url)
        status, _, _ = await client.call("PUT", f"/locations/{location}", key=key, json=PROFILE)
        assert status == 200
        await priced_once(client, key, records[0])  # the worker knows the location now

        batches = [await put_batch(client, key, records)]  # HTTP 1

        async def pricing() -> bool | None:  # the worker is in the middle of HTTP 1
            return True if await conn.fetchval("SELECT count(*) FROM energy_costs") > 1 else None

        await eventually(pricing, "the first results of the first send")
        await sigkill(worker)  # whatever it had priced but not committed is priced again
        worker = await stack.spawn("worker-2", "worker")
        batches.append(await put_batch(client, key, records))  # HTTP 2
        await produce(stack.kafka_bootstrap, meter_records, on_kafka)  # Kafka 1
        await sigkill(sink)  # whatever it had read but not committed is read again
        sink = await stack.spawn("sink-2", "sink")
        batches.append(await put_batch(client, key, records))  # HTTP 3
        await produce(stack.kafka_bootstrap, meter_records, on_kafka)  # Kafka 2
        await produce(stack.kafka_bootstrap, meter_records, on_kafka)  # Kafka 3

        # A last record on the same partition (same location): once it is stored, the worker
        # and the sink are past everything sent before it. Outside the reports' window.
        marker = storm_record(0) | {
            "location_id": location,
            "start_time": "2024-12-01T00:00:00Z",
            "end_time": "2024-12-01T00:30:00Z",
            "session_reference_id": "marker",
            "record_reference_id": "storm-marker",
        }
        await produce(
            stack.kafka_bootstrap, meter_records, [(location_key(location), dumps(marker))]
        )
        marker_id = ids.energy_cost_id(
            ids.meter_record_id_for_reference(account, False, location, "storm-marker")
        )

        async def marker_stored() -> bool | None:
            found = await conn.fetchval("SELECT 1 FROM energy_costs WHERE id = $1", marker_id)
            return True if found else None

        await eventually(marker_stored, "the worker and the sink to reach the last record")
        assert worker.proc.returncode is None
        assert sink.proc.returncode is None

        rows = await conn.fetch(
            "SELECT id, revision FROM energy_costs WHERE id <> $1 ORDER BY id", marker_id
        )
        assert len(rows) == TOTAL
        assert {r["revision"] for r in rows} == {1}
        assert {r["id"] for r in rows} == {c["id"] for c in expected}  # the offline ids
        assert await conn.fetchval("SELECT count(*) FROM energy_cost_history") == 0

        status, by_session, _ = await client.call("POST", f"/costs/session/{SESSION}", key=key)
        assert status == 200, by_session
        (row,) = by_session["data"]
        assert row["records"] == TOTAL
        assert (row["cost"]["value"], row["energy"]["value"]) == (expected_cost, expected_kwh)
        window = {"start_time": "2025-01-01T00:00:00Z", "end_time": "2025-02-01T00:00:00Z"}
        status, by_month, _ = await client.call(
            "POST", f"/costs/interval/{location}", key=key, json=window,
            params={"aggregation": "MONTH"},
        )  # fmt: skip
        assert status == 200, by_month
        (month,) = by_month["data"]
        assert month["records"] == TOTAL
        assert (month["cost"]["value"], month["energy"]["value"]) == (expected_cost, expected_kwh)

        for batch_id in batches:  # every record of every retry: PRICED, none failed
            doc = await batch_status(client, key, batch_id)
            assert (doc["records_processed"], doc["records_failed"]) == (TOTAL, 0)
            assert {item["status"] for item in doc["data"]} == {"PRICED"}
    await conn.close()


async def stored_version(conn: asyncpg.Connection, cost_id: str) -> dict[str, Any]:
    row = await conn.fetchrow("SELECT * FROM energy_costs WHERE id = $1", cost_id)
    assert row is not None
    items = await conn.fetch(
        "SELECT * FROM energy_cost_breakdown WHERE cost_id = $1 ORDER BY seq", cost_id
    )
    return {"row": dict(row), "breakdown": [dict(item) for item in items]}


async def test_a_correction_that_fails_pricing_leaves_the_stored_version(stack: Stack) -> None:
    account, location = "acc_fix", "loc_fix"
    _, key = await stack.new_key(account)
    first = storm_record(7) | {"location_id": location, "record_reference_id": "fix-1"}
    # Same reference, other instants: a correction, but no tariff is in force before 2024.
    correction = first | {"start_time": "2023-06-01T12:00:00Z", "end_time": "2023-06-01T12:30:00Z"}
    cost_id = ids.energy_cost_id(
        ids.meter_record_id_for_reference(account, False, location, "fix-1")
    )

    await stack.spawn("worker", "worker")
    await stack.spawn("sink", "sink")
    conn = await asyncpg.connect(stack.database_url)
    async with aiohttp.ClientSession() as session:
        client = Client(session, stack.base_url)
        status, _, _ = await client.call("PUT", f"/locations/{location}", key=key, json=PROFILE)
        assert status == 200
        await priced_once(client, key, first)
        before = await stored_version(conn, cost_id)
        assert before["row"]["revision"] == 1
        assert len(before["breakdown"]) >= 1

        batch_id = await put_batch(client, key, [correction])

        # Its id is stored already, so the status says PRICED (the earlier version) until the
        # letter is stored: a letter no older than the stored result makes it FAILED.
        async def failed() -> dict[str, Any] | None:
            item = (await batch_status(client, key, batch_id))["data"][0]
            return dict(item) if item["status"] == "FAILED" else None

        item = await eventually(failed, "the correction's dead letter to reach the batch status")
        assert item["error"]["code"] == "tariff_not_available"
        assert item["meter_record_id"] == before["row"]["meter_record_id"]
        assert item["energy_cost_id"] == cost_id  # the stored (earlier) result
        letter = await conn.fetchrow(
            "SELECT error_code, account_id, live_mode FROM batch_dead_letters WHERE batch_id = $1",
            batch_id,
        )
        assert letter is not None
        assert tuple(letter) == ("tariff_not_available", account, False)

        # Nothing after the letter can change the row (no result was priced): as it was.
        assert await stored_version(conn, cost_id) == before
        assert await conn.fetchval("SELECT count(*) FROM energy_cost_history") == 0
        status, report, _ = await client.call("POST", f"/costs/session/{SESSION}", key=key)
        assert status == 200, report
        assert report["data"][0]["cost"]["value"] == before["row"]["cost"]
    await conn.close()
