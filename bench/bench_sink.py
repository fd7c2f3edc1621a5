"""Sink throughput: results persisted per second from the topic, against a bare COPY baseline.

1. Produce N EnergyCost events (two breakdown items each) to a fresh topic.
2. Baseline, measured in the same run: the same rows (costs + breakdown, already built in memory)
   written with a bare asyncpg `copy_records_to_table` into the empty, migrated tables of a fresh
   database: the ceiling for getting these rows into PostgreSQL from Python.
3. The sink drains the topic into another fresh, migrated database: timed from its first record
   read to the checkpoint (database commit, then offset commit) that stores the last result.

Usage: .venv/bin/python bench/bench_sink.py [--quick] [--events N] [--batch-size N] [--linger-ms N]
                                            [--decode-chunk N] [--instances N]
                                            [--model-path] [--with-fk]
Prints rows/s of `energy_costs` for both and the ratio (target: >= 20,000 rows/s and >= 40 %).
`--instances N` runs N `meterflow sink` processes in one consumer group instead of one in-process
sink (timed from the first stored row). `--model-path` switches the text path off (every result
through `EnergyCost.model_validate` and binary COPY, the sink before `text_rows`), so the older
design can be measured in the same session.
`--with-fk` puts back, in both databases, the breakdown foreign key migration 0002 dropped.
4. Then, unless `--no-mixed`: as many events again on another topic, ~20 % of them duplicates
   of earlier results and ~10 % corrections (design §8), drained by a fresh sink into a fresh
   database: events/s and the ratio to the plain run above (both `count / drain time`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import secrets
import signal
import sys
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from meterflow.contract.columns import BREAKDOWN_COLUMNS, COST_COLUMNS
from meterflow.kafka_admin import delete_topics_with_prefix
from meterflow.models import EnergyCost, dumps, loads
from meterflow.settings import Settings
from meterflow.sink import Sink, SinkConfig, decode, service, sink_clients
from meterflow.sink.rows import Source, cost_rows

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # shared with the tests
from database_support import temporary_database
from samples import Item, energy_cost

KAFKA = os.environ.get("MF_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
DATABASE = os.environ.get(
    "MF_DATABASE_URL", "postgresql://meterflow:meterflow@127.0.0.1:5432/meterflow"
)
PARTITIONS = 6
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def event(n: int, version: int = 0) -> dict[str, Any]:
    """Result n; `version` > 0 is a correction of it (another energy, priced later)."""
    start = T0 + timedelta(minutes=30 * n)
    middle, end = start + timedelta(minutes=12), start + timedelta(minutes=30)
    e1 = Decimal("0.1") + Decimal(n % 1000) / Decimal(1_000_000) + Decimal(version) / 1000
    e2 = Decimal("0.25")
    r1, r2 = Decimal("0.2451"), Decimal("0.1234567")
    c1, c2 = (e1 * r1).quantize(Decimal("0.000001")), (e2 * r2).quantize(Decimal("0.000001"))
    device = f"dev_{n % 50}"
    location = f"loc_{n % 200}"
    return energy_cost(
        f"ecs_{n:012d}",
        f"mre_{n:012d}",
        start,
        end,
        [Item(start, middle, r1, e1, c1), Item(middle, end, r2, e2, c2)],
        request={
            "location_id": location,
            "device_id": device,
            "energy": e1 + e2,
            "start_time": start.isoformat(),
            "end_time": end.isoformat(),
            "session_reference_id": f"s{n // 48}",
        },
        time_created=T0 + timedelta(days=400, seconds=version),
        account_id=f"acc_{n % 10}",
        location_id=location,
        device_id=device,
        session_reference_id=f"s{n // 48}",
    )


DUPLICATES, CORRECTIONS = 0.20, 0.10


def mixed_stream(count: int) -> tuple[list[tuple[bytes, bytes]], int, int]:
    """`count` events of which ~20 % repeat an earlier result unchanged (a retry) and ~10 %
    correct one (new content), the rest new results; ids picked at random among the results
    sent before (seeded). (payloads, distinct results, corrections)."""
    rng = random.Random(13)
    payloads: list[tuple[bytes, bytes]] = []
    versions: dict[int, int] = {}  # result n -> its latest version
    for _ in range(count):
        draw = rng.random()
        if not versions or draw >= DUPLICATES + CORRECTIONS:
            n = len(versions)
            versions[n] = 0
        else:
            n = rng.randrange(len(versions))
            if draw >= DUPLICATES:
                versions[n] += 1
        payloads.append((f"loc_{n % 200}".encode(), dumps(event(n, versions[n]))))
    return payloads, len(versions), sum(versions.values())


# The schema before migration 0002, for `--with-fk` (measure both in one session).
RESTORE_FK = (
    "ALTER TABLE energy_cost_breakdown ADD CONSTRAINT energy_cost_breakdown_cost_id_fkey "
    "FOREIGN KEY (cost_id) REFERENCES energy_costs (id) ON DELETE CASCADE"
)


async def fresh_database(databases: contextlib.AsyncExitStack, *, with_fk: bool) -> str:
    """A new migrated database, dropped when `databases` closes."""
    url = await databases.enter_async_context(temporary_database(DATABASE, migrated=True))
    if with_fk:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(RESTORE_FK)
        finally:
            await conn.close()
    return url


async def produce(topic: str, payloads: list[tuple[bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=KAFKA, acks=1, linger_ms=20, max_batch_size=1 << 20
    )
    await producer.start()
    try:
        futures = [await producer.send(topic, value, key=key) for key, value in payloads]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def bare_copy(url: str, payloads: list[tuple[bytes, bytes]]) -> tuple[float, float]:
    """Seconds for a bare COPY of (the cost rows alone, the cost rows + their breakdown rows),
    rows built beforehand, each into the empty migrated tables."""
    built = [
        cost_rows(EnergyCost.model_validate(loads(value)), Source("bench", 0, i))
        for i, (_, value) in enumerate(payloads)
    ]
    costs = [rows.cost for rows in built]
    breakdown = [item for rows in built for item in rows.breakdown]
    conn = await asyncpg.connect(url)
    try:
        started = time.perf_counter()
        await conn.copy_records_to_table("energy_costs", records=costs, columns=COST_COLUMNS)
        costs_only = time.perf_counter() - started
        await conn.execute("TRUNCATE energy_costs, energy_cost_breakdown")  # no FK: name both
        started = time.perf_counter()
        async with conn.transaction():
            await conn.copy_records_to_table("energy_costs", records=costs, columns=COST_COLUMNS)
            await conn.copy_records_to_table(
                "energy_cost_breakdown", records=breakdown, columns=BREAKDOWN_COLUMNS
            )
        return costs_only, time.perf_counter() - started
    finally:
        await conn.close()


async def drain_with_processes(
    url: str, prefix: str, count: int, batch_size: int, instances: int
) -> tuple[float, float]:
    """Like `drain_with_sink`, with `instances` `meterflow sink` processes in one group; timed
    from the first stored row (their start-up is not comparable in-process)."""
    env = {
        **os.environ,
        "MF_KAFKA_BOOTSTRAP": KAFKA,
        "MF_DATABASE_URL": url,
        "MF_TOPIC_PREFIX": prefix,
        "MF_SINK_GROUP_ID": f"{prefix}sink",
        "MF_SINK_BATCH_SIZE": str(batch_size),
        "MF_SINK_HTTP_PORT": "0",
        "MF_LOG_LEVEL": "WARNING",
    }
    meterflow = str(Path(sys.executable).with_name("meterflow"))
    launched = time.perf_counter()
    procs = [
        await asyncio.create_subprocess_exec(meterflow, "sink", env=env) for _ in range(instances)
    ]
    conn = await asyncpg.connect(url)
    first_row: float | None = None
    try:
        while (stored := await conn.fetchval("SELECT count(*) FROM energy_costs")) < count:
            if first_row is None and stored:
                first_row = time.perf_counter()
            await asyncio.sleep(0.02)
        finished = time.perf_counter()
    finally:
        await conn.close()
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            await proc.wait()
    return finished - (first_row or launched), finished - launched


async def backends_cpu_s(url: str) -> float | None:
    """CPU seconds used so far by the other client backends of this database (the sink's
    connection), read from /proc; None when PostgreSQL is not a local process."""
    conn = await asyncpg.connect(url)
    try:
        pids = await conn.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND backend_type = 'client backend' AND pid <> pg_backend_pid()"
        )
    finally:
        await conn.close()
    try:
        ticks = sum(_cpu_ticks(row["pid"]) for row in pids)
    except OSError:
        return None
    return ticks / os.sysconf("SC_CLK_TCK") if pids else None


def _cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime, stime


async def drain_with_sink(
    url: str, prefix: str, count: int, batch_size: int, linger_s: float
) -> tuple[float, float, float, float | None]:
    """(seconds from first record read to the checkpoint that applied the last of `count`
    results (stored, found stored, or replacing), seconds including start-up,
    this process's CPU seconds over the first span, the PostgreSQL backend's CPU seconds)."""
    config = SinkConfig(
        bootstrap=KAFKA,
        database_url=url,
        costs_topic=f"{prefix}energy-costs",
        locations_topic=f"{prefix}locations",
        dead_letters_topic=f"{prefix}dead-letters",
        group_id=f"{prefix}sink",
        batch_size=batch_size,
        linger_s=linger_s,
        retry_max_s=5.0,
        statement_timeout_s=30.0,
    )
    sink = Sink(config, sink_clients(config))
    stop = asyncio.Event()
    launched = time.perf_counter()
    task = asyncio.create_task(sink.run(stop))
    first_read: float | None = None
    first_cpu = 0.0
    stats = sink.health.stats
    while stats.costs_inserted + stats.costs_already_stored + stats.costs_replaced < count:
        if task.done():
            task.result()
            raise RuntimeError("sink stopped early")
        if first_read is None and stats.records_read:
            first_read, first_cpu = time.perf_counter(), time.process_time()
        await asyncio.sleep(0.005)
    finished, cpu = time.perf_counter(), time.process_time() - first_cpu
    backend_cpu = await backends_cpu_s(url)
    stop.set()
    await task
    assert first_read is not None
    return finished - first_read, finished - launched, cpu, backend_cpu


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="20,000 events instead of 100,000")
    parser.add_argument("--events", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=Settings().sink_batch_size)
    parser.add_argument("--linger-ms", type=int, default=200)
    parser.add_argument(
        "--decode-chunk", type=int, default=None, help="records decoded per loop step"
    )
    parser.add_argument(
        "--instances", type=int, default=1, help="> 1: that many `meterflow sink` processes"
    )
    parser.add_argument(
        "--model-path",
        action="store_true",
        help="no text path: EnergyCost.model_validate + binary COPY (the path before text_rows)",
    )
    parser.add_argument(
        "--no-mixed",
        action="store_true",
        help="skip the second run (20 %% duplicates, 10 %% corrections)",
    )
    parser.add_argument(
        "--with-fk",
        action="store_true",
        help="both databases with the breakdown -> costs foreign key (the schema before 0002)",
    )
    args = parser.parse_args()
    if args.model_path:
        decode.text_cost_rows = lambda value, source: None
    if args.decode_chunk:
        service.DECODE_CHUNK = args.decode_chunk
    count = args.events or (20_000 if args.quick else 100_000)

    prefix = f"bench-{secrets.token_hex(4)}-"
    topic = f"{prefix}energy-costs"
    admin = AIOKafkaAdminClient(bootstrap_servers=KAFKA)
    await admin.start()
    databases = contextlib.AsyncExitStack()
    try:
        await admin.create_topics(
            [NewTopic(topic, PARTITIONS, 1), NewTopic(f"{prefix}locations", 1, 1)]
        )
        payloads = [(f"loc_{n % 200}".encode(), dumps(event(n))) for n in range(count)]
        size = sum(len(v) for _, v in payloads) / count
        print(
            f"events: {count:,} (~{size:.0f} bytes each, 2 breakdown items), "
            f"{PARTITIONS} partitions"
        )
        started = time.perf_counter()
        await produce(topic, payloads)
        print(f"produced in {time.perf_counter() - started:.1f} s")

        baseline_db = await fresh_database(databases, with_fk=args.with_fk)
        costs_only_s, copy_s = await bare_copy(baseline_db, payloads)
        baseline = count / copy_s

        sink_db = await fresh_database(databases, with_fk=args.with_fk)
        cpu_s: float | None = None
        backend_cpu_s: float | None = None
        if args.instances > 1:
            drain_s, wall_s = await drain_with_processes(
                sink_db, prefix, count, args.batch_size, args.instances
            )
        else:
            drain_s, wall_s, cpu_s, backend_cpu_s = await drain_with_sink(
                sink_db, prefix, count, args.batch_size, args.linger_ms / 1000
            )
        rate = count / drain_s
        conn = await asyncpg.connect(sink_db)
        try:
            stored = await conn.fetchval("SELECT count(*) FROM energy_costs")
            breakdown = await conn.fetchval("SELECT count(*) FROM energy_cost_breakdown")
        finally:
            await conn.close()
        if (stored, breakdown) != (count, 2 * count):
            raise RuntimeError(f"stored {stored} costs / {breakdown} breakdown rows of {count}")

        print(f"bare COPY, costs only:            {count / costs_only_s:>10,.0f} rows/s")
        print(f"bare COPY, costs + breakdown:     {baseline:>10,.0f} rows/s  <- baseline")
        print(
            f"sink x{args.instances}, topic -> Postgres:      {rate:>10,.0f} rows/s "
            f"({drain_s:.2f} s; "
            f"{count / wall_s:,.0f} rows/s incl. {wall_s - drain_s:.1f} s start-up)"
        )
        if cpu_s is not None:
            print(
                f"sink process CPU while draining:  {cpu_s / count * 1e6:>10.1f} µs/row "
                f"({cpu_s / drain_s:.0%} of one core)"
                + ("  [--model-path]" if args.model_path else "")
                + ("  [--with-fk]" if args.with_fk else "")
            )
        if backend_cpu_s is not None:
            print(
                f"PostgreSQL backend CPU (sink's):  {backend_cpu_s / count * 1e6:>10.1f} µs/row "
                f"({backend_cpu_s / drain_s:.0%} of one core)"
            )
        print(
            f"ratio sink / bare COPY (same rows): {rate / baseline:.0%}  "
            f"(vs costs-only COPY: {rate * costs_only_s / count:.0%}); "
            "target >= 20,000 rows/s and >= 40 %"
        )
        print("rows = energy_costs rows; each also writes 2 energy_cost_breakdown rows")
        if not args.no_mixed and args.instances == 1:
            await mixed_run(databases, prefix, count, args, rate)
    finally:
        await admin.close()
        await delete_topics_with_prefix(Settings(topic_prefix=prefix), prefix)
        await databases.aclose()


async def mixed_run(
    databases: contextlib.AsyncExitStack,
    prefix: str,
    count: int,
    args: argparse.Namespace,
    plain_rate: float,
) -> None:
    """The same number of events, 20 % of them duplicates and 10 % corrections of earlier
    results, drained by a fresh sink into a fresh database; compared with the plain run above."""
    mixed = f"{prefix}mixed-"
    admin = AIOKafkaAdminClient(bootstrap_servers=KAFKA)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(f"{mixed}energy-costs", PARTITIONS, 1), NewTopic(f"{mixed}locations", 1, 1)]
        )
    finally:
        await admin.close()
    payloads, results, corrections = mixed_stream(count)
    await produce(f"{mixed}energy-costs", payloads)
    url = await fresh_database(databases, with_fk=args.with_fk)
    drain_s, _, cpu_s, backend_cpu_s = await drain_with_sink(
        url, mixed, count, args.batch_size, args.linger_ms / 1000
    )
    conn = await asyncpg.connect(url)
    try:
        stored = await conn.fetchval("SELECT count(*) FROM energy_costs")
        revisions = await conn.fetchval("SELECT sum(revision - 1) FROM energy_costs")
        history = await conn.fetchval("SELECT count(*) FROM energy_cost_history")
    finally:
        await conn.close()
    if (stored, revisions, history) != (results, corrections, corrections):
        raise RuntimeError(
            f"stored {stored} rows, {revisions} revisions, {history} history rows; "
            f"expected {results}, {corrections}, {corrections}"
        )
    rate = count / drain_s
    print(
        f"mixed: {count:,} events = {results:,} results + {count - results - corrections:,} "
        f"duplicates + {corrections:,} corrections"
    )
    print(
        f"sink, mixed events -> Postgres:   {rate:>10,.0f} events/s ({drain_s:.2f} s; "
        f"{results / drain_s:,.0f} rows/s stored, {corrections / drain_s:,.0f} replaced/s)"
    )
    print(
        f"sink process CPU while draining:  {cpu_s / count * 1e6:>10.1f} µs/event"
        + (f"; PostgreSQL {backend_cpu_s / count * 1e6:.1f} µs/event" if backend_cpu_s else "")
    )
    print(f"ratio mixed / plain (events/s, same run): {rate / plain_rate:.0%}")


if __name__ == "__main__":
    asyncio.run(main())
