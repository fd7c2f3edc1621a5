"""Prometheus metrics of every meterflow process, and the ways to expose them.

All metric objects live here so names, labels and buckets are decided once (design §7:
`meterflow_` prefix, base units, counters end in `_total`). Adapters call the small helpers
below, one line per event, and never touch a metric object directly. Label values are bounded
(topic, partition, error code, route template, status): never a record, location or device id.

"Accepted" for the end-to-end latency is the Kafka record's timestamp (CreateTime, set by the
producer or by the HTTP API when it submits the record); "emitted" is when the worker hands the
EnergyCost to its producer. So the latency covers queueing in Kafka, the worker and pricing.
"""

from __future__ import annotations

import asyncio
import logging
import platform
import sys
import time
from bisect import bisect_left
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence, Sized
from typing import Any, Protocol

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    disable_created_metrics,
    generate_latest,
    start_http_server,
)
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from meterflow import __version__
from meterflow.models import ErrorCode

log = logging.getLogger(__name__)

__all__ = [
    "add_metrics_route",
    "costs_emitted",
    "database_error",
    "http_metrics_middleware",
    "install_faust_metrics",
    "metrics_handler",
    "observe_http_request",
    "pricing_observed",
    "record_consumed",
    "record_dead_lettered",
    "refresh_gauges",
    "set_consumer_lag",
    "set_sink_healthy",
    "set_table_entries",
    "sink_batch_written",
    "start_metrics_server",
    "time_pricing",
    "time_sink_write",
    "update_consumer_lag",
]

# Pricing one record is pure CPU work: tens of microseconds to a few milliseconds.
PRICING_BUCKETS = (
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    1.0,
)
# Record accepted -> cost emitted: milliseconds when idle, minutes when the worker lags behind.
END_TO_END_BUCKETS = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
    300.0,
    600.0,
    1800.0,
)
# One sink batch (COPY/INSERT of up to a few thousand rows + commit).
SINK_WRITE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
SINK_BATCH_ROWS_BUCKETS = (1, 5, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10000)
# HTTP requests: a priced record in a millisecond, a 10,000-record batch in seconds.
HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

UNMATCHED_ROUTE = "unmatched"

# No `*_created` series next to every counter and histogram: they double the series count and
# nothing here reads them.
disable_created_metrics()  # type: ignore[no-untyped-call]


class BatchHistogram(Collector):
    """A histogram observed a batch of values at a time, exposed as prometheus_client's own.

    `Histogram.observe` takes two locks and scans the buckets for each value (1.4-1.7 µs), and
    the cost agent observes two values per record; here a batch's values go through `bisect`
    into plain counts (bench/bench_metrics.py). One thread writes (the agent's event loop); a
    scrape may see part of a batch, as it may see part of an observation of `Histogram`.
    """

    def __init__(
        self,
        name: str,
        documentation: str,
        buckets: Sequence[float],
        registry: CollectorRegistry = REGISTRY,
    ) -> None:
        self._name = name
        self._documentation = documentation
        self._bounds = (*(float(b) for b in buckets), float("inf"))
        self._labels = [floatToGoString(b) for b in self._bounds]  # type: ignore[no-untyped-call]
        self._counts = [0] * len(self._bounds)
        self._sum = 0.0
        registry.register(self)

    def observe_many(self, values: Iterable[float]) -> None:
        counts, bounds, total = self._counts, self._bounds, 0.0
        for value in values:
            counts[bisect_left(bounds, value)] += 1  # the first bucket with value <= le
            total += value
        self._sum += total

    def observe(self, value: float) -> None:
        self.observe_many((value,))

    def describe(self) -> list[HistogramMetricFamily]:
        return [HistogramMetricFamily(self._name, self._documentation)]

    def collect(self) -> Iterator[HistogramMetricFamily]:
        family = HistogramMetricFamily(self._name, self._documentation)
        cumulative, buckets = 0, []
        for label, count in zip(self._labels, list(self._counts), strict=True):
            cumulative += count
            buckets.append((label, cumulative))
        family.add_metric([], buckets, self._sum)
        yield family


