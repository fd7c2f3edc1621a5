"""The stream pipeline on the real broker: real `meterflow worker` processes, aiokafka clients.

Every test gets its own topic prefix (hence its own consumer group and changelogs), a memory
store and no web server. Every wait is bounded; workers are stopped (or killed) at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from meterflow.contract.topics import DEAD_LETTERS, ENERGY_COSTS, LOCATIONS, METER_RECORDS
from meterflow.costing import meter_record_id
from meterflow.ids import (
    energy_cost_id,
    meter_record_id_for_offset,
    meter_record_id_for_reference,
)
from meterflow.kafka_admin import delete_topics_with_prefix, ensure_topics
from meterflow.models import (
    DeadLetter,
    LocationProfile,
    MeterRecord,
    SourceRef,
    dumps,
    loads,
    original_payload,
)
from meterflow.settings import Settings
from meterflow.stream.producing import demo_profile, synthetic_records

pytestmark = pytest.mark.integration

MF = str(Path(sys.executable).with_name("meterflow"))
WAIT_S = 60.0


def fixed_profile(location_id: str, rate: str, **extra: Any) -> dict[str, Any]:
    return {
        "location_id": location_id,
        "account_id": "acc_test",
        "timezone": "Europe/London",
        "currency_code": "GBP",
        "tariffs": {
            "IMPORT": [
                {"type": "FIXED", "effective_from": "2024-01-01T00:00:00Z", "rate": Decimal(rate)}
            ]
        },
        **extra,
    }


def record(
    location_id: str,
    energy: str = "2",
    start: str = "2026-01-05T08:00:00Z",
    end: str = "2026-01-05T08:30:00Z",
    **extra: Any,
) -> dict[str, Any]:
    return {
        "location_id": location_id,
        "energy": Decimal(energy),
        "start_time": start,
        "end_time": end,
        **extra,
    }


@dataclass
class Worker:
    proc: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")
        return ""

    def progress(self) -> dict[str, int]:
        """The last `pricing_progress` line of this worker's log."""
        last: dict[str, int] = {"priced": 0, "dead_lettered": 0}
        for line in self.log().splitlines():
            if '"pricing_progress"' in line and line.rstrip().endswith("}"):
                try:  # a line may carry a terminal escape before it, or be half written
                    doc = loads(line[line.index("{") :])
                except ValueError:
                    continue
                last = {"priced": doc["priced"], "dead_lettered": doc["dead_lettered"]}
        return last


