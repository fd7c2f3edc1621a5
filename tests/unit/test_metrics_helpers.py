"""The metric helpers move exactly the series they promise, with bounded labels."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from aiokafka.errors import KafkaConnectionError
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import REGISTRY, CollectorRegistry, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from meterflow import metrics
from meterflow.models import ErrorCode


def value(name: str, **labels: str) -> float:
    sample = REGISTRY.get_sample_value(name, labels)
    return 0.0 if sample is None else sample


def test_record_consumed_counts_per_topic() -> None:
    before = value("meterflow_records_consumed_total", topic="x-meter-records")
    metrics.record_consumed("x-meter-records")
    metrics.record_consumed("x-meter-records", 4)
    assert value("meterflow_records_consumed_total", topic="x-meter-records") == before + 5


def test_costs_emitted_counts_and_observes_latency_from_the_record_timestamp() -> None:
    priced = value("meterflow_records_priced_total", input="meter-records")
    count = value("meterflow_end_to_end_latency_seconds_count")
    total = value("meterflow_end_to_end_latency_seconds_sum")
    le_1s = value("meterflow_end_to_end_latency_seconds_bucket", le="1.0")

    metrics.costs_emitted("meter-records", [1_000.0, 998.0], now=1_000.75)

    assert value("meterflow_records_priced_total", input="meter-records") == priced + 2
    assert value("meterflow_end_to_end_latency_seconds_count") == count + 2
    assert value("meterflow_end_to_end_latency_seconds_sum") == pytest.approx(total + 3.5)
    assert value("meterflow_end_to_end_latency_seconds_bucket", le="1.0") == le_1s + 1


def test_costs_emitted_without_timestamp_counts_but_observes_nothing() -> None:
    priced = value("meterflow_records_priced_total", input="meter-readings")
    count = value("meterflow_end_to_end_latency_seconds_count")
    metrics.costs_emitted("meter-readings", [None, -1.0])  # -1: Kafka's "no timestamp"
    metrics.costs_emitted("meter-readings", [])
    assert value("meterflow_records_priced_total", input="meter-readings") == priced + 2
    assert value("meterflow_end_to_end_latency_seconds_count") == count


def test_clock_skew_never_gives_a_negative_latency() -> None:
    total = value("meterflow_end_to_end_latency_seconds_sum")
    metrics.costs_emitted("meter-records", [2_000.0], now=1_999.0)
    assert value("meterflow_end_to_end_latency_seconds_sum") == pytest.approx(total)


def test_every_dead_letter_code_exists_from_the_start() -> None:
    for source in metrics.INPUTS:
        for code in ErrorCode:
            labels = {"input": source, "code": code.value}
            sample = REGISTRY.get_sample_value("meterflow_records_dead_lettered_total", labels)
            assert sample is not None, labels


def test_record_dead_lettered_by_input_and_code() -> None:
    """Each input counts on its own: an alert on meter records sees no reading's letter."""
    records = value(
        "meterflow_records_dead_lettered_total", input="meter-records", code="unknown_location"
    )
    readings = value(
        "meterflow_records_dead_lettered_total", input="meter-readings", code="unknown_location"
    )
    metrics.record_dead_lettered("meter-records", ErrorCode.UNKNOWN_LOCATION)
    metrics.record_dead_lettered("meter-records", "unknown_location")
    metrics.record_dead_lettered("meter-readings", "unknown_location")
    assert (
        value(
            "meterflow_records_dead_lettered_total", input="meter-records", code="unknown_location"
        )
        == records + 2
    )
    assert (
        value(
            "meterflow_records_dead_lettered_total", input="meter-readings", code="unknown_location"
        )
        == readings + 1
    )


