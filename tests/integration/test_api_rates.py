"""`GET /tariffs/rates/{id}` and `GET /slots/time/{id}` (design §12) against a real `meterflow
api`: the answers equal the pure core's (`costing.quotes`) for the same profile, market prices
come from the `market-prices` topic through the API's view, another account's location is a
404, and bad input is refused with a code.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator
from datetime import datetime
from decimal import Decimal
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from api_harness import Client, Stack, api_stack

from meterflow.costing import quotes
from meterflow.costing.timeline import from_us, to_us
from meterflow.models import LocationProfile, TariffDirection
from samples import london, quote_tariff

pytestmark = pytest.mark.integration

UK_PROFILE: dict[str, Any] = london(quote_tariff(surcharge_percentage="10"))


def uid(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(6)}"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def stack(kafka_bootstrap: str, database_url: str) -> AsyncIterator[Stack]:
    async with api_stack(kafka_bootstrap, database_url) as running:
        yield running


@pytest_asyncio.fixture(loop_scope="session")
async def client(stack: Stack) -> AsyncIterator[Client]:
    async with aiohttp.ClientSession() as session:
        yield Client(session, stack.base_url)


async def new_location(
    stack: Stack, client: Client, body: dict[str, Any] = UK_PROFILE
) -> tuple[str, str, LocationProfile]:
    """(key, location id, the profile as stored) for a fresh account."""
    account, location = uid("acc"), uid("loc")
    _, key = await stack.new_key(account)
    status, doc, _ = await client.call("PUT", f"/locations/{location}", key=key, json=body)
    assert status == 200, doc
    stored = {k: doc[k] for k in LocationProfile.model_fields if k in doc}
    return key, location, LocationProfile.model_validate(stored)


def _no_market(series_id: str, day: object) -> None:
    return None


async def test_rates_are_the_engines_periods_with_components_in_the_end_times_offset(
    stack: Stack, client: Client
) -> None:
    key, location, profile = await new_location(stack, client)
    params = {"start_time": "2024-12-02T12:00:00Z", "end_time": "2024-12-03T01:00:00+01:00"}
    status, doc, _ = await client.call("GET", f"/tariffs/rates/{location}", key=key, params=params)
    assert status == 200, doc
    assert doc["object"] == "tariff_rate"
    assert doc["location_id"] == location
    assert doc["location_timezone"] == "Europe/London"
    assert doc["currency_code"] == "GBP"
    assert doc["direction"] == "IMPORT"
    assert doc["request"]["end_time"] == "2024-12-03T01:00:00+01:00"
    shown = [
        (
            item["valid_from"],
            Decimal(str(item["tariff"]["rate"])),
            [(c["name"], Decimal(str(c["rate"]))) for c in item["components"]],
        )
        for item in doc["data"]
    ]
    d = Decimal
    # energy 0.25 × 1.1 = 0.275; DUoS amber 0.0153, red 0.0987, amber, green 0.0021
    assert shown == [
        ("2024-12-02T13:00:00+01:00", d("0.2903"), [("energy", d("0.275")), ("duos", d("0.0153"))]),
        ("2024-12-02T17:00:00+01:00", d("0.3737"), [("energy", d("0.275")), ("duos", d("0.0987"))]),
        ("2024-12-02T20:00:00+01:00", d("0.2903"), [("energy", d("0.275")), ("duos", d("0.0153"))]),
        ("2024-12-03T00:00:00+01:00", d("0.2771"), [("energy", d("0.275")), ("duos", d("0.0021"))]),
    ]
    assert doc["data"][-1]["valid_to"] == "2024-12-03T01:00:00+01:00"
    assert {item["tariff"]["confidence"] for item in doc["data"]} == {1}
    expected = quotes.rates(
        profile,
        TariffDirection.IMPORT,
        to_us(datetime.fromisoformat(params["start_time"])),
        to_us(datetime.fromisoformat(params["end_time"])),
        _no_market,
    )
    assert [Decimal(str(item["tariff"]["rate"])) for item in doc["data"]] == [
        p.rate for p in expected
    ]


@pytest.mark.parametrize("segment", ["LOW", "HIGH"])
@pytest.mark.parametrize("contiguous", ["false", "true"])
async def test_slots_equal_the_cores_answer(
    stack: Stack, client: Client, segment: str, contiguous: str
) -> None:
    key, location, profile = await new_location(stack, client)
    start, end = "2024-12-02T12:00:00Z", "2024-12-03T12:00:00Z"
    params = {
        "start_time": start,
        "end_time": end,
        "duration": "240",
        "segment": segment,
        "contiguous": contiguous,
    }
    status, doc, _ = await client.call("GET", f"/slots/time/{location}", key=key, params=params)
    assert status == 200, doc
    assert doc["object"] == "slot_time"
    assert doc["request"] | {"duration": 240} == doc["request"]
    expected = quotes.slots(
        profile,
        TariffDirection.IMPORT,
        to_us(datetime.fromisoformat(start)),
        to_us(datetime.fromisoformat(end)),
        _no_market,
        duration_minutes=240,
        segment=quotes.Segment(segment),
        contiguous=contiguous == "true",
    )
    assert expected
    assert [
        (item["start_time"], item["end_time"], Decimal(str(item["tariff"]["rate_avg"])))
        for item in doc["data"]
    ] == [(from_us(s.start).isoformat(), from_us(s.end).isoformat(), s.rate_avg) for s in expected]
    minutes = sum(
        (datetime.fromisoformat(i["end_time"]) - datetime.fromisoformat(i["start_time"])).seconds
        // 60
        for i in doc["data"]
    )
    assert minutes == 240
    if contiguous == "true":
        assert len(doc["data"]) == 1


async def test_slots_read_market_prices_from_the_topic(
    stack: Stack, client: Client, tmp_path: Any
) -> None:
    series = uid("agile")
    day = "2025-03-03"
    prices = [
        {
            "valid_from": f"{day}T{h:02d}:{m:02d}:00Z",
            "valid_to": f"{day}T{h + (m + 30) // 60:02d}:{(m + 30) % 60:02d}:00Z",
            "rate": str(Decimal("0.30") - Decimal(h) / 100 if h < 12 else Decimal("0.05") * h),
        }
        for h in range(24)
        for m in (0, 30)
        if not (h == 23 and m == 30)
    ]
    prices.append(
        {"valid_from": f"{day}T23:30:00Z", "valid_to": "2025-03-04T00:00:00Z", "rate": "2"}
    )
    path = tmp_path / "prices.json"
    path.write_text(json.dumps({"series_id": series, "day": day, "prices": prices}))
    code, out, err = await stack.run_cli("prices", "put", str(path))
    assert code == 0, out + err
    body = {
        "timezone": "UTC",
        "currency_code": "GBP",
        "tariffs": {
            "IMPORT": [
                {"type": "DYNAMIC", "series_id": series, "effective_from": "2025-01-01T00:00:00Z"}
            ]
        },
    }
    key, location, _ = await new_location(stack, client, body)
    params = {
        "start_time": f"{day}T00:00:00Z",
        "end_time": "2025-03-04T00:00:00Z",
        "duration": "60",
    }
    for _ in range(100):  # the API's view follows the topic asynchronously
        status, doc, _ = await client.call("GET", f"/slots/time/{location}", key=key, params=params)
        if status == 200:
            break
        assert (status, doc["code"]) == (422, "tariff_not_available"), doc
        await asyncio.sleep(0.1)
    assert status == 200, doc
    # the cheapest hour: 11:00–12:00 at 0.30 − 0.11 = 0.19
    assert [(i["start_time"], Decimal(str(i["tariff"]["rate_avg"]))) for i in doc["data"]] == [
        ("2025-03-03T11:00:00+00:00", Decimal("0.19"))
    ]
    status, doc, _ = await client.call(
        "GET", f"/slots/time/{location}", key=key, params=params | {"segment": "HIGH"}
    )
    assert status == 200, doc
    # the dearest 60 minutes: 23:00–23:30 at 0.05 × 23 = 1.15, then 2: one slot, average 1.575
    assert [
        (i["start_time"], i["end_time"], Decimal(str(i["tariff"]["rate_avg"]))) for i in doc["data"]
    ] == [("2025-03-03T23:00:00+00:00", "2025-03-04T00:00:00+00:00", Decimal("1.575"))]


async def test_another_accounts_location_is_not_found_and_credentials_are_required(
    stack: Stack, client: Client
) -> None:
    _, location, _ = await new_location(stack, client)
    _, other_key = await stack.new_key(uid("acc"))
    _, live_key = await stack.new_key(uid("acc"), live_mode=True)
    window = {"start_time": "2024-12-02T12:00:00Z", "end_time": "2024-12-02T18:00:00Z"}
    for path, params in (
        (f"/tariffs/rates/{location}", window),
        (f"/slots/time/{location}", window | {"duration": "60"}),
    ):
        for key in (other_key, live_key):
            status, doc, _ = await client.call("GET", path, key=key, params=params)
            assert (status, doc["code"]) == (404, "not_found"), doc
        status, doc, _ = await client.call("GET", path, params=params)
        assert status == 401, doc
    status, doc, _ = await client.call(
        "GET", f"/tariffs/rates/{uid('loc')}", key=other_key, params=window
    )
    assert (status, doc["code"]) == (404, "not_found")


BAD: list[tuple[str, dict[str, str], int, str]] = [
    ("rates", {"end_time": "2024-12-02T12:00:00Z"}, 422, "invalid_time_range"),
    ("rates", {"end_time": "2024-12-02T11:00:00Z"}, 422, "invalid_time_range"),
    ("rates", {"end_time": "2025-01-02T12:00:01Z"}, 422, "invalid_time_range"),
    ("rates", {"direction": "EXPORT"}, 422, "tariff_not_available"),
    (
        "rates",
        {"start_time": "2023-12-31T23:00:00Z", "end_time": "2024-01-01T01:00:00Z"},
        422,
        "tariff_not_available",
    ),
    ("rates", {"direction": "LOCAL"}, 400, "invalid_request"),
    # the direction's name everywhere else is read too (it answered import rates with a 200)
    ("rates", {"tariff_direction": "EXPORT"}, 422, "tariff_not_available"),
    ("slots", {"tariff_direction": "EXPORT"}, 422, "tariff_not_available"),
    ("rates", {"tariff_direction": "LOCAL"}, 400, "invalid_request"),
    ("rates", {"end_time": "2024-12-03"}, 400, "invalid_request"),
    ("rates", {"end_time": ""}, 400, "invalid_request"),
    ("slots", {"duration": "0"}, 422, "invalid_duration"),
    ("slots", {"duration": "-30"}, 422, "invalid_duration"),
    ("slots", {"duration": "1.5"}, 422, "invalid_duration"),
    ("slots", {"duration": "abc"}, 422, "invalid_duration"),
    ("slots", {"duration": "1e999999999"}, 422, "invalid_duration"),
    ("slots", {"duration": "1441"}, 422, "invalid_duration"),
    ("slots", {"duration": "60_0"}, 422, "invalid_duration"),  # Decimal reads 600
    ("slots", {"duration": "٦٠"}, 422, "invalid_duration"),  # Decimal reads 60
    ("slots", {"duration": " 60"}, 422, "invalid_duration"),
    ("slots", {"duration": "1e3"}, 422, "invalid_duration"),
    ("slots", {"end_time": "2024-12-02T11:00:00Z"}, 422, "invalid_time_range"),
    ("slots", {"direction": "EXPORT"}, 422, "tariff_not_available"),
    ("slots", {"segment": "MEDIUM"}, 400, "invalid_request"),
    ("slots", {"contiguous": "maybe"}, 400, "invalid_request"),
]


async def test_an_instant_finer_than_a_microsecond_says_so(stack: Stack, client: Client) -> None:
    """It was told "must be an RFC 3339 timestamp", which it is."""
    key, location, _ = await new_location(stack, client)
    params = {"start_time": "2024-12-02T12:00:00.1234567Z", "end_time": "2024-12-03T12:00:00Z"}
    got, doc, _ = await client.call("GET", "/tariffs/rates/" + location, key=key, params=params)
    assert (got, doc["code"]) == (400, "invalid_request"), doc
    assert doc["message"].startswith("`start_time`: "), doc
    assert "finer than a microsecond" in doc["message"]


@pytest.mark.parametrize(("which", "change", "status", "code"), BAD)
async def test_bad_input_is_refused_with_a_code(
    stack: Stack, client: Client, which: str, change: dict[str, str], status: int, code: str
) -> None:
    key, location, _ = await new_location(stack, client)
    params = {"start_time": "2024-12-02T12:00:00Z", "end_time": "2024-12-03T12:00:00Z"}
    if which == "slots":
        params["duration"] = "60"
    path = "/tariffs/rates/" if which == "rates" else "/slots/time/"
    got, doc, _ = await client.call("GET", path + location, key=key, params=params | change)
    assert (got, doc["object"], doc["code"]) == (status, "error", code), doc


async def test_a_choice_given_twice_differently_is_refused(stack: Stack, client: Client) -> None:
    """As the reports' direction: `direction=IMPORT&direction=EXPORT` answered import rates."""
    key, location, _ = await new_location(stack, client)
    window = [("start_time", "2024-12-02T12:00:00Z"), ("end_time", "2024-12-03T12:00:00Z")]
    hour = ("duration", "60")
    for path, repeated in (
        ("/tariffs/rates/", [("direction", "IMPORT"), ("direction", "EXPORT")]),
        ("/tariffs/rates/", [("direction", "EXPORT"), ("tariff_direction", "IMPORT")]),
        ("/slots/time/", [hour, ("direction", "IMPORT"), ("tariff_direction", "EXPORT")]),
        ("/slots/time/", [hour, ("segment", "LOW"), ("segment", "HIGH")]),
        # any other parameter too: the first one was taken
        ("/slots/time/", [hour, ("contiguous", "true"), ("contiguous", "false")]),
        ("/slots/time/", [hour, ("duration", "61")]),
        ("/tariffs/rates/", [("end_time", "2024-12-03T13:00:00Z")]),
        ("/tariffs/rates/", [("start_time", "2024-12-02T13:00:00Z")]),
    ):
        got, doc, _ = await client.call("GET", path + location, key=key, params=window + repeated)
        assert (got, doc["code"]) == (422, "invalid_request"), (repeated, doc)
        assert "given twice, differently" in doc["message"]
    twice = [*window, ("direction", "IMPORT"), ("direction", "IMPORT")]
    got, doc, _ = await client.call("GET", "/tariffs/rates/" + location, key=key, params=twice)
    assert got == 200, doc


async def test_a_missing_end_time_or_duration_is_a_bad_request(
    stack: Stack, client: Client
) -> None:
    key, location, _ = await new_location(stack, client)
    status, doc, _ = await client.call("GET", f"/tariffs/rates/{location}", key=key)
    assert (status, doc["code"]) == (400, "invalid_request")
    params = {"start_time": "2024-12-02T12:00:00Z", "end_time": "2024-12-03T12:00:00Z"}
    status, doc, _ = await client.call("GET", f"/slots/time/{location}", key=key, params=params)
    assert (status, doc["code"]) == (400, "invalid_request")


async def test_start_time_defaults_to_now(stack: Stack, client: Client) -> None:
    key, location, _ = await new_location(stack, client)
    status, doc, _ = await client.call(
        "GET", f"/tariffs/rates/{location}", key=key, params={"end_time": "2999-01-01T00:00:00Z"}
    )
    assert (status, doc["code"]) == (422, "invalid_time_range")  # now + 31 days is far earlier
    status, doc, _ = await client.call(
        "GET", f"/tariffs/rates/{location}", key=key, params={"end_time": "2000-01-01T00:00:00Z"}
    )
    assert (status, doc["code"]) == (422, "invalid_time_range")  # before now
