"""The Faust application: contract topics, the profile and market-price tables, two agents.

Built by `create_app(settings)`; nothing happens at import time. Values travel as raw bytes: the
cost engine needs the original payload (for pricing and for dead letters), and outputs are the
contract's exact JSON (`models.dumps`). Keys are UTF-8 strings as bytes.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from typing import Any

import faust
from faust.types import TP

from meterflow.contract.locations import decide_location
from meterflow.contract.market_prices import decide_market_prices
from meterflow.contract.topics import (
    DEAD_LETTERS,
    ENERGY_COSTS,
    LOCATIONS,
    MARKET_PRICES,
    MAX_DEAD_LETTER_BYTES,
    METER_READINGS,
    METER_RECORDS,
)
from meterflow.kafka_admin import bootstrap_servers
from meterflow.logs import event as log_event
from meterflow.metrics import consuming, install_faust_metrics
from meterflow.settings import Settings
from meterflow.stream import faust_fixes
from meterflow.stream.agents import (
    DocumentApplier,
    ProducerTopic,
    RecordPricer,
    no_current_event,
)
from meterflow.stream.applier import BatchApplier
from meterflow.stream.backpressure import stream_buffer_size
from meterflow.stream.batches import take_batches, uncontended_callback_lookup
from meterflow.stream.bulk_recovery import bulk_recover
from meterflow.stream.catch_up import CatchUpInterruptedError, ProfilesCatchUp
from meterflow.stream.delivery import lean_raw_delivery
from meterflow.stream.end_offsets import end_offsets_apart
from meterflow.stream.lookups import MarketPricesLookup, ProfileLookup
from meterflow.stream.partitioner import cached_murmur2_partitioner
from meterflow.stream.readings import ReadingsAgent, TableChangelog
from meterflow.stream.startup import no_table_registration_pause

log = logging.getLogger(__name__)

PROFILES_TABLE = "profiles"
MARKET_PRICES_TABLE = "market-prices"
READINGS_TABLE = "readings"  # latest register readings per meter (design §10)


def faust_broker_url(settings: Settings) -> str:
    return ";".join(f"kafka://{server}" for server in bootstrap_servers(settings))


def faust_app_id(settings: Settings) -> str:
    """Consumer group and changelog prefix; carries the topic prefix so environments never mix."""
    return f"{settings.topic_prefix}{settings.app_id}"


def create_app(settings: Settings) -> faust.App:
    app = faust.App(
        faust_app_id(settings),
        broker=faust_broker_url(settings),
        store=settings.store,
        datadir=settings.data_dir,
        autodiscover=False,
        key_serializer="raw",
        value_serializer="raw",
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.topic_replication,
        table_standby_replicas=settings.table_standby_replicas,
        processing_guarantee="at_least_once",
        stream_publish_on_commit=False,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=settings.broker_session_timeout_s,
        broker_heartbeat_interval=settings.broker_heartbeat_interval_s,
        broker_commit_interval=settings.commit_interval_s,
        # Gathers per-message sends (dead letters, changelog writes) into fewer produce
        # requests. Costs do not wait for it: the cost agent ships closed batches per partition
        # (`ProducerTopic.send_many`).
        producer_linger=settings.producer_linger_s,
        producer_max_batch_size=262144,
        producer_max_request_size=MAX_DEAD_LETTER_BYTES,  # a letter outgrows its record
        producer_partitioner=cached_murmur2_partitioner,
        broker_max_poll_records=settings.max_poll_records,
        stream_buffer_maxsize=stream_buffer_size(
            settings.topic_partitions, settings.max_poll_records
        ),
        web_enabled=settings.worker_web_enabled,
        web_bind=settings.worker_web_host,
        web_host=settings.worker_web_host,
        web_port=settings.worker_web_port,
    )

    def raw_topic(name: str, *, compacted: bool) -> Any:
        return app.topic(
            settings.topic(name),
            key_serializer="raw",
            value_serializer="raw",
            partitions=settings.topic_partitions,
            compacting=compacted or None,
            deleting=not compacted or None,
        )

    meter_records = raw_topic(METER_RECORDS, compacted=False)
    meter_readings = raw_topic(METER_READINGS, compacted=False)
    gaps = faust_fixes.guard_input(
        app, settings.topic(METER_RECORDS), settings.topic(METER_READINGS)
    )
    faust_fixes.guard_recovery(app)  # a changelog recovery never waits forever
    faust_fixes.bound_fetch_wait(app, settings.fetch_max_wait_ms)  # before the consumer is made
    uncontended_callback_lookup(app)  # before the consumer is made: its fetch callback
    lean_raw_delivery(app)  # every topic above and below is raw
    locations = raw_topic(LOCATIONS, compacted=True)
    market_prices_topic = raw_topic(MARKET_PRICES, compacted=True)
    energy_costs = ProducerTopic(app, settings.topic(ENERGY_COSTS))
    dead_letters = ProducerTopic(app, settings.topic(DEAD_LETTERS))

    profiles = app.Table(
        PROFILES_TABLE,
        partitions=settings.topic_partitions,
        key_type=bytes,  # "raw": the documents exactly as published
        value_type=bytes,
    )
    # A memory store reads its changelog on every start: in bulk, not through faust's
    # per-record recovery (~150 µs each; docs/stream.md, "Profiles at scale").
    bulk_recover(profiles, bootstrap_servers(settings))
    no_table_registration_pause()  # every table is defined above, before the worker starts
    # Every worker holds all market prices (a DYNAMIC series is shared by many locations, so
    # it cannot be co-partitioned). Using `market-prices` itself as the changelog would spare the
    # agent below, but faust's assignor stalls on a changelog that is also a source topic.
    market_prices = app.GlobalTable(
        MARKET_PRICES_TABLE,
        partitions=settings.topic_partitions,
        key_type=bytes,  # "raw": the documents exactly as published
        value_type=bytes,
    )

    # Co-partitioned with `meter-readings` (both keyed by location): each meter's state lives
    # in the changelog partition of its readings (docs/stream.md, "Readings: crash safety").
    readings_table = app.Table(
        READINGS_TABLE,
        partitions=settings.topic_partitions,
        key_type=bytes,
        value_type=bytes,
    )
    bulk_recover(readings_table, bootstrap_servers(settings))  # as the profiles, with memory://

    locations_topic = settings.topic(LOCATIONS)

    async def locations_end_offsets(partition: int) -> dict[int, int]:
        assigned = {tp.partition for tp in app.consumer.assignment() if tp.topic == locations_topic}
        # not `app.consumer.highwaters`: it queues behind the consumer's long-polling fetch
        partitions = sorted(assigned | {partition})
        return await end_offsets_apart(bootstrap_servers(settings), locations_topic, partitions)

    def locations_committed(partition: int) -> int | None:
        # faust keeps the group's committed offsets here (no public accessor in 0.15.3)
        offsets = getattr(app.consumer, "_committed_offset", {})
        committed: int | None = offsets.get(TP(locations_topic, partition))
        return committed

    catch_up = ProfilesCatchUp(
        end_offsets=locations_end_offsets,
        committed_offset=locations_committed,
        flow_active=app.flow_control.is_active,  # suspended by a rebalance (and the stop)
    )

    async def on_assigned(*args: Any, **kwargs: Any) -> None:
        catch_up.reset()

    app.on_partitions_assigned.connect(on_assigned)

    # The agents read the profiles from the store itself (`table.data`: the table's own
    # `get` adds faust's per-read sensor call, ~2 µs a record), and write the tables' stores
    # themselves. A memory store is one dict for every partition, so they need no current
    # event (~1 µs each); RocksDB reads and writes the current event's partition only.
    enter_event: Callable[[Any], None] = faust_fixes.enter_event
    if settings.store.startswith("memory:"):
        enter_event = no_current_event
    pricer = RecordPricer(
        before_partition=catch_up.wait,
        enter_event=enter_event,
        profiles=ProfileLookup(_TableData(profiles)),
        market_prices=MarketPricesLookup(market_prices),
        energy_costs=energy_costs,
        dead_letters=dead_letters,
        max_record_hours=settings.max_record_hours,
    )
    readings_topic = settings.topic(METER_READINGS)

    def readings_committed(partition: int) -> int | None:
        offsets = getattr(app.consumer, "_committed_offset", {})
        committed: int | None = offsets.get(TP(readings_topic, partition))
        return committed

    readings_changelog = TableChangelog(app, readings_table)
    readings = ReadingsAgent(
        table=_LocalStore(readings_changelog),
        changelog=readings_changelog.send,
        profiles=ProfileLookup(_TableData(profiles)),
        market_prices=MarketPricesLookup(market_prices),
        energy_costs=energy_costs,
        dead_letters=dead_letters,
        max_record_hours=settings.max_record_hours,
        committed_offset=readings_committed,
        enter_event=enter_event,
        before_partition=catch_up.wait,
    )
    profiles_changelog = TableChangelog(app, profiles)
    applier = BatchApplier(
        store=_TableData(profiles),
        changelog=profiles_changelog.send,
        dead_letters=dead_letters,
        decide=decide_location,
        kind="profile",
        enter_event=enter_event,
        on_applied=catch_up.applied,
    )
    prices_applier = DocumentApplier(
        table=market_prices,
        dead_letters=dead_letters,
        decide=decide_market_prices,
        kind="market_prices",
    )

    async def guarded_input(
        stream: faust.StreamT[Any], body: Callable[[list[Any]], Awaitable[None]]
    ) -> None:
        """An input topic's agent loop: batches (pricing runs back to back, +15-25 % measured)
        taken from the agent's queue without faust's per-event stream path (`take_batches`:
        acked after `body` ran), each event admitted by the gap guard. A batch whose profiles
        wait a rebalance interrupted is turned away: `body` sent and stored nothing of it, and
        it is fetched again after the seek."""
        async for events in take_batches(stream, settings.price_batch_size, within=0.005):
            with gaps.handling():
                admitted = [event for event in events if await gaps.admit(event)]
                try:
                    await body(admitted)
                except CatchUpInterruptedError:
                    gaps.turn_away(admitted)

    async def price_records(stream: faust.StreamT[Any]) -> None:
        await guarded_input(stream, pricer.on_events)

    async def derive_intervals(stream: faust.StreamT[Any]) -> None:
        await guarded_input(stream, readings.on_events)

    async def apply_profiles(stream: faust.StreamT[Any]) -> None:
        # Batches of what is queued already (`within=0`): a profile is never held back to
        # wait for more (a record sent right after its profile was priced first with
        # `take_events(500, within=5 ms)`: docs/stream.md, "Profiles at scale"). Acked after
        # the body ran, i.e. after the batch's changelog records are with the producer.
        async for events in take_batches(stream, settings.price_batch_size, within=0):
            await applier.on_events(events)

    async def apply_market_prices(stream: faust.StreamT[Any]) -> None:
        async for event in stream.events():
            await prices_applier.on_event(event)

    # concurrency=1: faust-streaming #606 commits past in-flight events otherwise (design §4).
    app.agent(meter_records, name="price-records", concurrency=1)(price_records)
    app.agent(meter_readings, name="derive-intervals", concurrency=1)(derive_intervals)
    app.agent(locations, name="apply-profiles", concurrency=1)(apply_profiles)
    app.agent(market_prices_topic, name="apply-market-prices", concurrency=1)(apply_market_prices)

    reported = [-1, -1]
    reported_readings = [-1]

    async def report_progress() -> None:
        """A periodic line with this worker's totals (operators, and tests, read it)."""
        if reported != [pricer.priced, pricer.dead_lettered]:
            reported[:] = [pricer.priced, pricer.dead_lettered]
            log_event(
                log, "pricing_progress", priced=pricer.priced, dead_lettered=pricer.dead_lettered
            )
        if reported_readings != [readings.consumed]:
            reported_readings[:] = [readings.consumed]
            log_event(
                log,
                "readings_progress",
                consumed=readings.consumed,
                intervals=readings.intervals,
                priced=readings.priced,
                dead_lettered=readings.dead_lettered,
            )

    app.timer(interval=settings.progress_interval_s)(report_progress)
    # /metrics on the worker's web port; table sizes and consumer lag refreshed by a timer.
    install_faust_metrics(
        app,
        {"profiles": profiles, "market_prices": market_prices, "readings": readings_table},
        settings.progress_interval_s,
        written=faust_fixes.written_changelogs(app),
    )
    consuming([settings.topic(METER_RECORDS)])  # the cost agent's count, at zero from the start
    return app


class _TableData(MutableMapping[bytes, bytes]):
    """A faust table's local store (made by faust on first use): writes send no changelog."""

    def __init__(self, table: Any) -> None:
        self._table = table

    def __getitem__(self, key: bytes) -> bytes:
        value: bytes = self._table.data[key]
        return value

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self._table.data[key] = value

    def __delitem__(self, key: bytes) -> None:
        del self._table.data[key]

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._table.data)

    def __len__(self) -> int:
        return len(self._table.data)


class _LocalStore(MutableMapping[bytes, bytes]):
    """The readings table seen as a mapping whose writes go to the local store only (the
    changelog records are `TableChangelog.send`'s)."""

    def __init__(self, changelog: TableChangelog) -> None:
        self._changelog = changelog

    @property
    def _data(self) -> Any:
        return self._changelog.table.data  # faust makes the store on first use

    def __getitem__(self, key: bytes) -> bytes:
        value: bytes = self._data[key]
        return value

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self._changelog.store(key, value)

    def __delitem__(self, key: bytes) -> None:
        raise NotImplementedError("readings are never deleted")

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)
