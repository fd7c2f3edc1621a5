"""Design §8.1-8.2 at the API: a record with `record_reference_id` is priced to the id its
identity gives, whichever path it takes (`POST /costs/instant`, or `PUT /meters/interval` and the
worker), however often and however concurrently it is sent.

One `meterflow worker` serving the API next to its agents (as deployed), real Kafka, a fresh
database; each test has its own account and location.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiokafka import AIOKafkaConsumer, TopicPartition
from api_harness import Client, Stack, api_stack

from meterflow import ids
from meterflow.models import loads

pytestmark = pytest.mark.integration

PROFILE = {
    "timezone": "Europe/London",
    "currency_code": "GBP",
    "devices": ["dev_1"],
    "tariffs": {
        "IMPORT": [{"type": "FIXED", "rate": "0.25", "effective_from": "2024-01-01T00:00:00Z"}]
    },
}


def uid(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(6)}"


def record(location_id: str, reference: str | None, **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "location_id": location_id,
        "energy": "2.0",
        "start_time": "2025-06-01T10:00:00Z",
        "end_time": "2025-06-01T10:30:00Z",
    }
    if reference is not None:
        body["record_reference_id"] = reference
    return body | fields


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def stack(kafka_bootstrap: str, database_url: str) -> AsyncIterator[Stack]:
    async with api_stack(kafka_bootstrap, database_url, via_worker=True) as running:
        yield running


@pytest_asyncio.fixture(loop_scope="session")
async def client(stack: Stack) -> AsyncIterator[Client]:
    async with aiohttp.ClientSession() as session:
        yield Client(session, stack.base_url)


async def new_location(stack: Stack, client: Client) -> tuple[str, str, str]:
    """(account, key, location) with a FIXED 0.25 profile, in test mode."""
    account, location = uid("acc"), uid("loc")
    _, key = await stack.new_key(account)
    status, doc, _ = await client.call("PUT", f"/locations/{location}", key=key, json=PROFILE)
    assert status == 200, doc
    return account, key, location


async def instant(client: Client, key: str, body: dict[str, Any]) -> dict[str, Any]:
    status, cost, _ = await client.call("POST", "/costs/instant", key=key, json=body)
    assert status == 200, cost
    assert isinstance(cost, dict)
    return cost


async def energy_costs(stack: Stack) -> list[dict[str, Any]]:
    """Every event currently on the stack's `energy-costs`."""
    return [doc for _, doc in await stamped_documents(stack, "energy-costs")]


