"""The HTTP API as a client meets it: a real `meterflow api` process, real Kafka and Postgres.

One server for the module (fresh database, own topic prefix); each test uses its own accounts
and location ids, so tests do not see each other's objects.
"""

from __future__ import annotations

import asyncio
import base64
import secrets
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import aiohttp
import asyncpg
import pytest
import pytest_asyncio
from aiokafka import AIOKafkaConsumer, TopicPartition
from api_harness import TOKEN_SECRET, Client, Stack, api_stack

from meterflow.api.credentials import Principal, sign_token
from meterflow.models import MAX_MESSAGE_BYTES, dumps, loads
from samples import duos, levy, london, time_of_use

pytestmark = pytest.mark.integration

RATE_PER_SECOND = 200
MAX_BODY = 1024 * 1024
MAX_REPORT = 20  # records in a per-record report

FIXED = {
    "timezone": "Europe/London",
    "currency_code": "GBP",
    "devices": ["dev_charger"],
    "tariffs": {
        "IMPORT": [{"type": "FIXED", "rate": "0.25", "effective_from": "2024-01-01T00:00:00Z"}],
        "EXPORT": [{"type": "FIXED", "rate": "0.15", "effective_from": "2024-01-01T00:00:00Z"}],
    },
}


def record(location_id: str, **fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "location_id": location_id,
        "energy": "2.0",
        "start_time": "2025-06-01T10:00:00Z",
        "end_time": "2025-06-01T10:30:00Z",
    }
    return base | fields


def uid(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(6)}"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def stack(kafka_bootstrap: str, database_url: str) -> AsyncIterator[Stack]:
    async with api_stack(
        kafka_bootstrap,
        database_url,
        MF_API_KEY_CACHE_SECONDS="0.5",
        MF_API_RATE_LIMIT_PER_SECOND=str(RATE_PER_SECOND),
        MF_API_RATE_LIMIT_BURST=str(RATE_PER_SECOND),
        MF_API_MAX_BODY_BYTES=str(MAX_BODY),
        MF_API_MAX_REPORT_RECORDS=str(MAX_REPORT),
    ) as running:
        yield running


@pytest_asyncio.fixture(loop_scope="session")
async def client(stack: Stack) -> AsyncIterator[Client]:
    async with aiohttp.ClientSession() as session:
        yield Client(session, stack.base_url)


async def new_account(stack: Stack, live_mode: bool = False) -> tuple[str, str]:
    account = uid("acc")
    _, key = await stack.new_key(account, live_mode)
    return account, key


async def put_location(client: Client, key: str, location_id: str, body: Any = None) -> Any:
    status, doc, _ = await client.call(
        "PUT", f"/locations/{location_id}", key=key, json=FIXED if body is None else body
    )
    assert status == 200, doc
    return doc


def assert_error(status: int, doc: Any, expected_status: int, code: str) -> None:
    assert status == expected_status, doc
    assert doc["object"] == "error"
    assert doc["code"] == code
    assert isinstance(doc["type"], str)
    assert doc["type"]
    assert isinstance(doc["message"], str)
    assert doc["message"]
    assert "Traceback" not in doc["message"]


# -- public endpoints -------------------------------------------------------------------------


async def test_health_ready_openapi_and_metrics_are_public(client: Client) -> None:
    assert (await client.call("GET", "/healthz"))[:2] == (200, {"status": "ok", "checks": {}})
    status, ready, _ = await client.call("GET", "/readyz")
    assert status == 200
    assert ready["checks"] == {"kafka": True, "database": True, "views_loaded": True}
    status, spec, _ = await client.call("GET", "/openapi.json")
    assert status == 200
    assert spec["openapi"].startswith("3.1")
    assert "/costs/instant" in spec["paths"]
    status, text, headers = await client.call("GET", "/metrics")
    assert status == 200
    assert "meterflow_http_requests_total" in text
    assert headers["Content-Type"].startswith("text/plain")


async def test_unknown_path_and_wrong_method_answer_error_objects(client: Client) -> None:
    status, doc, _ = await client.call("GET", "/nope")
    assert_error(status, doc, 404, "not_found")
    status, doc, headers = await client.call("DELETE", "/costs/instant")
    assert_error(status, doc, 405, "method_not_allowed")
    assert headers["Allow"] == "POST"
    status, doc, headers = await client.call("TRACE", "/locations/loc_x")
    assert_error(status, doc, 405, "method_not_allowed")
    assert set(headers["Allow"].split(",")) == {"DELETE", "GET", "HEAD", "PUT"}


async def test_nul_characters_are_refused_before_the_database(stack: Stack, client: Client) -> None:
    _, key = await new_account(stack)
    status, doc, _ = await client.call(
        "GET", "/locations", key=key, params={"starting_after": "a\x00b"}
    )
    assert_error(status, doc, 400, "invalid_request")
    status, doc, _ = await client.call("GET", "/locations/a%00b", key=key)
    assert_error(status, doc, 400, "invalid_request")
    status, doc, _ = await client.call(
        "PUT", "/locations/loc_nul", key=key, json=FIXED | {"devices": ["dev\x00"]}
    )
    assert_error(status, doc, 422, "invalid_profile")


# -- auth matrix ------------------------------------------------------------------------------


async def test_missing_malformed_and_unknown_credentials_are_401(client: Client) -> None:
    status, doc, headers = await client.call("GET", "/locations")
    assert_error(status, doc, 401, "unauthorized")
    assert headers["WWW-Authenticate"] == "Bearer"
    status, doc, _ = await client.call(
        "GET", "/locations", headers={"Authorization": "Basic Zm9vOmJhcg=="}
    )
    assert_error(status, doc, 401, "unauthorized")
    for bad in ("sk_test_" + secrets.token_urlsafe(32), "sk_live_nope", "not-a-token", "a.b.c"):
        status, doc, _ = await client.call("GET", "/locations", key=bad)
        assert_error(status, doc, 401, "unauthorized")


async def test_revoked_key_stops_working_within_the_cache_time(
    stack: Stack, client: Client
) -> None:
    account = uid("acc")
    code, out, err = await stack.run_cli("keys", "create", "--account", account, "--mode", "test")
    assert code == 0, err
    key = out.strip()
    assert key.startswith("sk_test_")
    assert (await client.call("GET", "/locations", key=key))[0] == 200
    code, listing, _ = await stack.run_cli("keys", "list", "--account", account)
    assert code == 0
    assert key not in listing
    key_id = listing.split("\t")[0]
    assert key_id.startswith("key_")
    assert "active" in listing
    code, out, err = await stack.run_cli("keys", "revoke", key_id)
    assert code == 0, err
    await asyncio.sleep(0.7)  # MF_API_KEY_CACHE_SECONDS=0.5 for this server
    status, doc, _ = await client.call("GET", "/locations", key=key)
    assert_error(status, doc, 401, "unauthorized")