@dataclass
class Pipeline:
    """One isolated pipeline: topic prefix, workers, a producer and result collectors."""

    settings: Settings
    tmp: Path
    producer: AIOKafkaProducer | None = None
    workers: list[Worker] = field(default_factory=list)
    costs: list[dict[str, Any]] = field(default_factory=list)
    dead_letters: list[tuple[bytes | None, dict[str, Any]]] = field(default_factory=list)
    profiles: dict[str, LocationProfile] = field(default_factory=dict)
    _readers: list[asyncio.Task[None]] = field(default_factory=list)

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MF_")}
        env.update(
            MF_KAFKA_BOOTSTRAP=self.settings.kafka_bootstrap,
            MF_TOPIC_PREFIX=self.settings.topic_prefix,
            MF_TOPIC_PARTITIONS=str(self.settings.topic_partitions),
            MF_APP_ID=self.settings.app_id,
            MF_STORE="memory://",
            MF_WORKER_WEB_ENABLED="false",
            MF_PROGRESS_INTERVAL_S="0.5",
            MF_LOG_LEVEL="INFO",
        )
        return env

    def start_worker(self) -> Worker:
        n = len(self.workers)
        log_path = self.tmp / f"worker-{n}.log"
        env = self.env() | {"MF_DATA_DIR": str(self.tmp / f"data-{n}")}
        with log_path.open("ab") as log:
            proc = subprocess.Popen([MF, "worker", "--no-api"], env=env, stdout=log, stderr=log)
        worker = Worker(proc, log_path)
        self.workers.append(worker)
        return worker

    async def wait_ready(self, worker: Worker, times: int = 1) -> None:
        await eventually(
            lambda: worker.log().count("Worker ready") >= times, f"worker ready x{times}", worker
        )

    async def start(self) -> None:
        await ensure_topics(self.settings)
        self.producer = AIOKafkaProducer(
            bootstrap_servers=self.settings.kafka_bootstrap, acks="all", linger_ms=2
        )
        await self.producer.start()
        self._readers.append(asyncio.create_task(self._read(ENERGY_COSTS, self._on_cost)))
        self._readers.append(asyncio.create_task(self._read(DEAD_LETTERS, self._on_letter)))

    def _on_cost(self, key: bytes | None, value: bytes) -> None:
        self.costs.append(loads(value))

    def _on_letter(self, key: bytes | None, value: bytes) -> None:
        self.dead_letters.append((key, loads(value)))

    async def _read(self, name: str, sink: Callable[[bytes | None, bytes], None]) -> None:
        topic = self.settings.topic(name)
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.settings.kafka_bootstrap,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        await consumer.start()
        try:
            consumer.assign(
                [TopicPartition(topic, p) for p in range(self.settings.topic_partitions)]
            )
            await consumer.seek_to_beginning()
            while True:
                batches = await consumer.getmany(timeout_ms=200)
                for messages in batches.values():
                    for message in messages:
                        sink(message.key, message.value)
        finally:
            await consumer.stop()

    async def send(
        self, topic: str, document: dict[str, Any] | bytes | None, key: str | None
    ) -> tuple[int, int]:
        assert self.producer is not None
        value = document if isinstance(document, bytes | None) else dumps(document)
        metadata = await self.producer.send_and_wait(
            self.settings.topic(topic), value=value, key=key.encode() if key else None
        )
        return metadata.partition, metadata.offset

    async def send_record(self, document: dict[str, Any] | bytes, key: str) -> str:
        """Send a meter record; return the result id the core's rule gives it: by reference
        (design §8.1) when it has one and its location is known here, else by position (§4)."""
        partition, offset = await self.send(METER_RECORDS, document, key)
        source = SourceRef(
            topic=self.settings.topic(METER_RECORDS), partition=partition, offset=offset
        )
        profile = self.profiles.get(key)
        if isinstance(document, dict) and profile is not None:
            record = MeterRecord.model_validate(document)
            return energy_cost_id(meter_record_id(record, profile, source))
        return energy_cost_id(
            meter_record_id_for_offset(source.topic, source.partition, source.offset)
        )

    async def put_profile(self, profile: dict[str, Any]) -> None:
        await self.send(LOCATIONS, profile, profile["location_id"])
        self.profiles[profile["location_id"]] = LocationProfile.model_validate(profile)

    def cost(self, cost_id: str) -> dict[str, Any] | None:
        return next((c for c in self.costs if c["id"] == cost_id), None)

    async def wait_cost(self, cost_id: str) -> dict[str, Any]:
        await eventually(lambda: self.cost(cost_id) is not None, f"cost {cost_id}", *self.workers)
        found = self.cost(cost_id)
        assert found is not None
        return found

    def has_result(self, partition: int, offset: int) -> bool:
        """A cost or a dead letter exists for the meter record at this position."""
        record_id = meter_record_id_for_offset(
            self.settings.topic(METER_RECORDS), partition, offset
        )
        cost = self.cost(energy_cost_id(record_id))
        return cost is not None or self.letter_at(partition, offset) is not None

    def letter_at(self, partition: int, offset: int) -> dict[str, Any] | None:
        topic = self.settings.topic(METER_RECORDS)
        for _, letter in self.dead_letters:
            src = letter.get("source") or {}
            if (src.get("topic"), src.get("partition"), src.get("offset")) == (
                topic,
                partition,
                offset,
            ):
                return letter
        return None

    async def stop(self) -> None:
        for worker in self.workers:
            if worker.proc.poll() is None:
                worker.proc.send_signal(signal.SIGTERM)
        for worker in self.workers:
            try:
                worker.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                worker.proc.kill()
                worker.proc.wait(timeout=10)
        for task in self._readers:
            task.cancel()
        for task in self._readers:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.producer is not None:
            await self.producer.stop()