async def stamped_documents(stack: Stack, name: str) -> list[tuple[int, dict[str, Any]]]:
    """Every message currently on the stack's topic `name`: (Kafka timestamp in ms, document)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=stack.kafka_bootstrap, enable_auto_commit=False, group_id=None
    )
    await consumer.start()
    try:
        topic = stack.topic_prefix + name
        await consumer._client.force_metadata_update()
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or []]
        assert partitions, f"no topic {topic}"
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        found: list[tuple[int, dict[str, Any]]] = []
        while any([await consumer.position(tp) < end for tp, end in ends.items()]):
            for messages in (await consumer.getmany(timeout_ms=1000)).values():
                found += [(m.timestamp, loads(m.value)) for m in messages if m.value is not None]
        return found
    finally:
        await consumer.stop()


async def test_a_retried_instant_cost_answers_the_same_id_and_cost(
    stack: Stack, client: Client
) -> None:
    account, key, location = await new_location(stack, client)
    body = record(location, "read-1")
    first = await instant(client, key, body)
    again = await instant(client, key, body | {"id": "mre_the_client_made_up"})
    expected = ids.meter_record_id_for_reference(account, False, location, "read-1")
    assert first["meter_record_id"] == again["meter_record_id"] == expected
    assert first["id"] == again["id"] == ids.energy_cost_id(expected)
    assert (
        first["data"]["cost"]
        == again["data"]["cost"]
        == {
            "value": Decimal("0.5"),
            "confidence": Decimal("1"),
        }
    )
    assert first["request"] == again["request"]  # the made-up id is not kept
    assert "id" not in first["request"]

    on_device = await instant(client, key, body | {"device_id": "dev_1"})
    other_reference = await instant(client, key, record(location, "read-2"))
    simulated = await instant(client, key, body | {"non_persistent": True})
    assert simulated["id"] == first["id"]  # a simulation is the same record, not stored
    assert len({first["id"], on_device["id"], other_reference["id"]}) == 3
    # without a reference nothing changes (design §4): every submission is a new record
    plain = [await instant(client, key, record(location, None)) for _ in range(2)]
    assert plain[0]["id"] != plain[1]["id"]

    events = [e for e in await energy_costs(stack) if e["location_id"] == location]
    assert [e["id"] for e in events].count(first["id"]) == 3  # the sink keeps one row (§8.2)


async def test_the_same_reference_sent_concurrently_answers_200_with_one_id(
    stack: Stack, client: Client
) -> None:
    _, key, location = await new_location(stack, client)
    body = record(location, "read-concurrent")
    answers = await asyncio.gather(
        *(client.call("POST", "/costs/instant", key=key, json=body) for _ in range(8))
    )
    assert [status for status, _, _ in answers] == [200] * 8, answers
    assert len({doc["id"] for _, doc, _ in answers}) == 1
    assert len({doc["data"]["cost"]["value"] for _, doc, _ in answers}) == 1


async def test_a_bad_reference_is_invalid_record_on_both_paths(
    stack: Stack, client: Client
) -> None:
    _, key, location = await new_location(stack, client)
    bad = [
        record(location, "x" * 257),
        record(location, "two\nlines"),
        record(location, "nul\u0000"),
        record(location, "c1\u0085"),
        record(location, ""),
        record(location, "ok", session_reference_id="esc\u001b"),
    ]
    for body in bad:
        status, doc, _ = await client.call("POST", "/costs/instant", key=key, json=body)
        assert status == 422, doc
        assert doc["code"] == "invalid_record"
        assert "reference_id" in doc["message"]
    status, batch, _ = await client.call("PUT", "/meters/interval", key=key, json=bad)
    assert status == 200, batch
    assert batch["records_accepted"] == 0
    assert [item["error"].split(":")[0] for item in batch["failed_records"]] == [
        "invalid_record"
    ] * len(bad)
    references = [item["record_reference_id"] for item in batch["failed_records"]]
    assert references[2] is None  # a NUL cannot be stored with the batch
    assert references[:2] == ["x" * 257, "two\nlines"]
    longest = await instant(client, key, record(location, "x" * 256))
    assert longest["data"]["record_reference_id"] == "x" * 256


async def test_an_energy_the_worker_would_refuse_is_refused_on_both_paths(
    stack: Stack, client: Client
) -> None:
    """Before, a batch accepted these and the worker dead-lettered them; 1e-1001 was even
    priced, and then refused by the sink (jsonb and the cost tables cannot store it)."""
    _, key, location = await new_location(stack, client)
    bad = [
        (record(location, "tiny", energy=Decimal("1e-1001")), "invalid_record"),
        (record(location, "long", energy=Decimal("1." + "0" * 49 + "1")), "invalid_record"),
        (record(location, "huge", energy=Decimal("1e1000000")), "invalid_record"),
        (record(location, "twh", energy=Decimal("1000000001")), "invalid_record"),
        (
            record(location, "sign", energy="-1", energy_flow_direction="OUTBOUND"),
            "direction_conflict",
        ),
    ]
    for body, code in bad:
        status, doc, _ = await client.call("POST", "/costs/instant", key=key, json=body)
        assert status == 422, doc
        assert doc["code"] == code, doc
    status, batch, _ = await client.call(
        "PUT", "/meters/interval", key=key, json=[b for b, _ in bad]
    )
    assert status == 200, batch
    assert batch["records_accepted"] == 0
    assert [item["error"].split(":")[0] for item in batch["failed_records"]] == [
        code for _, code in bad
    ]
    at_the_bound = record(location, "places", energy=Decimal("1e-1000"))
    assert (await instant(client, key, at_the_bound))["data"]["energy"]["value"] == 0


async def test_the_batch_path_and_the_instant_path_give_the_same_id(
    stack: Stack, client: Client
) -> None:
    """The batch is priced by the worker, from Kafka: its event has the instant answer's id.

    The batch is re-sent until the worker has priced it (a worker may read the record before
    the location's profile and dead-letter it): exactly a client's retry, same id each time."""
    account, key, location = await new_location(stack, client)
    body = record(location, "read-batch", device_id="dev_1")
    expected = ids.energy_cost_id(
        ids.meter_record_id_for_reference(account, False, "dev_1", "read-batch")
    )
    priced: list[dict[str, Any]] = []
    for _ in range(30):
        status, batch, _ = await client.call("PUT", "/meters/interval", key=key, json=[body])
        assert status == 200, batch
        assert batch["records_accepted"] == 1
        for _ in range(6):
            await asyncio.sleep(0.5)
            priced = [e for e in await energy_costs(stack) if e["location_id"] == location]
            if priced:
                break
        if priced:
            break
    assert priced, "the worker never priced the batch"
    assert {e["id"] for e in priced} == {expected}
    answer = await instant(client, key, body)
    assert answer["id"] == expected
    assert answer["data"]["cost"] == priced[0]["data"]["cost"]


async def test_each_result_carries_when_its_record_arrived(stack: Stack, client: Client) -> None:
    """Design §8.3 across the two paths: the worker's event has its `meter-records` message's
    timestamp, however late it prices it, and the API's event the moment it priced, so the
    sink applies a correction sent through the API after its original went to Kafka last
    (tests/integration/test_sink_corrections.py has the sink's side)."""
    _, key, location = await new_location(stack, client)
    original = record(location, "read-race")
    priced: list[tuple[int, dict[str, Any]]] = []
    for _ in range(30):  # re-sent until the worker has the profile (as above)
        status, batch, _ = await client.call("PUT", "/meters/interval", key=key, json=[original])
        assert status == 200, batch
        for _ in range(6):
            await asyncio.sleep(0.5)
            priced = [
                (stamp, e)
                for stamp, e in await stamped_documents(stack, "energy-costs")
                if e["location_id"] == location
            ]
            if priced:
                break
        if priced:
            break
    assert priced, "the worker never priced the batch"
    sent = [
        stamp
        for stamp, r in await stamped_documents(stack, "meter-records")
        if r.get("location_id") == location
    ]
    [(worker_stamp, worker_event)] = priced
    assert worker_stamp in sent  # its record's, not the moment the worker priced it
    correction = await instant(client, key, original | {"energy": "3.0"})
    assert correction["id"] == worker_event["id"]
    [instant_stamp] = [
        stamp
        for stamp, e in await stamped_documents(stack, "energy-costs")
        if e["location_id"] == location and e["data"]["energy"]["value"] == Decimal("3.0")
    ]
    assert instant_stamp > max(sent)