async def test_login_issues_a_token_that_works_until_it_expires_or_is_revoked(
    stack: Stack, client: Client
) -> None:
    account = uid("acc")
    key_id, key = await stack.new_key(account, live_mode=True)
    basic = base64.b64encode(f"{account}:{key}".encode()).decode()
    status, login, _ = await client.call(
        "GET", "/login", headers={"Authorization": f"Basic {basic}"}
    )
    assert status == 200, login
    assert login["live_mode"] is True
    assert login["expires_in"] == 3600
    token = login["bearer_token"]
    assert token.count(".") == 2
    assert (await client.call("GET", "/locations", key=token))[0] == 200

    expired = sign_token(
        Principal(account, True, key_id),
        now=int(time.time()) - 7200,
        ttl_seconds=3600,
        secret=TOKEN_SECRET,
    )
    status, doc, _ = await client.call("GET", "/locations", key=expired)
    assert_error(status, doc, 401, "unauthorized")
    assert "expired" in doc["message"]
    forged = sign_token(
        Principal(account, True, key_id), now=int(time.time()), ttl_seconds=60, secret="wrong" * 8
    )
    assert (await client.call("GET", "/locations", key=forged))[0] == 401

    await stack.revoke(key_id)
    await asyncio.sleep(0.7)
    status, doc, _ = await client.call("GET", "/locations", key=token)
    assert_error(status, doc, 401, "unauthorized")


async def test_login_with_bad_credentials_is_403(stack: Stack, client: Client) -> None:
    account, key = await new_account(stack)
    cases = [
        f"{account}:sk_test_wrong",
        f"acc_someone_else:{key}",
        "no-colon",
    ]
    for credentials in cases:
        basic = base64.b64encode(credentials.encode()).decode()
        status, doc, _ = await client.call(
            "GET", "/login", headers={"Authorization": f"Basic {basic}"}
        )
        assert_error(status, doc, 403, "bad_credentials")
    status, doc, _ = await client.call("GET", "/login", headers={"Authorization": "Bearer x"})
    assert_error(status, doc, 403, "bad_credentials")
    for header in ("Basic %%%", "Basic éé"):  # not base64; not even ASCII
        status, doc, _ = await client.call("GET", "/login", headers={"Authorization": header})
        assert_error(status, doc, 403, "bad_credentials")


async def test_login_without_credentials_is_401_with_a_basic_challenge(
    stack: Stack, client: Client
) -> None:
    status, doc, headers = await client.call("GET", "/login")
    assert_error(status, doc, 401, "unauthorized")
    assert headers["WWW-Authenticate"] == 'Basic realm="meterflow"'


async def test_other_accounts_objects_answer_404(stack: Stack, client: Client) -> None:
    _, owner = await new_account(stack)
    _, intruder = await new_account(stack)
    location = uid("loc")
    await put_location(client, owner, location)

    for method in ("GET", "DELETE"):
        status, doc, _ = await client.call(method, f"/locations/{location}", key=intruder)
        assert_error(status, doc, 404, "not_found")
    status, doc, _ = await client.call("PUT", f"/locations/{location}", key=intruder, json=FIXED)
    assert_error(status, doc, 404, "not_found")
    status, listing, _ = await client.call("GET", "/locations", key=intruder)
    assert status == 200
    assert listing["data"] == []
    status, doc, _ = await client.call(
        "POST", f"/costs/interval/{location}", key=intruder, json=REPORT_RANGE
    )
    assert_error(status, doc, 404, "not_found")
    # a record for someone else's location is, to this caller, a record for an unknown one
    status, doc, _ = await client.call(
        "POST", "/costs/instant", key=intruder, json=record(location)
    )
    assert_error(status, doc, 422, "unknown_location")
    # the owner still has it, unchanged
    status, doc, _ = await client.call("GET", f"/locations/{location}", key=owner)
    assert status == 200
    assert doc["account_id"] != ""
    assert doc["id"] == location
    # a deleted id stays its owner's: the intruder cannot take it over (with the owner's
    # records and register readings still on their way), the owner can PUT it back
    status, _, _ = await client.call("DELETE", f"/locations/{location}", key=owner)
    assert status == 200
    status, doc, _ = await client.call("PUT", f"/locations/{location}", key=intruder, json=FIXED)
    assert_error(status, doc, 404, "not_found")
    status, doc, _ = await client.call("PUT", f"/locations/{location}", key=owner, json=FIXED)
    assert status == 200
    assert doc["id"] == location


async def test_test_key_cannot_touch_live_objects(stack: Stack, client: Client) -> None:
    account = uid("acc")
    _, live = await stack.new_key(account, live_mode=True)
    _, test = await stack.new_key(account, live_mode=False)
    location = uid("loc")
    doc = await put_location(client, live, location)
    assert doc["live_mode"] is True
    assert doc["account_id"] == account
    status, doc, _ = await client.call("GET", f"/locations/{location}", key=test)
    assert_error(status, doc, 404, "not_found")
    status, doc, _ = await client.call("POST", "/costs/instant", key=test, json=record(location))
    assert_error(status, doc, 422, "unknown_location")
    status, doc, _ = await client.call("POST", "/costs/instant", key=live, json=record(location))
    assert status == 200
    assert doc["live_mode"] is True


async def test_rate_limit_answers_429_with_retry_after(stack: Stack, client: Client) -> None:
    _, key = await new_account(stack)
    calls = [
        client.call("GET", "/locations/loc_missing", key=key) for _ in range(3 * RATE_PER_SECOND)
    ]
    answers = await asyncio.gather(*calls)
    limited = [(status, doc, headers) for status, doc, headers in answers if status == 429]
    assert limited, "no request was rate limited"
    status, doc, headers = limited[0]
    assert_error(status, doc, 429, "rate_limited")
    assert doc["type"] == "rate_limit"
    assert int(headers["Retry-After"]) >= 1
    assert {status for status, _, _ in answers} <= {404, 429}


async def test_body_larger_than_the_limit_is_413(stack: Stack, client: Client) -> None:
    _, key = await new_account(stack)
    status, doc, _ = await client.call(
        "PUT", "/meters/interval", key=key, data=b"[" + b" " * MAX_BODY + b"]"
    )
    assert_error(status, doc, 413, "body_too_large")


# -- locations --------------------------------------------------------------------------------