# --- stream worker ---------------------------------------------------------------------------
RECORDS_CONSUMED = Counter(
    "meterflow_records_consumed_total",
    "Records taken from a topic by a meterflow consumer (cost agent: meter records; sink: costs).",
    ["topic"],
)
INPUTS = ("meter-records", "meter-readings", "energy-costs")
"""The `input` label: the (logical) topic a priced or dead-lettered record came from: the cost
agent's meter records, the readings agent's readings, the sink's results. An alert on meter
records filters on it: readings and the sink dead-letter for their own reasons."""
RECORDS_PRICED = Counter(
    "meterflow_records_priced_total",
    "EnergyCosts emitted, by input: meter-records (cost agent), meter-readings (readings agent).",
    ["input"],
)
RECORDS_DEAD_LETTERED = Counter(
    "meterflow_records_dead_lettered_total",
    "Records sent to the dead-letter topic, by input topic and error code.",
    ["input", "code"],
)
READINGS_CONSUMED = Counter(
    "meterflow_readings_consumed_total",
    "Cumulative register readings taken from meter-readings by the readings agent.",
)
READING_INTERVALS = Counter(
    "meterflow_reading_intervals_derived_total",
    "Interval records derived from two register readings (replays after a crash included).",
)
READING_RESETS = Counter(
    "meterflow_reading_resets_total",
    "Register readings below the meter's latest one (reset, rollover, swap): register_reset.",
)
READINGS_STALE = Counter(
    "meterflow_readings_stale_total",
    "Register readings at or before the meter's latest time with another value: stale_reading.",
)
PRICING_DURATION = BatchHistogram(
    "meterflow_pricing_duration_seconds",
    "Time to turn one meter record's bytes into an EnergyCost or a dead letter.",
    buckets=PRICING_BUCKETS,
)
END_TO_END_LATENCY = BatchHistogram(
    "meterflow_end_to_end_latency_seconds",
    "From the record's Kafka timestamp (accepted) to its EnergyCost being emitted.",
    buckets=END_TO_END_BUCKETS,
)
CONSUMER_LAG = Gauge(
    "meterflow_consumer_lag_records",
    "Records not yet read by this process: the broker's end offset (else the last fetch's"
    " highwater) minus the consumer's position.",
    ["topic", "partition"],
)
TABLE_ENTRIES = Gauge(
    "meterflow_table_entries",
    "Entries held in a worker table (profiles: locations; market_prices: series-days; readings:"
    " meters).",
    ["table"],
)

# --- sink ------------------------------------------------------------------------------------
SINK_ROWS_WRITTEN = Counter(
    "meterflow_sink_rows_written_total",
    "EnergyCost rows written to PostgreSQL (duplicates skipped by ON CONFLICT not included).",
)
SINK_ROWS_DUPLICATE = Counter(
    "meterflow_sink_rows_duplicate_total",
    "EnergyCost rows already in PostgreSQL (a redelivery), skipped by ON CONFLICT DO NOTHING.",
)
SINK_ROWS_REPLACED = Counter(
    "meterflow_sink_rows_replaced_total",
    "EnergyCost rows replaced by a correction (the old version moved to energy_cost_history).",
)
SINK_BATCHES_WRITTEN = Counter(
    "meterflow_sink_batches_written_total",
    "Batches committed to PostgreSQL (and then their offsets to Kafka).",
)
SINK_BATCH_ROWS = Histogram(
    "meterflow_sink_batch_rows",
    "Rows per committed sink batch.",
    buckets=SINK_BATCH_ROWS_BUCKETS,
)
SINK_WRITE_DURATION = Histogram(
    "meterflow_sink_write_duration_seconds",
    "Time to write and commit one sink batch to PostgreSQL.",
    buckets=SINK_WRITE_BUCKETS,
)
# Registered on first use: a worker or API process must not expose a "sink unhealthy" 0.
SINK_HEALTHY = Gauge(
    "meterflow_sink_healthy",
    "1 while the sink can reach PostgreSQL and Kafka and is making progress, else 0.",
    registry=None,
)
DATABASE_ERRORS = Counter(
    "meterflow_database_errors_total",
    "Failed database operations (each retry that fails counts once).",
    ["operation"],
)
DATABASE_OPERATIONS = ("checkpoint", "probe", "request")
"""The `operation` label: the sink's checkpoint (a batch written), the idle sink's question to
the database (`SELECT 1`), an API request's queries."""

