"""Cumulative register readings through real `meterflow worker` processes (design §10): the
rules, SIGKILLs at random moments, and the readings table surviving a restart.

The crash test is the proof of docs/stream.md, "Readings: crash safety": whatever the moment of
the kill, every meter's priced intervals tile its readings exactly, each once by id, and the
costs add up to the offline sum, on the topic and in Postgres (the sink run over the result).
The same holds with two workers and rebalances in the middle of the stream.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import signal
import subprocess
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from test_sink_pipeline import fetch, running, sink_config, wait_drained
from test_stream_pipeline import (
    MF,
    Pipeline,
    Worker,
    eventually,
    fixed_profile,
    pipeline,
    record,
)

from meterflow.contract.topics import METER_READINGS
from meterflow.costing import price_payload
from meterflow.costing.readings import utc_text
from meterflow.ids import energy_cost_id, meter_record_id_for_reference, reading_interval_reference
from meterflow.models import EnergyCost, LocationProfile, dumps, loads
from meterflow.sink import Sink, sink_clients
from meterflow.stream.producing import demo_profile

pytestmark = pytest.mark.integration

T0 = datetime(2026, 1, 5, tzinfo=UTC)


def reading(location_id: str, minutes: int, wh: int | str, **extra: Any) -> dict[str, Any]:
    return {
        "location_id": location_id,
        "time": utc_text(T0 + timedelta(minutes=minutes)),
        "value": wh if isinstance(wh, str) else Decimal(wh),
        "units": "WH",
        **extra,
    }


def interval_cost_id(
    account: str, object_id: str, start_min: int, end_min: int, direction: str = "INBOUND"
) -> str:
    reference = reading_interval_reference(
        object_id,
        direction,
        utc_text(T0 + timedelta(minutes=start_min)),
        utc_text(T0 + timedelta(minutes=end_min)),
    )
    return energy_cost_id(meter_record_id_for_reference(account, False, object_id, reference))


def start_worker(pipe: Pipeline, *, store: str = "memory://", data: str | None = None) -> Worker:
    """`Pipeline.start_worker` with a chosen store and data directory."""
    n = len(pipe.workers)
    log_path = pipe.tmp / f"worker-{n}.log"
    env = pipe.env() | {"MF_STORE": store, "MF_DATA_DIR": str(pipe.tmp / (data or f"data-{n}"))}
    with log_path.open("ab") as log:
        proc = subprocess.Popen([MF, "worker", "--no-api"], env=env, stdout=log, stderr=log)
    worker = Worker(proc, log_path)
    pipe.workers.append(worker)
    return worker


def letters(pipe: Pipeline, code: str) -> set[int]:
    """Input offsets of the readings dead-lettered with `code` (each once; one partition)."""
    return {
        letter["source"]["offset"]
        for _, letter in pipe.dead_letters
        if letter["error"]["code"] == code
        and letter["source"]["topic"] == pipe.settings.topic(METER_READINGS)
    }


async def test_readings_follow_every_rule_of_design_10(
    kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    async with pipeline(kafka_bootstrap, topic_prefix, tmp_path, partitions=1) as pipe:
        await pipe.put_profile(fixed_profile("loc_r", "0.20", devices=["dev_r"]))
        worker = start_worker(pipe)
        await pipe.wait_ready(worker)

        async def send(document: dict[str, Any] | bytes, key: str = "loc_r") -> int:
            return (await pipe.send(METER_READINGS, document, key))[1]

        await send(reading("loc_r", 0, 1000))  # baseline
        await send(reading("loc_r", 30, 3000, record_reference_id="r30", confidence="0.9"))
        await send(reading("loc_r", 30, 3000))  # duplicate: ignored
        stale = await send(reading("loc_r", 20, 2000))  # before the latest: stale
        stale_same_time = await send(reading("loc_r", 30, 3500))  # same time, other value
        reset = await send(reading("loc_r", 60, 100))  # decrease: reset, new baseline
        await send(reading("loc_r", 90, 600))  # interval 60-90 (0.5 kWh)
        too_long = await send(reading("loc_r", 90 + 745 * 60, 700))  # > 744 h: new baseline
        await send(reading("loc_r", 90 + 745 * 60 + 15, 1700))  # interval 1 kWh
        device = [
            await send(reading("loc_r", 0, 0, device_id="dev_r")),
            await send(reading("loc_r", 15, 250, device_id="dev_r", session_reference_id="s1")),
        ]
        bad = {
            "invalid_record": [
                await send(reading("loc_r", 100, -5)),
                await send(reading("loc_r", 100, "lots")),
                await send({**reading("loc_r", 100, 5), "time": "2026-01-05T10:00:00"}),
                await send(reading("loc_r", 100, 5), "loc_other"),  # under another key
            ],
            "unknown_location": [await send(reading("loc_nowhere", 100, 5), "loc_nowhere")],
            "unknown_device": [await send(reading("loc_r", 100, 5, device_id="dev_x"))],
        }
        # a clock far ahead: refused, or every true reading would be stale until 2099
        ahead = await send({**reading("loc_r", 100, 5), "time": "2099-01-01T00:00:00Z"})
        # after the bad ones, the state is untouched: this is an interval from minute 90+…+15
        await send(reading("loc_r", 90 + 745 * 60 + 30, 2700))

        expected = {
            energy_cost_id(meter_record_id_for_reference("acc_test", False, "loc_r", "r30")),
            interval_cost_id("acc_test", "loc_r", 60, 90),
            interval_cost_id("acc_test", "loc_r", 90 + 745 * 60, 90 + 745 * 60 + 15),
            interval_cost_id("acc_test", "loc_r", 90 + 745 * 60 + 15, 90 + 745 * 60 + 30),
            interval_cost_id("acc_test", "dev_r", 0, 15),
        }
        all_letters = {stale, stale_same_time, reset, too_long, ahead} | {
            o for offsets in bad.values() for o in offsets
        }
        await eventually(
            lambda: (
                {c["id"] for c in pipe.costs} >= expected
                and {lt["source"]["offset"] for _, lt in pipe.dead_letters} >= all_letters
            ),
            "every result",
            worker,
        )
        await asyncio.sleep(1.5)  # anything else the worker would emit has come by now
        assert {c["id"] for c in pipe.costs} == expected
        assert letters(pipe, "stale_reading") == {stale, stale_same_time}
        assert letters(pipe, "register_reset") == {reset}
        assert letters(pipe, "invalid_time_range") == {too_long, ahead}
        for code, offsets in bad.items():
            assert letters(pipe, code) == set(offsets), code
        assert device[0] not in {lt["source"]["offset"] for _, lt in pipe.dead_letters}

        by_id = {c["id"]: c for c in pipe.costs}
        first = by_id[
            energy_cost_id(meter_record_id_for_reference("acc_test", False, "loc_r", "r30"))
        ]
        assert first["data"]["start_time"] == "2026-01-05T00:00:00+00:00"
        assert first["data"]["end_time"] == "2026-01-05T00:30:00+00:00"
        assert Decimal(str(first["data"]["energy"]["value"])) == Decimal(2)
        assert Decimal(str(first["data"]["cost"]["value"])) == Decimal("0.4")
        assert Decimal(str(first["data"]["cost"]["confidence"])) == Decimal("0.9")
        dev = by_id[interval_cost_id("acc_test", "dev_r", 0, 15)]
        assert (dev["device_id"], dev["data"]["session_reference_id"]) == ("dev_r", "s1")
        assert Decimal(str(dev["data"]["energy"]["value"])) == Decimal("0.25")
        after = by_id[interval_cost_id("acc_test", "loc_r", 90 + 745 * 60 + 15, 90 + 745 * 60 + 30)]
        assert Decimal(str(after["data"]["energy"]["value"])) == Decimal(1)


async def test_dlq_replay_sends_readings_back_where_they_came_from(
    kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    """`meterflow dlq replay`: the readings of a meter that had no profile go back to
    `meter-readings` (and then derive their interval); an interval whose pricing failed (the
    table had moved on) goes to `meter-records`. Both get the ids the readings path gives."""
    async with pipeline(kafka_bootstrap, topic_prefix, tmp_path, partitions=1) as pipe:
        not_yet = fixed_profile("loc_p", "0.30")  # nothing in force in January 2026
        not_yet["tariffs"]["IMPORT"][0]["effective_from"] = "2026-06-01T00:00:00Z"
        await pipe.put_profile(not_yet)
        worker = start_worker(pipe)
        await pipe.wait_ready(worker)

        async def send(document: dict[str, Any], key: str) -> int:
            return (await pipe.send(METER_READINGS, document, key))[1]

        unknown = {
            await send(reading("loc_late", 0, 1000), "loc_late"),
            await send(reading("loc_late", 30, 1600), "loc_late"),
        }
        await send(reading("loc_p", 0, 1000), "loc_p")
        unpriced = await send(reading("loc_p", 30, 3000), "loc_p")
        await eventually(
            lambda: (
                letters(pipe, "unknown_location") == unknown
                and letters(pipe, "tariff_not_available") == {unpriced}
            ),
            "the readings' dead letters",
            worker,
        )
        [interval_letter] = [
            lt for _, lt in pipe.dead_letters if lt["error"]["code"] == "tariff_not_available"
        ]
        assert "start_time" in interval_letter["payload"]  # the derived interval, not the reading

        # the causes fixed: a profile for loc_late, then a tariff in force for loc_p (one
        # partition: once loc_p's update prices a record, loc_late's profile is stored too)
        await pipe.put_profile(fixed_profile("loc_late", "0.20"))
        await pipe.put_profile(fixed_profile("loc_p", "0.10"))
        july = {"start": "2026-07-01T08:00:00Z", "end": "2026-07-01T08:30:00Z"}
        while True:
            probe = await pipe.wait_cost(await pipe.send_record(record("loc_p", **july), "loc_p"))
            if Decimal(str(probe["data"]["cost"]["value"])) == Decimal("0.2"):
                break
            await asyncio.sleep(0.2)

        done = await asyncio.to_thread(
            subprocess.run,
            [MF, "dlq", "replay"],
            env=pipe.env(),
            capture_output=True,
            timeout=60,
            check=True,
        )
        out = done.stdout.decode()
        assert "replayed 3 (tariff_not_available: 1, unknown_location: 2), 2 of them readings" in (
            out
        ), out

        late = interval_cost_id("acc_test", "loc_late", 0, 30)
        priced = interval_cost_id("acc_test", "loc_p", 0, 30)
        costs = {(await pipe.wait_cost(late))["id"], (await pipe.wait_cost(priced))["id"]}
        assert costs == {late, priced}
        by_id = {c["id"]: c for c in pipe.costs}
        assert Decimal(str(by_id[late]["data"]["cost"]["value"])) == Decimal("0.12")
        assert Decimal(str(by_id[priced]["data"]["cost"]["value"])) == Decimal("0.2")
        await asyncio.sleep(1)  # a dead letter of the replay would have come by now
        readings_topic = pipe.settings.topic(METER_READINGS)
        again = [lt for _, lt in pipe.dead_letters if lt["source"]["topic"] != readings_topic]
        assert again == []
        assert letters(pipe, "unknown_location") == unknown  # nothing failed again


async def test_keyless_readings_are_refused_and_replayed_in_their_order(
    kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    """Readings sent without a key are refused (`invalid_record`), landing on six partitions
    and read back in any order; `dlq replay` sends them back in the order they first arrived
    (the letters' timestamps), under their location's key, and every interval is derived.
    Replayed in the order the letters were read, each one behind a later one was
    `stale_reading`."""
    async with pipeline(kafka_bootstrap, topic_prefix, tmp_path, partitions=6) as pipe:
        await pipe.put_profile(fixed_profile("loc_nk", "0.20"))
        worker = start_worker(pipe)
        await pipe.wait_ready(worker)
        keyless = set()  # (partition, offset) of each: the baseline at 0, then six more
        for step in range(7):
            document = reading("loc_nk", 10 * step, 1000 + 100 * step)
            keyless.add(await pipe.send(METER_READINGS, document, None))
        readings_topic = pipe.settings.topic(METER_READINGS)

        def refused() -> dict[tuple[int, int], str]:
            return {
                (lt["source"]["partition"], lt["source"]["offset"]): lt["error"]["message"]
                for _, lt in pipe.dead_letters
                if lt["source"]["topic"] == readings_topic
                and lt["error"]["code"] == "invalid_record"
            }

        await eventually(lambda: set(refused()) >= keyless, "the keyless letters", worker)
        assert all("sent under no key" in refused()[at] for at in keyless)
        assert len({partition for partition, _ in keyless}) > 1  # spread, as keyless ones are

        await asyncio.to_thread(
            subprocess.run,
            [MF, "dlq", "replay", "--code", "invalid_record"],
            env=pipe.env(),
            capture_output=True,
            timeout=60,
            check=True,
        )
        intervals = [interval_cost_id("acc_test", "loc_nk", 10 * s, 10 * (s + 1)) for s in range(6)]
        for cost_id in intervals:
            cost = await pipe.wait_cost(cost_id)
            assert Decimal(str(cost["data"]["energy"]["value"])) == Decimal("0.1")
        await asyncio.sleep(1)  # a dead letter of the replay would have come by now
        assert letters(pipe, "stale_reading") == set()


# --- crash safety -----------------------------------------------------------------------------

METERS_PER_LOCATION = 2  # the location's own register and one device's
STEP_MIN = 15


def crash_inputs(
    locations: list[str], per_meter: int, rng: random.Random
) -> tuple[list[dict[str, Any]], dict[str, list[tuple[int, int]]]]:
    """Readings of every meter (interleaved), with ~5 % duplicates and two resets per meter;
    and per meter object the expected intervals as (start minute, end minute)."""
    per_object: dict[str, list[dict[str, Any]]] = {}
    expected: dict[str, list[tuple[int, int]]] = {}
    for location in locations:
        for device in (None, f"{location}_dev"):
            object_id = device or location
            resets = set(rng.sample(range(2, per_meter), 2))
            value, docs, intervals = 0, [], []
            for index in range(per_meter):
                if index in resets:
                    value = rng.randrange(0, value)  # strictly down
                else:
                    value += rng.randrange(1, 800)
                extra = {"device_id": device} if device else {}
                docs.append(reading(location, index * STEP_MIN, value, **extra))
                if index > 0 and index not in resets:
                    intervals.append(((index - 1) * STEP_MIN, index * STEP_MIN))
                if rng.random() < 0.05:
                    docs.append(docs[-1])  # sent twice
            per_object[object_id] = docs
            expected[object_id] = intervals
    # interleave meters, each meter's readings in order
    queues = {k: list(v) for k, v in per_object.items()}
    ordered: list[dict[str, Any]] = []
    while queues:
        for object_id in list(queues):
            ordered.append(queues[object_id].pop(0))
            if not queues[object_id]:
                del queues[object_id]
    return ordered, expected


async def test_sigkill_three_times_loses_and_doubles_no_interval(
    kafka_bootstrap: str, topic_prefix: str, tmp_path: Path, migrated_database: str
) -> None:
    seed = random.randrange(1_000_000)
    rng = random.Random(seed)
    locations = [f"loc_c{i}" for i in range(200 // METERS_PER_LOCATION)]
    per_meter = 100
    async with pipeline(kafka_bootstrap, topic_prefix, tmp_path, partitions=3) as pipe:
        profiles = {}
        for location in locations:
            profile = demo_profile(location) | {"devices": [f"{location}_dev"]}
            profiles[location] = LocationProfile.model_validate(profile)
            await pipe.put_profile(profile)
        documents, expected = crash_inputs(locations, per_meter, rng)
        expected_ids = {
            interval_cost_id("acc_demo", object_id, start, end)
            for object_id, spans in expected.items()
            for start, end in spans
        }
        total = len(expected_ids)
        kill_at = sorted(rng.sample(range(total // 10, total * 8 // 10), 3))

        worker = start_worker(pipe)
        await pipe.wait_ready(worker)
        assert pipe.producer is not None
        topic = pipe.settings.topic(METER_READINGS)
        futures = [
            await pipe.producer.send(topic, dumps(doc), key=doc["location_id"].encode())
            for doc in documents
        ]
        await asyncio.gather(*futures)

        def received() -> int:
            return len({c["id"] for c in pipe.costs})

        # the sink stores the costs as they come, copies re-emitted after a kill included
        config = sink_config(kafka_bootstrap, migrated_database, topic_prefix)
        sink = Sink(config, sink_clients(config))
        async with running(sink):
            for threshold in kill_at:
                await eventually(
                    lambda t=threshold: received() >= t, f"{threshold} intervals", worker
                )
                worker.proc.send_signal(signal.SIGKILL)
                worker.proc.wait(timeout=10)
                assert received() < total, f"seed {seed}: the kill came too late to test anything"
                worker = start_worker(pipe)
            await eventually(
                lambda: {c["id"] for c in pipe.costs} >= expected_ids,
                f"every interval (seed {seed})",
                worker,
                limit_s=120,
            )
            await wait_drained(kafka_bootstrap, config.group_id, config.costs_topic, "the sink")

        by_id = assert_tiled(pipe, expected, expected_ids, seed)
        offline = offline_cost(documents, expected, profiles)
        streamed = sum(
            Decimal(str(copies[0]["data"]["cost"]["value"])) for copies in by_id.values()
        )
        assert streamed == offline, f"seed {seed}"

        # Postgres: one row per interval, and the rows add up to the same sum
        assert sink.health.stats.costs_inserted == total
        assert sink.health.stats.costs_replaced == 0
        [row] = await fetch(
            migrated_database,
            "SELECT count(*) AS n, count(DISTINCT id) AS ids,"
            " count(DISTINCT (object_id, start_time)) AS spans, sum(cost) AS cost"
            " FROM energy_costs",
        )
        assert (row["n"], row["ids"], row["spans"]) == (total, total, total), f"seed {seed}"
        assert row["cost"] == offline, f"seed {seed}"
        stored = await fetch(migrated_database, "SELECT id FROM energy_costs")
        assert {r["id"] for r in stored} == expected_ids


def assert_tiled(
    pipe: Pipeline, expected: dict[str, list[tuple[int, int]]], expected_ids: set[str], seed: int
) -> dict[str, list[dict[str, Any]]]:
    """The costs received are exactly the expected intervals: ids, identical copies, each
    meter's intervals meeting end to start except across its resets, two reset letters per
    meter and no stale one. Returns the costs by id."""
    by_id: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for cost in pipe.costs:
        by_id[cost["id"]].append(cost)
    extra = [by_id[i][0] for i in set(by_id) - expected_ids]
    assert not extra, f"seed {seed}: {[(c['object_id'], c['data']) for c in extra][:3]}"
    assert set(by_id) == expected_ids, f"seed {seed}"
    for copies in by_id.values():
        assert len({dumps(c["data"]) for c in copies}) == 1, f"seed {seed}"
    spans: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for cost, *_ in by_id.values():
        spans[cost["object_id"]].append((cost["data"]["start_time"], cost["data"]["end_time"]))
    for object_id, found in spans.items():
        found.sort()
        gaps = sum(1 for a, b in itertools.pairwise(found) if a[1] != b[0])
        assert all(a[1] <= b[0] for a, b in itertools.pairwise(found)), object_id
        wanted = expected[object_id]
        expected_gaps = sum(1 for a, b in itertools.pairwise(wanted) if a[1] != b[0])
        assert gaps == expected_gaps, f"{object_id}: {gaps} gaps (seed {seed})"
        assert len(found) == len(wanted)
    # the reset letters: two per meter, whatever was replayed
    resets = {
        (lt["source"]["partition"], lt["source"]["offset"])
        for _, lt in pipe.dead_letters
        if lt["error"]["code"] == "register_reset"
    }
    assert len(resets) == 2 * len(expected), f"seed {seed}"
    assert not letters(pipe, "stale_reading")
    return by_id


def offline_cost(
    documents: list[dict[str, Any]],
    expected: dict[str, list[tuple[int, int]]],
    profiles: dict[str, LocationProfile],
) -> Decimal:
    """The expected intervals priced offline, each once."""
    offline = Decimal(0)
    for object_id, object_spans in expected.items():
        location = object_id.removesuffix("_dev")
        device = object_id if object_id != location else None
        values = [d for d in documents if _object(d) == object_id]
        by_minute = {_minute(d): Decimal(d["value"]) for d in values}
        for start, end in object_spans:
            record = {
                "location_id": location,
                "energy_flow_direction": "INBOUND",
                "energy": (by_minute[end] - by_minute[start]) / 1000,
                "start_time": utc_text(T0 + timedelta(minutes=start)),
                "end_time": utc_text(T0 + timedelta(minutes=end)),
                "record_reference_id": "offline",
                **({"device_id": device} if device else {}),
            }
            result = price_payload(
                dumps(record),
                profiles=profiles.get,
                market_prices=lambda series, day: None,
                now=T0,
            )
            assert isinstance(result, EnergyCost)
            offline += result.data.cost.value
    return offline


def _object(document: dict[str, Any]) -> str:
    return str(document.get("device_id") or document["location_id"])


def _minute(document: dict[str, Any]) -> int:
    instant = datetime.fromisoformat(document["time"])
    return int((instant - T0).total_seconds() // 60)


async def test_a_worker_joining_and_one_leaving_mid_stream_tile_every_meter(
    kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    """Two rebalances while readings arrive (paced, so both fall in the middle of the stream):
    a second worker joins, then the first leaves. Partitions move with their meters' states
    (the changelog, recovered into the other worker's RocksDB), and every meter's intervals
    still tile its readings exactly."""
    seed = random.randrange(1_000_000)
    rng = random.Random(seed)
    locations = [f"loc_b{i}" for i in range(20)]
    async with pipeline(kafka_bootstrap, topic_prefix, tmp_path, partitions=6) as pipe:
        profiles = {}
        for location in locations:
            profile = demo_profile(location) | {"devices": [f"{location}_dev"]}
            profiles[location] = LocationProfile.model_validate(profile)
            await pipe.put_profile(profile)
        documents, expected = crash_inputs(locations, 60, rng)
        expected_ids = {
            interval_cost_id("acc_demo", object_id, start, end)
            for object_id, spans in expected.items()
            for start, end in spans
        }
        first = start_worker(pipe, store="rocksdb://")
        await pipe.wait_ready(first)
        assert pipe.producer is not None
        topic = pipe.settings.topic(METER_READINGS)
        slices = [documents[i : i + 40] for i in range(0, len(documents), 40)]
        second = None
        for index, chunk in enumerate(slices):
            if index == len(slices) // 4:
                second = start_worker(pipe, store="rocksdb://")  # joins: a rebalance
            if index == len(slices) * 2 // 3:
                assert second is not None
                await eventually(  # both share the partitions for a while
                    lambda w=second: readings_consumed(w) > 0, "the second's readings", second
                )
                first.proc.send_signal(signal.SIGTERM)  # leaves: another rebalance
            futures = [
                await pipe.producer.send(topic, dumps(doc), key=doc["location_id"].encode())
                for doc in chunk
            ]
            await asyncio.gather(*futures)
            await asyncio.sleep(0.25)
        assert second is not None
        first.proc.wait(timeout=30)
        await eventually(
            lambda: {c["id"] for c in pipe.costs} >= expected_ids,
            f"every interval (seed {seed})",
            second,
            limit_s=90,
        )
        await asyncio.sleep(1)  # a late copy or letter has arrived by now

        by_id = assert_tiled(pipe, expected, expected_ids, seed)
        streamed = sum(
            Decimal(str(copies[0]["data"]["cost"]["value"])) for copies in by_id.values()
        )
        assert streamed == offline_cost(documents, expected, profiles), f"seed {seed}"
        assert readings_consumed(first) > 0
        assert readings_consumed(second) > 0


def readings_consumed(worker: Worker) -> int:
    """The readings a worker consumed, from its last `readings_progress` line."""
    consumed = 0
    for line in worker.log().splitlines():
        if '"readings_progress"' in line and line.startswith("{"):
            consumed = int(loads(line)["consumed"])
    return consumed


# --- table recovery ---------------------------------------------------------------------------


@pytest.mark.parametrize("store", ["memory://", "rocksdb://"])
async def test_the_readings_table_survives_a_restart(
    kafka_bootstrap: str, topic_prefix: str, tmp_path: Path, store: str
) -> None:
    """Baselines before the restart, the next readings after it: only a recovered table can
    make them intervals (an empty one would take them for first readings)."""
    meters = [f"loc_t{i}" for i in range(30)]
    async with pipeline(kafka_bootstrap, topic_prefix, tmp_path, partitions=3) as pipe:
        for location in meters:
            await pipe.put_profile(fixed_profile(location, "0.10"))
        worker = start_worker(pipe, store=store, data="data")
        await pipe.wait_ready(worker)
        for location in meters:
            await pipe.send(METER_READINGS, reading(location, 0, 1000), location)
        await eventually(lambda: '"consumed": 30,' in worker.log(), "30 baselines consumed", worker)
        worker.proc.send_signal(signal.SIGTERM)  # commits its offsets on the way out
        worker.proc.wait(timeout=30)
        assert not pipe.costs

        restarted = start_worker(pipe, store=store, data="data")
        await pipe.wait_ready(restarted)
        for location in meters:
            await pipe.send(METER_READINGS, reading(location, 30, 1500), location)
        expected = {interval_cost_id("acc_test", location, 0, 30) for location in meters}
        await eventually(
            lambda: {c["id"] for c in pipe.costs} >= expected, "30 intervals", restarted
        )
        assert {c["id"] for c in pipe.costs} == expected
        assert all(Decimal(str(c["data"]["cost"]["value"])) == Decimal("0.05") for c in pipe.costs)
        if store == "rocksdb://":
            assert any((tmp_path / "data").rglob("*readings*")), "no RocksDB files for the table"
