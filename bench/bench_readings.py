"""Readings benchmark: readings/s through the readings agent vs records/s through the cost agent.

    .venv/bin/python bench/bench_readings.py                 # 50k of each, 1,000 meters
    .venv/bin/python bench/bench_readings.py --count 20000 --rounds 2

Each round runs both paths, in alternating order, each on its own topics (fresh prefix) with
one `meterflow worker` (`memory://`, 6 partitions, 5-period TOU profiles):

- interval path: `count` half-hourly records preloaded on `meter-records`;
- readings path: `count` readings preloaded on `meter-readings` (round-robin over the meters,
  every reading after a meter's first one is an interval), i.e. parse, table read, state
  update with its changelog write, derived record, `cost_payload`.

The rate is first to last output timestamp on `energy-costs` (start-up and the readings'
baselines do not count). Target (issue 14): readings/s >= 80 % of records/s. Each path's
worker CPU per output over that same span is printed too (`support.CpuSampler`): this VM's
speed drifts from one path to the next, which moves a rate far more than CPU per output, so
the CPU ratio (records' CPU per cost / readings') says more about a change than one rate
ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from bench_pipeline import output_timestamps, rate_of, start_worker
from meterflow.contract.topics import ENERGY_COSTS, METER_READINGS
from meterflow.costing.readings import utc_text
from meterflow.kafka_admin import delete_topics_with_prefix
from meterflow.stream.producing import demo_location_id, synthetic_records
from support import CpuSampler, bench_space, preload, stop_process

TARGET_RATIO = 0.80
T0 = datetime(2026, 1, 5, tzinfo=UTC)


def readings(meters: list[str], count: int) -> Iterator[dict[str, Any]]:
    """`count` readings after one baseline per meter: half-hourly, register up 4-1,996 Wh."""
    for index in range(count + len(meters)):
        location_id = meters[index % len(meters)]
        slot = index // len(meters)
        yield {
            "location_id": location_id,
            "time": utc_text(T0 + timedelta(minutes=30 * slot)),
            "value": Decimal(slot * 1000 + index % 997),  # up 4 to 1,996 Wh
            "units": "WH",
        }


async def one_path(kind: str, count: int, meters: int) -> tuple[float, float]:
    """Preload, start a worker, return the output rate (costs/s) of `kind` and the worker's
    CPU µs per cost."""
    settings, workdir = bench_space("rdg")
    locations = [demo_location_id(i) for i in range(meters)]
    try:
        if kind == "records":
            await preload(settings, locations, synthetic_records(locations, count))
        else:
            await preload(settings, locations, readings(locations, count), METER_READINGS)
        worker = start_worker(settings, workdir, profile=False)
        cpu = CpuSampler(worker.pid).start()
        try:
            stamps = await output_timestamps(
                settings, settings.topic(ENERGY_COSTS), count, limit_s=600
            )
        finally:
            cpu.stop()
            stop_process(worker)
        return rate_of(stamps), cpu.us_per_record(stamps)
    finally:
        await delete_topics_with_prefix(settings, settings.topic_prefix)


async def run(count: int, meters: int, rounds: int) -> int:
    ratios, cpu_ratios = [], []
    for round_ in range(rounds):
        order = ("records", "readings") if round_ % 2 == 0 else ("readings", "records")
        rates, cpus = {}, {}
        for kind in order:
            started = time.monotonic()
            rates[kind], cpus[kind] = await one_path(kind, count, meters)
            print(
                f"round {round_ + 1} {kind:8}: {rates[kind]:8,.0f}/s, {cpus[kind]:5.1f} µs CPU "
                f"per cost ({time.monotonic() - started:.0f} s with set-up)",
                flush=True,
            )
        ratios.append(rates["readings"] / rates["records"])
        cpu_ratios.append(cpus["records"] / cpus["readings"])
        print(
            f"round {round_ + 1} readings/records: {ratios[-1]:.2f} "
            f"(CPU per cost, records/readings: {cpu_ratios[-1]:.2f})",
            flush=True,
        )
    met = min(ratios) >= TARGET_RATIO
    print(
        f"readings/s vs records/s: {', '.join(f'{r:.2f}' for r in ratios)} "
        f"(target >= {TARGET_RATIO:.2f}: {'met' if met else 'NOT met'}); "
        f"CPU per cost, records/readings: {', '.join(f'{r:.2f}' for r in cpu_ratios)}"
    )
    return 0 if met else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=50_000)
    parser.add_argument("--meters", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    return asyncio.run(run(args.count, args.meters, args.rounds))


if __name__ == "__main__":
    sys.exit(main())