# --- HTTP API --------------------------------------------------------------------------------
HTTP_REQUESTS = Counter(
    "meterflow_http_requests_total",
    "HTTP requests answered, by method, route template and status code.",
    ["method", "route", "status"],
)
HTTP_REQUEST_DURATION = Histogram(
    "meterflow_http_request_duration_seconds",
    "Time to answer an HTTP request, by method and route template.",
    ["method", "route"],
    buckets=HTTP_BUCKETS,
)

BUILD_INFO = Info("meterflow_build", "meterflow version and runtime (value is always 1).")
BUILD_INFO.info(
    {
        "version": __version__,
        "python_version": platform.python_version(),
        "implementation": sys.implementation.name,
    }
)

# Series that exist from the start, so rate() and the alert rules see zeros instead of nothing.
for _input in INPUTS:
    for _code in ErrorCode:
        RECORDS_DEAD_LETTERED.labels(input=_input, code=_code.value)
    if _input != "energy-costs":
        RECORDS_PRICED.labels(input=_input)
for _operation in DATABASE_OPERATIONS:
    DATABASE_ERRORS.labels(operation=_operation)


# --- helpers for the cost agent --------------------------------------------------------------
# Labelled children by label value: `.labels()` validates and locks on every call, which costs
# more than the increment itself on the per-record path (bench/bench_metrics.py).
_consumed_by_topic: dict[str, Any] = {}


def consuming(topics: Iterable[str]) -> None:
    """The series of the topics a process consumes, at zero from its start (their names carry
    the process's `MF_TOPIC_PREFIX`, so they cannot be made at import)."""
    for topic in topics:
        record_consumed(topic, 0)


def record_consumed(topic: str, count: int = 1) -> None:
    """A consumer took `count` records from `topic` (before decoding them)."""
    child = _consumed_by_topic.get(topic)
    if child is None:
        child = _consumed_by_topic[topic] = RECORDS_CONSUMED.labels(topic=topic)
    child.inc(count)


class _Timer:
    """`with` block timer observing into a histogram; lighter than `Histogram.time()`."""

    __slots__ = ("_histogram", "_started")

    def __init__(self, histogram: Histogram | BatchHistogram) -> None:
        self._histogram = histogram
        self._started = 0.0

    def __enter__(self) -> None:
        self._started = time.perf_counter()

    def __exit__(self, *exc_info: object) -> None:
        self._histogram.observe(time.perf_counter() - self._started)


def time_pricing() -> _Timer:
    """`with time_pricing(): result = price_payload(...)`: observes the pricing duration."""
    return _Timer(PRICING_DURATION)


def pricing_observed(durations: Iterable[float]) -> None:
    """A batch of records priced, each taking its duration in seconds (`time_pricing` for one)."""
    PRICING_DURATION.observe_many(durations)


def costs_emitted(
    input: str, accepted_at: Sequence[float | None], now: float | None = None
) -> None:
    """EnergyCosts priced from `input` (one of `INPUTS`) handed to the producer together, one
    per item of `accepted_at`: its source record's Kafka timestamp in seconds since the epoch
    (None or <= 0 when unknown: only the priced count moves)."""
    if not accepted_at:
        return
    RECORDS_PRICED.labels(input=input).inc(len(accepted_at))
    emitted_at = time.time() if now is None else now
    # A producer's clock may run ahead of ours: never observe a negative latency.
    END_TO_END_LATENCY.observe_many(
        max(0.0, emitted_at - accepted) for accepted in accepted_at if accepted and accepted > 0
    )


def record_dead_lettered(input: str, code: str | ErrorCode) -> None:
    """One record from `input` (one of `INPUTS`) sent to the dead-letter topic."""
    RECORDS_DEAD_LETTERED.labels(input=input, code=str(code)).inc()


def readings_consumed(count: int) -> None:
    READINGS_CONSUMED.inc(count)


def reading_intervals_derived(count: int) -> None:
    if count:
        READING_INTERVALS.inc(count)


def reading_reset() -> None:
    READING_RESETS.inc()


def reading_stale() -> None:
    READINGS_STALE.inc()


def set_table_entries(table: str, entries: int) -> None:
    TABLE_ENTRIES.labels(table=table).set(entries)


