"""End to end through every process: `meterflow worker` (Faust agents + the HTTP API in one
process, as deployed) and `meterflow sink`.

An instant cost answered by the API is the row the sink stores (same id, same numbers); a
simulated one is never stored; records submitted in a batch are priced by the worker, stored by
the sink, and come back in the API's reports.
"""

from __future__ import annotations

import asyncio
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from api_harness import Client, Stack, eventually, worker_stack

from meterflow.models import loads
from samples import NIGHT_AND_DAY, london, time_of_use

pytestmark = pytest.mark.integration


PROFILE = london(time_of_use(*NIGHT_AND_DAY))


stack = worker_stack(with_sink=True)


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


# --- Reports that make a bill (design §11): standing charges, tax, totals -----------------------

SIX = Decimal("0.000001")
BILL_MONTH = {"start_time": "2025-10-01T00:00:00+01:00", "end_time": "2025-11-01T00:00:00Z"}
"""October 2025 in Europe/London: 31 local days, the 26th of 25 hours (BST ends at 01:00Z)."""
CHANGE = "2025-10-20T00:00:00+01:00"
BILL_PROFILE = london(
    {
        "type": "FIXED",
        "rate": "0.20",
        "effective_from": "2025-01-01T00:00:00Z",
        "effective_to": CHANGE,
        "standing_charge": "0.5353",
    },
    {
        "type": "FIXED",
        "rate": "0.25",
        "effective_from": CHANGE,
        "standing_charge": "0.60117",
        "components": [{"name": "duos", "kind": "NON_COMMODITY", "type": "FIXED", "rate": "0.01"}],
    },
    tax_percentage=5,
)
# (start, end, kWh, rate in force): some days only; the 26th's record spans the repeated hour
BILL_RECORDS = [
    ("2025-10-03T10:00:00Z", "2025-10-03T11:00:00Z", "1.0", "0.20"),
    ("2025-10-03T12:00:00Z", "2025-10-03T12:30:00Z", "0.333", "0.20"),
    ("2025-10-03T13:00:00Z", "2025-10-03T13:30:00Z", "0.123457", "0.20"),
    ("2025-10-20T12:00:00Z", "2025-10-20T13:00:00Z", "2.0", "0.26"),
    ("2025-10-26T00:00:00Z", "2025-10-26T02:00:00Z", "1.5", "0.26"),
    ("2025-10-31T23:30:00Z", "2025-11-01T00:00:00Z", "0.777", "0.26"),
]


def offline_record(kwh: str, rate: str, tax_percentage: Decimal) -> tuple[Decimal, ...]:
    """(value, tax, total) of one record as design §11 says: value and tax each rounded once
    from the exact net, half-even to 6 places, and total = value + tax."""
    net = Decimal(kwh) * Decimal(rate)
    value, tax = (x.quantize(SIX, "ROUND_HALF_EVEN") for x in (net, net * tax_percentage / 100))
    return value, tax, value + tax


def offline_row(
    records: list[tuple[Decimal, ...]], charges: list[Decimal], tax_percentage: Decimal
) -> dict[str, Decimal]:
    """A summed row: stored fields summed exactly, the standing charge taxed once per row."""
    charge = sum(charges, Decimal(0))
    standing_tax = (charge * tax_percentage / 100).quantize(SIX, "ROUND_HALF_EVEN")
    return {
        "value": sum((r[0] for r in records), Decimal(0)),
        "tax": sum((r[1] for r in records), Decimal(0)) + standing_tax,
        "total": sum((r[2] for r in records), Decimal(0)) + charge + standing_tax,
        "standing": charge,
    }


async def report_when_stored(
    client: Client, key: str, location: str, records: list[dict[str, Any]], body: dict[str, str]
) -> dict[str, Any]:
    """Send the batch until every record is stored, then the DAY report. Re-sending is safe:
    the records carry references, so a record priced twice is a duplicate (design §8); one
    the worker read before the location's profile was dead-lettered and is priced now."""
    for _ in range(40):
        status, batch, _ = await client.call("PUT", "/meters/interval", key=key, json=records)
        assert status == 200, batch
        for _ in range(6):
            await asyncio.sleep(0.5)
            status, report, _ = await client.call(
                "POST", f"/costs/interval/{location}", key=key, json=body,
                params={"aggregation": "DAY"},
            )  # fmt: skip
            assert status == 200, report
            if sum(row["records"] for row in report["data"]) == len(records):
                return report
    raise AssertionError("the worker and the sink never stored every record")