async def test_location_put_get_list_delete(stack: Stack, client: Client) -> None:
    account, key = await new_account(stack)
    ids = sorted(uid("loc") for _ in range(3))
    for location in ids:
        doc = await put_location(client, key, location, FIXED | {"devices": [f"dev_{location}"]})
        assert doc["object"] == "location"
        assert doc["id"] == location
        assert doc["account_id"] == account
        assert doc["live_mode"] is False
        assert doc["tariffs"]["IMPORT"][0]["rate"] == Decimal("0.25")
    status, got, _ = await client.call("GET", f"/locations/{ids[0]}", key=key)
    assert status == 200
    assert got["devices"] == [f"dev_{ids[0]}"]

    status, page1, _ = await client.call("GET", "/locations", key=key, params={"limit": "2"})
    assert status == 200
    assert page1["object"] == "list"
    assert page1["url"] == "/locations"
    assert [item["id"] for item in page1["data"]] == [ids[2], ids[1]]
    assert page1["has_more"] is True
    status, page2, _ = await client.call(
        "GET", "/locations", key=key, params={"limit": "2", "starting_after": ids[1]}
    )
    assert [item["id"] for item in page2["data"]] == [ids[0]]
    assert page2["has_more"] is False

    status, deleted, _ = await client.call("DELETE", f"/locations/{ids[0]}", key=key)
    assert status == 200
    assert deleted == {"id": ids[0], "object": "location", "deleted": True}
    status, doc, _ = await client.call("GET", f"/locations/{ids[0]}", key=key)
    assert_error(status, doc, 404, "not_found")
    status, doc, _ = await client.call("POST", "/costs/instant", key=key, json=record(ids[0]))
    assert_error(status, doc, 422, "unknown_location")


async def test_a_device_belongs_to_one_location(stack: Stack, client: Client) -> None:
    """Listed by two, its readings of one replaced the other's intervals (one identity) and a
    report of it added both locations' currencies."""
    _, key = await new_account(stack)
    first, second = uid("loc"), uid("loc")
    await put_location(client, key, first, FIXED | {"devices": ["dev_a", "dev_b"]})
    path = f"/locations/{second}"
    status, doc, _ = await client.call(
        "PUT", path, key=key, json=FIXED | {"devices": ["dev_c", "dev_b"]}
    )
    assert_error(status, doc, 422, "device_conflict")
    assert f"'dev_b' is a device of location '{first}'" in doc["message"]
    status, doc, _ = await client.call("GET", path, key=key)
    assert_error(status, doc, 404, "not_found")  # nothing was written
    status, doc, _ = await client.call("PUT", path, key=key, json=FIXED | {"devices": [second]})
    assert_error(status, doc, 422, "device_conflict")  # the location's own meter's id
    # a meter has one id: a device named as another location, a location named as a device
    status, doc, _ = await client.call("PUT", path, key=key, json=FIXED | {"devices": [first]})
    assert_error(status, doc, 422, "device_conflict")
    assert f"device '{first}' is the id of location '{first}'" in doc["message"]
    meter = uid("loc")  # a device whose id could be a location's
    await put_location(client, key, first, FIXED | {"devices": ["dev_a", "dev_b", meter]})
    status, doc, _ = await client.call("PUT", f"/locations/{meter}", key=key, json=FIXED)
    assert_error(status, doc, 422, "device_conflict")
    assert f"location '{meter}' is a device of location '{first}'" in doc["message"]
    status, doc, _ = await client.call("GET", f"/locations/{meter}", key=key)
    assert_error(status, doc, 404, "not_found")  # nothing was written
    # moved: removed from the first, then listed by the second; another account may list it
    await put_location(client, key, first, FIXED | {"devices": ["dev_a"]})
    await put_location(client, key, second, FIXED | {"devices": ["dev_b"]})
    await put_location(client, key, first, FIXED | {"devices": ["dev_a"]})  # again: its own
    _, other = await new_account(stack)
    await put_location(client, other, uid("loc"), FIXED | {"devices": ["dev_b"]})
    # a deleted location's devices are free
    await client.call("DELETE", f"/locations/{second}", key=key)
    await put_location(client, key, first, FIXED | {"devices": ["dev_a", "dev_b"]})


async def test_location_put_is_published_to_the_locations_topic(
    stack: Stack, client: Client
) -> None:
    _, key = await new_account(stack)
    location = uid("loc")
    await put_location(client, key, location)
    await client.call("DELETE", f"/locations/{location}", key=key)
    values = [value for k, value in await read_topic(stack, "locations") if k == location]
    assert len(values) == 2
    assert values[1] is None
    published = loads(values[0])
    assert published["location_id"] == location
    assert published["live_mode"] is False


async def test_a_location_read_can_be_written_back(stack: Stack, client: Client) -> None:
    """The answer of a GET, its `id`, `object` and `time_updated` included, is a valid PUT body
    (they were "extra inputs"); a client edits what it read."""
    _, key = await new_account(stack)
    location = uid("loc")
    rich = london(time_of_use(("00:00", "07:00", "0.1"), ("07:00", "24:00", "0.3")))
    await put_location(client, key, location, rich | {"tax_percentage": "5"})
    status, read, _ = await client.call("GET", f"/locations/{location}", key=key)
    assert status == 200
    assert {"id", "object", "time_updated"} <= set(read)
    written = await put_location(client, key, location, read | {"devices": ["dev_new"]})
    assert written["devices"] == ["dev_new"]
    drop = {"time_updated", "devices"}
    assert {k: v for k, v in written.items() if k not in drop} == {
        k: v for k, v in read.items() if k not in drop
    }
    wrong_values = (
        {"id": "loc_other"},
        {"object": "energy_cost"},
        {"time_updated": "soon"},
        {"time_updated": 0},  # the schema says an RFC 3339 string: no epoch numbers
        {"time_updated": "2026-12-04T04:47:01"},  # nor a time without its offset
    )
    for wrong in wrong_values:
        status, doc, _ = await client.call(
            "PUT", f"/locations/{location}", key=key, json=read | wrong
        )
        assert_error(status, doc, 422, "invalid_profile")