# --- consumer lag ----------------------------------------------------------------------------
_lag_series: set[tuple[str, str]] = set()


def set_consumer_lag(lags: Mapping[tuple[str, int], int]) -> None:
    """Replace the lag gauge with `{(topic, partition): records behind}`; partitions no longer
    assigned to this process (after a rebalance) are removed so they do not report stale lag."""
    current = {(topic, str(partition)): max(0, lag) for (topic, partition), lag in lags.items()}
    for stale in _lag_series - current.keys():
        CONSUMER_LAG.remove(*stale)
    for (topic, partition), lag in current.items():
        CONSUMER_LAG.labels(topic=topic, partition=partition).set(lag)
    _lag_series.clear()
    _lag_series.update(current)


class LagSource(Protocol):
    """What both a Faust consumer (`app.consumer`) and an aiokafka consumer offer."""

    def assignment(self) -> Iterable[Any]: ...

    def highwater(self, tp: Any) -> int | None: ...

    def position(self, tp: Any) -> Awaitable[int | None]: ...


_CHANGELOG = "-changelog"


EndOffsets = Callable[[list[Any]], Awaitable[Mapping[Any, int]]]
"""The broker's end offsets of some partitions (aiokafka's `end_offsets`, faust's
`highwaters`)."""


async def update_consumer_lag(
    consumer: LagSource,
    include: Callable[[str], bool] | None = None,
    position_timeout_s: float = 0.5,
    end_offsets: EndOffsets | None = None,
    written: Callable[[Any], bool] | None = None,
) -> dict[tuple[str, int], int]:
    """Compute lag = end offset - position for every assigned partition (optionally only topics
    for which `include(topic)` is true), publish it, and return it. Partitions whose end or
    position is not known yet (no fetch so far; a position still being reset after a rebalance,
    which aiokafka would wait for) are left out rather than reported as zero.

    The end offsets are the broker's (`end_offsets`, asked now) where given, else the consumer's
    highwater, which only a fetch updates: a consumer that stopped fetching a partition (a
    stuck agent, faust's full buffer, a paused sink) kept its lag flat, so no lag alert fired
    for a stalled worker. An answer that does not come within `position_timeout_s` falls back
    to the highwater.

    A table's changelog partition (`…-changelog`) is positioned by faust at the last offset it
    applied, not the next (`Recovery._seek_offsets`, faust's "offset-1 discrepancy"), so its lag
    is one less: a recovered table read 1 on every changelog partition for good. A changelog
    partition the process's own table writes (`written`, once recovered) is not read at all:
    its lag is 0, however far its end has moved with the table's writes."""
    assigned = [tp for tp in list(consumer.assignment()) if include is None or include(tp.topic)]
    ends: Mapping[Any, int] = {}
    if end_offsets is not None and assigned:
        try:
            ends = await asyncio.wait_for(end_offsets(assigned), position_timeout_s)
        except Exception:  # the broker slow or gone: the last fetched highwater, below
            log.debug("end offsets not read; lag from the last fetch", exc_info=True)
    lags: dict[tuple[str, int], int] = {}
    for tp in assigned:
        topic, partition = tp.topic, tp.partition
        if written is not None and written(tp):
            lags[(topic, partition)] = 0
            continue
        highwater = ends.get(tp)
        if highwater is None:
            highwater = consumer.highwater(tp)
        if highwater is None:
            continue
        try:
            position = await asyncio.wait_for(consumer.position(tp), position_timeout_s)
        except TimeoutError:
            continue
        if position is None:
            continue
        behind = highwater - position - (1 if topic.endswith(_CHANGELOG) else 0)
        lags[(topic, partition)] = max(0, behind)
    set_consumer_lag(lags)
    return lags


# --- helpers for the sink --------------------------------------------------------------------
_sink_healthy_registered = False


def time_sink_write() -> _Timer:
    """`with time_sink_write(): await writer.write(batch)`: observes one batch's write."""
    return _Timer(SINK_WRITE_DURATION)


def sink_batch_written(rows: int, duplicates: int = 0, replaced: int = 0) -> None:
    """A batch was committed: `rows` newly inserted, `duplicates` skipped (already stored, or
    an older version), `replaced` stored rows superseded by a correction."""
    SINK_BATCHES_WRITTEN.inc()
    SINK_ROWS_WRITTEN.inc(rows)
    SINK_ROWS_DUPLICATE.inc(duplicates)
    SINK_ROWS_REPLACED.inc(replaced)
    SINK_BATCH_ROWS.observe(rows + duplicates + replaced)


