"""The Postgres sink on the real broker and database: exact rows, once, through crashes and outages.

Each test gets a fresh database (migrated) and its own topic prefix and consumer group.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import asyncpg
import pytest
import pytest_asyncio
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.structs import TopicPartition
from net import CuttableProxy, free_port

import samples
from meterflow.models import DeadLetter, dumps, loads, loads_tolerant
from meterflow.models._base import LONE_SURROGATE
from meterflow.sink import Sink, SinkConfig, sink_clients

pytestmark = pytest.mark.integration

COST_PARTITIONS = 3
T0 = datetime(2026, 3, 29, 0, 0, tzinfo=UTC)


# -- fixtures and helpers ---------------------------------------------------------------------


@pytest.fixture
def database(migrated_database: str) -> str:
    """A fresh, migrated database for one test, dropped afterwards (conftest's)."""
    return migrated_database


@pytest_asyncio.fixture
async def topics(kafka_bootstrap: str, topic_prefix: str) -> AsyncIterator[dict[str, str]]:
    names = {
        "energy-costs": f"{topic_prefix}energy-costs",
        "locations": f"{topic_prefix}locations",
        "dead-letters": f"{topic_prefix}dead-letters",
    }
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [
                NewTopic(names["energy-costs"], COST_PARTITIONS, 1),
                NewTopic(names["locations"], 2, 1),
                NewTopic(names["dead-letters"], 1, 1),
            ]
        )
        yield names
        await admin.delete_topics(list(names.values()))
    finally:
        await admin.close()


def sink_config(
    kafka_bootstrap: str, database: str, topic_prefix: str, **overrides: Any
) -> SinkConfig:
    values: dict[str, Any] = {
        "bootstrap": kafka_bootstrap,
        "database_url": database,
        "costs_topic": f"{topic_prefix}energy-costs",
        "locations_topic": f"{topic_prefix}locations",
        "dead_letters_topic": f"{topic_prefix}dead-letters",
        "group_id": f"{topic_prefix}sink",
        "batch_size": 500,
        "linger_s": 0.05,
        "retry_max_s": 2.0,
        "statement_timeout_s": 30.0,
    }
    values.update(overrides)
    return SinkConfig(**values)


def energy_cost(n: int, *, simulated: bool = False, export: bool = False) -> dict[str, Any]:
    """A synthetic EnergyCost with awkward exact decimals and a two-part breakdown."""
    start = T0 + timedelta(minutes=30 * n)
    middle, end = start + timedelta(minutes=10), start + timedelta(minutes=30)
    device = f"dev_{n % 5}" if n % 3 else None
    location = f"loc_{n % 7}"
    first_energy = Decimal(n % 97 + 1) / Decimal(3 * 10**6)  # 0.000000333333… style digits
    first_energy = first_energy.quantize(Decimal("0.000001")) + Decimal("0.1")
    second_energy = Decimal("0.2") + Decimal(n) / Decimal(10**6)
    rate_a, rate_b = Decimal("0.245"), Decimal("-0.0123456789")
    cost_a = (first_energy * rate_a).quantize(Decimal("0.000001"))
    cost_b = (second_energy * rate_b).quantize(Decimal("0.000001"))
    request = {
        "id": f"mre_{n:010d}",
        "location_id": location,
        "energy": first_energy + second_energy,
        "start_time": start.isoformat(),
        "end_time": end.isoformat(),
        "session_reference_id": f"session {n // 10}",
        "non_persistent": simulated,
    }
    if device:
        request["device_id"] = device
    return samples.energy_cost(
        f"ecs_{n:010d}_{'sim' if simulated else 'real'}",
        f"mre_{n:010d}",
        start,
        end,
        [
            samples.Item(start, middle, rate_a, first_energy, cost_a),
            samples.Item(middle, end, rate_b, second_energy, cost_b),
        ],
        request=request,
        time_created=T0 + timedelta(days=1, microseconds=n),
        account_id=f"acc_{n % 2}",
        location_id=location,
        device_id=device,
        live_mode=bool(n % 2),
        simulated=simulated,
        export=export,
        session_reference_id=f"session {n // 10}",
        record_reference_id=None if n % 4 else f"rec-{n}",
        confidence=Decimal("0.95"),
    )