async def eventually(
    condition: Callable[[], bool], what: str, *workers: Worker, limit_s: float = WAIT_S
) -> None:
    deadline = time.monotonic() + limit_s
    while not condition():
        for worker in workers:
            if worker.proc.poll() is not None and worker.proc.returncode not in (0, -9):
                pytest.fail(f"worker exited {worker.proc.returncode}:\n{worker.log()[-3000:]}")
        if time.monotonic() > deadline:
            tails = "\n---\n".join(w.log()[-3000:] for w in workers)
            pytest.fail(f"timed out after {limit_s}s waiting for {what}\n{tails}")
        await asyncio.sleep(0.1)


@contextlib.asynccontextmanager
async def pipeline(
    kafka_bootstrap: str, topic_prefix: str, tmp: Path, partitions: int = 3
) -> AsyncIterator[Pipeline]:
    settings = Settings(
        kafka_bootstrap=kafka_bootstrap,
        topic_prefix=topic_prefix,
        topic_partitions=partitions,
        app_id="stream-test",
    )
    pipe = Pipeline(settings, tmp)
    await pipe.start()
    try:
        yield pipe
    finally:
        await pipe.stop()
        await delete_topics_with_prefix(settings, topic_prefix)  # a dev broker keeps them all


@pytest.fixture(scope="module")
async def shared(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Pipeline]:
    """One running worker for the tests that only add records and profiles of their own."""
    import uuid

    prefix = f"t{uuid.uuid4().hex[:10]}-"
    async with pipeline(kafka_bootstrap, prefix, tmp_path_factory.mktemp("stream")) as pipe:
        worker = pipe.start_worker()
        await pipe.wait_ready(worker)
        yield pipe


async def test_a_record_becomes_the_expected_energy_cost(shared: Pipeline) -> None:
    await shared.put_profile(demo_profile("loc_expected"))
    # Monday 2026-01-05 08:00-08:30 London (= UTC in winter): the 07:00-11:00 period, 0.2450/kWh.
    cost_id = await shared.send_record(record("loc_expected", energy="2.000"), "loc_expected")

    cost = await shared.wait_cost(cost_id)

    assert cost["object"] == "energy_cost"
    assert cost["account_id"] == "acc_demo"
    assert cost["location_id"] == cost["object_id"] == "loc_expected"
    assert cost["tariff_direction"] == "IMPORT"
    assert cost["currency_code"] == "GBP"
    assert Decimal(cost["data"]["energy"]["value"]) == Decimal("2")
    assert Decimal(cost["data"]["cost"]["value"]) == Decimal("0.49")
    [part] = cost["data"]["breakdown"]
    assert Decimal(part["rate"]) == Decimal("0.2450")
    assert cost["request"]["location_id"] == "loc_expected"


async def test_a_ready_worker_freezes_its_long_lived_objects_out_of_the_collector(
    shared: Pipeline,
) -> None:
    worker = shared.workers[0]
    await eventually(lambda: '"gc_frozen"' in worker.log(), "gc_frozen logged", worker)
    [line] = [line for line in worker.log().splitlines() if '"gc_frozen"' in line]
    frozen = loads(line)
    assert frozen["objects"] > 10_000  # faust, aiokafka and pydantic alone hold more
    assert frozen["threshold"] == shared.settings.worker_gc_threshold


async def test_every_line_a_worker_logs_is_a_json_object(shared: Pipeline) -> None:
    lines = shared.workers[0].log().splitlines()
    assert any("Worker ready" in line for line in lines)
    assert [line for line in lines if not line.startswith("{")] == []
    assert all(isinstance(loads(line), dict) for line in lines)


