"""A real Prometheus scrapes a running worker, sink and API under a little load; every PromQL
expression of the dashboards and the alert rules evaluates without error, and the throughput,
latency, lag, sink and API series the dashboards draw are not empty.

Everything is isolated: a fresh migrated database, a topic prefix, free ports, consumer groups
and a Prometheus storage dir of its own. Grafana's `$__rate_interval` is replaced by `30s` (four
times the 1 s scrape interval plus margin, what Grafana itself would pick) before querying.
"""

from __future__ import annotations

import asyncio
import json
import math
import secrets
import shutil
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
import pytest_asyncio
import yaml
from dashboard_sql import PANELS, Row, Scope, expected_panel, panel_queries, run_panel
from net import free_port
from processes import MF, Process, service_env, spawn, wait_ready

from database_support import temporary_database
from meterflow.api.repository import create_api_key

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
RATE_INTERVAL = "30s"
LOCATION = json.loads((REPO / "deploy/local/demo/location.json").read_text())


@dataclass
class Stack:
    tmp: Path
    database_url: str
    prefix: str
    ports: dict[str, int]
    processes: dict[str, Process] = field(default_factory=dict)

    def url(self, name: str, path: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}{path}"

    async def start(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        self.processes[name] = await spawn(name, argv, env=env, cwd=self.tmp, log_dir=self.tmp)

    async def wait_ready(self, name: str, path: str) -> None:
        await wait_ready(self.processes[name], self.url(name, path), timeout_s=120)


def prometheus_config(stack: Stack) -> str:
    def job(name: str, port_name: str) -> dict[str, Any]:
        return {
            "job_name": name,
            "static_configs": [{"targets": [f"127.0.0.1:{stack.ports[port_name]}"]}],
        }

    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(REPO / "deploy/prometheus/alerts.yml")],
        "scrape_configs": [
            job("meterflow-worker", "worker"),
            job("meterflow-sink", "sink"),
            job("meterflow-api", "api"),
        ],
    }
    return yaml.safe_dump(config)


@pytest_asyncio.fixture(scope="module")
async def stack(kafka_bootstrap: str, database_url: str) -> AsyncIterator[Stack]:
    prometheus = shutil.which("prometheus") or shutil.which("/usr/bin/prometheus")
    if prometheus is None:
        pytest.fail("prometheus is missing: apt-get install prometheus", pytrace=False)
    async with temporary_database(database_url, migrated=True) as url:
        tmp = Path(tempfile.mkdtemp(prefix="mf-ops-prom-"))
        prefix = f"ops{secrets.token_hex(4)}-"
        stack = Stack(
            tmp=tmp,
            database_url=url,
            prefix=prefix,
            ports={n: free_port() for n in ("api", "sink", "worker", "prometheus")},
        )
        env = service_env(
            {
                "MF_KAFKA_BOOTSTRAP": kafka_bootstrap,
                "MF_DATABASE_URL": url,
                "MF_TOPIC_PREFIX": prefix,
                "MF_TOPIC_PARTITIONS": "2",
                "MF_HTTP_PORT": str(stack.ports["api"]),
                "MF_SINK_HTTP_PORT": str(stack.ports["sink"]),
                "MF_WORKER_WEB_PORT": str(stack.ports["worker"]),
                "MF_SINK_GROUP_ID": f"{prefix}sink",
                "MF_STORE": "memory://",
                "MF_DATA_DIR": str(tmp / "worker"),
                "MF_SINK_LINGER_MS": "50",
            }
        )
        (tmp / "prometheus.yml").write_text(prometheus_config(stack))
        try:
            # The API creates the topics with MF_TOPIC_PARTITIONS; a sink subscribing first would
            # have the broker auto-create `locations` with its default partition count instead.
            await stack.start("api", [MF, "api"], env)
            await stack.wait_ready("api", "/readyz")
            await stack.start("sink", [MF, "sink"], env)
            await stack.start("worker", [MF, "worker"], env)
            await stack.start(
                "prometheus",
                [
                    prometheus,
                    f"--config.file={tmp / 'prometheus.yml'}",
                    f"--storage.tsdb.path={tmp / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{stack.ports['prometheus']}",
                ],
                env,
            )
            await stack.wait_ready("sink", "/healthz")
            await stack.wait_ready("worker", "/metrics")
            await stack.wait_ready("prometheus", "/-/ready")
            yield stack
        finally:
            for process in reversed(list(stack.processes.values())):
                await process.stop()
            shutil.rmtree(tmp, ignore_errors=True)