def profile(location_id: str, *, currency: str = "GBP", devices: int = 1) -> dict[str, Any]:
    return {
        "location_id": location_id,
        "account_id": "acc_0",
        "live_mode": False,
        "timezone": "Europe/London",
        "currency_code": currency,
        "devices": [f"dev_{i}" for i in range(devices)],
        "tariffs": {
            "IMPORT": [
                {"type": "FIXED", "rate": Decimal("0.2451"), "effective_from": T0.isoformat()}
            ]
        },
    }


async def produce(
    bootstrap: str, topic: str, items: list[tuple[bytes | None, bytes | None]]
) -> list[tuple[int, int]]:
    """Send (key, value) pairs in order; returns where each landed (partition, offset)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        futures = [await producer.send(topic, value, key=key) for key, value in items]
        sent = [await f for f in futures]
        return [(m.partition, m.offset) for m in sent]
    finally:
        await producer.stop()


def cost_message(doc: dict[str, Any]) -> tuple[bytes, bytes]:
    return doc["location_id"].encode(), dumps(doc)


async def committed_total(bootstrap: str, group_id: str, topic: str) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group_id)
    finally:
        await admin.close()
    return sum(meta.offset for tp, meta in offsets.items() if tp.topic == topic and meta.offset > 0)


async def end_offsets(bootstrap: str, topic: str, partitions: int) -> dict[TopicPartition, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        ends: dict[TopicPartition, int] = await consumer.end_offsets(tps)
        return ends
    finally:
        await consumer.stop()


async def wait_for(
    condition: Callable[[], Awaitable[bool]], what: str, within: float = 90.0
) -> None:
    deadline = time.monotonic() + within
    while not await condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {within:.0f}s waiting for {what}")
        await asyncio.sleep(0.2)


async def fetch(url: str, query: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url)
    try:
        return list(await conn.fetch(query, *args))
    finally:
        await conn.close()


async def count_costs(url: str) -> int:
    rows = await fetch(url, "SELECT count(*) AS n FROM energy_costs")
    return int(rows[0]["n"])


async def drained(bootstrap: str, group_id: str, topic: str, partitions: int) -> bool:
    ends = await end_offsets(bootstrap, topic, partitions)
    return await committed_total(bootstrap, group_id, topic) == sum(ends.values())


async def wait_drained(bootstrap: str, group_id: str, topic: str, what: str) -> None:
    """Until `group_id` has committed every record of `topic`."""
    await wait_for(lambda: drained(bootstrap, group_id, topic, COST_PARTITIONS), what)


@contextlib.asynccontextmanager
async def running(sink: Sink) -> AsyncIterator[Sink]:
    stop = asyncio.Event()
    task = asyncio.create_task(sink.run(stop))
    try:
        yield sink
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)


def assert_row_matches(row: asyncpg.Record, doc: dict[str, Any]) -> None:
    data = doc["data"]
    expected = {
        "account_id": doc["account_id"],
        "live_mode": doc["live_mode"],
        "object_id": doc["object_id"],
        "location_id": doc["location_id"],
        "device_id": doc["device_id"],
        "meter_record_id": doc["meter_record_id"],
        "session_reference_id": data["session_reference_id"],
        "record_reference_id": data["record_reference_id"],
        "energy_flow_direction": doc["energy_flow_direction"],
        "tariff_direction": doc["tariff_direction"],
        "currency_code": doc["currency_code"],
        "location_timezone": doc["location_timezone"],
        "start_time": datetime.fromisoformat(data["start_time"]),
        "end_time": datetime.fromisoformat(data["end_time"]),
        "energy_kwh": data["energy"]["value"],
        "cost": data["cost"]["value"],
        "confidence": data["cost"]["confidence"],
        "time_created": datetime.fromisoformat(doc["time_created"]),
    }
    actual = {key: row[key] for key in expected}
    assert actual == expected
    for key in ("energy_kwh", "cost", "confidence"):  # same digits, not just equal value
        assert str(row[key]) == str(expected[key]), key
    assert loads(row["request"]) == doc["request"]


# -- the tests ----------------------------------------------------------------------------------


async def test_rows_match_events_once_and_simulated_never_land(
    kafka_bootstrap: str, database: str, topic_prefix: str, topics: dict[str, str]
) -> None:
    real = [energy_cost(n, export=n % 5 == 0) for n in range(60)]
    simulated = [energy_cost(n, simulated=True) for n in range(60, 75)]
    poison: list[tuple[bytes | None, bytes | None]] = [
        (b"loc_1", b"{not json"),
        (b"loc_2", dumps({**real[0], "cost": "extra field"})),
        (b"loc_3", b"\xff\xfe binary"),
        (b"loc_4", None),
    ]
    # Valid for the model, but not storable: beyond NUMERIC's range (which asyncpg would
    # silently write as 0), the same inside the jsonb `request`, a lone surrogate in a string.
    too_big = energy_cost(900)
    too_big["data"]["energy"]["value"] = Decimal("1E+200000")
    big_in_request = energy_cost(901)
    big_in_request["request"]["energy"] = Decimal("1E+200000")
    surrogate = dumps(energy_cost(902)).replace(b'"acc_0"', b'"acc_\\ud800"')
    poison += [cost_message(too_big), cost_message(big_in_request), (b"loc_5", surrogate)]
    first_round = [cost_message(d) for d in real + simulated + real[:20]]  # + in-batch duplicates
    placed = await produce(kafka_bootstrap, topics["energy-costs"], first_round + poison)
    poison_places = placed[len(first_round) :]
    await produce(
        kafka_bootstrap,
        topics["locations"],
        [
            (b"loc_a", dumps(profile("loc_a"))),
            (b"loc_b", dumps(profile("loc_b"))),
            (b"loc_b", None),  # tombstone
            (b"loc_a", dumps(profile("loc_a", currency="EUR", devices=3))),
            (b"loc_c", b"not a profile"),
        ],
    )
    config = sink_config(kafka_bootstrap, database, topic_prefix)
    sink = Sink(config, sink_clients(config))
    async with running(sink):
        await wait_drained(
            kafka_bootstrap, config.group_id, config.costs_topic, "the first round to be committed"
        )
        # A replay of everything already stored, after it was committed (a later batch).
        await produce(kafka_bootstrap, topics["energy-costs"], [cost_message(d) for d in real])
        await wait_drained(
            kafka_bootstrap, config.group_id, config.costs_topic, "the replay to be committed"
        )
    assert sink.health.healthy

    rows = {r["id"]: r for r in await fetch(database, "SELECT * FROM energy_costs")}
    assert sorted(rows) == sorted(d["id"] for d in real)
    for doc in real:
        assert_row_matches(rows[doc["id"]], doc)
        assert rows[doc["id"]]["source_topic"] == topics["energy-costs"]
    sources = {(r["source_partition"], r["source_offset"]) for r in rows.values()}
    assert len(sources) == len(real)  # where each row was first read

    breakdown = await fetch(database, "SELECT * FROM energy_cost_breakdown ORDER BY cost_id, seq")
    assert len(breakdown) == 2 * len(real)
    by_id = {d["id"]: d for d in real}
    for item in breakdown:
        expected = by_id[item["cost_id"]]["data"]["breakdown"][item["seq"]]
        assert item["start_time"] == datetime.fromisoformat(expected["start_time"])
        assert item["end_time"] == datetime.fromisoformat(expected["end_time"])
        for column, key in (("rate", "rate"), ("energy_kwh", "energy"), ("cost", "cost")):
            assert item[column] == expected[key]
            assert str(item[column]) == str(expected[key])

    assert sink.health.stats.simulated_skipped == len(simulated)
    assert sink.health.stats.costs_inserted == len(real)
    assert sink.health.stats.costs_already_stored == 20 + len(real)

    letters = await read_all(kafka_bootstrap, topics["dead-letters"], expected=len(poison))
    assert [d.error.code.value for d in letters] == ["invalid_record"] * len(poison)
    by_place = {(d.source.partition, d.source.offset): d for d in letters if d.source}
    assert {d.source.topic for d in letters if d.source} == {topics["energy-costs"]}
    not_json, not_a_cost, not_utf8, empty, unstorable, *refused = (
        by_place[p] for p in poison_places
    )
    assert not_json.payload == "{not json"
    assert "cost" in not_a_cost.error.message
    assert loads(not_a_cost.payload) == loads(poison[1][1] or b"")
    assert not_utf8.payload_encoding == "base64"
    assert base64.b64decode(not_utf8.payload) == poison[2][1]
    assert empty.payload == ""
    assert "beyond the range" in unstorable.error.message
    assert loads(unstorable.payload)["id"] == too_big["id"]
    big_letter, surrogate_letter = refused
    assert "could not be stored" in big_letter.error.message
    assert loads(big_letter.payload)["id"] == big_in_request["id"]
    assert LONE_SURROGATE in surrogate_letter.error.message  # refused as it is read
    assert loads_tolerant(surrogate_letter.payload)["id"] == "ecs_0000000902_real"
    assert sink.health.stats.dead_lettered == len(poison)

    mirror = {
        r["location_id"]: r
        for r in await fetch(database, "SELECT * FROM locations ORDER BY location_id")
    }
    assert sorted(mirror) == ["loc_a", "loc_b"]
    assert mirror["loc_a"]["currency_code"] == "EUR"
    assert mirror["loc_a"]["devices"] == ["dev_0", "dev_1", "dev_2"]
    assert mirror["loc_a"]["deleted"] is False
    assert loads(mirror["loc_a"]["profile"])["tariffs"]["IMPORT"][0]["rate"] == Decimal("0.2451")
    assert mirror["loc_b"]["deleted"] is True


async def read_all(bootstrap: str, topic: str, expected: int) -> list[DeadLetter]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    letters: list[DeadLetter] = []
    try:
        deadline = time.monotonic() + 30
        while len(letters) < expected and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                letters.extend(DeadLetter.model_validate(loads(r.value)) for r in records)
    finally:
        await consumer.stop()
    assert len(letters) == expected
    return letters


# -- crash: SIGKILL mid-batch, restart ----------------------------------------------------------


async def start_sink_process(env: dict[str, str], log: Path) -> asyncio.subprocess.Process:
    meterflow = str(Path(sys.executable).with_name("meterflow"))
    with log.open("ab") as stderr:  # a file, not a pipe: a full pipe would block the sink
        return await asyncio.create_subprocess_exec(
            meterflow, "sink", env=env, stdout=asyncio.subprocess.DEVNULL, stderr=stderr
        )


async def test_sigkill_mid_batch_loses_nothing_and_doubles_nothing(
    kafka_bootstrap: str, database: str, topic_prefix: str, topics: dict[str, str], tmp_path: Path
) -> None:
    total = 30_000
    docs = [energy_cost(n) for n in range(total)]
    await produce(kafka_bootstrap, topics["energy-costs"], [cost_message(d) for d in docs])
    group = f"{topic_prefix}sink"
    env = {
        **os.environ,
        "MF_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "MF_DATABASE_URL": database,
        "MF_TOPIC_PREFIX": topic_prefix,
        "MF_SINK_GROUP_ID": group,
        "MF_SINK_BATCH_SIZE": "1000",
        "MF_SINK_LINGER_MS": "50",
        "MF_SINK_HTTP_PORT": "0",
        "MF_LOG_FORMAT": "json",
    }
    violations: list[tuple[int, int]] = []

    async def watch_order() -> None:
        """Offsets may never run ahead of the rows: committed records <= rows stored."""
        while True:
            committed = await committed_total(kafka_bootstrap, group, topics["energy-costs"])
            stored = await count_costs(database)
            if committed > stored:
                violations.append((committed, stored))
            await asyncio.sleep(0.1)

    watcher = asyncio.create_task(watch_order())
    proc: asyncio.subprocess.Process | None = None
    try:
        for threshold in (3_000, 15_000):
            proc = await start_sink_process(env, tmp_path / f"sink-{threshold}.log")
            await wait_for(
                lambda t=threshold: has_rows(database, t), f"{threshold} rows before the kill"
            )
            proc.send_signal(signal.SIGKILL)
            await proc.wait()
            assert proc.returncode == -signal.SIGKILL
        # Nothing runs now: rows stored but not committed are what the next sink must re-read.
        stored = await count_costs(database)
        committed = await committed_total(kafka_bootstrap, group, topics["energy-costs"])
        assert 15_000 <= stored <= total
        final_log = tmp_path / "sink-final.log"
        proc = await start_sink_process(env, final_log)
        await wait_drained(
            kafka_bootstrap,
            group,
            topics["energy-costs"],
            "the restarted sink to commit everything",
        )
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 60)
        err = final_log.read_text()
        assert proc.returncode == 0, err[-2000:]
        assert '"gc_frozen", "process": "sink"' in err  # startup objects kept off the collector
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        if proc is not None and proc.returncode is None:  # never leave a sink running
            proc.kill()
            await proc.wait()

    assert violations == []
    counts = await fetch(
        database,
        "SELECT count(*) AS n, count(DISTINCT id) AS ids, count(DISTINCT meter_record_id) AS mres "
        "FROM energy_costs",
    )
    assert (counts[0]["n"], counts[0]["ids"], counts[0]["mres"]) == (total, total, total)
    breakdown = await fetch(database, "SELECT count(*) AS n FROM energy_cost_breakdown")
    assert breakdown[0]["n"] == 2 * total
    final_stats = last_stats(err)
    assert final_stats["costs_inserted"] == total - stored
    assert final_stats["costs_already_stored"] == stored - committed  # the replayed tail


async def has_rows(url: str, at_least: int) -> bool:
    return await count_costs(url) >= at_least


def last_stats(stderr: str) -> dict[str, int]:
    for line in reversed(stderr.splitlines()):
        with contextlib.suppress(ValueError):
            doc = loads(line)
            if doc.get("event") == "sink_stopped":
                stats: dict[str, int] = doc["stats"]
                return stats
    pytest.fail(f"no sink_stopped log line in:\n{stderr[-2000:]}")


async def steady_load(
    bootstrap: str, topic: str, produced: list[str], stop: asyncio.Event, start: int = 0
) -> None:
    """About 400 results a second, one in ten simulated, until `stop`; `produced` collects the
    ids that must land."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        n = start
        while not stop.is_set():
            for _ in range(40):
                doc = energy_cost(n, simulated=n % 10 == 0)
                key, value = cost_message(doc)
                await producer.send(topic, value, key=key)
                if not doc["non_persistent"]:
                    produced.append(doc["id"])
                n += 1
            await asyncio.sleep(0.1)
        await producer.flush()
    finally:
        await producer.stop()


