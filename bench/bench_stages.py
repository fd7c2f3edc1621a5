"""Where a worker's time per record goes, stage by stage (issue 16 item 2).

    .venv/bin/python bench/bench_stages.py                 # 600k records, 5 s + 8 s windows
    .venv/bin/python bench/bench_stages.py --records 800000 --window 10

Preloads fresh topics the way `bench_pipeline.py` does (one 5-period TOU profile per location,
then the records), starts one `meterflow worker`, waits for its first output (start-up and the
profiles catch-up do not count), then measures its CPU time per record priced over
`--cpu-window` seconds, unsampled (process and main thread, from /proc: robust to other load
on the machine, unlike a records/s figure), then samples its main thread with py-spy
(`--idle`, 250 Hz)
for `--window` seconds while it drains the backlog. The records priced in that window are read
from the output topic's end offsets before and after, so every stage comes out in µs of the
main thread's wall time per record priced:

- fetch: faust's fetch loop and `getmany` (the hand-over from the consumer thread);
- conductor: `Conductor.on_message` and the topic callback (faust's cython
  `ConductorHandler`, invisible to py-spy: it shows as its caller; decode, queue put);
- stream iterator: the stream's `__aiter__` (cython `StreamIterator`), processors,
  `take_events`' passive drainer (`add_to_buffer`);
- take_events: the generator that yields the batches, less its acks;
- ack: `Stream.ack`, `Event.ack`, `Message.ack`, `Consumer.ack`;
- commit: the offset commit and the producer flush before it;
- agent body: `RecordPricer.on_events` (pricing, encoding, sending) and the gap guard;
- event loop: asyncio's own frames (`_run_once`, callbacks) outside all of the above;
- idle: waiting in `select`.

py-spy's sampling pauses the process briefly (its default): the window's records/s is a little
under an unsampled run's. A frame is given to the stage of the innermost stage frame on its
stack. The CPython frames of the cython stream iterator show as `_c_aiter`.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import subprocess
import sys
import time
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition

from bench_pipeline import start_worker
from meterflow.contract.topics import ENERGY_COSTS
from meterflow.kafka_admin import bootstrap_servers, delete_topics_with_prefix
from meterflow.settings import Settings
from meterflow.stream.producing import demo_location_id, synthetic_records
from support import bench_space, cpu_ticks, preload, stop_process

PY_SPY = str(Path(sys.executable).with_name("py-spy"))
RATE_HZ = 250

# (stage, file fragment, function names or None for any): the innermost match on a stack wins
RULES: list[tuple[str, str, frozenset[str] | None]] = [
    ("idle", "selectors.py", frozenset({"select"})),
    ("agent body", "meterflow/stream/agents.py", frozenset({"on_events"})),
    ("agent body", "meterflow/stream/readings.py", frozenset({"on_events"})),
    ("agent body", "meterflow/stream/faust_fixes.py", frozenset({"admit", "handling"})),
    (
        "commit",
        "faust/transport/consumer.py",
        frozenset(
            {
                "commit",
                "_commit",
                "_commit_offsets",
                "_commit_tps",
                "force_commit",
                "_handle_attached",
            }
        ),
    ),
    ("commit", "faust/transport/producer.py", frozenset({"flush"})),
    ("ack", "faust/", frozenset({"ack", "on_final_ack", "_ack_events"})),
    ("ack", "meterflow/stream/faust_fixes.py", frozenset({"ack_only_tracked"})),
    ("take_events", "faust/streams.py", frozenset({"take_events"})),
    ("take_events", "meterflow/stream/", frozenset({"take_batches", "batches"})),
    ("stream iterator", "faust/streams.py", None),
    ("conductor", "faust/transport/conductor.py", None),
    ("conductor", "meterflow/stream/batches.py", frozenset({"on_message"})),
    ("conductor", "faust/topics.py", None),
    ("conductor", "faust/channels.py", None),
    ("conductor", "mode/utils/queues.py", None),
    (
        "fetch",
        "faust/transport/consumer.py",
        frozenset({"_drain_messages", "getmany", "_wait_next_records"}),
    ),
    ("fetch", "faust/transport/drivers/aiokafka.py", None),
    ("fetch", "mode/threads.py", None),
    ("fetch", "meterflow/stream/faust_fixes.py", frozenset({"wait_first"})),
    ("agent loop", "meterflow/stream/app.py", None),
]
STAGES = [
    "fetch",
    "conductor",
    "stream iterator",
    "take_events",
    "ack",
    "commit",
    "agent body",
    "agent loop",
    "event loop",
    "other",
    "idle",
]


def stage_of(frames: list[str]) -> str:
    for frame in reversed(frames):  # leaf last in py-spy's raw format
        qualname, _, where = frame.partition(" (")
        name = qualname.rpartition(".")[2]
        for stage, fragment, names in RULES:
            if fragment in where and (names is None or name in names):
                return stage
    if any("asyncio/" in f for f in frames):
        return "event loop"
    return "other"


def read_profile(path: Path) -> tuple[collections.Counter[str], int]:
    """Samples per stage of the thread that runs the agents (the main thread)."""
    by_thread: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        thread, body = frames[0], frames[1:]  # "thread (id): name", then root to leaf
        by_thread[thread][stage_of(body)] += int(count)
    main = max(by_thread.values(), key=lambda c: c["agent body"])
    return main, sum(main.values())


def cpu_of(pid: int) -> tuple[int, int]:
    return cpu_ticks(pid), cpu_ticks(pid, thread=pid)


async def outputs(settings: Settings) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers(settings))
    await consumer.start()
    try:
        tps = [TopicPartition(settings.topic(ENERGY_COSTS), p) for p in range(6)]
        return sum((await consumer.end_offsets(tps)).values())
    finally:
        await consumer.stop()


async def measure(records: int, window_s: float, locations_n: int, cpu_window_s: float) -> None:
    settings, workdir = bench_space("stages")
    locations = [demo_location_id(i) for i in range(locations_n)]
    try:
        await preload(settings, locations, synthetic_records(locations, records))
        worker = start_worker(settings, workdir, profile=False)
        try:
            deadline = time.monotonic() + 180
            while await outputs(settings) < 500:
                if time.monotonic() > deadline:
                    raise TimeoutError("the worker priced nothing in 180 s")
                await asyncio.sleep(0.2)
            cpu_before, out_before = (
                cpu_of(worker.pid),
                await outputs(settings),
            )
            await asyncio.sleep(cpu_window_s)
            cpu_after, out_after = (
                cpu_of(worker.pid),
                await outputs(settings),
            )
            profile = workdir / "stages.txt"
            before, started = await outputs(settings), time.monotonic()
            subprocess.run(  # noqa: ASYNC221 - the measurement itself
                [
                    PY_SPY,
                    "record",
                    "--pid",
                    str(worker.pid),
                    "--idle",
                    "--threads",
                    "--rate",
                    str(RATE_HZ),
                    "--duration",
                    str(int(window_s)),
                    "--format",
                    "raw",
                    "--output",
                    str(profile),
                ],
                check=True,
                capture_output=True,
            )
            after, elapsed = await outputs(settings), time.monotonic() - started
        finally:
            stop_process(worker)
    finally:
        await delete_topics_with_prefix(settings, settings.topic_prefix)
    cpu_priced = out_after - out_before
    per_tick = 1e6 / os.sysconf("SC_CLK_TCK")
    print(
        f"unsampled {cpu_window_s:.0f} s: {cpu_priced:,} records; CPU per record: "
        f"process {(cpu_after[0] - cpu_before[0]) * per_tick / cpu_priced:.1f} us, "
        f"main thread {(cpu_after[1] - cpu_before[1]) * per_tick / cpu_priced:.1f} us"
    )
    priced = after - before
    if after >= records:  # the worker then idled for want of records: its stages mean nothing
        raise SystemExit(
            f"the backlog ran out inside the window ({after:,} of {records:,} priced): "
            "run again with more --records"
        )
    stages, total = read_profile(profile)
    wall_us = total / RATE_HZ * 1e6
    print(
        f"{priced:,} records priced in the window ({priced / elapsed:,.0f}/s while sampled); "
        f"{total:,} samples of the main thread"
    )
    print(f"{'stage':18}{'share':>8}{'us/record':>11}")
    for stage in STAGES:
        share = stages[stage] / total
        print(f"{stage:18}{share:>8.1%}{wall_us * share / priced:>11.1f}")
    busy = total - stages["idle"]
    print(f"{'busy total':18}{busy / total:>8.1%}{wall_us * busy / total / priced:>11.1f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=600_000)  # 13 s at 40,000/s
    parser.add_argument("--window", type=float, default=8.0)
    parser.add_argument("--locations", type=int, default=1000)
    parser.add_argument("--cpu-window", type=float, default=5.0, help="unsampled CPU window (s)")
    args = parser.parse_args()
    asyncio.run(measure(args.records, args.window, args.locations, args.cpu_window))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