@given(
    batches=st.lists(
        st.lists(
            st.one_of(
                st.sampled_from(metrics.PRICING_BUCKETS),  # on a bound: that bucket, `le`
                st.floats(min_value=0, max_value=5, allow_nan=False),
            ),
            max_size=20,
        ),
        max_size=5,
    )
)
def test_a_batch_histogram_exposes_what_prometheus_clients_histogram_does(
    batches: list[list[float]],
) -> None:
    """The reference: prometheus_client's Histogram observing the same values one by one."""
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    batched = metrics.BatchHistogram("h_seconds", "h", metrics.PRICING_BUCKETS, registry=ours)
    reference = Histogram("h_seconds", "h", buckets=metrics.PRICING_BUCKETS, registry=theirs)
    for batch in batches:
        batched.observe_many(batch)
        for value_ in batch:
            reference.observe(value_)

    def samples(registry: CollectorRegistry) -> dict[tuple[str, str], float]:
        text = generate_latest(registry).decode()
        return {
            (s.name, s.labels.get("le", "")): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
            if not s.name.endswith("_created")
        }

    got, expected = samples(ours), samples(theirs)
    assert got.keys() == expected.keys()
    for key, number in expected.items():
        assert got[key] == pytest.approx(number), key


def test_pricing_observed_counts_each_duration() -> None:
    count = value("meterflow_pricing_duration_seconds_count")
    le_100us = value("meterflow_pricing_duration_seconds_bucket", le="0.0001")
    metrics.pricing_observed([0.00002, 0.0001, 0.003])
    assert value("meterflow_pricing_duration_seconds_count") == count + 3
    assert value("meterflow_pricing_duration_seconds_bucket", le="0.0001") == le_100us + 2


def test_time_pricing_observes_one_duration() -> None:
    count = value("meterflow_pricing_duration_seconds_count")
    with metrics.time_pricing():
        pass
    assert value("meterflow_pricing_duration_seconds_count") == count + 1


def test_sink_helpers() -> None:
    rows = value("meterflow_sink_rows_written_total")
    dups = value("meterflow_sink_rows_duplicate_total")
    batches = value("meterflow_sink_batches_written_total")
    writes = value("meterflow_sink_write_duration_seconds_count")
    errors = value("meterflow_database_errors_total", operation="insert")

    with metrics.time_sink_write():
        metrics.sink_batch_written(rows=7, duplicates=2)
    metrics.database_error("insert")
    metrics.set_sink_healthy(False)
    assert value("meterflow_sink_healthy") == 0
    metrics.set_sink_healthy(True)

    assert value("meterflow_sink_rows_written_total") == rows + 7
    assert value("meterflow_sink_rows_duplicate_total") == dups + 2
    assert value("meterflow_sink_batches_written_total") == batches + 1
    assert value("meterflow_sink_write_duration_seconds_count") == writes + 1
    assert value("meterflow_database_errors_total", operation="insert") == errors + 1
    assert value("meterflow_sink_healthy") == 1


def test_table_entries() -> None:
    metrics.set_table_entries("profiles", 12)
    assert value("meterflow_table_entries", table="profiles") == 12


@dataclass(frozen=True)
class TP:
    topic: str
    partition: int


class FakeConsumer:
    def __init__(self, highwaters: dict[TP, int | None], positions: dict[TP, int | None]) -> None:
        self.highwaters = highwaters
        self.positions = positions

    def assignment(self) -> set[TP]:
        return set(self.highwaters)

    def highwater(self, tp: TP) -> int | None:
        return self.highwaters[tp]

    async def position(self, tp: TP) -> int | None:
        return self.positions[tp]


async def test_a_changelog_partition_lags_by_what_follows_the_offset_faust_applied() -> None:
    """faust positions a table's changelog at the last offset it applied: caught up there is
    highwater - 1 (no lag), an empty partition 0, and recovery still counts what is left."""
    done, empty, recovering = (TP("app-profiles-changelog", p) for p in range(3))
    consumer = FakeConsumer(
        highwaters={done: 270, empty: 0, recovering: 270},
        positions={done: 269, empty: 0, recovering: 100},
    )
    lags = await metrics.update_consumer_lag(consumer)
    assert lags == {
        ("app-profiles-changelog", 0): 0,
        ("app-profiles-changelog", 1): 0,
        ("app-profiles-changelog", 2): 169,
    }


