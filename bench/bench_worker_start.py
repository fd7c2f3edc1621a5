"""Fresh-worker starts: N starts in a row, each on topics created a moment before.

Issue 12 item 9: one start in six of a fresh `meterflow worker` on topics created just before
priced nothing for 600 s (its log ended at `…-market-prices-changelog not found in cluster
metadata` and the assignor's `Ignoring missing topic`). Each start here takes a fresh topic
prefix (`MF_TOPIC_PREFIX`), creates the contract topics, publishes one profile and one meter
record, starts `meterflow worker --no-api` and waits for the record's `energy-costs` result;
then stops the worker and deletes the prefix's topics (faust's changelogs included).

`--timeout` is a generous bound per start, not a speed assertion: a start that prices nothing
within it fails with the worker log's tail (or, with `--keep-going`, is counted and the loop
goes on, to measure how often it happens). Prints the time to the first priced record per
start and min / median / max.

    .venv/bin/python bench/bench_worker_start.py --starts 20
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import statistics
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition

from meterflow.contract.topics import ENERGY_COSTS
from meterflow.kafka_admin import bootstrap_servers, delete_topics_with_prefix
from meterflow.settings import Settings
from meterflow.stream.producing import demo_location_id, synthetic_records
from support import MF, ROOT, preload, stop_process, worker_env


@dataclass(frozen=True)
class Start:
    prefix: str
    priced_after_s: float | None  # None: nothing priced within the timeout
    log_path: Path


async def first_record_after(settings: Settings, topic: str, timeout_s: float) -> bool:
    """True as soon as `topic` holds a record; False after `timeout_s`."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers(settings), enable_auto_commit=False
    )
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(settings.topic_partitions)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if any((await consumer.getmany(timeout_ms=200, max_records=1)).values()):
                return True
        return False
    finally:
        await consumer.stop()


async def one_start(index: int, timeout_s: float, workroot: Path) -> Start:
    prefix = f"wstart{uuid.uuid4().hex[:8]}-"
    settings = Settings(topic_prefix=prefix, app_id="wstart", topic_partitions=6)
    workdir = workroot / prefix.rstrip("-")
    workdir.mkdir(parents=True, exist_ok=True)
    log_path = workdir / "worker.log"
    try:
        location = demo_location_id(index)
        # "topics created a moment before"
        await preload(settings, [location], synthetic_records([location], 1))
        started = time.monotonic()
        with log_path.open("ab") as log:
            proc = subprocess.Popen(  # noqa: ASYNC220 - polled by first_record_after's deadline
                [MF, "worker", "--no-api"],
                env=worker_env(settings, workdir),
                stdout=log,
                stderr=log,
            )
        try:
            priced = await first_record_after(settings, settings.topic(ENERGY_COSTS), timeout_s)
            elapsed = time.monotonic() - started
            if not priced and proc.poll() is None:
                proc.send_signal(signal.SIGUSR2)  # `worker_diagnostics` into its log
                await asyncio.sleep(2)
        finally:
            stop_process(proc, wait_s=30)
        return Start(prefix, elapsed if priced else None, log_path)
    finally:
        await delete_topics_with_prefix(settings, prefix)


def tail(path: Path, lines: int = 30) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


async def run(starts: int, timeout_s: float, keep_going: bool) -> int:
    workroot = ROOT / ".local" / "bench" / f"worker-start-{time.strftime('%Y%m%dT%H%M%S')}"
    results: list[Start] = []
    for index in range(starts):
        result = await one_start(index, timeout_s, workroot)
        results.append(result)
        if result.priced_after_s is None:
            print(
                f"start {index + 1}/{starts} ({result.prefix}): nothing priced after "
                f"{timeout_s:.0f}s; worker log {result.log_path}, tail:\n{tail(result.log_path)}",
                flush=True,
            )
            if not keep_going:
                break
        else:
            print(
                f"start {index + 1}/{starts} ({result.prefix}): first record priced after "
                f"{result.priced_after_s:.2f}s",
                flush=True,
            )
    times = [r.priced_after_s for r in results if r.priced_after_s is not None]
    failed = len(results) - len(times)
    print(f"starts: {len(results)}, priced: {len(times)}, failed: {failed}")
    if times:
        print(
            f"time to first priced record (s): min {min(times):.2f}, "
            f"median {statistics.median(times):.2f}, max {max(times):.2f}"
        )
    return 1 if failed or len(results) < starts else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--starts", type=int, default=20)
    parser.add_argument("--quick", action="store_true", help="5 starts (bench/run.py --quick)")
    parser.add_argument("--timeout", type=float, default=120.0, help="bound per start (s)")
    parser.add_argument(
        "--keep-going", action="store_true", help="count failed starts instead of stopping"
    )
    args = parser.parse_args()
    starts = 5 if args.quick else args.starts
    return asyncio.run(run(starts, args.timeout, args.keep_going))


if __name__ == "__main__":
    sys.exit(main())
