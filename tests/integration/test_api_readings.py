"""`PUT /meters/cumulative/epoch` end to end (design §9, §10): `meterflow worker` (agents + API)
and `meterflow sink`, over HTTP only.

Readings in (unsorted, with a duplicate, a reset, a stale one and bad items) -> priced
intervals in PostgreSQL that tile the readings, costs equal to the offline sum, and a batch
status with every reading PRICED (the baseline without ids, the duplicate with its twin's),
FAILED (refused at acceptance; `register_reset`, `stale_reading` from the worker;
`tariff_not_available` of the derived interval) or nothing left ACCEPTED. Another account, the
other mode and an unknown device are refused before anything is published.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import aiohttp
import asyncpg
import pytest
from api_harness import Client, Stack, eventually, worker_stack

from meterflow import ids
from samples import EFFECTIVE_FROM, london

pytestmark = pytest.mark.integration

ACCOUNT = "acc_readings"
LOCATION = "loc_readings"
LATE = "loc_readings_late"  # its tariff starts in 2030: every interval is tariff_not_available
RATE = Decimal("0.25")
PROFILE = london({"type": "FIXED", "rate": str(RATE), "effective_from": EFFECTIVE_FROM}) | {
    "devices": ["dev_ev", "dev_probe"]
}
LATE_PROFILE = london({"type": "FIXED", "rate": "0.25", "effective_from": "2030-01-01T00:00:00Z"})
T0 = 1_736_935_200  # 2025-01-15T10:00:00Z


stack = worker_stack()


def body(location: str, data: list[Any], **fields: Any) -> dict[str, Any]:
    return {"location_id": location, "units": "WH", "data": data, **fields}


async def put_readings(client: Client, key: str, document: dict[str, Any]) -> dict[str, Any]:
    status, batch, _ = await client.call("PUT", "/meters/cumulative/epoch", key=key, json=document)
    assert status == 200, batch
    assert batch["object"] == "meter_batch"
    return dict(batch)


async def batch_status(client: Client, key: str, batch_id: str) -> tuple[int, Any]:
    status, doc, _ = await client.call(
        "GET", "/meters/batch", key=key, params={"batch_id": batch_id}
    )
    return status, doc


async def settled(
    client: Client, key: str, batch_id: str, until: Callable[[list[str]], bool] | None = None
) -> dict[str, Any]:
    """The batch once `until(statuses)` holds; by default, once nothing is ACCEPTED."""

    async def done() -> dict[str, Any] | None:
        status, doc = await batch_status(client, key, batch_id)
        assert status == 200, doc
        statuses = [item["status"] for item in doc["data"]]
        finished = until(statuses) if until else "ACCEPTED" not in statuses
        return doc if finished else None

    return await eventually(done, f"the readings of {batch_id} to be PRICED or FAILED")


async def worker_reads_the_profile(client: Client, key: str) -> None:
    """The worker may read a reading before the location's profile (two topics, no order
    between them) and dead-letter it: wait until a probe meter's interval is priced."""
    for attempt in range(30):
        start = T0 - 86_400 + attempt * 120
        probe = body(LOCATION, [{"time": start, "value": 0}, {"time": start + 60, "value": 1}])
        batch = await put_readings(client, key, probe | {"device_id": "dev_probe"})
        doc = await settled(
            client, key, batch["id"], lambda s: s[1] != "ACCEPTED" or s[0] == "FAILED"
        )
        if doc["data"][1]["status"] == "PRICED":
            return
    raise AssertionError("the worker never priced a reading's interval")