def record(n: int, *, year: int = 2026) -> dict[str, Any]:
    """The n-th one-minute record of 3 February, 0.25 kWh each."""
    start = datetime(year, 2, 3, tzinfo=UTC) + timedelta(minutes=n)
    return {
        "location_id": "loc_ops",
        "device_id": "dev_demo_ev",
        "energy": "0.25",
        "start_time": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "end_time": (start + timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "session_reference_id": f"ses_{n % 7}",
    }


def readings(round_: int) -> dict[str, Any]:
    """`PUT /meters/cumulative/epoch` of one round: 10 rising one-minute readings (a baseline
    in the first round, 9 or 10 intervals), a register reset and a stale reading."""
    start = int(datetime(2026, 2, 4, tzinfo=UTC).timestamp()) + round_ * 3600
    data = [{"time": start + 60 * i, "value": 1000 * round_ + 10_000 + 250 * i} for i in range(10)]
    data.append({"time": start + 600, "value": 5})  # register_reset
    data.append({"time": start + 600, "value": 7})  # stale_reading: the reset's time
    return {"location_id": "loc_ops", "units": "WH", "data": data}


async def put_load(stack: Stack, key: str, rounds: int = 3) -> None:
    """Per round: 100 good and 10 unpriceable records through Kafka (PUT /meters/interval),
    12 register readings (`readings`), 10 instant costs, a few client errors."""
    headers = {"Authorization": f"Bearer {key}"}
    async with aiohttp.ClientSession(headers=headers) as http:
        async with http.put(stack.url("api", "/locations/loc_ops"), json=LOCATION) as response:
            assert response.status == 200, await response.text()
        # The worker must hold the profile first: on a cold start faust reads meter-records and
        # locations concurrently, so earlier records would be dead-lettered as unknown_location.
        await wait_for(stack, 'sum(meterflow_table_entries{table="profiles"})', 1)
        for round_ in range(rounds):
            batch = [record(round_ * 100 + i) for i in range(100)]
            batch += [record(i, year=2020) for i in range(10)]  # before the tariff: dead letters
            async with http.put(stack.url("api", "/meters/interval"), json=batch) as response:
                assert response.status in (200, 202), await response.text()
            cumulative = stack.url("api", "/meters/cumulative/epoch")
            async with http.put(cumulative, json=readings(round_)) as response:
                assert response.status == 200, await response.text()
            for i in range(10):
                async with http.post(stack.url("api", "/costs/instant"), json=record(i)) as resp:
                    assert resp.status == 200, await resp.text()
            async with http.post(stack.url("api", "/costs/instant"), json={"nope": 1}) as resp:
                assert resp.status in (400, 422)
            async with http.get(stack.url("api", "/nowhere")) as resp:
                assert resp.status == 404
            await asyncio.sleep(1.5)


async def query(stack: Stack, expr: str) -> list[dict[str, Any]]:
    async with (
        aiohttp.ClientSession() as http,
        http.post(stack.url("prometheus", "/api/v1/query"), data={"query": expr}) as response,
    ):
        body = await response.json()
    assert response.status == 200, f"{expr}: {body}"
    assert body["status"] == "success", f"{expr}: {body}"
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def values(result: list[dict[str, Any]]) -> list[float]:
    return [float(series["value"][1]) for series in result]


async def wait_for(stack: Stack, expr: str, minimum: float, timeout_s: float = 120) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    seen: list[float] = []
    while asyncio.get_running_loop().time() < deadline:
        seen = values(await query(stack, expr))
        if seen and sum(seen) >= minimum:
            return
        await asyncio.sleep(1)
    logs = "\n".join(f"--- {n}\n{stack.processes[n].log_tail()}" for n in ("worker", "sink", "api"))
    pytest.fail(f"{expr} stayed at {seen}, expected >= {minimum}\n{logs}")


def dashboard_targets() -> list[tuple[str, str, str]]:
    """(dashboard title, panel title, PromQL) for every Prometheus target."""
    found = []
    for path in sorted((REPO / "deploy/grafana/dashboards").glob("*.json")):
        board = json.loads(path.read_text())
        for panel in board["panels"]:
            for target in panel["targets"]:
                if "expr" in target:
                    expr = target["expr"].replace("$__rate_interval", RATE_INTERVAL)
                    found.append((board["title"], panel["title"], expr))
    return found


def alert_exprs() -> list[tuple[str, str]]:
    rules = yaml.safe_load((REPO / "deploy/prometheus/alerts.yml").read_text())
    return [(r["alert"], r["expr"]) for group in rules["groups"] for r in group["rules"]]


# Panels whose every query must return finite numbers once the load has run.
MUST_HAVE_DATA = {
    "Throughput (records/s)",
    "End-to-end latency (record accepted → cost emitted)",
    "Pricing duration",
    "Consumer lag (records)",
    "Dead letters by code (records/s)",
    "Worker tables (entries)",
    "Sink rate",
    "Sink write duration (per batch)",
    "Sink healthy",
    "API requests by route and status (/s)",
    "API latency p95 by route",
    "Processes",
    "Register readings (per minute)",
    "Register resets and stale readings (per minute)",
}


@pytest_asyncio.fixture(scope="module")
async def loaded(stack: Stack) -> Stack:
    conn = await asyncpg.connect(stack.database_url)
    try:
        _, key = await create_api_key(conn, account_id="acc_ops", live_mode=False)
    finally:
        await conn.close()
    await put_load(stack, key)
    await wait_for(stack, 'sum(up{job=~"meterflow-.*"})', 3)
    await wait_for(stack, "sum(meterflow_records_priced_total)", 300)
    await wait_for(
        stack, 'sum(meterflow_records_dead_lettered_total{code="tariff_not_available"})', 30
    )
    await wait_for(stack, "sum(meterflow_sink_rows_written_total)", 330)
    await wait_for(stack, "sum(meterflow_end_to_end_latency_seconds_count)", 300)
    await wait_for(stack, "sum(meterflow_readings_consumed_total)", 36)
    await wait_for(stack, "sum(meterflow_reading_resets_total)", 3)
    await wait_for(stack, "sum(meterflow_readings_stale_total)", 3)
    await asyncio.sleep(3)  # a few more scrapes, so rate() has two samples after the last change
    return stack


async def test_every_dashboard_expression_evaluates(loaded: Stack) -> None:
    targets = dashboard_targets()
    assert len(targets) >= 20
    empty = []
    for board, panel, expr in targets:
        result = await query(loaded, expr)
        if panel in MUST_HAVE_DATA:
            numbers = values(result)
            # NaN is fine for a series idle in the window (a route not called lately)
            if not any(math.isfinite(v) for v in numbers):
                empty.append(f"{board} / {panel}: {expr} -> {result}")
    assert not empty, "\n".join(empty)


async def test_throughput_and_latency_reflect_the_load(loaded: Stack) -> None:
    priced = values(await query(loaded, "sum(meterflow_records_priced_total)"))
    consumed = values(
        await query(loaded, 'sum(meterflow_records_consumed_total{topic=~".*meter-records"})')
    )
    assert priced[0] >= 300  # 3 rounds x 100 good records (the API's instant costs not counted)
    assert consumed[0] >= 330  # + 3 x 10 unpriceable ones
    p95 = values(
        await query(
            loaded,
            "histogram_quantile(0.95, sum by (le) "
            f"(rate(meterflow_end_to_end_latency_seconds_bucket[{RATE_INTERVAL}])))",
        )
    )
    assert p95
    assert 0 < p95[0] < 600
    # every cost emitted has its latency observed: the records' and the readings' intervals
    unobserved = (
        "sum(meterflow_records_priced_total) - sum(meterflow_end_to_end_latency_seconds_count)"
    )
    assert values(await query(loaded, unobserved)) == [0]
    routes = {s["metric"]["route"] for s in await query(loaded, "meterflow_http_requests_total")}
    assert {"/meters/interval", "/costs/instant", "/locations/{location_id}", "unmatched"} <= routes


async def test_every_alert_expression_evaluates_and_rules_are_healthy(loaded: Stack) -> None:
    for _, expr in alert_exprs():
        await query(loaded, expr)
    async with (
        aiohttp.ClientSession() as http,
        http.get(loaded.url("prometheus", "/api/v1/rules")) as response,
    ):
        body = await response.json()
    rules = [rule for group in body["data"]["groups"] for rule in group["rules"]]
    assert {r["name"] for r in rules} == {name for name, _ in alert_exprs()}
    unhealthy = [(r["name"], r.get("lastError")) for r in rules if r["health"] != "ok"]
    assert not unhealthy
    firing = {r["name"] for r in rules if r["state"] == "firing"}
    assert "MeterflowTargetDown" not in firing
    assert "MeterflowSinkUnhealthy" not in firing


async def test_energy_costs_dashboard_on_the_rows_the_pipeline_wrote(loaded: Stack) -> None:
    """The same dashboard SQL on what the pipeline stored (Kafka records priced by the worker
    and instant costs, both written by the sink), checked against those rows."""
    conn = await asyncpg.connect(loaded.database_url)
    try:
        rows = [Row.from_record(r) for r in await conn.fetch("SELECT * FROM energy_costs")]
    finally:
        await conn.close()
    assert len(rows) >= 330  # 300 priced by the worker + 30 instant costs
    scope = Scope(
        "acc_ops",
        "GBP",
        ["loc_ops"],
        datetime(2026, 2, 1, tzinfo=UTC),
        datetime(2026, 3, 1, tzinfo=UTC),
    )
    queries = panel_queries()
    for title in PANELS:
        records = await run_panel(loaded.database_url, queries[title], scope)
        assert records, title
        assert records == expected_panel(title, rows, scope), title