async def test_failures_are_dead_lettered_with_their_code_and_the_agent_keeps_going(
    shared: Pipeline,
) -> None:
    await shared.put_profile(fixed_profile("loc_fail", "0.10"))
    records_topic = shared.settings.topic(METER_RECORDS)
    sent = {}
    for name, payload, key in [
        ("unknown_location", dumps(record("loc_nobody")), "loc_nobody"),
        ("invalid_record", b'{"location_id": "loc_fail", "energy": ', "loc_fail"),
        # before the only tariff version (effective 2024): nothing in force
        (
            "tariff_not_available",
            dumps(record("loc_fail", start="2023-06-01T00:00:00Z", end="2023-06-01T00:30:00Z")),
            "loc_fail",
        ),
        (
            "invalid_time_range",
            dumps(record("loc_fail", start="2026-01-05T09:00:00Z", end="2026-01-05T08:00:00Z")),
            "loc_fail",
        ),
    ]:
        sent[name] = (payload, key, await shared.send(METER_RECORDS, payload, key))
    after_id = await shared.send_record(record("loc_fail", energy="1"), "loc_fail")

    cost_after = await shared.wait_cost(after_id)
    assert Decimal(cost_after["data"]["cost"]["value"]) == Decimal("0.1")
    await eventually(
        lambda: all(shared.letter_at(*pos) is not None for _, _, pos in sent.values()),
        "dead letters",
        *shared.workers,
    )
    for code, (payload, key, (partition, offset)) in sent.items():
        letter = shared.letter_at(partition, offset)
        assert letter is not None
        assert letter["error"]["code"] == code, letter
        assert letter["payload"].encode() == payload
        assert letter["source"] == {
            "topic": records_topic,
            "partition": partition,
            "offset": offset,
        }
        keys = [k for k, d in shared.dead_letters if d is letter]
        assert keys == [key.encode()]
    assert "record_dead_lettered" in shared.workers[0].log()


async def test_a_record_the_broker_takes_is_dead_lettered_however_much_its_letter_grows(
    shared: Pipeline,
) -> None:
    """A letter writes its record as JSON text, so it is larger than the record: a line feed
    takes 2 bytes, a control character 6. A record near the broker's 1 MiB whose letter
    outgrew the producer's limit stopped the worker, and stopped it again after every restart
    on the same record. Each letter here is several MB; the record after them is priced."""
    await shared.put_profile(fixed_profile("loc_big", "0.10"))
    padded = dumps(record("loc_nobody"))[:-1] + b"\n" * 1_000_000 + b"}"
    controls = b"\x01" * 1_000_000
    sent = [
        (payload, await shared.send(METER_RECORDS, payload, key))
        for payload, key in ((padded, "loc_nobody"), (controls, "loc_big"))
    ]
    after_id = await shared.send_record(record("loc_big", energy="1"), "loc_big")
    await shared.wait_cost(after_id)
    await eventually(
        lambda: all(shared.letter_at(*position) is not None for _, position in sent),
        "the letters of the large records",
        *shared.workers,
    )
    letters = [DeadLetter.model_validate(shared.letter_at(*position)) for _, position in sent]
    assert [original_payload(letter) for letter in letters] == [padded, controls]
    assert [letter.error.code for letter in letters] == ["unknown_location", "invalid_record"]
    assert shared.workers[0].proc.poll() is None


async def test_a_referenced_record_sent_twice_gets_the_same_ids(shared: Pipeline) -> None:
    """Design §8.1 on Kafka: the reference, not the offset nor a producer's id, names the
    record; the second event is a duplicate a consumer recognises by its id (§8.2)."""
    await shared.put_profile(fixed_profile("loc_ref", "0.10"))
    await shared.wait_cost(await shared.send_record(record("loc_ref"), "loc_ref"))
    body = record("loc_ref", record_reference_id="meter-7/read-1")
    first = await shared.send(METER_RECORDS, body, "loc_ref")
    again = await shared.send(METER_RECORDS, body | {"id": "mre_producer_retry"}, "loc_ref")
    await shared.send(METER_RECORDS, body | {"record_reference_id": "meter-7/read-2"}, "loc_ref")
    bad = await shared.send(METER_RECORDS, body | {"record_reference_id": "a\tb"}, "loc_ref")
    assert first != again

    def cost_id(reference: str) -> str:
        return energy_cost_id(
            meter_record_id_for_reference("acc_test", False, "loc_ref", reference)
        )

    def events(cost_id: str) -> list[dict[str, Any]]:
        return [cost for cost in shared.costs if cost["id"] == cost_id]

    expected, expected_other = cost_id("meter-7/read-1"), cost_id("meter-7/read-2")
    await eventually(
        lambda: (
            len(events(expected)) == 2
            and len(events(expected_other)) == 1
            and shared.letter_at(*bad) is not None
        ),
        "two events of one referenced record, one of another, a dead letter",
        *shared.workers,
    )
    twice = events(expected)
    assert {cost["meter_record_id"] for cost in twice} == {
        meter_record_id_for_reference("acc_test", False, "loc_ref", "meter-7/read-1")
    }
    assert twice[0]["data"] == twice[1]["data"]
    assert Decimal(twice[0]["data"]["cost"]["value"]) == Decimal("0.2")
    topic = shared.settings.topic(METER_RECORDS)
    for position in (first, again):
        assert shared.cost(energy_cost_id(meter_record_id_for_offset(topic, *position))) is None
    letter = shared.letter_at(*bad)
    assert letter is not None
    assert letter["error"]["code"] == "invalid_record"
    assert "record_reference_id" in letter["error"]["message"]


