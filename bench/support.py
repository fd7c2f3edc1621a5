"""What the worker benches share: fresh topics preloaded the same way, and worker processes.

Each bench measures something else, but they compare only if they set up alike: the contract
topics, one 5-period TOU demo profile per location, then the input documents keyed by
`location_id`; a `meterflow worker` with its own state directory and no other `MF_*` setting
leaking in from the shell.
"""

from __future__ import annotations

import asyncio
import bisect
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from aiokafka.admin import NewTopic

from meterflow.contract.topics import ENERGY_COSTS, LOCATIONS, METER_RECORDS
from meterflow.kafka_admin import create_missing_topics, ensure_topics
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


async def create_output_topic(settings: Settings, name: str) -> None:
    """A topic a contender writes to, whose records the broker stamps when it appends them
    (`LogAppendTime`). A bench reads each contender's rate from its outputs' timestamps, and a
    result carries its record's own (`stream.agents.received_ms`), which the preload set: read
    so, the worker's "rate" was the preload's pace."""
    layout = {"message.timestamp.type": "LogAppendTime"}
    topic = NewTopic(
        name, settings.topic_partitions, settings.topic_replication, topic_configs=layout
    )
    await create_missing_topics(settings, [topic])


async def preload(
    settings: Settings,
    locations: list[str],
    documents: Iterable[dict[str, Any]],
    topic: str = METER_RECORDS,
) -> tuple[SendSummary, SendSummary]:
    """Create the contract topics (`energy-costs` as an output topic), publish a profile per
    location, then `documents` on `topic`.

    Answers what each send achieved (profiles, documents).
    """
    await create_output_topic(settings, settings.topic(ENERGY_COSTS))
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


def cpu_ticks(pid: int, thread: int | None = None) -> int:
    """utime + stime of process `pid` (all its threads), or of one of its threads, in ticks."""
    path = f"/proc/{pid}/stat" if thread is None else f"/proc/{pid}/task/{thread}/stat"
    fields = Path(path).read_text().rpartition(")")[2].split()
    return int(fields[11]) + int(fields[12])


def cpu_seconds(pid: int) -> float:
    """utime + stime of process `pid`, all its threads, in seconds."""
    return cpu_ticks(pid) / os.sysconf("SC_CLK_TCK")


class CpuSampler:
    """A process's CPU time sampled against the wall clock while it runs, so that what it
    spent between two instants read afterwards (its first and last output's timestamps) is
    known: CPU per record, which another process's load on this shared machine moves far
    less than a rate."""

    def __init__(self, pid: int, every_s: float = 0.1) -> None:
        self._pid = pid
        self._every_s = every_s
        self._samples: list[tuple[float, float]] = []  # (time.time(), CPU seconds)
        self._task: asyncio.Task[None] | None = None

    def _sample_now(self) -> bool:
        try:
            spent = cpu_seconds(self._pid)
        except (OSError, IndexError):
            return False  # exited
        self._samples.append((time.time(), spent))
        return True

    async def _sample(self) -> None:
        while self._sample_now():  # noqa: ASYNC110 - a sampling period, not a wait for an event
            await asyncio.sleep(self._every_s)

    def start(self) -> CpuSampler:
        self._task = asyncio.create_task(self._sample())
        return self

    def stop(self) -> None:
        """Stop sampling, with a last sample now (after the last output was read)."""
        if self._task is not None:
            self._task.cancel()
            self._sample_now()

    def cpu_at(self, when: float) -> float:
        """CPU seconds at wall time `when`, interpolated between the samples around it."""
        samples = self._samples
        index = bisect.bisect_left(samples, (when,))
        if index == 0 or index == len(samples):
            raise ValueError(f"no CPU samples around {when}")
        (t0, c0), (t1, c1) = samples[index - 1], samples[index]
        return c0 + (c1 - c0) * (when - t0) / (t1 - t0)

    def us_per_record(self, stamps_ms: list[int]) -> float:
        """µs of CPU per record between the first and the last of these outputs."""
        spent = self.cpu_at(stamps_ms[-1] / 1000) - self.cpu_at(stamps_ms[0] / 1000)
        return 1e6 * spent / max(1, len(stamps_ms) - 1)