async def test_a_changelog_partition_the_worker_writes_itself_has_no_lag() -> None:
    """Faust stops reading a changelog partition its own table writes once recovered, so
    its end moved with every write while its position stood: a worker pricing readings,
    caught up, read 3,713 there after 5 minutes and fired MeterflowConsumerLagGrowing."""
    written, standby = TP("app-readings-changelog", 0), TP("app-readings-changelog", 1)
    consumer = FakeConsumer(
        highwaters={written: 3_714, standby: 500},
        positions={written: 0, standby: 400},
    )
    lags = await metrics.update_consumer_lag(consumer, written=lambda tp: tp == written)
    assert lags == {
        ("app-readings-changelog", 0): 0,  # its own writes
        ("app-readings-changelog", 1): 99,  # a standby replica behind still counts
    }


async def test_update_consumer_lag_publishes_highwater_minus_position() -> None:
    a0, a1, b0, c0 = TP("lag-a", 0), TP("lag-a", 1), TP("lag-b", 0), TP("lag-c", 0)
    consumer = FakeConsumer(
        highwaters={a0: 100, a1: 5, b0: 9, c0: None},
        positions={a0: 40, a1: 5, b0: 1, c0: 3},
    )
    lags = await metrics.update_consumer_lag(consumer, include=lambda t: t != "lag-b")

    assert lags == {("lag-a", 0): 60, ("lag-a", 1): 0}  # lag-b excluded, lag-c not known yet
    assert value("meterflow_consumer_lag_records", topic="lag-a", partition="0") == 60
    assert value("meterflow_consumer_lag_records", topic="lag-a", partition="1") == 0
    assert (
        REGISTRY.get_sample_value(
            "meterflow_consumer_lag_records", {"topic": "lag-b", "partition": "0"}
        )
        is None
    )

    # After a rebalance partition 1 belongs to another worker: its series disappears.
    consumer.highwaters.pop(a1)
    consumer.highwaters[a0] = 120
    await metrics.update_consumer_lag(consumer, include=lambda t: t == "lag-a")
    assert value("meterflow_consumer_lag_records", topic="lag-a", partition="0") == 80
    assert (
        REGISTRY.get_sample_value(
            "meterflow_consumer_lag_records", {"topic": "lag-a", "partition": "1"}
        )
        is None
    )


async def test_http_middleware_labels_by_route_template_and_status() -> None:
    async def get_location(request: web.Request) -> web.Response:
        if request.match_info["location_id"] == "missing":
            raise web.HTTPNotFound()
        return web.json_response({"ok": True})

    async def boom(request: web.Request) -> web.Response:
        raise RuntimeError("bug")

    app = web.Application(middlewares=[metrics.http_metrics_middleware])
    app.router.add_get("/mx/locations/{location_id}", get_location)
    app.router.add_get("/mx/boom", boom)
    metrics.add_metrics_route(app)

    route = "/mx/locations/{location_id}"
    ok = value("meterflow_http_requests_total", method="GET", route=route, status="200")
    nf = value("meterflow_http_requests_total", method="GET", route=route, status="404")
    err = value("meterflow_http_requests_total", method="GET", route="/mx/boom", status="500")
    unmatched = value(
        "meterflow_http_requests_total", method="GET", route="unmatched", status="404"
    )
    durations = value("meterflow_http_request_duration_seconds_count", method="GET", route=route)

    async with TestClient(TestServer(app)) as client:
        assert (await client.get("/mx/locations/loc_1")).status == 200
        assert (await client.get("/mx/locations/loc_2")).status == 200
        assert (await client.get("/mx/locations/missing")).status == 404
        assert (await client.get("/mx/boom")).status == 500
        assert (await client.get("/mx/nowhere/at/all")).status == 404
        response = await client.get("/metrics")
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        body = await response.text()

    assert value("meterflow_http_requests_total", method="GET", route=route, status="200") == ok + 2
    assert value("meterflow_http_requests_total", method="GET", route=route, status="404") == nf + 1
    assert (
        value("meterflow_http_requests_total", method="GET", route="/mx/boom", status="500")
        == err + 1
    )
    assert (
        value("meterflow_http_requests_total", method="GET", route="unmatched", status="404")
        == unmatched + 1
    )
    assert (
        value("meterflow_http_request_duration_seconds_count", method="GET", route=route)
        == durations + 3
    )
    assert "loc_1" not in body  # ids never become label values
    assert "meterflow_build_info{" in body


