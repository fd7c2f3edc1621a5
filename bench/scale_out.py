"""`bench_pipeline.py --workers N`: N workers in one consumer group against one, same run.

Each count of workers gets fresh topics (same partitions, profiles and preloaded records) and
starts its workers at once. Workers join the group a second or two apart, and each join is a
rebalance, so the rate is taken over the steady part of the drain only: from the moment the
group settled (every worker holds a disjoint share of all partitions, read from the last
`input_partitions_seeked` line of each worker's log) to the last output record. The 1-worker
rate is taken the same way (from its one assignment). Records priced twice around a rebalance
(redelivered, same result id) count as work done. (Pausing the workers with SIGSTOP while the
records are written was tried: the stall guard's seek right after SIGCONT raced aiokafka's
fetcher, `KeyError` in `fetched_records`, and the worker crashed.)
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from meterflow.contract.topics import ENERGY_COSTS, METER_RECORDS
from meterflow.kafka_admin import delete_topics_with_prefix
from meterflow.settings import Settings
from meterflow.stream.producing import demo_location_id, synthetic_records
from support import preload

PARTITIONS = 6
SETTLED_S = 2.0  # no new assignment for this long = the group is settled
MIN_RECORDS = 60_000  # enough backlog to outlast the joins


def _seeked(log: Path, topic: str) -> tuple[int, frozenset[int], float]:
    """(number of `input_partitions_seeked` lines, partitions of `topic` in the last one, its
    time as epoch seconds)."""
    count, last, at = 0, frozenset[int](), 0.0
    if not log.exists():
        return count, last, at
    for line in log.read_text(errors="replace").splitlines():
        if '"input_partitions_seeked"' not in line:
            continue
        try:
            document: dict[str, Any] = json.loads(line)
        except ValueError:
            continue
        count += 1
        committed: dict[str, Any] = document.get("committed", {})
        last = frozenset(
            int(name.rsplit("/", 1)[1]) for name in committed if name.rsplit("/", 1)[0] == topic
        )
        at = datetime.fromisoformat(document["ts"]).timestamp()
    return count, last, at


async def wait_settled(logs: list[Path], topic: str, limit_s: float) -> float:
    """When (epoch s) the workers of `logs` last took their share of all partitions of `topic`,
    once each holds a disjoint share, unchanged for `SETTLED_S`."""
    deadline = time.monotonic() + limit_s
    seen: tuple[int, ...] = ()
    since = time.monotonic()
    while time.monotonic() < deadline:
        states = [_seeked(log, topic) for log in logs]
        counts = tuple(count for count, _, _ in states)
        if counts != seen:
            seen, since = counts, time.monotonic()
        shares = [share for _, share, _ in states]
        whole = set().union(*shares) == set(range(PARTITIONS))
        disjoint = sum(len(share) for share in shares) == PARTITIONS
        settled = time.monotonic() - since >= SETTLED_S
        if all(shares) and whole and disjoint and settled:
            return max(at for _, _, at in states)
        await asyncio.sleep(0.2)
    raise TimeoutError(f"group of {len(logs)} not settled after {limit_s}s: {logs}")


def steady_rate(stamps: list[int], settled_at: float) -> tuple[float, int]:
    """Records/s over the outputs after `settled_at` (epoch s), and how many there were.

    Refused when under half the drain came after it: a group that settled that late says more
    about its joins than about its throughput (seen: one of two workers joined when the other
    had priced 40k of 60k records)."""
    after = [stamp for stamp in stamps if stamp / 1000 >= settled_at]
    if len(after) < max(2, len(stamps) // 2) or after[-1] == after[0]:
        raise RuntimeError(
            f"only {len(after):,} of {len(stamps):,} outputs after the group settled: "
            "use more --records"
        )
    return (len(after) - 1) / ((after[-1] - after[0]) / 1000), len(after)


async def drain_rate(
    count: int,
    records: int,
    locations_n: int,
    base_dir: Path,
    start_worker: Callable[..., subprocess.Popen[bytes]],
    stop_process: Callable[[subprocess.Popen[bytes]], None],
    output_timestamps: Callable[[Settings, str, int, float], Awaitable[list[int]]],
) -> float:
    prefix = f"scale{uuid.uuid4().hex[:8]}-"
    settings = Settings(topic_prefix=prefix, app_id="bench", topic_partitions=PARTITIONS)
    workdir = base_dir / prefix.rstrip("-")
    workdir.mkdir(parents=True, exist_ok=True)
    locations = [demo_location_id(i) for i in range(locations_n)]
    workers: list[subprocess.Popen[bytes]] = []
    try:
        await preload(settings, locations, synthetic_records(locations, records))
        names = [f"worker{i}" for i in range(count)]
        workers = [
            start_worker(settings, workdir, False, level="INFO", name=name) for name in names
        ]
        logs = [workdir / f"{name}.log" for name in names]
        settled_at = await wait_settled(logs, settings.topic(METER_RECORDS), 300)
        stamps = await output_timestamps(settings, settings.topic(ENERGY_COSTS), records, 1200)
        rate, steady = steady_rate(stamps, settled_at)
        print(f"  {count} worker(s): {rate:,.0f} records/s over the last {steady:,} outputs")
        return rate
    finally:
        for worker in workers:
            stop_process(worker)
        await delete_topics_with_prefix(settings, prefix)


async def measure_scale_out(
    workers: int, records: int, locations_n: int, base_dir: Path, **tools: Any
) -> dict[int, float]:
    """Print and return the drain rate of 1 and of `workers` workers, measured one after the
    other in this run, and their ratio."""
    records = max(records, MIN_RECORDS)
    print(f"\nscale-out: 1 vs {workers} workers, {records:,} records, {PARTITIONS} partitions")
    rates: dict[int, float] = {}
    for count in (1, workers):
        rates[count] = await drain_rate(count, records, locations_n, base_dir, **tools)
    print(
        f"scale-out: {workers} workers {rates[workers]:,.0f} records/s, 1 worker "
        f"{rates[1]:,.0f}: {rates[workers] / rates[1]:.2f}x"
    )
    return rates
