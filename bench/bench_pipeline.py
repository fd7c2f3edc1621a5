"""Pipeline benchmark: `meterflow worker` vs a Quix Streams peer vs a bare aiokafka loop.

    .venv/bin/python bench/bench_pipeline.py              # 100k records, 1,000 locations
    .venv/bin/python bench/bench_pipeline.py --quick      # 20k records
    .venv/bin/python bench/bench_pipeline.py --workers 2  # only: 2 workers vs 1, same run
    .venv/bin/python bench/bench_pipeline.py --profile    # also write a pyinstrument profile

Each contender runs as its own process on the same input topic (`meter-records`, same
partitions, same records: 5-period TOU profiles, round-robin over the locations):

- the bare loop: consume, produce unchanged, await delivery, commit (no decoding or pricing);
- the Quix Streams peer (`quix_peer.py`, quixstreams 3.28 in its own venv `.venv-bench`, made
  on first use by `peer_venv.py`): the same `cost_payload` + `models.dumps` per record, the
  same at-least-once guarantee and commit interval (`--no-peer` leaves it out);
- the worker (`meterflow worker`).

1. throughput: the input is preloaded; each contender drains it. The rate is measured on the
   output topic's record timestamps (first to last), so process start-up does not count. The
   worker's and the peer's CPU time per record over the same span is read from /proc
   (`support.CpuSampler`): the two run one after the other on a shared VM whose speed drifts
   from minute to minute, and CPU per record moves far less with it than a rate does.
2. latency: with the contender caught up, records are produced at a fixed rate (500/s); a
   consumer of the output topic measures send -> receive per record (first second = warm-up,
   dropped).

The bare loop has the same delivery guarantee as the worker (send, await delivery, commit), and
the same producer linger; it does no decoding, pricing or encoding.
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
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from bench_profiles import run as profiles_at_scale
from meterflow.contract.topics import ENERGY_COSTS, LOCATIONS, METER_RECORDS
from meterflow.kafka_admin import bootstrap_servers, delete_topics_with_prefix
from meterflow.models import dumps, loads
from meterflow.settings import Settings
from meterflow.stream.producing import demo_location_id, synthetic_records
from peer_venv import peer_python
from scale_out import measure_scale_out
from support import MF, ROOT, CpuSampler, create_output_topic, preload, stop_process, worker_env

BARE_OUT = "bare-costs"
PEER_OUT = "quix-costs"
PEER = Path(__file__).with_name("quix_peer.py")
TARGET_RATE = 5000.0
TARGET_RATIO = 0.30  # of the bare loop (issue 16)
TARGET_PEER_RATIO = 1.0  # of the Quix Streams peer (issue 16)
TARGET_P99_MS = 100.0


# --- the bare loop (run as a subprocess: `bench_pipeline.py --bare-loop IN OUT GROUP`) ---


async def bare_loop(bootstrap: str, source: str, sink: str, group: str) -> None:
    """Consume, produce unchanged, await delivery, commit: at-least-once with no processing."""
    consumer = AIOKafkaConsumer(
        source,
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=1000,
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=2, acks="all")
    await consumer.start()
    await producer.start()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    try:
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=100)
            futures = [
                await producer.send(sink, value=message.value, key=message.key)
                for messages in batches.values()
                for message in messages
            ]
            if futures:
                await asyncio.gather(*futures)
                await consumer.commit()
    finally:
        await producer.stop()
        await consumer.stop()


# --- measurement helpers ---


async def output_timestamps(
    settings: Settings, topic: str, expected: int, limit_s: float
) -> list[int]:
    """Record timestamps (ms) of the first `expected` records of `topic`, waiting for them."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers(settings), enable_auto_commit=False
    )
    await consumer.start()
    stamps: list[int] = []
    try:
        partitions = [TopicPartition(topic, p) for p in range(settings.topic_partitions)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        deadline = time.monotonic() + limit_s
        while len(stamps) < expected:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{topic}: {len(stamps)} of {expected} records after {limit_s}s")
            for messages in (await consumer.getmany(timeout_ms=500, max_records=5000)).values():
                stamps.extend(m.timestamp for m in messages)
    finally:
        await consumer.stop()
    return sorted(stamps)[:expected]


def rate_of(stamps: list[int]) -> float:
    span_s = (stamps[-1] - stamps[0]) / 1000
    return (len(stamps) - 1) / span_s if span_s > 0 else float("inf")


def latency_records(locations: list[str], count: int, tag: str) -> Iterator[dict[str, Any]]:
    for index, document in enumerate(synthetic_records(locations, count)):
        document["record_reference_id"] = f"{tag}:{index}"
        yield document


async def measure_latency(
    settings: Settings, out_topic: str, locations: list[str], rate: float, seconds: float, tag: str
) -> list[float]:
    """Send at `rate` for `seconds`; return send->receive latencies (ms) seen on `out_topic`."""
    count = int(rate * seconds)
    sent_at: dict[str, float] = {}
    received: list[float] = []
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers(settings), enable_auto_commit=False
    )
    await consumer.start()
    partitions = [TopicPartition(out_topic, p) for p in range(settings.topic_partitions)]
    consumer.assign(partitions)
    await consumer.seek_to_end(*partitions)
    for tp in partitions:
        await consumer.position(tp)

    async def receive() -> None:
        while len(received) < count:
            batches = await consumer.getmany(timeout_ms=50)
            now = time.perf_counter()
            for messages in batches.values():
                for message in messages:
                    document = loads(message.value)
                    reference = (document.get("request") or document).get("record_reference_id")
                    if isinstance(reference, str) and reference in sent_at:
                        received.append((now - sent_at[reference]) * 1000)

    receiver = asyncio.create_task(receive())
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap_servers(settings), linger_ms=0, acks=1)
    await producer.start()
    try:
        started = time.perf_counter()
        for index, document in enumerate(latency_records(locations, count, tag)):
            delay = started + index / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            sent_at[document["record_reference_id"]] = time.perf_counter()
            await producer.send(
                settings.topic(METER_RECORDS),
                value=dumps(document),
                key=document["location_id"].encode(),
            )
        await producer.flush()
        await asyncio.wait_for(receiver, timeout=seconds + 60)
    finally:
        receiver.cancel()
        await producer.stop()
        await consumer.stop()
    warmup = int(rate)  # the first second
    return received[warmup:] if len(received) > warmup * 2 else received


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def start_worker(
    settings: Settings,
    workdir: Path,
    profile: bool,
    store: str = "memory://",
    level: str = "WARNING",
    name: str = "worker",
    **extra_env: str,
) -> subprocess.Popen[bytes]:
    """A `meterflow worker` process; its log is `workdir/{name}.log`, its state its own."""
    data = "data" if name == "worker" else f"{name}-data"
    env = worker_env(settings, workdir, store=store, level=level, data=data, **extra_env)
    command = [MF, "worker", "--no-api"]
    if profile:
        command = [
            sys.executable,
            "-m",
            "pyinstrument",
            "-r",
            "text",
            "--show-all",
            "-o",
            str(workdir / "worker-profile.txt"),
            MF,
            "worker",
            "--no-api",
        ]
    log = (workdir / f"{name}.log").open("ab")
    return subprocess.Popen(command, env=env, stdout=log, stderr=log)


