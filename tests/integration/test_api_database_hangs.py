"""The API in front of a PostgreSQL that hangs: connections open, nothing refused, nothing
answered (a stopped server, a dropped route). Requests that need the database answer 503
`database_unavailable` within the statement timeout instead of waiting for as long as it
hangs, the API serves again once it answers, and it still stops on SIGTERM."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator

import aiohttp
import pytest
import pytest_asyncio
from api_harness import Client, Stack
from net import CuttableProxy, free_port

from database_support import temporary_database
from meterflow.kafka_admin import delete_topics_with_prefix
from meterflow.settings import Settings

pytestmark = pytest.mark.integration

STATEMENT_TIMEOUT_S = 2


@pytest_asyncio.fixture
async def proxy(database_url: str) -> AsyncIterator[CuttableProxy]:
    settings = Settings(database_url=database_url)
    host, port = settings.database_url.rsplit("@", 1)[1].split("/")[0].split(":")
    proxied = CuttableProxy(host, int(port))
    await proxied.start()
    try:
        yield proxied
    finally:
        proxied.flow()
        await proxied.cut()


async def test_a_hung_database_is_a_503_then_the_api_serves_again_and_stops(
    kafka_bootstrap: str, database_url: str, proxy: CuttableProxy
) -> None:
    async with temporary_database(database_url, migrated=True) as url:
        stack = Stack(
            kafka_bootstrap=kafka_bootstrap,
            database_url=url,  # the test's own connections (keys) go straight to PostgreSQL
            topic_prefix="tapihang-",
            port=free_port(),
            extra_env={
                "MF_DATABASE_URL": proxy.via(url),
                "MF_DATABASE_STATEMENT_TIMEOUT_S": str(STATEMENT_TIMEOUT_S),
                "MF_API_KEY_CACHE_SECONDS": "0",  # every request asks the database for its key
            },
        )
        try:
            api = await stack.start_api()
            _, key = await stack.new_key("acc_hang")
            guard = aiohttp.ClientTimeout(total=60)  # a hang fails the test, never stalls it
            async with aiohttp.ClientSession(timeout=guard) as session:
                client = Client(session, stack.base_url)
                status, body, _ = await client.call("GET", "/locations", key=key)
                assert status == 200, body

                proxy.hang()
                answers = await asyncio.gather(
                    *(client.call("GET", "/locations", key=key) for _ in range(3))
                )
                for status, body, headers in answers:
                    assert (status, body["code"]) == (503, "database_unavailable"), body
                    assert headers["Retry-After"] == "5"

                proxy.flow()
                status, body, _ = await client.call("GET", "/locations", key=key)
                assert status == 200, body

                proxy.hang()  # and stopped while the database hangs: it still leaves
                status, body, _ = await client.call("GET", "/locations", key=key)
                assert status == 503, body
            api.proc.send_signal(signal.SIGTERM)
            returncode = await asyncio.wait_for(api.proc.wait(), 60)
            assert returncode == 0, api.log_tail()
        finally:
            proxy.flow()
            await stack.stop_all()
            await delete_topics_with_prefix(
                Settings(kafka_bootstrap=kafka_bootstrap), stack.topic_prefix
            )