async def test_location_validation_errors(stack: Stack, client: Client) -> None:
    _, key = await new_account(stack)
    location = uid("loc")
    gap = london(time_of_use(("00:00", "07:00", "0.1")))  # 07:00-24:00 has no rate
    status, doc, _ = await client.call("PUT", f"/locations/{location}", key=key, json=gap)
    assert_error(status, doc, 422, "invalid_profile")
    assert "07:00" in doc["message"]
    status, doc, _ = await client.call(
        "PUT", f"/locations/{location}", key=key, json=FIXED | {"timezone": "Mars/Olympus"}
    )
    assert_error(status, doc, 422, "invalid_profile")
    status, doc, _ = await client.call(
        "PUT", f"/locations/{location}", key=key, json=FIXED | {"rates": 1}
    )
    assert_error(status, doc, 422, "invalid_profile")
    status, doc, _ = await client.call(
        "PUT", f"/locations/{location}", key=key, json=FIXED | {"location_id": "loc_other"}
    )
    assert_error(status, doc, 422, "invalid_profile")
    status, doc, _ = await client.call(
        "PUT", f"/locations/{location}", key=key, json=FIXED | {"account_id": "acc_other"}
    )
    assert_error(status, doc, 403, "forbidden")
    status, doc, _ = await client.call(
        "PUT", f"/locations/{location}", key=key, json=FIXED | {"live_mode": True}
    )
    assert_error(status, doc, 403, "forbidden")
    status, doc, _ = await client.call("PUT", f"/locations/{location}", key=key, data=b"{")
    assert_error(status, doc, 400, "invalid_profile")
    for limit in ("0", "²", "٣", "9" * 5000):  # digits to `str.isdigit`, not to `int` or us
        status, doc, _ = await client.call("GET", "/locations", key=key, params={"limit": limit})
        assert_error(status, doc, 400, "invalid_request")
    # an absurd rate once broke the final rounding; PostgreSQL's jsonb reads no number with
    # more than 16,383 places (a 500 after the checks); a folder is no time zone (OSError)
    for absurd in (
        *(
            london({"type": "FIXED", "effective_from": "2024-01-01T00:00:00Z", "rate": rate})
            for rate in ("1e60", "-1000000001", "1e-16384")
        ),
        london(time_of_use(("00:00", "24:00", "0.1")), tax_percentage="0E-999999"),
        FIXED | {"timezone": "Europe"},
        FIXED | {"timezone": "a" * 300},
        # a device no record or reading could name (their `device_id` has 1 to 128 characters)
        FIXED | {"devices": ["d" * 129]},
        FIXED | {"devices": [""]},
    ):
        status, doc, _ = await client.call("PUT", f"/locations/{location}", key=key, json=absurd)
        assert_error(status, doc, 422, "invalid_profile")
    status, doc, _ = await client.call(
        "PUT", f"/locations/{location}", key=key, data=b'{"devices": ["\\ud800"]}'
    )
    assert_error(status, doc, 400, "invalid_profile")  # a lone surrogate: no UTF-8 to store
    status, doc, _ = await client.call(
        "PUT", f"/locations/{location}", key=key, data=b'{"tax_percentage": 1e9999999999999999999}'
    )
    assert_error(status, doc, 400, "invalid_profile")  # no Decimal holds it: it was a 500
    status, doc, _ = await client.call("GET", f"/locations/{location}", key=key)
    assert_error(status, doc, 404, "not_found")


async def test_a_document_larger_than_a_message_may_hold_is_a_4xx(
    stack: Stack, client: Client
) -> None:
    """A broker refuses a message over 1 MiB (its default): publishing a larger profile (12,000
    dynamic prices) or result (14,400 breakdown items) failed, a 500. Both are refused first,
    above `MAX_MESSAGE_BYTES` written, with the reason."""
    _, key = await new_account(stack)
    location = uid("loc")
    start = datetime(2024, 5, 1, tzinfo=UTC)
    prices = [
        {
            "valid_from": (start + timedelta(minutes=m)).isoformat(),
            "valid_to": (start + timedelta(minutes=m + 1)).isoformat(),
            "rate": "0.25",
        }
        for m in range(10_800)
    ]
    dynamic = {"type": "DYNAMIC", "effective_from": "2024-05-01T00:00:00Z", "prices": prices}
    body = dumps(london(dynamic))
    assert MAX_MESSAGE_BYTES < len(body) < MAX_BODY  # the body limit lets it in
    status, doc, _ = await client.call("PUT", f"/locations/{location}", key=key, data=body)
    assert_error(status, doc, 422, "invalid_profile")
    assert "a message may hold" in doc["message"]

    minutes = [
        (f"{m // 60:02d}:{m % 60:02d}", f"{(m + 1) // 60:02d}:{(m + 1) % 60:02d}", f"0.{m % 2 + 1}")
        for m in range(1440)
    ]
    await put_location(client, key, location, london(time_of_use(*minutes)))
    ten_days = record(location, start_time="2025-06-01T00:00:00Z", end_time="2025-06-11T00:00:00Z")
    status, doc, _ = await client.call("POST", "/costs/instant", key=key, json=ten_days)
    assert_error(status, doc, 422, "invalid_record")
    assert "a message may hold" in doc["message"]
    five_days = ten_days | {"end_time": "2025-06-06T00:00:00Z"}
    status, doc, _ = await client.call("POST", "/costs/instant", key=key, json=five_days)
    assert status == 200, doc
    assert len(doc["data"]["breakdown"]) == 7200


# -- instant cost -----------------------------------------------------------------------------


