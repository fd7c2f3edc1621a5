"""`make up`'s application half, as a user runs it: the service scripts start the API, sink,
worker and Prometheus, the demo stores a time-of-use location and prices a record through the
HTTP API, the sink stores it, and the stop commands leave no process behind.

Isolated from anything else on the machine: own state dir, ports, topic prefix, consumer groups
and a fresh migrated database; Kafka and PostgreSQL are the shared ones (never started/stopped).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import shutil
import sys
import tempfile
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio
from net import free_port
from processes import service_env

from database_support import temporary_database

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
LOCAL = REPO / "deploy" / "local"
APP_SERVICES = ["api", "sink", "worker", "prometheus"]


async def script(env: dict[str, str], name: str, action: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        str(LOCAL / f"{name}.sh"),
        action,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), timeout=240)
    assert process.returncode is not None
    return process.returncode, output.decode()


@pytest_asyncio.fixture
async def local_env(kafka_bootstrap: str, database_url: str) -> AsyncIterator[dict[str, str]]:
    async with temporary_database(database_url, migrated=True) as url:
        state = Path(tempfile.mkdtemp(prefix="mf-ops-local-"))
        prefix = f"opsl{secrets.token_hex(4)}-"
        env = service_env(
            {
                "MF_STATE_DIR": str(state),
                "MF_VENV": str(Path(sys.executable).parent.parent),
                "MF_KAFKA_BOOTSTRAP": kafka_bootstrap,
                "MF_DATABASE_URL": url,
                "MF_TOPIC_PREFIX": prefix,
                "MF_TOPIC_PARTITIONS": "2",
                "MF_SINK_GROUP_ID": f"{prefix}sink",
                "MF_STORE": "memory://",
                "MF_HTTP_PORT": str(free_port()),
                "MF_SINK_HTTP_PORT": str(free_port()),
                "MF_WORKER_WEB_PORT": str(free_port()),
                "MF_PROMETHEUS_PORT": str(free_port()),
            }
        )
        try:
            yield env
        finally:
            for service in reversed(APP_SERVICES):
                await script(env, service, "stop")
            shutil.rmtree(state, ignore_errors=True)


def pids(env: dict[str, str]) -> dict[str, int]:
    run = Path(env["MF_STATE_DIR"]) / "run"
    return {p.stem: int(p.read_text()) for p in run.glob("*.pid")} if run.exists() else {}


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_services_start_the_demo_prices_a_record_and_stop_leaves_nothing(
    local_env: dict[str, str],
) -> None:
    env = local_env
    for service in APP_SERVICES:
        code, output = await script(env, service, "start")
        assert code == 0, f"{service} start failed:\n{output}"
    started = pids(env)
    assert set(started) == set(APP_SERVICES)
    assert all(alive(pid) for pid in started.values())

    code, output = await script(env, "demo", "start")
    assert code == 0, output
    # The printed EnergyCost: 7.4 kWh over 06:00-08:00 UTC in January, half off-peak (0.075)
    # and half day rate (0.245) -> 0.2775 + 0.9065.
    document = json.loads(output[output.index("{") : output.index("\n}") + 2], parse_float=Decimal)
    assert document["object"] == "energy_cost"
    assert document["location_id"] == "loc_demo"
    assert str(document["data"]["cost"]["value"]) == "1.184"
    assert [str(part["rate"]) for part in document["data"]["breakdown"]] == ["0.075", "0.245"]
    assert "stored by the sink" in output
    assert re.search(r"1 record\(s\), 7\.4\d* kWh, cost 1\.184\d* GBP", output)
    assert f"http://127.0.0.1:{env['MF_HTTP_PORT']}" in output

    # A second run sends the same record_reference_id: a duplicate, stored once (design §8.2).
    code, output = await script(env, "demo", "start")
    assert code == 0, output
    assert re.search(r"1 record\(s\), 7\.4\d* kWh, cost 1\.184\d* GBP", output), output
    assert "a duplicate, stored once" in output

    async with aiohttp.ClientSession() as http:
        for port_var in ("MF_HTTP_PORT", "MF_SINK_HTTP_PORT", "MF_WORKER_WEB_PORT"):
            async with http.get(f"http://127.0.0.1:{env[port_var]}/metrics") as response:
                assert response.status == 200, port_var
                assert "meterflow_build_info" in await response.text()
        targets_url = f"http://127.0.0.1:{env['MF_PROMETHEUS_PORT']}/api/v1/targets"
        for _ in range(60):
            async with http.get(targets_url) as response:
                active = (await response.json())["data"]["activeTargets"]
            health = {t["labels"]["job"]: t["health"] for t in active}
            if all(
                health.get(job) == "up"
                for job in ("prometheus", "meterflow-worker", "meterflow-sink", "meterflow-api")
            ):
                break
            await asyncio.sleep(1)
        assert health == {
            "prometheus": "up",
            "meterflow-worker": "up",
            "meterflow-sink": "up",
            "meterflow-api": "up",
        }

    for service in reversed(APP_SERVICES):
        code, output = await script(env, service, "stop")
        assert code == 0, output
    assert pids(env) == {}
    assert not any(alive(pid) for pid in started.values())
    for service in APP_SERVICES:
        code, output = await script(env, service, "status")
        assert "running (pid" not in output