async def test_an_invalid_profile_is_dead_lettered_and_not_stored(shared: Pipeline) -> None:
    await shared.put_profile(fixed_profile("loc_keep", "0.20"))
    first = await shared.send_record(record("loc_keep"), "loc_keep")
    await shared.wait_cost(first)
    # A TOU version with a gap (nothing 12:00-24:00) is refused; the old profile stays.
    broken = fixed_profile("loc_keep", "0.20")
    broken["tariffs"]["IMPORT"] = [
        {
            "type": "TIME_OF_USE",
            "effective_from": "2024-01-01T00:00:00Z",
            "rules": [{"from": "00:00", "to": "12:00", "rate": 1}],
        }
    ]
    partition, offset = await shared.send(LOCATIONS, broken, "loc_keep")

    def rejected() -> dict[str, Any] | None:
        return next(
            (
                d
                for _, d in shared.dead_letters
                if d.get("source")
                == {
                    "topic": shared.settings.topic(LOCATIONS),
                    "partition": partition,
                    "offset": offset,
                }
            ),
            None,
        )

    await eventually(lambda: rejected() is not None, "profile dead letter", *shared.workers)
    assert rejected()["error"]["code"] == "invalid_record"  # type: ignore[index]
    later = await shared.send_record(record("loc_keep"), "loc_keep")
    assert Decimal((await shared.wait_cost(later))["data"]["cost"]["value"]) == Decimal("0.4")


async def test_a_profile_update_changes_the_price_of_later_records(shared: Pipeline) -> None:
    await shared.put_profile(fixed_profile("loc_update", "0.10"))
    first = await shared.send_record(record("loc_update"), "loc_update")
    assert Decimal((await shared.wait_cost(first))["data"]["cost"]["value"]) == Decimal("0.2")

    await shared.put_profile(fixed_profile("loc_update", "0.30"))
    # The profile and the records travel on different topics: keep sending until one is
    # priced at the new rate, then every later record must be too.
    deadline = time.monotonic() + WAIT_S
    while True:
        cost = await shared.wait_cost(await shared.send_record(record("loc_update"), "loc_update"))
        if Decimal(cost["data"]["cost"]["value"]) == Decimal("0.6"):
            break
        assert Decimal(cost["data"]["cost"]["value"]) == Decimal("0.2")
        assert time.monotonic() < deadline, "the new profile was never applied"
        await asyncio.sleep(0.2)
    for _ in range(3):
        cost = await shared.wait_cost(await shared.send_record(record("loc_update"), "loc_update"))
        assert Decimal(cost["data"]["cost"]["value"]) == Decimal("0.6")


async def test_a_deleted_profile_makes_records_unknown(shared: Pipeline) -> None:
    await shared.put_profile(fixed_profile("loc_gone", "0.10"))
    await shared.wait_cost(await shared.send_record(record("loc_gone"), "loc_gone"))
    await shared.send(LOCATIONS, None, "loc_gone")
    deadline = time.monotonic() + WAIT_S
    while True:
        position = await shared.send(METER_RECORDS, dumps(record("loc_gone")), "loc_gone")
        await eventually(partial(shared.has_result, *position), "a result", *shared.workers)
        letter = shared.letter_at(*position)
        if letter is not None:
            assert letter["error"]["code"] == "unknown_location"
            break
        assert time.monotonic() < deadline, "the tombstone was never applied"
        await asyncio.sleep(0.2)


