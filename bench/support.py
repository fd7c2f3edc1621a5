"""What the worker benches share: fresh topics preloaded the same way, and worker processes.

Each bench measures something else, but they compare only if they set up alike: the contract
topics, one 5-period TOU demo profile per location, then the input documents keyed by
`location_id`; a `meterflow worker` with its own state directory and no other `MF_*` setting
leaking in from the shell.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from meterflow.contract.topics import LOCATIONS, METER_RECORDS
from meterflow.kafka_admin import ensure_topics
from meterflow.settings import Settings
from meterflow.stream.producing import (
    SendSummary,
    demo_profile,
    kafka_producer,
    keyed,
    send_all,
)

ROOT = Path(__file__).resolve().parents[1]
MF = str(Path(sys.executable).with_name("meterflow"))


def bench_space(kind: str, partitions: int = 6) -> tuple[Settings, Path]:
    """Settings on fresh topics `<kind><random>-*` and the run's own work directory."""
    prefix = f"{kind}{uuid.uuid4().hex[:8]}-"
    workdir = ROOT / ".local" / "bench" / prefix.rstrip("-")
    workdir.mkdir(parents=True, exist_ok=True)
    return Settings(topic_prefix=prefix, app_id="bench", topic_partitions=partitions), workdir


async def preload(
    settings: Settings,
    locations: list[str],
    documents: Iterable[dict[str, Any]],
    topic: str = METER_RECORDS,
) -> tuple[SendSummary, SendSummary]:
    """Create the contract topics, publish a profile per location, then `documents` on `topic`.

    Answers what each send achieved (profiles, documents).
    """
    await ensure_topics(settings)
    async with kafka_producer(settings) as producer:
        profiles = await send_all(
            producer,
            settings.topic(LOCATIONS),
            keyed((demo_profile(loc) for loc in locations), "location_id"),
        )
        sent = await send_all(producer, settings.topic(topic), keyed(documents, "location_id"))
    return profiles, sent


def worker_env(
    settings: Settings,
    workdir: Path,
    *,
    store: str = "memory://",
    level: str = "INFO",
    data: str = "data",
    **extra_env: str,
) -> dict[str, str]:
    """The environment of a `meterflow worker` on `settings`' topics, state in `workdir/data`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MF_")}
    env.update(
        MF_KAFKA_BOOTSTRAP=settings.kafka_bootstrap,
        MF_TOPIC_PREFIX=settings.topic_prefix,
        MF_TOPIC_PARTITIONS=str(settings.topic_partitions),
        MF_APP_ID=settings.app_id,
        MF_STORE=store,
        MF_DATA_DIR=str(workdir / data),
        MF_WORKER_WEB_ENABLED="false",
        MF_LOG_LEVEL=level,
        **extra_env,
    )
    return env


def stop_process(
    proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, wait_s: float = 60
) -> None:
    """Ask with `sig`, give it `wait_s` to finish, then kill: a bench must not leave workers."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