def at(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


async def test_readings_over_http_become_priced_intervals_and_a_batch_status(
    stack: Stack,
) -> None:
    _, key = await stack.new_key(ACCOUNT)
    _, other_key = await stack.new_key("acc_readings_other")
    _, live_key = await stack.new_key(ACCOUNT, live_mode=True)
    await stack.spawn("sink", "sink")
    conn = await asyncpg.connect(stack.database_url)
    async with aiohttp.ClientSession() as session:
        client = Client(session, stack.base_url)
        for location, profile in ((LOCATION, PROFILE), (LATE, LATE_PROFILE)):
            status, doc, _ = await client.call(
                "PUT", f"/locations/{location}", key=key, json=profile
            )
            assert status == 200, doc

        # refused before anything is published: not the caller's, not this mode's, no such
        # device, no such location, a body that is not Flatpeak's
        good = body(LOCATION, [{"time": T0, "value": 1}], device_id="dev_ev")
        for denied in (other_key, live_key):
            status, doc, _ = await client.call(
                "PUT", "/meters/cumulative/epoch", key=denied, json=good
            )
            assert (status, doc["code"]) == (404, "not_found"), doc
        for document, expected in (
            (good | {"device_id": "dev_nope"}, (422, "unknown_device")),
            (good | {"location_id": "loc_nope"}, (404, "not_found")),
            (good | {"units": "W"}, (400, "invalid_request")),
            (good | {"direction": "INBOUND"}, (400, "invalid_request")),
            ({"location_id": LOCATION, "units": "WH"}, (400, "invalid_request")),
        ):
            status, doc, _ = await client.call(
                "PUT", "/meters/cumulative/epoch", key=key, json=document
            )
            assert (status, doc["code"]) == expected, (document, doc)
        status, _, _ = await client.call("PUT", "/meters/cumulative/epoch", json=good)
        assert status == 401

        await worker_reads_the_profile(client, key)

        data: list[Any] = [
            {"time": T0 + 600, "value": 1500},  # 0: interval [T0, T0+600) 0.5 kWh
            {"time": T0, "value": 1000},  # 1: the baseline (first in time order)
            {"time": T0 + 1200, "value": "abc"},  # 2: refused, invalid_record
            {"time": T0 + 1200, "value": 2100, "record_reference_id": "EV-3"},  # 3: 0.6 kWh
            {"time": T0 + 1200, "value": 2100},  # 4: a duplicate of 3: nothing new
            {"time": T0 + 1800, "value": -5},  # 5: refused, a negative register
            {"time": T0 + 1800, "value": 100},  # 6: register_reset, the new baseline
            {"time": T0 + 2400, "value": Decimal("400.5")},  # 7: interval 0.3005 kWh
            {"time": T0 + 2400, "value": 500},  # 8: stale_reading (7's time, another value)
            {"time": "2025-01-15T10:50:00", "value": 600},  # 9: refused, not Unix seconds
        ]
        batch = await put_readings(
            client, key, body(LOCATION, data, device_id="dev_ev", session_reference_id="S-1")
        )
        assert (batch["records_submitted"], batch["records_accepted"]) == (10, 7)
        refused = {item["record_num"]: item["error"] for item in batch["failed_records"]}
        assert sorted(refused) == [2, 5, 9]
        assert all(error.startswith("invalid_record: ") for error in refused.values())

        doc = await settled(client, key, batch["id"])
        items = doc["data"]
        assert [item["status"] for item in items] == [
            "PRICED",
            "PRICED",
            "FAILED",
            "PRICED",
            "PRICED",
            "FAILED",
            "FAILED",
            "PRICED",
            "FAILED",
            "FAILED",
        ]
        assert doc["records_failed"] == 5
        assert items[6]["error"]["code"] == "register_reset"
        assert items[8]["error"]["code"] == "stale_reading"
        assert items[1]["meter_record_id"] is items[1]["energy_cost_id"] is None  # the baseline
        assert items[3]["meter_record_id"] == ids.meter_record_id_for_reference(
            ACCOUNT, False, "dev_ev", "EV-3"
        )
        assert items[4]["energy_cost_id"] == items[3]["energy_cost_id"]  # the duplicate
        for item in (items[0], items[3], items[7]):
            assert item["energy_cost_id"] == ids.energy_cost_id(item["meter_record_id"])

        rows = await conn.fetch(
            "SELECT id, start_time, end_time, energy_kwh, cost, session_reference_id, "
            "energy_flow_direction, request FROM energy_costs "
            "WHERE account_id = $1 AND object_id = 'dev_ev' ORDER BY start_time",
            ACCOUNT,
        )
        assert [(r["start_time"], r["end_time"]) for r in rows] == [
            (at(T0), at(T0 + 600)),
            (at(T0 + 600), at(T0 + 1200)),
            (at(T0 + 1800), at(T0 + 2400)),  # nothing across the reset
        ]
        assert [r["id"] for r in rows] == [items[i]["energy_cost_id"] for i in (0, 3, 7)]
        energies = [Decimal("0.5"), Decimal("0.6"), Decimal("0.3005")]
        assert [r["energy_kwh"] for r in rows] == energies
        assert sum(r["cost"] for r in rows) == sum(e * RATE for e in energies)
        assert {(r["session_reference_id"], r["energy_flow_direction"]) for r in rows} == {
            ("S-1", "INBOUND")
        }

        # the meter's latest reading again, after a stale one in the same batch: the stale
        # one (inside the twin interval) bounded where the duplicate's interval could start
        again = await put_readings(
            client,
            key,
            body(
                LOCATION,
                [{"time": T0 + 2400, "value": Decimal("400.5")}, {"time": T0 + 2100, "value": 1}],
                device_id="dev_ev",
            ),
        )
        again_doc = await settled(client, key, again["id"])
        assert [item["status"] for item in again_doc["data"]] == ["PRICED", "FAILED"]
        assert again_doc["data"][0]["energy_cost_id"] == items[7]["energy_cost_id"]
        assert again_doc["data"][1]["error"]["code"] == "stale_reading"
        assert again_doc["records_processed"] == again_doc["records_submitted"] == 2

        # the derived interval fails in the worker: FAILED through its own dead letter
        late = await put_readings(
            client,
            key,
            body(LATE, [{"time": T0, "value": 0}, {"time": T0 + 600, "value": 1000}]),
        )
        late_doc = await settled(client, key, late["id"], lambda s: s[1] != "ACCEPTED")
        # the baseline stays ACCEPTED: no stored interval starts at it (docs/api.md)
        assert [item["status"] for item in late_doc["data"]] == ["ACCEPTED", "FAILED"]
        assert late_doc["data"][1]["error"]["code"] == "tariff_not_available"

        for denied in (other_key, live_key):  # another account's batch: not found
            status, doc = await batch_status(client, denied, batch["id"])
            assert status == 404, doc
    await conn.close()
