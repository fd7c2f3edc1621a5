"""The error middleware and the app's answers without Kafka or Postgres (in-process server)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import asyncpg
import pytest
import pytest_asyncio
import yarl
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from aiokafka.errors import KafkaTimeoutError
from prometheus_client import REGISTRY

from meterflow.api.app import create_api
from meterflow.api.errors import ApiError, error_middleware
from meterflow.settings import Settings


async def _boom(request: web.Request) -> web.Response:
    raise RuntimeError("secret detail that must not leak")


async def _refuse(request: web.Request) -> web.Response:
    raise ApiError(422, "some_code", "a reason", headers={"X-Extra": "1"})


async def _database_down(request: web.Request) -> web.Response:
    raise ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 5432)")


async def _database_hangs(request: web.Request) -> web.Response:
    raise TimeoutError  # what asyncpg raises at the pool's command_timeout


async def _database_refuses(request: web.Request) -> web.Response:
    raise asyncpg.UndefinedTableError('relation "energy_costs" does not exist')


async def _broker_down(request: web.Request) -> web.Response:
    raise KafkaTimeoutError()


def _database_errors() -> float:
    return (
        REGISTRY.get_sample_value("meterflow_database_errors_total", {"operation": "request"})
        or 0.0
    )


@pytest_asyncio.fixture(loop_scope="session")
async def client() -> AsyncIterator[TestClient[web.Request, web.Application]]:
    app = create_api(Settings(api_max_body_bytes=2048), start_clients=False)
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


async def test_unexpected_exceptions_become_a_generic_500_and_api_errors_pass_through() -> None:
    app = web.Application(middlewares=[error_middleware])
    app.router.add_get("/boom", _boom)
    app.router.add_get("/refuse", _refuse)
    async with TestClient(TestServer(app)) as test_client:
        response = await test_client.get("/boom")
        assert response.status == 500
        body = await response.json()
        assert body == {
            "object": "error",
            "type": "api_error",
            "code": "internal_error",
            "message": "internal error; the request was logged",
        }
        response = await test_client.get("/refuse")
        assert response.status == 422
        assert response.headers["X-Extra"] == "1"
        assert (await response.json())["code"] == "some_code"


async def test_a_bad_token_is_refused_before_any_handler_runs(
    client: TestClient[web.Request, web.Application],
) -> None:
    response = await client.get("/locations", headers={"Authorization": "Bearer x.y.z"})
    assert response.status == 401
    assert (await response.json())["code"] == "unauthorized"


@pytest.mark.parametrize("credential", [b"sk_test_\xff\xfe", b"abc\xff", "sk_live_é".encode()])
async def test_a_credential_that_is_not_ascii_is_unauthorized(
    client: TestClient[web.Request, web.Application], credential: bytes
) -> None:
    """Bytes that are not UTF-8 in the header (aiohttp reads them as surrogates) were a 500:
    hashing or decoding the credential raised UnicodeEncodeError."""
    server = client.server
    reader, writer = await asyncio.open_connection(server.host, server.port)
    writer.write(
        b"GET /locations HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        b"Authorization: Bearer " + credential + b"\r\n\r\n"
    )
    await writer.drain()
    answer = await reader.read()
    writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 401"), head
    assert json.loads(body)["code"] == "unauthorized"


async def test_error_objects_for_routing_failures_and_limits(
    client: TestClient[web.Request, web.Application],
) -> None:
    response = await client.get("/no/such/path")
    assert response.status == 404
    assert (await response.json())["object"] == "error"
    response = await client.patch("/costs/instant")
    assert response.status == 405
    assert (await response.json())["code"] == "method_not_allowed"


async def test_readyz_is_503_without_clients_and_healthz_is_200(
    client: TestClient[web.Request, web.Application],
) -> None:
    response = await client.get("/readyz")
    assert response.status == 503
    body = await response.json()
    assert body == {
        "status": "unavailable",
        "checks": {"kafka": False, "database": False, "views_loaded": False},
    }
    assert (await client.get("/healthz")).status == 200
    spec = await (await client.get("/openapi.json")).json()
    assert spec["info"]["title"] == "meterflow API"


async def test_a_database_failure_is_counted_and_an_unreachable_one_is_a_503() -> None:
    """The API's database failures reach `meterflow_database_errors_total` (only the sink's
    did): an unreachable database, or one that does not answer, is a 503 to retry, another
    PostgreSQL error a 500."""
    app = web.Application(middlewares=[error_middleware])
    app.router.add_get("/down", _database_down)
    app.router.add_get("/refuses", _database_refuses)
    app.router.add_get("/hangs", _database_hangs)
    app.router.add_get("/broker", _broker_down)
    async with TestClient(TestServer(app)) as test_client:
        before = _database_errors()
        response = await test_client.get("/down")
        assert response.status == 503
        assert response.headers["Retry-After"] == "5"
        assert (await response.json())["code"] == "database_unavailable"
        response = await test_client.get("/hangs")
        assert (response.status, (await response.json())["code"]) == (503, "database_unavailable")
        response = await test_client.get("/refuses")
        assert response.status == 500
        assert (await response.json())["code"] == "internal_error"
        assert _database_errors() == before + 3
        response = await test_client.get("/broker")  # e.g. publishing a location or a cost
        assert (response.status, (await response.json())["code"]) == (503, "broker_unavailable")
        assert _database_errors() == before + 3


async def test_an_api_still_reading_its_view_answers_503_not_an_unknown_location() -> None:
    """For its first seconds a started API had not read `locations` yet: an instant cost of a
    known location was 422 `unknown_location`, a batch's records were refused for good."""
    from meterflow.api.context import CONTEXT
    from meterflow.api.costs import visible_profiles
    from meterflow.api.credentials import Principal

    ctx = create_api(Settings(), start_clients=False)[CONTEXT]
    feeder: Any = SimpleNamespace(loaded=asyncio.Event())  # ViewFeeder's flag, not yet set
    ctx.feeder = feeder
    principal = Principal(account_id="acc_1", live_mode=False, key_id="key_1")
    with pytest.raises(ApiError) as raised:
        visible_profiles(ctx, principal)
    assert (raised.value.status, raised.value.code) == (503, "not_ready")
    assert raised.value.headers == {"Retry-After": "5"}
    ctx.feeder.loaded.set()  # read to the end: an unknown location is unknown now
    assert visible_profiles(ctx, principal)("loc_nowhere") is None