# --- the run ---


async def run(args: argparse.Namespace, records: int, latency_s: float) -> int:
    if args.workers > 1:  # on its own: with the contenders too it would take over 5 minutes
        await measure_scale_out(
            args.workers, records, args.locations, ROOT / ".local" / "bench", start_worker
        )
        return 0
    peer = None if args.no_peer else peer_python()  # before any timing: may take a minute
    prefix = f"bench{uuid.uuid4().hex[:8]}-"
    settings = Settings(topic_prefix=prefix, app_id="bench", topic_partitions=6)
    try:
        await measure(
            settings, records, args.locations, args.latency_rate, latency_s, args.profile, peer
        )
    finally:
        deleted = await delete_topics_with_prefix(settings, prefix)
        print(f"deleted the {len(deleted)} topics {prefix}*")
    return 0


async def peer_throughput(settings: Settings, python: Path, records: int) -> tuple[float, float]:
    """Records/s of the Quix Streams peer draining the preloaded input (first to last output),
    and its CPU µs per record over the same span."""
    peer = subprocess.Popen(  # noqa: ASYNC220 - started once, never awaited on
        [
            str(python),
            "-W",
            "ignore",
            str(PEER),
            settings.kafka_bootstrap,
            settings.topic(METER_RECORDS),
            settings.topic(PEER_OUT),
            settings.topic(LOCATIONS),
            f"{settings.topic_prefix}quix",
        ],
    )
    cpu = CpuSampler(peer.pid).start()
    try:
        stamps = await output_timestamps(settings, settings.topic(PEER_OUT), records, 1200)
    finally:
        cpu.stop()
        stop_process(peer)
    return rate_of(stamps), cpu.us_per_record(stamps)


