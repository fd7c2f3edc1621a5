"""`meterflow sink`: energy-costs (and locations) -> PostgreSQL, offsets committed after the DB.

A plain aiokafka consumer with manual commits (docs/sink.md says why not a Faust agent). The loop
reads into a bounded `Batch` while the previous batch is written (at most one checkpoint in
flight, so commits stay in order); `checkpoint()` is the one place that orders the effects:

    1. rows and location changes, one database transaction
    2. dead letters, acknowledged by the broker
    3. offsets, for partitions this member still owns

A crash between any two steps replays the batch: rows are deduplicated by their primary key, so
replays cost a little time and never a row. While the database is down, checkpoint attempts are
spaced by capped exponential backoff, offsets stay where they are, the failed batch is kept (merged
ahead of what was read since) and a full batch pauses the partitions, so memory stays bounded
(two batches at most) until the database returns.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener
from aiokafka.errors import KafkaError
from aiokafka.structs import ConsumerRecord, TopicPartition

from meterflow import metrics
from meterflow.contract.topics import DEAD_LETTERS, ENERGY_COSTS, LOCATIONS
from meterflow.logs import event
from meterflow.models import dumps
from meterflow.settings import Settings
from meterflow.sink.batch import Batch
from meterflow.sink.decode import Ignored, Poison, decode_cost, decode_location, invalid_record
from meterflow.sink.health import SinkHealth
from meterflow.sink.rows import Source
from meterflow.sink.writer import PostgresWriter, WriteResult

log = logging.getLogger(__name__)

IDLE_POLL_MS = 500
LAG_REFRESH_S = 5.0  # how often the consumer-lag gauge is refreshed
BUSY_POLL_MS = 5
DECODE_CHUNK = 50
"""Records decoded per loop step (~1 ms of CPU): between chunks the checkpoint in flight gets
the loop for its round trips (BEGIN, two COPYs, COMMIT, the offset commit), so writing and
decoding really overlap; each round trip waits for the chunk being decoded, so smaller chunks
keep PostgreSQL busier (measured: 250 -> 50 gave +15-25 % results/s, docs/sink.md)."""
RETRY_BASE_S = 0.2


@dataclass(frozen=True)
class SinkConfig:
    bootstrap: str
    database_url: str
    costs_topic: str
    locations_topic: str
    dead_letters_topic: str
    group_id: str
    batch_size: int
    linger_s: float
    retry_max_s: float

    @classmethod
    def from_settings(cls, settings: Settings) -> SinkConfig:
        return cls(
            bootstrap=settings.kafka_bootstrap,
            database_url=settings.database_url,
            costs_topic=settings.topic(ENERGY_COSTS),
            locations_topic=settings.topic(LOCATIONS),
            dead_letters_topic=settings.topic(DEAD_LETTERS),
            group_id=settings.sink_group_id,
            batch_size=settings.sink_batch_size,
            linger_s=settings.sink_linger_ms / 1000,
            retry_max_s=settings.sink_retry_max_s,
        )


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, sink: Sink) -> None:
        self._sink = sink

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._sink.on_partitions_revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self._sink.on_partitions_assigned(assigned)


class Sink:
    def __init__(self, config: SinkConfig, health: SinkHealth | None = None) -> None:
        self.config = config
        self.health = health or SinkHealth()
        self._writer = PostgresWriter(config.database_url)
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=config.bootstrap,
            group_id=config.group_id,
            client_id=f"{config.group_id}-sink",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=4 * 1024 * 1024,
            session_timeout_ms=10_000,
            heartbeat_interval_ms=1_000,
        )
        self._producer = AIOKafkaProducer(
            bootstrap_servers=config.bootstrap, acks="all", enable_idempotence=True
        )
        self._batch = Batch()  # being filled
        self._writing: asyncio.Task[None] | None = None  # the one checkpoint in flight
        self._writing_records = 0
        self._lock = asyncio.Lock()  # one checkpoint at a time (loop vs. rebalance callbacks)
        self._rebalancing = False
        self._failures = 0
        self._retry_at = 0.0
        self._paused = False
        self._lag_refresh_at = 0.0

    # -- lifecycle -----------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until `stop` is set, then make one last checkpoint attempt and leave."""
        await self._producer.start()
        try:
            self._consumer.subscribe(
                [self.config.costs_topic, self.config.locations_topic], listener=_Rebalance(self)
            )
            await self._consumer.start()
            metrics.set_sink_healthy(True)
            event(log, "sink_started", group_id=self.config.group_id, topic=self.config.costs_topic)
            try:
                while not stop.is_set():
                    await self._step()
                await self._settle()
                if len(self._batch):
                    batch, self._batch = self._batch, Batch()
                    async with self._lock:
                        await self.checkpoint(batch)
            finally:
                if self._writing is not None:
                    await asyncio.wait([self._writing])
                await self._consumer.stop()
        finally:
            await self._producer.stop()
            await self._writer.close()
            event(log, "sink_stopped", stats=self.health.as_json()["stats"])

    # -- the loop: read while the previous batch is written -------------------------------------

    async def _step(self) -> None:
        if time.monotonic() >= self._lag_refresh_at:
            self._lag_refresh_at = time.monotonic() + LAG_REFRESH_S
            await metrics.refresh_gauges(self._consumer)
        self._reap()
        now = time.monotonic()
        if self._writing is None and not self._rebalancing and self._checkpoint_due(now):
            batch, self._batch = self._batch, Batch()
            self._writing_records = len(batch)
            self._writing = asyncio.create_task(self._write_in_background(batch))
        # Held in memory: the batch being filled plus the one being written (a retried batch
        # may carry two batches' worth): never more than two batches.
        size = self.config.batch_size
        writing = self._writing_records if self._writing is not None else 0
        room = min(size - len(self._batch), 2 * size - len(self._batch) - writing)
        full = room <= 0
        if full and self._writing is not None:
            await self._settle()  # a full batch waits for the database, not for the broker
            return
        self._apply_backpressure(full)
        fetched = await self._consumer.getmany(
            timeout_ms=self._wait_ms(time.monotonic()), max_records=max(min(room, DECODE_CHUNK), 1)
        )
        if fetched:
            self._add(fetched)
        await asyncio.sleep(0)  # decoding is CPU work: let the writer move its COPY along

    async def _write_in_background(self, batch: Batch) -> None:
        async with self._lock:
            if not await self.checkpoint(batch):
                # Not written: it goes first again, ahead of what was read meanwhile.
                self._batch = batch.then(self._batch)

    async def _settle(self) -> None:
        """Wait for the checkpoint in flight, if any."""
        if self._writing is not None:
            await asyncio.wait([self._writing])
        self._reap()

    def _reap(self) -> None:
        if self._writing is not None and self._writing.done():
            task, self._writing = self._writing, None
            task.result()  # a bug in a checkpoint crashes the sink loudly instead of stalling it

    def _checkpoint_due(self, now: float) -> bool:
        if not len(self._batch) or now < self._retry_at:
            return False
        full = len(self._batch) >= self.config.batch_size
        return full or self._batch.age(now) >= self.config.linger_s

    def _wait_ms(self, now: float) -> int:
        """How long a fetch may wait: until the batch is due, never 0 while a checkpoint can't
        start (a zero-timeout fetch does not yield, and the writer or the rebalance needs the
        loop)."""
        if not len(self._batch):
            return IDLE_POLL_MS
        if self._writing is not None or self._rebalancing:
            return BUSY_POLL_MS
        if len(self._batch) >= self.config.batch_size:
            due = self._retry_at
        else:
            started = self._batch.started_at if self._batch.started_at is not None else now
            due = max(started + self.config.linger_s, self._retry_at)
        return int(min(max(due - now, 0.0), IDLE_POLL_MS / 1000) * 1000)

    def _apply_backpressure(self, full: bool) -> None:
        """A full batch that cannot be written yet stops fetching: memory stays bounded."""
        assignment = self._consumer.assignment()
        if full and not self._paused:
            self._consumer.pause(*assignment)
            self._paused = True
            event(log, "sink_paused", records=len(self._batch))
        elif not full and self._paused:
            self._consumer.resume(*assignment)
            self._paused = False

    def _add(self, fetched: dict[TopicPartition, list[ConsumerRecord]]) -> None:
        now, wall = time.monotonic(), datetime.now(UTC)
        owned = self._consumer.assignment()
        batch, stats = self._batch, self.health.stats
        for tp, records in fetched.items():
            if tp not in owned:
                continue
            topic, partition = tp.topic, tp.partition
            if topic == self.config.costs_topic:
                metrics.record_consumed(topic, len(records))
                for record in records:
                    source = Source(topic, partition, record.offset)
                    try:
                        outcome = decode_cost(record.key, record.value, source, wall)
                    except Exception as exc:  # a record must never stop the sink
                        message = f"could not be decoded: {type(exc).__name__}: {exc}"[:500]
                        letter = invalid_record(record.value, message, source, wall)
                        outcome = Poison(record.key, letter)
                    batch.add_cost(outcome, topic, partition, record.offset, now)
            else:
                for record in records:
                    try:
                        change = decode_location(record.key, record.value)
                    except Exception as exc:  # a record must never stop the sink
                        change = Ignored(f"could not be decoded: {type(exc).__name__}: {exc}")
                    if isinstance(change, Ignored):
                        event(
                            log,
                            "location_ignored",
                            logging.WARNING,
                            reason=change.reason[:300],
                            topic=topic,
                            partition=partition,
                            offset=record.offset,
                        )
                    batch.add_location(change, topic, partition, record.offset, now)
            stats.records_read += len(records)

    # -- the checkpoint: the order of effects lives here and nowhere else ------------------------

    async def checkpoint(self, batch: Batch) -> bool:
        """Write the batch, send its dead letters, then commit its offsets. Call under `_lock`.

        Returns False (offsets untouched, retry scheduled) when step 1 or 2 fails; the caller
        keeps the batch to retry it, or drops it unacknowledged.
        """
        try:
            with metrics.time_sink_write():
                written = await self._write_rows(batch)  # 1. one database transaction
            await self._send_dead_letters(batch)  # 2. dead letters acked by the broker
        except Exception as exc:
            self._failed(exc, batch)
            return False
        await self._commit(batch.next_offsets)  # 3. offsets, only after 1 and 2

        stats = self.health.stats
        metrics.sink_batch_written(
            rows=written.costs_inserted,
            duplicates=len(batch.costs) - written.costs_inserted + batch.duplicates,
        )
        metrics.set_sink_healthy(True)
        stats.batches_written += 1
        stats.costs_inserted += written.costs_inserted
        stats.costs_already_stored += len(batch.costs) - written.costs_inserted + batch.duplicates
        stats.breakdown_inserted += written.breakdown_inserted
        stats.simulated_skipped += batch.simulated
        stats.dead_lettered += len(batch.dead_letters)
        stats.locations_changed += written.locations_changed
        if not self.health.healthy:
            event(log, "sink_recovered", failures=self._failures, records=len(batch))
        self._failures, self._retry_at = 0, 0.0
        self.health.mark_healthy()
        event(
            log,
            "batch_written",
            logging.DEBUG,
            records=len(batch),
            inserted=written.costs_inserted,
            already_stored=len(batch.costs) - written.costs_inserted,
            simulated=batch.simulated,
            dead_letters=len(batch.dead_letters),
            locations=written.locations_changed,
            fast_path=written.fast_path,
        )
        return True

    async def _write_rows(self, batch: Batch) -> WriteResult:
        try:
            return await self._writer.write(batch)
        except (asyncpg.DataError, ValueError):
            # A value passed validation but cannot be stored (PostgreSQL refuses it, e.g. a JSON
            # number beyond NUMERIC's range in `request`, or asyncpg cannot encode it, e.g. a
            # lone surrogate in a string): retrying cannot help, so dead-letter it instead of
            # stalling forever.
            costs, locations = await self._writer.find_unstorable(batch)
            if not costs and not locations:
                raise
            for location_id, reason in locations.items():
                event(
                    log,
                    "location_unstorable",
                    logging.WARNING,
                    location_id=location_id,
                    reason=reason,
                )
            batch.reject(costs, locations, datetime.now(UTC))
            return await self._writer.write(batch)

    def _failed(self, exc: Exception, batch: Batch) -> None:
        self._failures += 1
        delay = min(self.config.retry_max_s, RETRY_BASE_S * 2 ** (self._failures - 1))
        self._retry_at = time.monotonic() + delay
        self.health.stats.write_failures += 1
        reason = f"{type(exc).__name__}: {exc}"[:500]
        self.health.mark_unhealthy(reason)
        metrics.database_error("checkpoint")
        metrics.set_sink_healthy(False)
        event(
            log,
            "checkpoint_failed",
            logging.WARNING,
            error=reason,
            attempt=self._failures,
            retry_in_s=round(delay, 3),
            records=len(batch),
        )

    async def _send_dead_letters(self, batch: Batch) -> None:
        if not batch.dead_letters:
            return
        sent = [
            await self._producer.send(self.config.dead_letters_topic, dumps(letter), key=key)
            for key, letter in batch.dead_letters
        ]
        await asyncio.gather(*sent)
        for _, letter in batch.dead_letters:
            assert letter.source is not None
            event(
                log,
                "dead_lettered",
                logging.WARNING,
                code=letter.error.code.value,
                reason=letter.error.message[:300],
                topic=letter.source.topic,
                partition=letter.source.partition,
                offset=letter.source.offset,
            )

    async def _commit(self, next_offsets: dict[tuple[str, int], int]) -> None:
        owned = self._consumer.assignment()
        offsets = {
            tp: offset
            for (topic, partition), offset in next_offsets.items()
            if (tp := TopicPartition(topic, partition)) in owned
        }
        if len(offsets) < len(next_offsets):
            event(log, "commit_skipped_unowned", partitions=len(next_offsets) - len(offsets))
        if not offsets:
            return
        try:
            await self._consumer.commit(offsets)
        except KafkaError as exc:
            # The rows are durable; whoever owns these partitions now re-reads and skips them.
            self.health.stats.commit_failures += 1
            event(log, "commit_failed", logging.WARNING, error=f"{type(exc).__name__}: {exc}")

    # -- rebalances ---------------------------------------------------------------------------

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        """Flush while the partitions are still ours; if that fails, drop the batch unacknowledged.

        Dropping is safe: its offsets were never committed, so the next owner reads it again.
        """
        self._rebalancing = True
        await self._settle()
        batch, self._batch = self._batch, Batch()
        if not len(batch):
            return
        async with self._lock:
            if not await self.checkpoint(batch):
                self.health.stats.batches_dropped += 1
                event(
                    log,
                    "batch_dropped_on_revoke",
                    logging.WARNING,
                    records=len(batch),
                    partitions=sorted(f"{t}[{p}]" for t, p in batch.next_offsets),
                )

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        if len(self._batch):
            # Read during the rebalance, before positions were reset: re-read from the commits.
            self.health.stats.batches_dropped += 1
            self._batch = Batch()
        self._paused = False  # a new assignment starts unpaused
        self._rebalancing = False
        event(log, "partitions_assigned", partitions=sorted(f"{t}[{p}]" for t, p in assigned))