async def test_bill_reports_standing_charges_tax_and_totals(stack: Stack) -> None:
    _, key = await stack.new_key("acc_e2e_bill")
    records = [
        {"location_id": "loc_e2e_bill", "energy": kwh, "start_time": start, "end_time": end,
         "record_reference_id": f"bill-{n}"}
        for n, (start, end, kwh, _) in enumerate(BILL_RECORDS)
    ]  # fmt: skip
    vat = Decimal(5)
    async with aiohttp.ClientSession() as session:
        client = Client(session, stack.base_url)
        status, body, _ = await client.call(
            "PUT", "/locations/loc_e2e_bill", key=key, json=BILL_PROFILE
        )
        assert status == 200, body
        days = await report_when_stored(client, key, "loc_e2e_bill", records, BILL_MONTH)
        status, month, _ = await client.call(
            "POST", "/costs/interval/loc_e2e_bill", key=key, json=BILL_MONTH,
            params={"aggregation": "MONTH"},
        )  # fmt: skip
        assert status == 200, month
        status, each, _ = await client.call(
            "POST", "/costs/interval/loc_e2e_bill", key=key, json=BILL_MONTH
        )
        assert status == 200, each

    # per record: the stored tax and total, no standing charge
    assert [(r["cost"]["value"], r["cost"]["tax"], r["cost"]["total"]) for r in each["data"]] == [
        offline_record(kwh, rate, Decimal(5)) for _, _, kwh, rate in BILL_RECORDS
    ]
    assert all("standing_charge" not in r for r in each["data"])

    # DAY: a row for every local day of October, with records or without
    rows = days["data"]
    assert [row["start_time"][:10] for row in rows] == [f"2025-10-{d:02d}" for d in range(1, 32)]
    by_day: dict[int, list[tuple[Decimal, ...]]] = {}
    for start, _, kwh, rate in BILL_RECORDS:
        day = int(start[8:10])  # every record starts on its local day (UTC or BST)
        by_day.setdefault(day, []).append(offline_record(kwh, rate, vat))
    for number, row in enumerate(rows, start=1):
        charge = Decimal("0.5353") if number < 20 else Decimal("0.60117")
        expected = offline_row(by_day.get(number, []), [charge], vat)
        assert row["records"] == len(by_day.get(number, [])), number
        assert row["standing_charge"] == {"value": charge, "days": 1}, number
        assert row["cost"]["value"] == expected["value"], number
        assert row["cost"]["tax"] == expected["tax"], number
        assert row["cost"]["total"] == expected["total"], number
    quiet = rows[0]  # 1 October: no record, still a bill day
    assert (quiet["records"], quiet["energy"]["value"], quiet["cost"]["value"]) == (0, 0, 0)
    assert quiet["cost"]["tax"] == Decimal("0.026765")  # 0.5353 × 5 %
    assert quiet["cost"]["total"] == Decimal("0.562065")
    long_day = rows[25]  # 26 October: 25 hours, one standing charge
    assert (long_day["start_time"], long_day["end_time"]) == (
        "2025-10-26T00:00:00+01:00",
        "2025-10-27T00:00:00+00:00",
    )
    assert long_day["records"] == 1
    assert rows[19]["cost"]["tax"] == Decimal("0.026000") + Decimal("0.030058")  # half-even

    # MONTH: one row holding 31 standing-charge days, its standing charge taxed once
    (row,) = month["data"]
    expected = offline_row(
        [r for day in by_day.values() for r in day],
        [Decimal("0.5353")] * 19 + [Decimal("0.60117")] * 12,
        vat,
    )
    assert row["standing_charge"] == {"value": expected["standing"], "days": 31}
    assert expected["standing"] == Decimal("17.38474")
    assert row["records"] == len(BILL_RECORDS)
    assert (row["cost"]["value"], row["cost"]["tax"], row["cost"]["total"]) == (
        expected["value"],
        expected["tax"],
        expected["total"],
    )
    # rounded once per row: the month's standing tax is not the sum of the days' (0.869231)
    standing_tax = row["cost"]["tax"] - sum(r[1] for d in by_day.values() for r in d)
    assert standing_tax == Decimal("0.869237")
    assert sum(r["cost"]["total"] for r in rows) != row["cost"]["total"]


def docs_example() -> dict[str, Any]:
    """The profile and record blocks of docs/pricing.md's worked example."""
    text = (Path(__file__).resolve().parents[2] / "docs" / "pricing.md").read_text()
    found = {
        name: re.search(rf"<!-- example: {name} -->\n```json\n(.*?)\n```", text, re.S)
        for name in ("profile", "record")
    }
    return {name: loads(match[1]) for name, match in found.items() if match is not None}


async def test_the_pricing_docs_uk_example_day_row(stack: Stack) -> None:
    """docs/pricing.md's worked UK example, end to end: its DAY row has the figures the page
    and docs/api.md write (0.479130 net, 0.050721 tax, 1.065151 total, one 0.5353 charge)."""
    blocks = docs_example()
    profile = blocks["profile"]
    _, key = await stack.new_key(profile["account_id"])
    day = {"start_time": "2024-12-02T00:00:00Z", "end_time": "2024-12-03T00:00:00Z"}
    async with aiohttp.ClientSession() as session:
        client = Client(session, stack.base_url)
        path = f"/locations/{profile['location_id']}"
        status, body, _ = await client.call("PUT", path, key=key, json=profile)
        assert status == 200, body
        report = await report_when_stored(
            client, key, profile["location_id"], [blocks["record"]], day
        )
    (row,) = report["data"]
    assert row["records"] == 1
    assert row["cost"] == {
        "value": Decimal("0.479130"),
        "confidence": 1,
        "tax": Decimal("0.050721"),
        "total": Decimal("1.065151"),
    }
    assert row["standing_charge"] == {"value": Decimal("0.5353"), "days": 1}