async def read_topic(stack: Stack, name: str) -> list[tuple[str, bytes | None]]:
    """Every (key, value) currently on one of the stack's topics."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=stack.kafka_bootstrap, enable_auto_commit=False, group_id=None
    )
    await consumer.start()
    try:
        topic = stack.topic_prefix + name
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or []]
        if not partitions:
            await consumer._client.force_metadata_update()
            partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        found: list[tuple[str, bytes | None]] = []
        while any([await consumer.position(tp) < end for tp, end in ends.items()]):
            batches = await consumer.getmany(timeout_ms=1000)
            for messages in batches.values():
                found += [(m.key.decode(), m.value) for m in messages if m.key is not None]
        return found
    finally:
        await consumer.stop()


async def test_bill_fields_price_through_the_api_and_bad_ones_are_422(
    stack: Stack, client: Client
) -> None:
    _, key = await new_account(stack)
    location = uid("loc")
    version = FIXED["tariffs"]["IMPORT"][0] | {  # type: ignore[index]
        "surcharge_percentage": "10",
        "components": [duos(), levy("cfd", "0.004")],
        "standing_charge": "0.53",
    }
    billed = FIXED | {"tax_percentage": "5", "tariffs": {"IMPORT": [version]}}
    await put_location(client, key, location, billed)
    status, cost, _ = await client.call("POST", "/costs/instant", key=key, json=record(location))
    assert status == 200, cost
    # Sunday: DUoS green 0.0021; energy 0.25 × 1.10; 2 kWh; VAT 5 %
    assert cost["data"]["cost"] == {
        "value": Decimal("0.5622"),
        "confidence": 1,
        "tax": Decimal("0.02811"),
        "total": Decimal("0.59031"),
    }
    items = [(i["component"], i["rate"], i["cost"]) for i in cost["data"]["breakdown"]]
    assert items == [
        ("energy", Decimal("0.275"), Decimal("0.55")),
        ("duos", Decimal("0.0021"), Decimal("0.0042")),
        ("cfd", Decimal("0.004"), Decimal("0.008")),
    ]
    gap = duos()
    gap["rules"].pop()  # no weekend rule
    for bad, named in [
        (billed | {"tax_percentage": "100.01"}, "tax_percentage"),
        (
            billed | {"tariffs": {"IMPORT": [version | {"standing_charge": "-1"}]}},
            "standing_charge",
        ),
        (billed | {"tariffs": {"IMPORT": [version | {"components": [gap]}]}}, "component 'duos'"),
    ]:
        status, doc, _ = await client.call("PUT", f"/locations/{location}", key=key, json=bad)
        assert_error(status, doc, 422, "invalid_profile")
        assert named in doc["message"]
    status, kept, _ = await client.call("GET", f"/locations/{location}", key=key)
    assert status == 200, kept
    assert kept["tax_percentage"] == 5  # the refused PUTs changed nothing


async def test_instant_cost_equals_the_event_on_energy_costs(stack: Stack, client: Client) -> None:
    account, key = await new_account(stack)
    location = uid("loc")
    await put_location(client, key, location)  # priced at once: read-your-writes
    status, cost, _ = await client.call(
        "POST", "/costs/instant", key=key, json=record(location, session_reference_id="S-1")
    )
    assert status == 200, cost
    assert cost["object"] == "energy_cost"
    assert cost["id"].startswith("ecs_")
    assert cost["meter_record_id"].startswith("mre_")
    assert cost["account_id"] == account
    assert cost["non_persistent"] is False
    assert cost["data"]["cost"]["value"] == Decimal("0.5")
    assert cost["data"]["energy"]["value"] == Decimal("2")
    assert cost["request"]["energy"] == "2.0"  # the record as received, digits kept

    events = [loads(v) for k, v in await read_topic(stack, "energy-costs") if k == location]
    assert events == [cost]


async def test_instant_cost_flatpeak_units_and_non_persistent(stack: Stack, client: Client) -> None:
    _, key = await new_account(stack)
    location = uid("loc")
    await put_location(client, key, location)
    body = record(location, device_id="dev_charger", energy=None)
    body |= {"units": "W", "value": 3000, "energy_flow_direction": "INBOUND"}
    del body["energy"]
    status, cost, _ = await client.call(
        "POST", "/costs/instant", key=key, json=body, params={"non_persistent": "true"}
    )
    assert status == 200, cost
    assert cost["non_persistent"] is True
    assert cost["object_id"] == "dev_charger"
    assert cost["data"]["energy"]["value"] == Decimal("1.5")  # 3 kW for 30 minutes
    assert cost["data"]["cost"]["value"] == Decimal("0.375")
    status, export, _ = await client.call(
        "POST", "/costs/instant", key=key, json=record(location, energy="-1")
    )
    assert status == 200
    assert export["tariff_direction"] == "EXPORT"
    assert export["data"]["cost"]["value"] == Decimal("0.15")  # 1 kWh exported at 0.15


async def test_the_older_releases_record_names_are_accepted_but_not_both(
    stack: Stack, client: Client
) -> None:
    _, key = await new_account(stack)
    location = uid("loc")
    await put_location(client, key, location)
    older = record(location, direction="EXPORT", tariff_rate="EXPORT", units="KWH", value="1")
    del older["energy"]  # Flatpeak's units + value form
    status, cost, _ = await client.call("POST", "/costs/instant", key=key, json=older)
    assert status == 200, cost
    assert cost["energy_flow_direction"] == "OUTBOUND"
    assert cost["tariff_direction"] == "EXPORT"
    assert cost["data"]["cost"]["value"] == Decimal("0.15")  # 1 kWh exported at 0.15

    both = older | {"energy_flow_direction": "OUTBOUND"}
    status, batch, _ = await client.call("PUT", "/meters/interval", key=key, json=[older, both])
    assert status == 200, batch
    assert batch["records_accepted"] == 1
    [failed] = batch["failed_records"]
    assert failed["record_num"] == 1
    assert "give one, not both" in failed["error"]


async def test_instant_cost_errors_use_the_dead_letter_codes(stack: Stack, client: Client) -> None:
    _, key = await new_account(stack)
    location = uid("loc")
    await put_location(client, key, location)
    old_times = {"start_time": "2020-01-01T00:00:00Z", "end_time": "2020-01-01T00:30:00Z"}
    broken: list[Any] = [  # break the MeterRecord schema: 422 like any dead letter (design §5)
        {"location_id": location},
        [1, 2],
        record(location, start_time="2025-06-01T10:00:00"),
        record(location, direction="IMPORT", energy_flow_direction="INBOUND"),
    ]
    for body in broken:
        status, doc, _ = await client.call("POST", "/costs/instant", key=key, json=body)
        assert_error(status, doc, 422, "invalid_record")
    cases: list[tuple[Any, str]] = [  # fit the schema, cannot be priced: 422 too
        (record(location, energy="1e16"), "invalid_record"),  # an absurd energy
        (record(location, end_time="2025-06-01T09:00:00Z"), "invalid_time_range"),
        (record(location, energy="-1", energy_flow_direction="OUTBOUND"), "direction_conflict"),
        (record(uid("loc")), "unknown_location"),
        (record(location, device_id="dev_nope"), "unknown_device"),
        (record(location, **old_times), "tariff_not_available"),
        (
            record(location, start_time="9999-12-31T23:00:00Z", end_time="9999-12-31T23:30:00Z"),
            "invalid_time_range",  # beyond the years every zone's timeline holds
        ),
        (
            record(
                location,
                start_time="0001-01-01T00:00:00+05:00",
                end_time="0001-01-01T06:00:00+05:00",
            ),
            "invalid_time_range",  # before year 1 in UTC
        ),
        (record(location, start_time="2025-06-01T10:00:00.0000001Z"), "invalid_record"),
    ]
    for older in ([], {}):  # an unhashable older `direction`: refused, not a TypeError's text
        status, doc, _ = await client.call(
            "POST", "/costs/instant", key=key, json=record(location, direction=older)
        )
        assert_error(status, doc, 422, "invalid_record")
        assert doc["message"] == "direction: Input should be 'IMPORT' or 'EXPORT'"
        status, doc, _ = await client.call(
            "PUT", "/meters/interval", key=key, json=[record(location, direction=older)]
        )
        assert status == 200, doc
        [failed] = doc["failed_records"]
        assert failed["error"].startswith("invalid_record"), failed
    for body, code in cases:
        status, doc, _ = await client.call("POST", "/costs/instant", key=key, json=body)
        assert_error(status, doc, 422, code)
    nested = b"[" * 100_000 + b"]" * 100_000
    for body in (b"not json", nested, b'{"location_id": "\\ud800"}'):
        status, doc, _ = await client.call("POST", "/costs/instant", key=key, data=body)
        assert_error(status, doc, 400, "invalid_record")
    # seven fractional digits, as .NET writes them: exact when the seventh is a zero
    status, doc, _ = await client.call(
        "POST",
        "/costs/instant",
        key=key,
        json=record(location, start_time="2025-06-01T10:00:00.0000000Z"),
    )
    assert status == 200, doc
    status, doc, _ = await client.call(
        "POST", "/costs/instant", key=key, json=record(location), params={"non_persistent": "x"}
    )
    assert_error(status, doc, 400, "invalid_request")


# -- batch submission -------------------------------------------------------------------------


async def test_batch_publishes_accepted_records_and_reports_failures(
    stack: Stack, client: Client
) -> None:
    account, key = await new_account(stack)
    location = uid("loc")
    await put_location(client, key, location)
    body = [
        record(location, record_reference_id="R0"),
        {"location_id": location, "record_reference_id": "R1"},
        record(location, record_reference_id="R2", end_time="2025-06-01T09:00:00Z"),
        record(uid("loc"), record_reference_id="R3"),
        "not an object",
        record(location, units="KWH", value="1.25", energy=None) | {"record_reference_id": "R5"},
        # a simulation is never stored: in a batch it would stay ACCEPTED forever
        record(location, record_reference_id="R6", non_persistent=True),
        record(location, record_reference_id="R7", non_persistent=False),
    ]
    del body[5]["energy"]
    status, batch, _ = await client.call("PUT", "/meters/interval", key=key, json=body)
    assert status == 200, batch
    assert batch["object"] == "meter_batch"
    assert batch["id"].startswith("bat_")
    assert batch["account_id"] == account
    assert batch["records_submitted"] == 8
    assert batch["records_accepted"] == 3
    failed = {item["record_num"]: item for item in batch["failed_records"]}
    assert sorted(failed) == [1, 2, 3, 4, 6]
    assert failed[6]["record_reference_id"] == "R6"
    assert failed[6]["error"].startswith("invalid_record")
    assert "non_persistent=true" in failed[6]["error"]
    assert failed[1]["record_reference_id"] == "R1"
    assert failed[1]["error"].startswith("invalid_record")
    assert failed[2]["error"].startswith("invalid_time_range")
    assert failed[3]["error"].startswith("unknown_location")
    assert failed[4]["record_reference_id"] is None

    published = [loads(v) for k, v in await read_topic(stack, "meter-records") if k == location]
    assert [doc["record_reference_id"] for doc in published] == ["R0", "R5", "R7"]
    # a referenced record travels without an id: the worker derives it (design §8.1)
    assert ["id" in doc for doc in published] == [False, False, False]
    assert published[1]["value"] == "1.25"  # forwarded as received


async def test_batch_limits(stack: Stack, client: Client) -> None:
    _, key = await new_account(stack)
    status, doc, _ = await client.call("PUT", "/meters/interval", key=key, json=[{}] * 10_001)
    assert_error(status, doc, 400, "too_many_records")
    status, doc, _ = await client.call("PUT", "/meters/interval", key=key, json={"a": 1})
    assert_error(status, doc, 400, "invalid_request")
    status, doc, _ = await client.call("PUT", "/meters/interval", key=key, data=b"[")
    assert_error(status, doc, 400, "invalid_request")


# -- reports ----------------------------------------------------------------------------------

REPORT_RANGE = {"start_time": "2025-03-29T00:00:00Z", "end_time": "2025-04-01T00:00:00Z"}
HALF_HOUR = 1800


async def store_costs(
    stack: Stack,
    account: str,
    location: str,
    start: datetime,
    count: int,
    *,
    device_id: str | None = None,
    session: str | None = None,
    direction: str = "IMPORT",
    live_mode: bool = False,
    currency: str = "GBP",
) -> None:
    """Rows as the sink writes them: half-hourly records of 0.5 kWh costing 0.125."""
    rows = []
    for n in range(count):
        begins = datetime.fromtimestamp(start.timestamp() + n * HALF_HOUR, UTC)
        ends = datetime.fromtimestamp(begins.timestamp() + HALF_HOUR, UTC)
        rows.append(
            (
                uid("ecs"),
                account,
                live_mode,
                device_id or location,
                location,
                device_id,
                uid("mre"),
                session,
                f"R{n}",
                "INBOUND" if direction == "IMPORT" else "OUTBOUND",
                direction,
                currency,
                "Europe/London",
                begins,
                ends,
                Decimal("0.5"),
                Decimal("0.125"),
                Decimal("0.9") if n == 0 else Decimal(1),
                "{}",
                datetime.now(UTC),
            )
        )
    conn = await asyncpg.connect(stack.database_url)
    try:
        await conn.executemany(
            """
            INSERT INTO energy_costs (id, account_id, live_mode, object_id, location_id, device_id,
                meter_record_id, session_reference_id, record_reference_id,
                energy_flow_direction, tariff_direction, currency_code, location_timezone,
                start_time, end_time, energy_kwh, cost, confidence, request, time_created)
            VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18,$19,$20)
            """,
            rows,
        )
    finally:
        await conn.close()


async def test_daily_report_cuts_days_at_local_midnight_across_dst(
    stack: Stack, client: Client
) -> None:
    account, key = await new_account(stack)
    location = uid("loc")
    await put_location(client, key, location)
    # local 2025-03-29 00:00 (GMT) to 2025-04-01 00:00 (BST): 24 + 23 + 24 hours
    await store_costs(stack, account, location, datetime(2025, 3, 29, tzinfo=UTC), 142)
    await store_costs(
        stack, account, location, datetime(2025, 3, 30, tzinfo=UTC), 3, direction="EXPORT"
    )
    path = f"/costs/interval/{location}"
    status, report, _ = await client.call(
        "POST", path, key=key, json=REPORT_RANGE, params={"aggregation": "DAY"}
    )
    assert status == 200, report
    assert report["object"] == "energy_cost"
    assert report["object_id"] == location
    assert report["tariff_direction"] == "IMPORT"
    assert report["location_timezone"] == "Europe/London"
    assert report["currency_code"] == "GBP"
    days = [
        (row["start_time"], row["end_time"], row["records"], row["energy"]["value"])
        for row in report["data"]
    ]
    assert days == [
        ("2025-03-29T00:00:00+00:00", "2025-03-30T00:00:00+00:00", 48, Decimal("24.0")),
        ("2025-03-30T00:00:00+00:00", "2025-03-31T00:00:00+01:00", 46, Decimal("23.0")),
        ("2025-03-31T00:00:00+01:00", "2025-04-01T00:00:00+01:00", 48, Decimal("24.0")),
    ]
    assert report["data"][1]["cost"] == {"value": Decimal("5.750"), "confidence": Decimal(1)}
    assert report["data"][0]["cost"]["confidence"] == Decimal("0.9")

    status, export, _ = await client.call(
        "POST",
        path,
        key=key,
        json=REPORT_RANGE | {"aggregation": "MONTH"},
        params={"tariff_direction": "EXPORT"},
    )
    assert status == 200, export
    assert [(row["start_time"], row["records"]) for row in export["data"]] == [
        ("2025-03-01T00:00:00+00:00", 3)
    ]
    assert export["data"][0]["end_time"] == "2025-04-01T00:00:00+01:00"
    # Flatpeak zero's name for it; both names at once when they agree
    for params in ({"direction": "EXPORT"}, {"direction": "EXPORT", "tariff_direction": "EXPORT"}):
        status, zero, _ = await client.call(
            "POST", path, key=key, json=REPORT_RANGE | {"aggregation": "MONTH"}, params=params
        )
        assert status == 200, zero
        assert zero["tariff_direction"] == "EXPORT"
        assert zero["data"] == export["data"]


async def test_autumn_dst_day_has_25_hours_and_months_sum(stack: Stack, client: Client) -> None:
    account, key = await new_account(stack)
    location = uid("loc")
    await put_location(client, key, location)
    # local 2025-10-26 00:00 BST = 2025-10-25 23:00 UTC; that day lasts 25 hours (50 records)
    await store_costs(
        stack,
        account,
        location,
        datetime(2025, 10, 25, 23, tzinfo=UTC),
        60,
        device_id="dev_charger",
    )
    window = {"start_time": "2025-10-01T00:00:00+01:00", "end_time": "2025-12-01T00:00:00Z"}
    status, report, _ = await client.call(
        "POST", f"/costs/interval/{location}", key=key, json=window, params={"aggregation": "DAY"}
    )
    assert status == 200, report
    assert [(r["start_time"], r["end_time"], r["records"]) for r in report["data"]] == [
        ("2025-10-26T00:00:00+01:00", "2025-10-27T00:00:00+00:00", 50),
        ("2025-10-27T00:00:00+00:00", "2025-10-28T00:00:00+00:00", 10),
    ]
    status, month, _ = await client.call(
        "POST",
        "/costs/interval/dev_charger",
        key=key,
        json=window,
        params={"aggregation": "MONTH"},
    )
    assert status == 200, month
    assert month["object_id"] == "dev_charger"
    assert [(r["start_time"], r["records"], r["cost"]["value"]) for r in month["data"]] == [
        ("2025-10-01T00:00:00+01:00", 60, Decimal("7.500"))
    ]


async def test_a_per_record_report_has_a_bound_and_a_sum_has_none(
    stack: Stack, client: Client
) -> None:
    account, key = await new_account(stack)
    location = uid("loc")
    await put_location(client, key, location)
    await store_costs(stack, account, location, datetime(2025, 7, 1, tzinfo=UTC), MAX_REPORT + 1)
    window = {"start_time": "2025-07-01T00:00:00Z", "end_time": "2025-07-02T00:00:00Z"}
    path = f"/costs/interval/{location}"
    status, doc, _ = await client.call("POST", path, key=key, json=window)
    assert_error(status, doc, 422, "too_many_records")
    assert "MF_API_MAX_REPORT_RECORDS" in doc["message"]
    status, day, _ = await client.call(
        "POST", path, key=key, json=window, params={"aggregation": "DAY"}
    )
    assert status == 200, day
    assert [row["records"] for row in day["data"]] == [MAX_REPORT + 1]
    one_less = {**window, "end_time": "2025-07-01T10:00:00Z"}  # MAX_REPORT half-hours
    status, report, _ = await client.call("POST", path, key=key, json=one_less)
    assert status == 200, report
    assert len(report["data"]) == MAX_REPORT


async def test_per_record_and_session_reports(stack: Stack, client: Client) -> None:
    account, key = await new_account(stack)
    location = uid("loc")
    session = uid("SESSION")
    await put_location(client, key, location)
    await store_costs(
        stack, account, location, datetime(2025, 7, 1, 12, tzinfo=UTC), 4, session=session
    )
    window = {"start_time": "2025-07-01T12:30:00Z", "end_time": "2025-07-01T13:30:00Z"}
    status, report, _ = await client.call(
        "POST", f"/costs/interval/{location}", key=key, json=window
    )
    assert status == 200, report
    assert report["request"]["aggregation"] is None
    assert [(r["start_time"], r["record_reference_id"]) for r in report["data"]] == [
        ("2025-07-01T13:30:00+01:00", "R1"),
        ("2025-07-01T14:00:00+01:00", "R2"),
    ]
    assert report["data"][0]["session_reference_id"] == session
    assert report["data"][0]["cost"]["value"] == Decimal("0.125")
    assert [r["revision"] for r in report["data"]] == [1, 1]  # as the sink stores a first version
    conn = await asyncpg.connect(stack.database_url)
    try:  # a correction as the sink applies it: the row replaced in place, revision + 1
        await conn.execute(
            "UPDATE energy_costs SET revision = 2, energy_kwh = 0.75, cost = 0.1875 "
            "WHERE account_id = $1 AND record_reference_id = 'R2'",
            account,
        )
    finally:
        await conn.close()
    status, report, _ = await client.call(
        "POST", f"/costs/interval/{location}", key=key, json=window
    )
    assert status == 200, report
    assert [(r["revision"], r["energy"]["value"]) for r in report["data"]] == [
        (1, Decimal("0.5")),
        (2, Decimal("0.75")),
    ]

    status, total, _ = await client.call("POST", f"/costs/session/{session}", key=key)
    assert status == 200, total
    assert total["object_id"] == location
    assert len(total["data"]) == 1
    row = total["data"][0]
    assert row["session_reference_id"] == session
    assert row["records"] == 4
    assert row["revision"] is None  # a sum of records has no revision
    assert row["energy"]["value"] == Decimal("2.25")
    assert row["cost"] == {"value": Decimal("0.5625"), "confidence": Decimal("0.9")}
    assert row["start_time"] == "2025-07-01T13:00:00+01:00"
    assert row["end_time"] == "2025-07-01T15:00:00+01:00"

    status, export, _ = await client.call(
        "POST", f"/costs/session/{session}", key=key, json={"tariff_direction": "EXPORT"}
    )
    assert status == 200
    assert export["data"] == []
    status, zero, _ = await client.call(
        "POST", f"/costs/session/{session}", key=key, params={"direction": "EXPORT"}
    )
    assert status == 200, zero
    assert (zero["tariff_direction"], zero["data"]) == ("EXPORT", [])
    _, other = await new_account(stack)
    status, doc, _ = await client.call("POST", f"/costs/session/{session}", key=other)
    assert_error(status, doc, 404, "not_found")


async def test_a_report_never_adds_two_currencies(stack: Stack, client: Client) -> None:
    account, key = await new_account(stack)
    pounds, euros, session = uid("loc"), uid("loc"), uid("SESSION")
    await put_location(client, key, pounds)  # GBP, device dev_charger
    start = datetime(2025, 7, 1, 12, tzinfo=UTC)
    common = {"device_id": "dev_charger", "session": session}
    await store_costs(stack, account, pounds, start, 2, **common)
    # the charger moves to a location priced in euros, in the middle of a session
    await put_location(client, key, pounds, FIXED | {"devices": []})
    await put_location(client, key, euros, FIXED | {"currency_code": "EUR"})
    await store_costs(stack, account, euros, start, 2, **common, currency="EUR")
    window = {"start_time": "2025-07-01T00:00:00Z", "end_time": "2025-07-02T00:00:00Z"}
    for params in ({}, {"aggregation": "DAY"}, {"aggregation": "MONTH"}):
        status, doc, _ = await client.call(
            "POST", "/costs/interval/dev_charger", key=key, json=window, params=params
        )
        assert_error(status, doc, 422, "mixed_currencies")
        assert "GBP" in doc["message"]
        assert "EUR" in doc["message"]  # which location names the device's report is either
    status, doc, _ = await client.call("POST", f"/costs/session/{session}", key=key)
    assert_error(status, doc, 422, "mixed_currencies")
    for location, currency in ((pounds, "GBP"), (euros, "EUR")):  # each location on its own
        status, report, _ = await client.call(
            "POST",
            f"/costs/interval/{location}",
            key=key,
            json=window,
            params={"aggregation": "DAY"},
        )
        assert status == 200, report
        assert report["currency_code"] == currency
        assert [r["cost"]["value"] for r in report["data"]] == [Decimal("0.25")]
    # a location whose currency changed: its earlier records are in the old one
    await put_location(client, key, pounds, FIXED | {"currency_code": "USD", "devices": []})
    status, doc, _ = await client.call(
        "POST", f"/costs/interval/{pounds}", key=key, json=window, params={"aggregation": "DAY"}
    )
    assert_error(status, doc, 422, "mixed_currencies")
    assert "USD and GBP" in doc["message"]


async def test_report_request_errors(stack: Stack, client: Client) -> None:
    _, key = await new_account(stack)
    location = uid("loc")
    await put_location(client, key, location)
    path = f"/costs/interval/{location}"
    bad_bodies: list[Any] = [
        {},
        {"start_time": "2025-01-01T00:00:00", "end_time": "2025-01-02T00:00:00Z"},
        REPORT_RANGE | {"aggregation": "YEAR"},
    ]
    for body in bad_bodies:
        status, doc, _ = await client.call("POST", path, key=key, json=body)
        assert_error(status, doc, 400, "invalid_request")
    status, doc, _ = await client.call(
        "POST",
        path,
        key=key,
        json={"start_time": "2025-01-02T00:00:00Z", "end_time": "2025-01-01T00:00:00Z"},
    )
    assert_error(status, doc, 422, "invalid_time_range")
    for extreme in (
        {"start_time": "0001-01-01T00:00:00+05:00", "end_time": "2025-01-01T00:00:00Z"},
        {"start_time": "2025-01-01T00:00:00Z", "end_time": "9999-12-31T23:00:00-05:00"},
    ):  # no UTC form (PostgreSQL's encoder overflowed: a 500)
        status, doc, _ = await client.call("POST", path, key=key, json=extreme)
        assert_error(status, doc, 422, "invalid_time_range")
    for params in (
        {"aggregation": "WEEK"},
        {"tariff_direction": "LOCAL"},
        {"direction": "LOCAL"},
        {"direction": "FOO", "tariff_direction": "IMPORT"},  # a bad value, not a disagreement
    ):
        status, doc, _ = await client.call("POST", path, key=key, json=REPORT_RANGE, params=params)
        assert_error(status, doc, 400, "invalid_request")
        assert " must be " in doc["message"]  # what is wrong, not a disagreement
    # each valid alone, together not: never settled silently
    session = f"/costs/session/{uid('S')}"
    for endpoint, body, query in (
        (path, REPORT_RANGE, "direction=EXPORT&tariff_direction=IMPORT"),
        (session, None, "direction=EXPORT&tariff_direction=IMPORT"),
        (path, REPORT_RANGE, "direction=EXPORT&direction=IMPORT"),
        (session, None, "tariff_direction=IMPORT&tariff_direction=EXPORT"),
        (path, REPORT_RANGE | {"tariff_direction": "EXPORT"}, "direction=IMPORT"),
        (session, {"tariff_direction": "EXPORT"}, "tariff_direction=IMPORT"),
    ):
        status, doc, _ = await client.call("POST", f"{endpoint}?{query}", key=key, json=body)
        assert_error(status, doc, 422, "invalid_request")
    status, doc, _ = await client.call("POST", path, key=key, data=b"{{")
    assert_error(status, doc, 400, "invalid_request")
    status, doc, _ = await client.call(
        "POST", f"/costs/interval/{uid('loc')}", key=key, json=REPORT_RANGE
    )
    assert_error(status, doc, 404, "not_found")
    status, doc, _ = await client.call("POST", f"/costs/session/{uid('S')}", key=key)
    assert_error(status, doc, 404, "not_found")


async def test_a_profile_stored_under_older_rules_is_named_not_a_500(
    stack: Stack, client: Client
) -> None:
    """A mirrored profile that breaks a rule added after it was stored (here: a standing charge
    with 55 significant digits, refused since 50 became the limit) made every listing of its
    account a 500. It is a 409 `stale_profile` naming the location, and a PUT settles it."""
    _, key = await new_account(stack)
    location = uid("loc")
    await put_location(client, key, location)
    conn = await asyncpg.connect(stack.database_url)
    try:
        await conn.execute(
            """
            UPDATE locations SET profile = jsonb_set(profile, '{tariffs,IMPORT,0,standing_charge}',
                '0.0000005000000000000000000000000000000000000000000000000001'::jsonb)
            WHERE location_id = $1
            """,
            location,
        )
    finally:
        await conn.close()
    for method, path, body in (
        ("GET", "/locations", None),
        ("GET", f"/locations/{location}", None),
        ("POST", f"/costs/interval/{location}", REPORT_RANGE),
    ):
        status, doc, _ = await client.call(method, path, key=key, json=body)
        assert_error(status, doc, 409, "stale_profile")
        assert location in doc["message"]
        assert "50 significant digits" in doc["message"]
    await put_location(client, key, location)
    status, doc, _ = await client.call("GET", "/locations", key=key)
    assert status == 200, doc
    assert [item["id"] for item in doc["data"]] == [location]
