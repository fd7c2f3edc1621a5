"""Schemathesis against the served `/openapi.json`: no 5xx, and every answer fits the schema.

Bounded: a few examples per operation and a time budget, so the run takes about a minute.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio
from api_harness import Client, Stack, api_stack

pytestmark = pytest.mark.integration

ST = str(Path(sys.executable).with_name("st"))
CHECKS = (
    "not_a_server_error,status_code_conformance,content_type_conformance,"
    "response_schema_conformance"
)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def stack(kafka_bootstrap: str, database_url: str) -> AsyncIterator[Stack]:
    async with api_stack(kafka_bootstrap, database_url) as running:
        yield running


async def test_schemathesis_finds_no_server_error_and_no_schema_violation(stack: Stack) -> None:
    _, key = await stack.new_key("acc_fuzz")
    async with aiohttp.ClientSession() as session:
        client = Client(session, stack.base_url)
        body = {
            "timezone": "Europe/London",
            "currency_code": "GBP",
            "tariffs": {
                "IMPORT": [
                    {"type": "FIXED", "rate": "0.2", "effective_from": "2000-01-01T00:00:00Z"}
                ]
            },
        }
        status, _, _ = await client.call("PUT", "/locations/loc_fuzz", key=key, json=body)
        assert status == 200
    proc = await asyncio.create_subprocess_exec(
        ST,
        "run",
        f"{stack.base_url}/openapi.json",
        "-H",
        f"Authorization: Bearer {key}",
        "--checks",
        CHECKS,
        "--max-examples",
        "5",
        "--max-time",
        "45",
        "--workers",
        "1",  # CPython 3.11's ast is not thread-safe; hypothesis parses lambdas per thread
        "--seed",
        "20261128",
        "--no-color",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    text = out.decode(errors="replace")
    assert proc.returncode == 0, text[-6000:]
    assert "Test cases:" in text
    assert " passed" in text