@pytest.mark.parametrize("path", ["/locations/%FF%FE", "/locations/%C3%28", "/tariffs/rates/%80"])
async def test_a_path_whose_escapes_are_not_utf8_is_refused(
    client: TestClient[web.Request, web.Application], path: str
) -> None:
    """The path kept them as written: PUT /locations/%FF%FE made a location `%FF%FE`, which
    /locations/%25FF%25FE reached too."""
    response = await client.get(yarl.URL(path, encoded=True))
    assert response.status == 400
    body = await response.json()
    assert (body["code"], body["message"]) == ("invalid_request", "the URL is not valid UTF-8")


async def test_a_path_of_utf8_escapes_is_read(
    client: TestClient[web.Request, web.Application],
) -> None:
    response = await client.get(yarl.URL("/locations/caf%C3%A9", encoded=True))
    assert response.status == 401  # past the URL check: the credentials come next


async def test_a_publish_waits_for_the_broker_only_as_long_as_configured() -> None:
    """The API's producer gives up after `MF_API_KAFKA_TIMEOUT_SECONDS` (aiokafka drops the
    send then) and the request is a 503 `broker_unavailable`. With
    aiokafka's 40 s default, requests waited up to a minute while the broker was down (a
    probe measured 5.0-5.1 s with the new default; docs/api.md)."""
    from meterflow.api.kafka import Publisher

    assert Settings().api_kafka_timeout_seconds == 5
    publisher = Publisher(Settings(api_kafka_timeout_seconds=2.5))
    assert publisher._producer._request_timeout_ms == 2500