async def test_dead_letter_replay_after_loading_the_tariff_produces_the_cost(
    shared: Pipeline,
) -> None:
    position = await shared.send(METER_RECORDS, dumps(record("loc_late", energy="3")), "loc_late")
    await eventually(
        lambda: shared.letter_at(*position) is not None, "dead letter", *shared.workers
    )
    assert shared.letter_at(*position)["error"]["code"] == "unknown_location"  # type: ignore[index]
    expected_id = energy_cost_id(
        meter_record_id_for_offset(shared.settings.topic(METER_RECORDS), *position)
    )
    await shared.put_profile(fixed_profile("loc_late", "0.25"))
    await asyncio.sleep(2)  # let the profile agent store it before the replayed record arrives

    def replay(*args: str) -> str:
        done = subprocess.run(
            [MF, "dlq", "replay", "--code", "unknown_location", *args],
            env=shared.env(),
            capture_output=True,
            timeout=WAIT_S,
            check=True,
        )
        return done.stdout.decode()

    # Other tests leave dead letters of their own in this environment: count at least ours.
    dry = await asyncio.to_thread(replay, "--dry-run")
    assert int(re.search(r"would replay (\d+)", dry).group(1)) >= 1, dry  # type: ignore[union-attr]
    assert not any(c["id"] == expected_id for c in shared.costs)
    out = await asyncio.to_thread(replay)
    assert int(re.search(r"replayed (\d+)", out).group(1)) >= 1, out  # type: ignore[union-attr]

    cost = await shared.wait_cost(expected_id)
    assert Decimal(cost["data"]["cost"]["value"]) == Decimal("0.75")
    assert cost["meter_record_id"] == meter_record_id_for_offset(
        shared.settings.topic(METER_RECORDS), *position
    )
    # Replaying the same dead letter again yields the same result id: idempotent downstream.
    await asyncio.to_thread(replay, "--from-beginning")
    await eventually(
        lambda: sum(c["id"] == expected_id for c in shared.costs) >= 2,
        "second copy",
        *shared.workers,
    )
    copies = [c for c in shared.costs if c["id"] == expected_id]
    assert {c["data"]["cost"]["value"] for c in copies} == {cost["data"]["cost"]["value"]}


async def test_a_record_under_another_key_is_refused_and_priced_when_replayed(
    shared: Pipeline,
) -> None:
    """Its profile exists, but its key is not its location's: `invalid_record` naming the key
    (on every store), and `dlq replay` sends it under its location's key."""
    await shared.put_profile(fixed_profile("loc_keyed", "0.30"))
    await shared.wait_cost(await shared.send_record(record("loc_keyed"), "loc_keyed"))
    position = await shared.send(METER_RECORDS, dumps(record("loc_keyed")), "not-loc_keyed")
    await eventually(
        lambda: shared.letter_at(*position) is not None, "dead letter", *shared.workers
    )
    error = shared.letter_at(*position)["error"]  # type: ignore[index]
    assert error["code"] == "invalid_record"
    assert "sent under the key 'not-loc_keyed', not its location_id 'loc_keyed'" in error["message"]
    expected_id = energy_cost_id(
        meter_record_id_for_offset(shared.settings.topic(METER_RECORDS), *position)
    )
    assert not any(c["id"] == expected_id for c in shared.costs)
    await asyncio.to_thread(
        subprocess.run,
        [MF, "dlq", "replay", "--code", "invalid_record"],
        env=shared.env(),
        capture_output=True,
        timeout=WAIT_S,
        check=True,
    )
    cost = await shared.wait_cost(expected_id)
    assert cost["location_id"] == "loc_keyed"
    assert Decimal(cost["data"]["cost"]["value"]) == Decimal("0.6")


