"""Fresh workers on topics created a moment before start and price (issue 12 item 9).

Before `worker_topics`, about one fresh start in seven joined its group before the broker's
metadata listed faust's `market-prices` changelog, and then priced nothing, ever (the
assignor's KeyError parked aiokafka's coordinator; see docs/stream.md, "A fresh worker that
never started"). `bench/bench_worker_start.py` runs the 20-start proof; this file runs a few
starts in `make test` and checks the topics the worker now creates itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from meterflow.contract.topics import ENERGY_COSTS, LOCATIONS, METER_RECORDS
from meterflow.kafka_admin import bootstrap_servers, delete_topics_with_prefix, ensure_topics
from meterflow.settings import Settings
from meterflow.stream import create_app
from meterflow.stream.producing import (
    demo_profile,
    kafka_producer,
    keyed,
    send_all,
    synthetic_records,
)
from meterflow.stream.worker_topics import prepare_worker_topics, wait_until_listed

pytestmark = pytest.mark.integration

MF = str(Path(sys.executable).with_name("meterflow"))
STARTS = 5
BOUND_S = 120.0  # a bound for a start that never prices, not a speed target (~3-8 s here)


async def topic_layout(settings: Settings, name: str) -> tuple[int, str]:
    """(partitions, cleanup.policy) of `name` as the broker has it."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers(settings))
    await admin.start()
    try:
        (described,) = await admin.describe_topics([name])
        (response,) = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, name, None)]
        )
        entries = response.to_object()["resources"][0]["config_entries"]
        policy = {e["config_names"]: e["config_value"] for e in entries}["cleanup.policy"]
        return len(described["partitions"]), str(policy)
    finally:
        await admin.close()


async def test_the_worker_creates_fausts_topics_as_faust_would_before_it_starts(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    settings = Settings(
        kafka_bootstrap=kafka_bootstrap,
        topic_prefix=topic_prefix,
        app_id="ws",
        topic_partitions=3,
        worker_web_enabled=False,
    )
    app = create_app(settings)
    try:
        await ensure_topics(settings)
        await prepare_worker_topics(app, settings, timeout_s=30)
        for table in ("profiles", "market-prices"):
            name = f"{topic_prefix}ws-{table}-changelog"
            assert await topic_layout(settings, name) == (3, "compact")
        assert (await topic_layout(settings, f"{topic_prefix}ws-__assignor-__leader"))[0] == 1
    finally:
        with contextlib.suppress(Exception):
            app.consumer._thread.thread_loop.close()
        await delete_topics_with_prefix(settings, topic_prefix)


async def test_waiting_for_a_topic_nobody_creates_fails_naming_it(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    settings = Settings(kafka_bootstrap=kafka_bootstrap, topic_prefix=topic_prefix)
    missing = f"{topic_prefix}never-created"
    with pytest.raises(RuntimeError, match=f"after 1s: \\['{missing}'\\]"):
        await wait_until_listed(settings, {missing: 1}, timeout_s=1)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers(settings))
    await admin.start()
    try:
        assert missing not in await admin.list_topics()  # the wait never auto-creates it
    finally:
        await admin.close()


def worker_env(settings: Settings, data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MF_")}
    env.update(
        MF_KAFKA_BOOTSTRAP=settings.kafka_bootstrap,
        MF_TOPIC_PREFIX=settings.topic_prefix,
        MF_TOPIC_PARTITIONS=str(settings.topic_partitions),
        MF_APP_ID=settings.app_id,
        MF_STORE="memory://",
        MF_DATA_DIR=str(data_dir),
        MF_WORKER_WEB_ENABLED="false",
        MF_LOG_LEVEL="INFO",
    )
    return env


async def first_cost_within(settings: Settings, bound_s: float) -> bool:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers(settings), enable_auto_commit=False
    )
    await consumer.start()
    try:
        topic = settings.topic(ENERGY_COSTS)
        partitions = [TopicPartition(topic, p) for p in range(settings.topic_partitions)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        deadline = time.monotonic() + bound_s
        while time.monotonic() < deadline:
            if any((await consumer.getmany(timeout_ms=200, max_records=1)).values()):
                return True
        return False
    finally:
        await consumer.stop()


async def start_and_price_one(kafka_bootstrap: str, workdir: Path, start: int) -> float:
    """One fresh start: new prefix, topics created a moment before, one profile, one record."""
    prefix = f"t{uuid.uuid4().hex[:10]}-"
    settings = Settings(
        kafka_bootstrap=kafka_bootstrap, topic_prefix=prefix, app_id="ws", topic_partitions=6
    )
    log_path = workdir / f"worker-{start}.log"
    try:
        await ensure_topics(settings)
        async with kafka_producer(settings) as producer:
            profile = keyed([demo_profile("loc_ws")], "location_id")
            await send_all(producer, settings.topic(LOCATIONS), profile)
            records = keyed(synthetic_records(["loc_ws"], 1), "location_id")
            await send_all(producer, settings.topic(METER_RECORDS), records)
        started = time.monotonic()
        with log_path.open("ab") as log:
            proc = subprocess.Popen(  # noqa: ASYNC220 - bounded by first_cost_within
                [MF, "worker", "--no-api"],
                env=worker_env(settings, workdir / f"data-{start}"),
                stdout=log,
                stderr=log,
            )
        try:
            priced = await first_cost_within(settings, BOUND_S)
            if not priced and proc.poll() is None:
                proc.send_signal(signal.SIGUSR2)  # `worker_diagnostics` into the log
                await asyncio.sleep(2)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if not priced:
            tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-25:])
            pytest.fail(
                f"fresh start {start + 1} ({prefix}) priced nothing within {BOUND_S:.0f}s; "
                f"worker log {log_path}:\n{tail}"
            )
        return time.monotonic() - started
    finally:
        await delete_topics_with_prefix(settings, prefix)


async def test_fresh_workers_each_price_their_first_record(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    elapsed = [await start_and_price_one(kafka_bootstrap, tmp_path, n) for n in range(STARTS)]
    assert len(elapsed) == STARTS


async def test_a_worker_whose_web_port_is_taken_says_so_in_one_line(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """mode logs a failed start with its traceback and exits 1 itself: the one-line "Error:"
    every other command gives for a port taken (docs/operations.md) was missing."""
    prefix = f"t{uuid.uuid4().hex[:10]}-"
    settings = Settings(kafka_bootstrap=kafka_bootstrap, topic_prefix=prefix, app_id="wp")
    env = worker_env(settings, tmp_path / "data") | {
        "MF_WORKER_WEB_ENABLED": "true",
        "MF_LOG_FORMAT": "text",  # a traceback would be written as it is
    }
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        try:
            result = await asyncio.to_thread(
                subprocess.run,
                [MF, "worker", "--no-api", "--web-port", str(port)],
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
        finally:
            await delete_topics_with_prefix(settings, prefix)
    assert result.returncode == 1, result.stderr[-2000:]
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("Error: OSError: [Errno 98]"), last
    assert "address already in use" in last