async def measure(
    settings: Settings,
    records: int,
    locations_n: int,
    latency_rate: float,
    latency_s: float,
    profile: bool,
    peer_python: Path | None,
) -> None:
    prefix = settings.topic_prefix
    workdir = ROOT / ".local" / "bench" / prefix.rstrip("-")
    workdir.mkdir(parents=True, exist_ok=True)
    locations = [demo_location_id(i) for i in range(locations_n)]
    profiles, sent = await preload(settings, locations, synthetic_records(locations, records))
    await create_output_topic(settings, settings.topic(BARE_OUT))
    await create_output_topic(settings, settings.topic(PEER_OUT))
    print(f"topics {prefix}* with {settings.topic_partitions} partitions; work dir {workdir}")
    print(f"published {profiles.sent} profiles (5-period TOU)")
    print(f"preloaded {sent.sent} meter records ({sent.rate:,.0f}/s)")

    # 1. bare loop
    bare = subprocess.Popen(  # noqa: ASYNC220 - started once, never awaited on
        [
            sys.executable,
            __file__,
            "--bare-loop",
            settings.kafka_bootstrap,
            settings.topic(METER_RECORDS),
            settings.topic(BARE_OUT),
            f"{prefix}bare",
        ],
    )
    try:
        stamps = await output_timestamps(settings, settings.topic(BARE_OUT), records, 600)
        bare_rate = rate_of(stamps)
        print(f"bare loop: {bare_rate:,.0f} records/s")
        bare_lat = await measure_latency(
            settings, settings.topic(BARE_OUT), locations, latency_rate, latency_s, "bare"
        )
    finally:
        stop_process(bare)

    # 2. the Quix Streams peer (throughput only): it reads the bare loop's latency records too
    backlog = records + int(latency_rate * latency_s)
    peer_rate = peer_cpu = None
    if peer_python is not None:
        peer_rate, peer_cpu = await peer_throughput(settings, peer_python, backlog)
        print(f"quix streams peer: {peer_rate:,.0f} records/s, {peer_cpu:.1f} µs CPU/record")

    # 3. meterflow worker
    worker = start_worker(settings, workdir, profile)
    cpu = CpuSampler(worker.pid).start()
    try:
        # The bare loop's latency records are in the input too: drain them all before the
        # latency run, or it would measure a backlog. The rate is over the whole drain.
        backlog = records + int(latency_rate * latency_s)
        stamps = await output_timestamps(settings, settings.topic(ENERGY_COSTS), backlog, 1200)
        cpu.stop()
        worker_rate, worker_cpu = rate_of(stamps), cpu.us_per_record(stamps)
        print(f"meterflow worker: {worker_rate:,.0f} records/s, {worker_cpu:.1f} µs CPU/record")
        worker_lat = await measure_latency(
            settings, settings.topic(ENERGY_COSTS), locations, latency_rate, latency_s, "worker"
        )
    finally:
        stop_process(worker, signal.SIGINT if profile else signal.SIGTERM)

    ratio = worker_rate / bare_rate
    print()
    print(
        f"records: {records:,}, locations: {locations_n:,}, partitions: {settings.topic_partitions}"
    )
    if peer_rate is not None:
        print(
            f"throughput (rec/s): worker {worker_rate:,.0f}, quix peer {peer_rate:,.0f}, "
            f"bare loop {bare_rate:,.0f}; worker/peer {worker_rate / peer_rate:.2f}, "
            f"worker/bare {ratio:.2f}, peer/bare {peer_rate / bare_rate:.2f}"
        )
        assert peer_cpu is not None
        print(
            f"CPU per record (µs, whole process, first to last output): worker "
            f"{worker_cpu:.1f}, quix peer {peer_cpu:.1f}; peer/worker {peer_cpu / worker_cpu:.2f} "
            "(the rate ratio the CPU alone would give)"
        )
    print(f"{'':24}{'worker':>12}{'bare loop':>12}{'ratio':>8}")
    print(f"{'throughput (rec/s)':24}{worker_rate:>12,.0f}{bare_rate:>12,.0f}{ratio:>8.2f}")
    for name, q in (("p50", 0.50), ("p99", 0.99)):
        w, b = percentile(worker_lat, q), percentile(bare_lat, q)
        print(f"{f'latency {name} (ms) @{latency_rate:.0f}/s':24}{w:>12.1f}{b:>12.1f}{w / b:>8.2f}")
    print(
        f"{'latency mean (ms)':24}{statistics.fmean(worker_lat):>12.1f}"
        f"{statistics.fmean(bare_lat):>12.1f}"
    )
    p99 = percentile(worker_lat, 0.99)
    checks = [
        (f"worker >= {TARGET_RATE:,.0f} rec/s", worker_rate >= TARGET_RATE),
        (f"worker >= {TARGET_RATIO:.0%} of bare loop", ratio >= TARGET_RATIO),
        (f"p99 < {TARGET_P99_MS:.0f} ms at {latency_rate:.0f}/s", p99 < TARGET_P99_MS),
    ]
    if peer_rate is not None:
        checks.append(
            (
                f"worker >= {TARGET_PEER_RATIO:.1f}x the Quix Streams peer",
                worker_rate >= TARGET_PEER_RATIO * peer_rate,
            )
        )
    for label, ok in checks:
        print(f"target {label}: {'met' if ok else 'NOT met'}")
    if profile:
        print(f"worker profile: {workdir / 'worker-profile.txt'}")


def main() -> int:
    if len(sys.argv) == 6 and sys.argv[1] == "--bare-loop":
        asyncio.run(bare_loop(*sys.argv[2:6]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20k records, 5 s latency run")
    parser.add_argument("--records", type=int, default=None)
    parser.add_argument("--locations", type=int, default=1000)
    parser.add_argument("--latency-rate", type=float, default=500.0)
    parser.add_argument("--profile", action="store_true", help="run the worker under pyinstrument")
    parser.add_argument("--no-peer", action="store_true", help="leave out the Quix Streams peer")
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="only measure N workers in one group against one worker (same run; scale_out.py)",
    )
    parser.add_argument(
        "--recovery",
        type=int,
        metavar="N",
        default=None,
        help="only measure profile table recovery with N profiles",
    )
    args = parser.parse_args()
    if args.recovery:  # now bench_profiles.py: first read, restart, memory, both stores
        return asyncio.run(
            profiles_at_scale(args.recovery, 60, ["memory://", "rocksdb://"], "WARNING", "shared")
        )
    records = args.records or (20_000 if args.quick else 100_000)
    latency_s = 5.0 if args.quick else 15.0
    return asyncio.run(run(args, records, latency_s))


if __name__ == "__main__":
    raise SystemExit(main())