async def test_letters_left_out_by_code_stay_for_a_later_replay(shared: Pipeline) -> None:
    """`dlq replay --code X` committed its group past every letter it read: a letter of
    another code was left unreachable (but by `--from-beginning`, which replays all again)."""
    await shared.put_profile(fixed_profile("loc_later", "0.20"))
    await shared.wait_cost(await shared.send_record(record("loc_later"), "loc_later"))
    unknown = await shared.send(METER_RECORDS, dumps(record("loc_never")), "loc_never")
    misplaced = await shared.send(METER_RECORDS, dumps(record("loc_later")), "not-loc_later")
    for position in (unknown, misplaced):
        await eventually(
            partial(lambda p: shared.letter_at(*p) is not None, position),
            "dead letter",
            *shared.workers,
        )
    group = f"replay-{uuid.uuid4().hex}"

    def replay(*args: str) -> str:
        done = subprocess.run(
            [MF, "dlq", "replay", "--group", group, *args],
            env=shared.env(),
            capture_output=True,
            timeout=WAIT_S,
            check=True,
        )
        return done.stdout.decode()

    await asyncio.to_thread(replay, "--code", "unknown_location")
    expected_id = energy_cost_id(
        meter_record_id_for_offset(shared.settings.topic(METER_RECORDS), *misplaced)
    )
    assert not any(c["id"] == expected_id for c in shared.costs)
    dry = await asyncio.to_thread(replay, "--code", "invalid_record", "--dry-run")
    assert int(re.search(r"would replay (\d+)", dry).group(1)) >= 1, dry  # type: ignore[union-attr]
    await asyncio.to_thread(replay, "--code", "invalid_record")
    cost = await shared.wait_cost(expected_id)
    assert cost["location_id"] == "loc_later"


