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

Why each phase reports more than a rate: a ratio says nothing when one worker priced nothing
(the first run here had one of two workers price 3 records in all, docs/stream.md "Scale-out").
So each worker's partitions and its share of the steady outputs are printed (an output's
partition is its input's: both are keyed by location with the same partitioner), a worker
holding partitions but pricing none fails the run, and the CPU seconds each worker spent
over the drain give records per worker CPU-second: the sizing figure, and on a shared machine
the figure that says whether a low ratio is the workers' doing or the machine's. The end of
the drain is found by polling the output's end offsets, and the outputs are read only after
it, so the bench's own consumer does not compete with the workers for the cores.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from meterflow.contract.topics import DEAD_LETTERS, ENERGY_COSTS, METER_RECORDS
from meterflow.kafka_admin import bootstrap_servers, delete_topics_with_prefix
from meterflow.settings import Settings
from meterflow.stream.producing import demo_location_id, synthetic_records
from support import preload

PARTITIONS = 6
SETTLED_S = 2.0  # no new assignment for this long = the group is settled
MIN_RECORDS = 200_000  # a two-worker drain of ~20 s: long enough to outlast the joins and noise
QUIET_S = 1.5  # output end offsets unchanged this long (and >= records) = the drain is over
ROUNDS = 2  # 1, N, 1, N workers: about 160 s in all
TARGET_RATIO = 1.6  # N=2 workers against one (issue 16 item 4)
STOP_WAIT_S = 20.0  # the topics are deleted afterwards: no need to wait long for a clean stop
CLOCK_TICK = os.sysconf("SC_CLK_TCK")


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


async def wait_settled(
    logs: list[Path], topic: str, limit_s: float
) -> tuple[float, list[frozenset[int]]]:
    """When (epoch s) the workers of `logs` last took their share of all partitions of `topic`,
    once each holds a disjoint share, unchanged for `SETTLED_S`; and each worker's share."""
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
            return max(at for _, _, at in states), shares
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


# --- CPU accounting (Linux /proc) ---


def process_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) the process `pid` has used so far."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat.rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICK  # utime, stime


def machine_busy_s() -> float:
    """CPU seconds all cores of the machine spent busy so far (not idle, not waiting on I/O)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(values[:8]) - values[3] - values[4]) / CLOCK_TICK  # minus idle, iowait


def broker_pid(settings: Settings) -> int | None:
    """The process listening on the first bootstrap address (a local broker), if `ss` says."""
    port = bootstrap_servers(settings)[0].rsplit(":", 1)[-1]
    try:
        listing = subprocess.run(
            ["ss", "-ltnpH", f"sport = :{port}"], capture_output=True, text=True, timeout=5
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    found = re.search(r"pid=(\d+)", listing)
    return int(found.group(1)) if found else None


@dataclass(frozen=True)
class CpuSample:
    at: float  # epoch s
    workers: tuple[float, ...]
    machine: float
    broker: float  # 0.0 when the broker is not a local process


def cpu_sample(workers: list[subprocess.Popen[bytes]], broker: int | None = None) -> CpuSample:
    return CpuSample(
        time.time(),
        tuple(process_cpu_s(w.pid) for w in workers),
        machine_busy_s(),
        process_cpu_s(broker) if broker is not None else 0.0,
    )


# --- the outputs ---


async def wait_drained(
    settings: Settings,
    topic: str,
    expected: int,
    limit_s: float,
    workers: list[Any],
    broker: int | None,
    dead_letters: str | None = None,
) -> CpuSample:
    """Poll `topic`'s end offsets until they sum to >= `expected` and stop growing; answer the
    CPU sample taken when they last grew (the end of the drain). A record on `dead_letters`
    fails the run at once: every bench record has its profile, so one priced without it
    (`unknown_location`, a catch-up that gave up) means the workers stalled."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers(settings))
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        letters = (
            [TopicPartition(dead_letters, p) for p in range(PARTITIONS)] if dead_letters else []
        )
        deadline = time.monotonic() + limit_s
        total, last = -1, cpu_sample(workers, broker)
        quiet_since = time.monotonic()
        while True:
            now_total = sum((await consumer.end_offsets(partitions)).values())
            if now_total != total:
                total, last, quiet_since = now_total, cpu_sample(workers, broker), time.monotonic()
            elif total >= expected and time.monotonic() - quiet_since >= QUIET_S:
                return last
            dead = sum((await consumer.end_offsets(letters)).values()) if letters else 0
            if dead:
                raise RuntimeError(f"{dead} records dead-lettered (see the workers' logs)")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{topic}: {total} of {expected} outputs after {limit_s}s")
            await asyncio.sleep(0.2)
    finally:
        await consumer.stop()


