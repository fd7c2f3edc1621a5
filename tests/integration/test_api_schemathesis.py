"""Schemathesis against the served `/openapi.json` with every check: no 5xx, every answer fits
the schema, schema-valid requests are accepted (or answered 422, see `schemathesis.toml`),
schema-violating ones refused, 405s carry `Allow`, a missing credential is a 401.

Bounded by 20 examples per operation: about 40 s here, where docs/api.md's 150-example run
takes about 100 s. No `--max-time`: in Schemathesis 4 that is a budget to spend, not a cap.
"""

from __future__ import annotations

import asyncio
import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio
from api_harness import Client, Stack, api_stack

pytestmark = pytest.mark.integration

ST = str(Path(sys.executable).with_name("st"))
ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "schemathesis.toml"
EXAMPLES = 20


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
                    {
                        "type": "FIXED",
                        "rate": "0.2",
                        "effective_from": "2000-01-01T00:00:00Z",
                        "standing_charge": "0.5353",  # reports of loc_fuzz make a bill (§11)
                    }
                ]
            },
            "tax_percentage": 5,
        }
        status, _, _ = await client.call("PUT", "/locations/loc_fuzz", key=key, json=body)
        assert status == 200
    proc = await asyncio.create_subprocess_exec(
        ST,
        "--config-file",
        str(CONFIG),
        "run",
        f"{stack.base_url}/openapi.json",
        "-H",
        f"Authorization: Bearer {key}",
        "--checks",
        "all",
        "--max-examples",
        str(EXAMPLES),
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
    assert str(CONFIG) in text  # the 422 rule of the config was applied
    assert " passed" in text
    selected = re.search(r"Selected: (\d+)/(\d+)", text)
    tested = re.search(r"Tested: (\d+)", text)
    assert selected, text[-3000:]
    assert tested, text[-3000:]
    assert int(tested.group(1)) == int(selected.group(2)) >= 11  # every operation, none skipped