async def test_sigkill_mid_stream_loses_no_record(
    kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    total = 3000
    async with pipeline(kafka_bootstrap, topic_prefix, tmp_path) as pipe:
        locations = [f"loc_k{i}" for i in range(20)]
        for loc in locations:
            await pipe.put_profile(demo_profile(loc))
        worker = pipe.start_worker()
        await pipe.wait_ready(worker)

        expected: set[str] = set()

        async def send_all() -> None:
            for doc in synthetic_records(locations, total):
                expected.add(await pipe.send_record(doc, doc["location_id"]))
                await asyncio.sleep(0.001)

        sender = asyncio.create_task(send_all())
        await eventually(lambda: len(pipe.costs) >= total // 4, "first results", worker)
        worker.proc.send_signal(signal.SIGKILL)
        worker.proc.wait(timeout=10)
        seen_at_kill = len(pipe.costs)
        assert seen_at_kill < total, "the kill came too late to test anything"

        restarted = pipe.start_worker()
        await asyncio.wait_for(sender, timeout=WAIT_S)
        await eventually(
            lambda: {c["id"] for c in pipe.costs} >= expected, "every result", restarted, limit_s=90
        )

        assert len(expected) == total
        assert {c["id"] for c in pipe.costs} == expected
        assert not pipe.dead_letters
        # Duplicates (records priced twice around the kill) are the same result, same id.
        by_id: dict[str, list[dict[str, Any]]] = {}
        for cost in pipe.costs:
            by_id.setdefault(cost["id"], []).append(cost)
        for copies in by_id.values():
            assert len({c["data"]["cost"]["value"] for c in copies}) == 1


async def test_two_workers_share_six_partitions_and_price_every_record(
    kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    total = 2000
    async with pipeline(kafka_bootstrap, topic_prefix, tmp_path, partitions=6) as pipe:
        locations = [f"loc_s{i}" for i in range(60)]
        for loc in locations:
            await pipe.put_profile(demo_profile(loc))
        first, second = pipe.start_worker(), pipe.start_worker()
        await pipe.wait_ready(first)
        await pipe.wait_ready(second)

        expected = set()
        for doc in synthetic_records(locations, total):
            expected.add(await pipe.send_record(doc, doc["location_id"]))
        await eventually(
            lambda: {c["id"] for c in pipe.costs} >= expected,
            "every result",
            first,
            second,
            limit_s=90,
        )
        await eventually(
            lambda: first.progress()["priced"] + second.progress()["priced"] >= total,
            "progress lines",
            first,
            second,
        )

        assert {c["id"] for c in pipe.costs} == expected
        assert first.progress()["priced"] > 0
        assert second.progress()["priced"] > 0


def by_position(document: dict[str, Any]) -> dict[str, Any]:
    """The record without its reference, so its position alone names it (design §4): the
    transaction tests send the same synthetic records again and must tell them apart."""
    return {k: v for k, v in document.items() if k != "record_reference_id"}


async def test_records_from_a_transactional_producer_are_priced_and_committed(
    kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    """Each transaction leaves a commit marker on its partitions: offsets with no record, which
    the worker must pass rather than wait for (or its commits would stop for good). Records of
    an aborted transaction are never priced (the worker reads at `read_committed`)."""
    async with pipeline(kafka_bootstrap, topic_prefix, tmp_path) as pipe:
        locations = [f"loc_t{i}" for i in range(6)]
        for loc in locations:
            await pipe.put_profile(demo_profile(loc))
        worker = pipe.start_worker()
        await pipe.wait_ready(worker)

        topic = pipe.settings.topic(METER_RECORDS)
        producer = AIOKafkaProducer(
            bootstrap_servers=kafka_bootstrap, transactional_id=f"{topic_prefix}tx", acks="all"
        )
        await producer.start()
        expected: set[str] = set()
        try:
            documents = [by_position(doc) for doc in synthetic_records(locations, 60)]
            for start in range(0, len(documents), 10):  # six transactions of ten records
                async with producer.transaction():
                    sent = [
                        await producer.send(topic, dumps(doc), key=doc["location_id"].encode())
                        for doc in documents[start : start + 10]
                    ]
                for metadata in await asyncio.gather(*sent):
                    record_id = meter_record_id_for_offset(
                        topic, metadata.partition, metadata.offset
                    )
                    expected.add(energy_cost_id(record_id))
            aborted: set[str] = set()
            with contextlib.suppress(_AbortTransactionError):
                async with producer.transaction():
                    for doc in map(by_position, synthetic_records(locations, 6)):
                        metadata = await producer.send_and_wait(
                            topic, dumps(doc), key=doc["location_id"].encode()
                        )
                        record_id = meter_record_id_for_offset(
                            topic, metadata.partition, metadata.offset
                        )
                        aborted.add(energy_cost_id(record_id))
                    raise _AbortTransactionError
            async with producer.transaction():  # and one more after it
                doc = by_position(next(iter(synthetic_records(locations, 1))))
                metadata = await producer.send_and_wait(
                    topic, dumps(doc), key=doc["location_id"].encode()
                )
            record_id = meter_record_id_for_offset(topic, metadata.partition, metadata.offset)
            expected.add(energy_cost_id(record_id))
        finally:
            await producer.stop()

        await eventually(lambda: {c["id"] for c in pipe.costs} >= expected, "every result", worker)
        assert len(expected) == 61
        assert not pipe.dead_letters
        assert len(aborted) == 6
        assert not aborted & {c["id"] for c in pipe.costs}

        partitions = [TopicPartition(topic, p) for p in range(pipe.settings.topic_partitions)]
        group = AIOKafkaConsumer(
            bootstrap_servers=kafka_bootstrap,
            group_id=f"{topic_prefix}stream-test",
            enable_auto_commit=False,
        )
        await group.start()
        try:
            ends = await group.end_offsets(partitions)

            async def committed() -> dict[TopicPartition, int | None]:
                return {tp: await group.committed(tp) for tp in partitions}

            deadline = time.monotonic() + WAIT_S
            while (positions := await committed()) != ends:  # markers and aborted included
                if time.monotonic() > deadline:
                    pytest.fail(
                        f"commits stopped at {positions}, ends {ends}\n{worker.log()[-3000:]}"
                    )
                await asyncio.sleep(0.5)
        finally:
            await group.stop()


class _AbortTransactionError(Exception):
    """Raised inside a producer transaction to abort it."""