async def read_outputs(settings: Settings, topic: str) -> list[tuple[int, int]]:
    """(timestamp ms, partition) of every record in `topic`, read to its end offsets.

    `auto_offset_reset="earliest"` too: with the default ("latest") the reset that `assign`
    starts can land after `seek_to_beginning`'s, and the read then starts at the end (seen:
    0 records read, or a wait for records that never came)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers(settings),
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    out: list[tuple[int, int]] = []
    try:
        partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(partitions)
        ends = await consumer.end_offsets(partitions)
        await consumer.seek_to_beginning(*partitions)
        left = {tp for tp in partitions if ends[tp] > 0}
        deadline = time.monotonic() + 300
        while left:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{topic}: {len(out)} outputs read, partitions {left} not")
            batches = await consumer.getmany(timeout_ms=500, max_records=10_000)
            for tp, messages in batches.items():
                out.extend((m.timestamp, tp.partition) for m in messages if m.offset < ends[tp])
            for tp in list(left):
                if await consumer.position(tp) >= ends[tp]:
                    left.discard(tp)
    finally:
        await consumer.stop()
    return sorted(out)


# --- one phase ---


@dataclass(frozen=True)
class WorkerFigures:
    name: str
    partitions: frozenset[int]
    outputs: int  # steady outputs on its partitions
    cpu_s: float  # CPU seconds over the drain (settled -> last output)


@dataclass(frozen=True)
class Phase:
    count: int
    rate: float  # records/s, steady drain
    steady: int  # outputs over which `rate` was taken
    workers: list[WorkerFigures]
    window_s: float  # the CPU window: settled (as seen) -> last output
    window_outputs: int
    machine_busy: float  # cores busy on average over the CPU window (everyone's work)
    broker_cpu_s: float  # the local broker's CPU seconds over the CPU window
    load: tuple[float, float, float]

    @property
    def per_cpu_s(self) -> float:
        """Outputs per CPU-second of the workers: the rate one worker core gives."""
        cpu = sum(w.cpu_s for w in self.workers)
        return self.window_outputs / cpu if cpu > 0 else 0.0

    def report(self) -> str:
        lines = [
            f"  {self.count} worker(s): {self.rate:,.0f} records/s over the last "
            f"{self.steady:,} outputs; {self.per_cpu_s:,.0f} records per worker CPU-second; "
            f"machine {self.machine_busy:.2f} of {os.cpu_count()} cores busy, the broker "
            f"{self.broker_cpu_s / self.window_s:.2f}; load {self.load[0]:.2f}"
        ]
        for w in self.workers:
            share = w.outputs / self.steady if self.steady else 0.0
            lines.append(
                f"    {w.name}: partitions {sorted(w.partitions)}, {w.outputs:,} outputs "
                f"({share:.0%}), {w.cpu_s:.1f} CPU s ({w.cpu_s / self.window_s:.0%} of a core)"
            )
        return "\n".join(lines)


def stop_all(workers: list[subprocess.Popen[bytes]], wait_s: float = STOP_WAIT_S) -> None:
    """SIGTERM every worker at once, then wait for each, killing what outlives `wait_s`."""
    for worker in workers:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + wait_s
    for worker in workers:
        try:
            worker.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait(timeout=10)


async def drain_phase(
    count: int,
    records: int,
    locations_n: int,
    base_dir: Path,
    start_worker: Callable[..., subprocess.Popen[bytes]],
) -> Phase:
    prefix = f"scale{uuid.uuid4().hex[:8]}-"
    settings = Settings(topic_prefix=prefix, app_id="bench", topic_partitions=PARTITIONS)
    workdir = base_dir / prefix.rstrip("-")
    workdir.mkdir(parents=True, exist_ok=True)
    locations = [demo_location_id(i) for i in range(locations_n)]
    workers: list[subprocess.Popen[bytes]] = []
    out_topic = settings.topic(ENERGY_COSTS)
    try:
        await preload(settings, locations, synthetic_records(locations, records))
        names = [f"worker{i}" for i in range(count)]
        print(f"  {count} worker(s) starting, logs in {workdir}", flush=True)
        workers = [
            start_worker(settings, workdir, False, level="INFO", name=name) for name in names
        ]
        logs = [workdir / f"{name}.log" for name in names]
        settled_at, shares = await wait_settled(logs, settings.topic(METER_RECORDS), 300)
        broker = broker_pid(settings)
        start = cpu_sample(workers, broker)
        letters = settings.topic(DEAD_LETTERS)
        end = await wait_drained(settings, out_topic, records, 1200, workers, broker, letters)
        outputs = await read_outputs(settings, out_topic)
    finally:
        stop_all(workers)
        await delete_topics_with_prefix(settings, prefix)
    rate, steady = steady_rate([stamp for stamp, _ in outputs], settled_at)
    per_partition = [0] * PARTITIONS
    for stamp, partition in outputs:
        if stamp / 1000 >= settled_at:
            per_partition[partition] += 1
    window_s = end.at - start.at
    figures = [
        WorkerFigures(
            name=name,
            partitions=share,
            outputs=sum(per_partition[p] for p in share),
            cpu_s=after - before,
        )
        for name, share, before, after in zip(
            names, shares, start.workers, end.workers, strict=True
        )
    ]
    phase = Phase(
        count=count,
        rate=rate,
        steady=steady,
        workers=figures,
        window_s=window_s,
        window_outputs=sum(1 for stamp, _ in outputs if start.at <= stamp / 1000 <= end.at),
        machine_busy=(end.machine - start.machine) / window_s if window_s > 0 else 0.0,
        broker_cpu_s=end.broker - start.broker,
        load=os.getloadavg(),
    )
    print(phase.report(), flush=True)
    idle = [w.name for w in figures if w.partitions and w.outputs == 0]
    if idle:
        raise RuntimeError(
            f"{', '.join(idle)} held partitions but priced nothing: not a measurement"
        )
    return phase


async def measure_scale_out(
    workers: int,
    records: int,
    locations_n: int,
    base_dir: Path,
    start_worker: Callable[..., subprocess.Popen[bytes]],
    rounds: int = ROUNDS,
) -> list[dict[int, Phase]]:
    """Print and return the steady drain of 1 and of `workers` workers, measured one after the
    other in this run, `rounds` times over (1, N, 1, N: a shared VM's speed drifts; the same
    single worker ran 6,100-10,100 records per CPU-second from one minute to the next), each
    round's ratio, and the ratio of the summed rates."""
    records = max(records, MIN_RECORDS)
    print(
        f"\nscale-out: 1 vs {workers} workers, {records:,} records, {PARTITIONS} partitions, "
        f"{os.cpu_count()} cores, {rounds} round(s), load {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    results: list[dict[int, Phase]] = []
    for _ in range(rounds):
        phases: dict[int, Phase] = {}
        for count in (1, workers):
            phases[count] = await drain_phase(count, records, locations_n, base_dir, start_worker)
        one, many = phases[1], phases[workers]
        print(
            f"scale-out round {len(results) + 1}: 1 worker {one.rate:,.0f} records/s, "
            f"{workers} workers {many.rate:,.0f}: {many.rate / one.rate:.2f}x (per worker "
            f"CPU-second: {one.per_cpu_s:,.0f} vs {many.per_cpu_s:,.0f}; load "
            f"{one.load[0]:.2f} / {many.load[0]:.2f})",
            flush=True,
        )
        results.append(phases)
    one_rate = sum(phases[1].rate for phases in results) / rounds
    many_rate = sum(phases[workers].rate for phases in results) / rounds
    ratios = ", ".join(f"{phases[workers].rate / phases[1].rate:.2f}" for phases in results)
    met = "met" if many_rate >= TARGET_RATIO * one_rate else "NOT met"
    print(
        f"scale-out: 1 worker {one_rate:,.0f} records/s, {workers} workers {many_rate:,.0f} "
        f"(means of {rounds}): {many_rate / one_rate:.2f}x (rounds: {ratios}); "
        f"target >= {TARGET_RATIO:.1f}x: {met}"
    )
    return results