class SteadyLoad:
    """`steady_load` in a task for one `async with` block: `produced` fills until `stop()`,
    which leaving the block also does (a failing test leaves no producer running)."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.produced: list[str] = []
        self._stop = asyncio.Event()
        self._task = asyncio.create_task(steady_load(bootstrap, topic, self.produced, self._stop))

    async def stop(self) -> None:
        self._stop.set()
        await self._task

    async def __aenter__(self) -> SteadyLoad:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()


# -- rebalances: a second member joins, the first one leaves --------------------------------------


async def test_rebalances_under_load_lose_nothing(
    kafka_bootstrap: str, database: str, topic_prefix: str, topics: dict[str, str]
) -> None:
    config = sink_config(kafka_bootstrap, database, topic_prefix, batch_size=300)
    first, second = Sink(config, sink_clients(config)), Sink(config, sink_clients(config))
    async with SteadyLoad(kafka_bootstrap, config.costs_topic) as load, running(first):
        await wait_for(lambda: has_rows(database, 500), "rows from the first member")
        async with running(second):  # joins: the group rebalances under load
            await wait_for(
                lambda: asyncio.sleep(0, second.health.stats.costs_inserted > 0),
                "the second member to write",
            )
            await asyncio.sleep(2)
        # the second member left (last checkpoint, then revoke): the first takes all back
        await asyncio.sleep(3)
        await load.stop()
        await wait_drained(
            kafka_bootstrap, config.group_id, config.costs_topic, "the first member to catch up"
        )

    ids = [r["id"] for r in await fetch(database, "SELECT id FROM energy_costs")]
    assert sorted(ids) == sorted(load.produced)
    assert first.health.stats.costs_inserted > 0
    assert second.health.stats.costs_inserted > 0
    inserted = first.health.stats.costs_inserted + second.health.stats.costs_inserted
    assert inserted == len(load.produced)  # each row inserted once; replays only ever skipped


# -- outage: PostgreSQL unreachable for 20 s under load -----------------------------------------


async def test_postgres_outage_under_load_then_everything_lands(
    kafka_bootstrap: str, database: str, topic_prefix: str, topics: dict[str, str]
) -> None:
    from aiohttp import ClientSession

    from meterflow.sink.health import start_health_server

    parsed = urlparse(database)
    proxy = CuttableProxy(parsed.hostname or "127.0.0.1", parsed.port or 5432)
    await proxy.start()
    via_proxy = proxy.via(database)
    batch_size = 1_000
    config = sink_config(
        kafka_bootstrap, via_proxy, topic_prefix, batch_size=batch_size, linger_s=0.1
    )
    sink = Sink(config, sink_clients(config))
    health_port = free_port()
    runner = await start_health_server(sink.health, "127.0.0.1", health_port)
    healthz = f"http://127.0.0.1:{health_port}/healthz"

    load = SteadyLoad(kafka_bootstrap, config.costs_topic)
    try:
        async with load, running(sink), ClientSession() as http:
            await wait_for(lambda: has_rows(database, 1_000), "rows before the outage")
            assert (await http.get(healthz)).status == 200

            await proxy.cut()
            await asyncio.sleep(4)
            assert not sink.health.healthy
            response = await http.get(healthz)
            assert response.status == 503
            assert (await response.json())["status"] == "unhealthy"
            committed_early = await committed_total(
                kafka_bootstrap, config.group_id, config.costs_topic
            )
            await asyncio.sleep(16)  # 20 s without the database, load still coming
            committed_late = await committed_total(
                kafka_bootstrap, config.group_id, config.costs_topic
            )
            assert committed_late == committed_early  # no offset moved while writes failed
            in_flight = sink.health.stats.records_read - committed_late
            assert in_flight <= 2 * batch_size  # paused: bounded while the producer went on
            assert len(load.produced) > committed_late + 2 * batch_size  # the backlog is real

            await proxy.start()  # the database is back
            await asyncio.sleep(3)
            await load.stop()
            await wait_drained(
                kafka_bootstrap, config.group_id, config.costs_topic, "the sink to catch up"
            )
            assert sink.health.healthy
            assert (await http.get(healthz)).status == 200
    finally:
        await runner.cleanup()
        if proxy._server is not None:
            await proxy.cut()

    ids = [r["id"] for r in await fetch(database, "SELECT id FROM energy_costs")]
    assert sorted(ids) == sorted(load.produced)
    assert sink.health.stats.write_failures >= 3  # it retried, with backoff
    assert not any(i.endswith("_sim") for i in ids)


async def test_postgres_that_hangs_under_load_fails_checkpoints_and_lets_the_sink_stop(
    kafka_bootstrap: str, database: str, topic_prefix: str, topics: dict[str, str]
) -> None:
    """A database that answers nothing (connections open, no byte back) must not hold the
    sink: each checkpoint gives up after the statement timeout (BEGIN had none), the health
    says so, the sink stops when asked, and a sink started after it stores everything once."""
    parsed = urlparse(database)
    proxy = CuttableProxy(parsed.hostname or "127.0.0.1", parsed.port or 5432)
    await proxy.start()
    via_proxy = proxy.via(database)
    config = sink_config(
        kafka_bootstrap, via_proxy, topic_prefix, batch_size=500, statement_timeout_s=2.0
    )
    sink = Sink(config, sink_clients(config))
    try:
        async with SteadyLoad(kafka_bootstrap, config.costs_topic) as load:
            stop = asyncio.Event()
            task = asyncio.create_task(sink.run(stop))
            await wait_for(lambda: has_rows(database, 500), "rows before the database hangs")
            proxy.hang()
            await wait_for(
                lambda: asyncio.sleep(0, not sink.health.healthy),
                "the health to say the database does not answer",
                within=30,
            )
            assert "PostgreSQL did not" in sink.health.reason
            committed = await committed_total(kafka_bootstrap, config.group_id, config.costs_topic)
            await asyncio.sleep(3)
            assert (
                await committed_total(kafka_bootstrap, config.group_id, config.costs_topic)
                == committed
            )  # no offset moved while nothing was written
            stop.set()  # asked to stop while the database still hangs: it must
            await asyncio.wait_for(task, 60)
            await load.stop()
        proxy.flow()
        async with running(Sink(config, sink_clients(config))):
            await wait_drained(
                kafka_bootstrap, config.group_id, config.costs_topic, "a new sink to catch up"
            )
    finally:
        proxy.flow()
        if proxy._server is not None:
            await proxy.cut()

    ids = [r["id"] for r in await fetch(database, "SELECT id FROM energy_costs")]
    assert sorted(ids) == sorted(load.produced)
    assert sink.health.stats.write_failures >= 1