def test_exposition_follows_the_naming_conventions() -> None:
    text = metrics.generate_latest(REGISTRY).decode()
    families = {
        f.name: f for f in text_string_to_metric_families(text) if f.name.startswith("meterflow")
    }
    expected = {
        "meterflow_records_consumed": "counter",
        "meterflow_records_priced": "counter",
        "meterflow_records_dead_lettered": "counter",
        "meterflow_pricing_duration_seconds": "histogram",
        "meterflow_end_to_end_latency_seconds": "histogram",
        "meterflow_consumer_lag_records": "gauge",
        "meterflow_table_entries": "gauge",
        "meterflow_sink_rows_written": "counter",
        "meterflow_sink_batches_written": "counter",
        "meterflow_sink_write_duration_seconds": "histogram",
        "meterflow_sink_healthy": "gauge",
        "meterflow_database_errors": "counter",
        "meterflow_http_requests": "counter",
        "meterflow_http_request_duration_seconds": "histogram",
        "meterflow_build_info": "gauge",
    }
    for name, kind in expected.items():
        assert name in families, name
        assert families[name].type == kind, name
    for family in families.values():
        if family.type == "counter":
            assert all(s.name.endswith("_total") for s in family.samples)
        for sample in family.samples:
            assert not {"location_id", "device_id", "id"} & set(sample.labels)


class StuckConsumer(FakeConsumer):
    async def position(self, tp: TP) -> int | None:
        await asyncio.sleep(3600)  # aiokafka waits while a position is being reset
        return None


async def test_a_position_that_does_not_come_is_skipped_not_awaited() -> None:
    consumer = StuckConsumer(highwaters={TP("lag-stuck", 0): 10}, positions={})
    lags = await metrics.update_consumer_lag(consumer, position_timeout_s=0.01)
    assert lags == {}


async def test_lag_is_read_against_the_brokers_end_not_the_last_fetch() -> None:
    """A consumer that stopped fetching a partition (a stuck agent, faust's full buffer, a
    paused sink) keeps its highwater where the last fetch left it: the lag stayed flat (0 here,
    3,000 in fact) and no alert fired for a stalled worker. The broker's end offsets, asked
    now, say how far behind it is; when they do not come, the highwater stands in."""
    stalled = TP("lag-stalled", 0)
    consumer = FakeConsumer(highwaters={stalled: 500}, positions={stalled: 500})

    async def ends(partitions: list[TP]) -> dict[TP, int]:
        return {tp: 3_500 for tp in partitions}

    assert await metrics.update_consumer_lag(consumer, end_offsets=ends) == {
        ("lag-stalled", 0): 3_000
    }

    async def gone(partitions: list[TP]) -> dict[TP, int]:
        raise KafkaConnectionError("broker down")

    async def slow(partitions: list[TP]) -> dict[TP, int]:
        await asyncio.sleep(3600)
        return {}

    for failing in (gone, slow):
        lags = await metrics.update_consumer_lag(
            consumer, end_offsets=failing, position_timeout_s=0.01
        )
        assert lags == {("lag-stalled", 0): 0}  # the last fetch's highwater


def test_database_errors_and_consumed_records_exist_from_the_start() -> None:
    """They appeared with the first error or batch: `rate()` missed that first one, and the
    dashboard's "Database errors" panel said "No data" where it meant 0."""
    for operation in metrics.DATABASE_OPERATIONS:
        value = REGISTRY.get_sample_value(
            "meterflow_database_errors_total", {"operation": operation}
        )
        assert value is not None, operation
    topic = "test-prefix.meter-records"
    labels = {"topic": topic}
    assert REGISTRY.get_sample_value("meterflow_records_consumed_total", labels) is None
    metrics.consuming([topic])
    assert REGISTRY.get_sample_value("meterflow_records_consumed_total", labels) == 0


def test_every_database_operation_counted_is_one_made_at_start() -> None:
    source = Path(metrics.__file__).parent
    named = {
        found
        for path in source.rglob("*.py")
        for found in re.findall(r'database_error\("([^"]*)"\)', path.read_text())
    }
    assert named == set(metrics.DATABASE_OPERATIONS)