def set_sink_healthy(healthy: bool) -> None:
    global _sink_healthy_registered
    if not _sink_healthy_registered:
        REGISTRY.register(SINK_HEALTHY)
        _sink_healthy_registered = True
    SINK_HEALTHY.set(1 if healthy else 0)


def database_error(operation: str) -> None:
    """A database call failed (`operation`: one of `DATABASE_OPERATIONS`)."""
    DATABASE_ERRORS.labels(operation=operation).inc()


# --- HTTP ------------------------------------------------------------------------------------
def observe_http_request(method: str, route: str, status: int, seconds: float) -> None:
    HTTP_REQUESTS.labels(method=method, route=route, status=str(status)).inc()
    HTTP_REQUEST_DURATION.labels(method=method, route=route).observe(seconds)


def route_template(request: web.Request) -> str:
    """The matched route's template (`/locations/{location_id}`), never the raw path, so a label
    cannot grow with ids; requests that matched no route share one value."""
    resource = request.match_info.route.resource
    if resource is None:  # 404/405: aiohttp's system route
        return UNMATCHED_ROUTE
    return resource.canonical


_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def http_metrics_middleware(request: web.Request, handler: _Handler) -> web.StreamResponse:
    """aiohttp middleware counting every request by route template and status, with duration.
    Put it first in `middlewares=[...]` so it also sees the answers of the other middlewares."""
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        observe_http_request(
            request.method, route_template(request), status, time.perf_counter() - started
        )


# --- exposition ------------------------------------------------------------------------------
async def metrics_handler(request: web.Request) -> web.Response:
    """`GET /metrics` for an aiohttp app, in the Prometheus text format."""
    body = generate_latest(REGISTRY)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def add_metrics_route(app: web.Application, path: str = "/metrics") -> None:
    app.router.add_get(path, metrics_handler, name="metrics")


def start_metrics_server(port: int, host: str = "127.0.0.1") -> None:
    """Serve `/metrics` from a background thread, for processes without a web server (the sink).
    Port 0 means "no metrics server"."""
    if port:
        start_http_server(port, addr=host)


# --- the Faust worker ------------------------------------------------------------------------
async def refresh_gauges(
    consumer: LagSource | None,
    tables: Mapping[str, Sized] | None = None,
    end_offsets: EndOffsets | None = None,
    written: Callable[[Any], bool] | None = None,
) -> None:
    """Table sizes and consumer lag, read now (worker: both; sink: lag only). Never raises: a
    failed refresh is logged and the gauges keep their last values (no process stops over a
    metric)."""
    try:
        for name, table in (tables or {}).items():
            set_table_entries(name, len(table))
        if consumer is not None:
            await update_consumer_lag(consumer, end_offsets=end_offsets, written=written)
    except Exception:
        log.warning("refreshing worker gauges failed", exc_info=True)


def _faust_end_offsets(consumer: Any) -> EndOffsets:
    async def end_offsets(partitions: list[Any]) -> Mapping[Any, int]:
        ends: Mapping[Any, int] = await consumer.highwaters(*partitions)
        return ends

    return end_offsets


def install_faust_metrics(
    app: Any,
    tables: Mapping[str, Sized],
    refresh_interval_s: float = 5.0,
    path: str = "/metrics",
    written: Callable[[Any], bool] | None = None,
) -> None:
    """On a Faust app: serve `path` on the worker's web server and refresh the table-size and
    lag gauges every `refresh_interval_s` (a Faust timer, so only while the worker runs);
    `written`: the changelog partitions its own tables write (`update_consumer_lag`)."""

    async def metrics_page(view: Any, request: Any) -> Any:
        return view.bytes(generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def refresh() -> None:
        consumer = getattr(app, "consumer", None)
        ends = None if consumer is None else _faust_end_offsets(consumer)
        await refresh_gauges(consumer, tables, ends, written)

    app.page(path, name="meterflow_metrics")(metrics_page)
    app.timer(interval=refresh_interval_s)(refresh)
