"""The cost agent on the default store, RocksDB, with batches that span partitions.

faust's RocksDB store reads a partitioned table from the database of the *current event's*
partition only (`RocksDB._get`); the cost agent takes events in batches (`take_events`) and looks
each record's profile up while it walks the batch. A lookup made under another partition's event
finds nothing and the record is dead-lettered `unknown_location`. Memory storage hides this (one
dict for all partitions), so this runs a real worker with `rocksdb://`, many locations over three
partitions, records produced in bursts (one batch holds several partitions), before and after a
restart (the profiles then come from the recovered RocksDB databases only).
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from test_stream_pipeline import MF, Pipeline, Worker, eventually, fixed_profile, pipeline, record

from meterflow.contract.topics import METER_RECORDS
from meterflow.ids import energy_cost_id, meter_record_id_for_offset
from meterflow.models import dumps

pytestmark = pytest.mark.integration

LOCATIONS = [f"loc_rdb{i}" for i in range(24)]


def rate_of(location: str) -> Decimal:
    """A rate per location, so a profile read from the wrong key would show in the cost."""
    return Decimal(int(location.removeprefix("loc_rdb")) + 1) / 100


def rocksdb_worker(pipe: Pipeline) -> Worker:
    """A worker on `rocksdb://` with one data directory shared by its restarts."""
    n = len(pipe.workers)
    log_path = pipe.tmp / f"worker-{n}.log"
    env = pipe.env() | {"MF_STORE": "rocksdb://", "MF_DATA_DIR": str(pipe.tmp / "data")}
    with log_path.open("ab") as log:
        proc = subprocess.Popen([MF, "worker", "--no-api"], env=env, stdout=log, stderr=log)
    worker = Worker(proc, log_path)
    pipe.workers.append(worker)
    return worker


async def burst(pipe: Pipeline, rounds: int) -> dict[str, Decimal]:
    """Send `rounds` records of every location, interleaved, without waiting for each; returns
    the expected cost by result id (2 kWh at the location's rate)."""
    assert pipe.producer is not None
    topic = pipe.settings.topic(METER_RECORDS)
    futures: list[tuple[str, Any]] = []
    for index in range(rounds):
        start = f"2026-01-05T{8 + index // 2:02d}:{30 * (index % 2):02d}:00Z"
        end = f"2026-01-05T{8 + (index + 1) // 2:02d}:{30 * ((index + 1) % 2):02d}:00Z"
        for location in LOCATIONS:
            document = dumps(record(location, energy="2", start=start, end=end))
            future = await pipe.producer.send(topic, document, key=location.encode())
            futures.append((location, future))
    expected: dict[str, Decimal] = {}
    partitions = set()
    for location, future in futures:
        metadata = await future
        partitions.add(metadata.partition)
        record_id = meter_record_id_for_offset(topic, metadata.partition, metadata.offset)
        expected[energy_cost_id(record_id)] = 2 * rate_of(location)
    assert partitions == set(range(pipe.settings.topic_partitions))
    return expected


async def test_batches_spanning_partitions_find_every_profile_in_rocksdb(
    kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    async with pipeline(kafka_bootstrap, topic_prefix, tmp_path, partitions=3) as pipe:
        for location in LOCATIONS:
            await pipe.put_profile(fixed_profile(location, str(rate_of(location))))
        worker = rocksdb_worker(pipe)
        await pipe.wait_ready(worker)

        def priced(expected: dict[str, Decimal]) -> bool:
            return {c["id"] for c in pipe.costs} >= set(expected) or bool(pipe.dead_letters)

        before = await burst(pipe, 4)
        await eventually(lambda: priced(before), "the first burst", worker)
        assert not pipe.dead_letters, pipe.dead_letters[:3]

        worker.proc.send_signal(signal.SIGTERM)
        worker.proc.wait(timeout=30)
        restarted = rocksdb_worker(pipe)
        await pipe.wait_ready(restarted)
        after = await burst(pipe, 4)
        await eventually(lambda: priced(after), "the burst after the restart", restarted)
        await asyncio.sleep(1)  # a dead letter behind the last cost has arrived by now

        assert not pipe.dead_letters, [d["error"] for _, d in pipe.dead_letters[:3]]
        expected = before | after
        costs = {c["id"]: Decimal(str(c["data"]["cost"]["value"])) for c in pipe.costs}
        assert set(costs) == set(expected)
        assert costs == expected
        assert any((tmp_path / "data").rglob("*profiles*")), "no RocksDB files for the table"
