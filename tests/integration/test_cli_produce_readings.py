"""`meterflow produce --readings` against the real broker: the demo profiles, then cumulative
register readings on `meter-readings`, keyed by location, each a valid MeterReading."""

from __future__ import annotations

import asyncio
import secrets
from collections import Counter
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer
from processes import MF, service_env

from meterflow.kafka_admin import delete_topics_with_prefix
from meterflow.models import MeterReading, loads
from meterflow.settings import Settings

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


async def read_all(bootstrap: str, topic: str, count: int) -> list[tuple[bytes, bytes]]:
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None
    )
    await consumer.start()
    found: list[tuple[bytes, bytes]] = []
    try:
        deadline = asyncio.get_running_loop().time() + 60
        while len(found) < count and asyncio.get_running_loop().time() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            for messages in batches.values():
                found += [(m.key, m.value) for m in messages]
    finally:
        await consumer.stop()
    return found


async def test_produce_readings_publishes_register_readings(kafka_bootstrap: str) -> None:
    prefix = f"tprod{secrets.token_hex(4)}-"
    env = service_env({"MF_KAFKA_BOOTSTRAP": kafka_bootstrap, "MF_TOPIC_PREFIX": prefix})
    try:
        proc = await asyncio.create_subprocess_exec(
            MF,
            "produce",
            "--readings",
            "--locations",
            "4",
            "--records",
            "220",
            env=env,
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await proc.communicate()
        text = out.decode()
        assert proc.returncode == 0, text
        assert "profiles: 4 sent, 0 failed" in text
        assert f"readings: 220 sent, 0 failed to {prefix}meter-readings" in text

        messages = await read_all(kafka_bootstrap, f"{prefix}meter-readings", 220)
        assert len(messages) == 220
        readings = [MeterReading.model_validate(loads(value)) for _, value in messages]
        assert all(
            key == r.location_id.encode() for (key, _), r in zip(messages, readings, strict=True)
        )
        per_meter = Counter(r.location_id for r in readings)
        assert sorted(per_meter) == [f"loc_demo_{i:05d}" for i in range(4)]
        # 220 over 4 meters: 54 slots each (216), and one reading of each sent twice (slots 46-49)
        assert set(per_meter.values()) == {55}
        pairs = Counter((r.location_id, r.time, r.value) for r in readings)
        assert max(pairs.values()) == 2  # the duplicates the agent ignores
    finally:
        await delete_topics_with_prefix(Settings(kafka_bootstrap=kafka_bootstrap), prefix)
