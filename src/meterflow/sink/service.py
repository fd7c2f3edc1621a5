"""`meterflow sink`: energy-costs (and locations, and batch records' dead letters) -> PostgreSQL,
offsets committed after the DB.

A plain aiokafka consumer with manual commits (docs/sink.md says why not a Faust agent). The loop
reads into a bounded `Batch` while the previous batch is written (at most one checkpoint in
flight, so commits stay in order); `Checkpoint` (sink/checkpoint.py) is the one place that orders
the effects: rows, then dead letters, then offsets for partitions this member still owns.

A crash between any two steps replays the batch: rows are deduplicated by their primary key, so
replays cost a little time and never a row. While the database is down, checkpoint attempts are
spaced by capped exponential backoff, offsets stay where they are, the failed batch is kept (merged
ahead of what was read since) and a full batch pauses the partitions, so memory stays bounded
(two batches at most) until the database returns. The clients are passed in (`clients.py`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass
from typing import Any

from aiokafka import ConsumerRebalanceListener
from aiokafka.structs import ConsumerRecord, TopicPartition

from meterflow import metrics
from meterflow.contract.clock import utc_now
from meterflow.contract.topics import DEAD_LETTERS, ENERGY_COSTS, LOCATIONS
from meterflow.kafka_admin import broker_problem, stop_consumer
from meterflow.logs import event
from meterflow.settings import Settings
from meterflow.sink.batch import Batch
from meterflow.sink.batch_failures import decode_batch_failure
from meterflow.sink.checkpoint import Checkpoint
from meterflow.sink.clients import KafkaDeadLetters, SinkClients
from meterflow.sink.decode import Ignored, Poison, decode_cost, decode_location, invalid_record
from meterflow.sink.health import SinkHealth
from meterflow.sink.rows import Source

log = logging.getLogger(__name__)

IDLE_POLL_MS = 500
LAG_REFRESH_S = 5.0  # how often the consumer-lag gauge is refreshed
BROKER_PROBE_S = 5.0  # how often the sink asks whether the broker answers
DATABASE_PROBE_S = 5.0  # and PostgreSQL, while it has nothing to write
BUSY_POLL_MS = 5
DECODE_CHUNK = 50
"""Records decoded per loop step (~1 ms of CPU): between chunks the checkpoint in flight gets
the loop for its round trips (BEGIN, two COPYs, COMMIT, the offset commit), so writing and
decoding really overlap; each round trip waits for the chunk being decoded, so smaller chunks
keep PostgreSQL busier (measured: 250 -> 50 gave +15-25 % results/s, docs/sink.md)."""


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
    statement_timeout_s: float

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
            statement_timeout_s=settings.database_statement_timeout_s,
        )


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, sink: Sink) -> None:
        self._sink = sink

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._sink.on_partitions_revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self._sink.on_partitions_assigned(assigned)


class _Probe:
    """One question to a dependency (does the broker answer? the database?), asked in the
    background at most every `every_s` seconds: its answer, "" or what is wrong, is read at a
    later step of the loop."""

    def __init__(self, name: str, every_s: float) -> None:
        self.name = name
        self.every_s = every_s
        self.task: asyncio.Task[str] | None = None
        self.asked_at = 0.0  # wall time, to compare with the health's `last_checkpoint_at`
        self._next_at = 0.0  # monotonic

    def answer(self) -> str | None:
        """The last question's answer once it is in (then it may be asked again); else None."""
        task = self.task
        if task is None or not task.done():
            return None
        self.task = None
        return task.result()

    def ask(self, now: float, question: Callable[[], Coroutine[Any, Any, str]]) -> None:
        """Ask, unless a question is out or the last was asked less than `every_s` ago."""
        if self.task is None and now >= self._next_at:
            self._next_at = now + self.every_s
            self.asked_at = time.time()
            self.task = asyncio.create_task(question())

    def log_change(self, problem: str, known: str) -> None:
        """Log an answer that differs from what the health says (`known`)."""
        if problem == known:
            return
        if problem:
            event(log, f"{self.name}_unreachable", logging.WARNING, error=problem)
        else:
            event(log, f"{self.name}_reachable")

    def cancel(self) -> None:
        if self.task is not None:
            self.task.cancel()


class Sink:
    """Reads, decodes and batches; `checkpoint` applies each batch. `run` starts the clients it
    is given (`clients.sink_clients(config)` builds the real ones) and closes them at the end."""

    def __init__(
        self, config: SinkConfig, clients: SinkClients, health: SinkHealth | None = None
    ) -> None:
        self.config = config
        self.health = health or SinkHealth()
        self._clients = clients
        self._consumer = clients.consumer
        self.checkpoint = Checkpoint(
            writer=clients.writer,
            dead_letters=KafkaDeadLetters(clients.producer, config.dead_letters_topic),
            offsets=clients.consumer,
            health=self.health,
            retry_max_s=config.retry_max_s,
        )
        self._batch = Batch()  # being filled
        self._writing: asyncio.Task[None] | None = None  # the one checkpoint in flight
        self._writing_records = 0
        self._lock = asyncio.Lock()  # one checkpoint at a time (loop vs. rebalance callbacks)
        self._rebalancing = False
        self._paused = False
        self._lag_refresh_at = 0.0
        self._broker = _Probe("broker", BROKER_PROBE_S)
        self._database = _Probe("database", DATABASE_PROBE_S)

    # -- lifecycle -----------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until `stop` is set, then make one last checkpoint attempt and leave."""
        await self._clients.producer.start()
        try:
            topics = [
                self.config.costs_topic,
                self.config.locations_topic,
                self.config.dead_letters_topic,  # batch records' failures (design §9)
            ]
            self._consumer.subscribe(topics, listener=_Rebalance(self))
            metrics.consuming([self.config.costs_topic])
            await self._consumer.start()
            metrics.set_sink_healthy(self.health.healthy)
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
                self._broker.cancel()
                self._database.cancel()
                if self._writing is not None:
                    await asyncio.wait([self._writing])
                await stop_consumer(self._consumer)
        finally:
            await self._clients.producer.stop()
            await self._clients.writer.close()
            event(log, "sink_stopped", stats=self.health.as_json()["stats"])

    # -- the loop: read while the previous batch is written -------------------------------------

    async def _step(self) -> None:
        started = time.monotonic()
        self._probe_broker(started)
        self._probe_database(started)
        if started >= self._lag_refresh_at:
            self._lag_refresh_at = started + LAG_REFRESH_S
            await metrics.refresh_gauges(self._consumer, end_offsets=self._consumer.end_offsets)
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

    def _probe_broker(self, now: float) -> None:
        """Ask the broker, in the background, whether it answers, and say so in the health: a
        consumer with nothing to read does not notice the broker gone, nor would the health
        (MeterflowSinkUnhealthy: "cannot write to PostgreSQL or read from Kafka")."""
        probe = self._broker
        problem = probe.answer()
        if problem is not None:
            probe.log_change(problem, self.health.broker_problem)
            self.health.mark_broker(problem)
        probe.ask(now, lambda: broker_problem(self._clients.producer))

    def _probe_database(self, now: float) -> None:
        """Ask PostgreSQL, in the background, whether it answers, while there is nothing to
        write: under load each checkpoint is the probe, but an idle sink would stay healthy
        with the database gone until its next record arrived."""
        probe = self._database
        idle = self._writing is None and not len(self._batch)
        problem = probe.answer()
        checkpointed = self.health.last_checkpoint_at or 0.0
        if problem is not None and checkpointed < probe.asked_at:  # else a later write answered
            if problem:
                metrics.database_error("probe")
            probe.log_change(problem, self.health.database_problem)
            # an answer with nothing held ends a failed checkpoint's problem too: its batch
            # was written since, or went with a revoked partition
            self.health.mark_database(problem, checkpoint_over=idle and not problem)
        if idle:
            probe.ask(now, self._ask_database)

    async def _ask_database(self) -> str:
        async with self._lock:  # never beside a checkpoint: the writer has one connection
            return await self._clients.writer.problem()

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
        if not len(self._batch) or now < self.checkpoint.retry_at:
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
        retry_at = self.checkpoint.retry_at
        if len(self._batch) >= self.config.batch_size:
            due = retry_at
        else:
            started = self._batch.started_at if self._batch.started_at is not None else now
            due = max(started + self.config.linger_s, retry_at)
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
        now, wall = time.monotonic(), utc_now()
        owned = self._consumer.assignment()
        batch, stats = self._batch, self.health.stats
        for tp, records in fetched.items():
            if tp not in owned:
                continue
            topic, partition = tp.topic, tp.partition
            if topic == self.config.costs_topic:
                metrics.record_consumed(topic, len(records))
                for record in records:
                    source = Source(topic, partition, record.offset, record.timestamp)
                    try:
                        outcome = decode_cost(record.key, record.value, source, wall)
                    except Exception as exc:  # a record must never stop the sink
                        message = f"could not be decoded: {type(exc).__name__}: {exc}"[:500]
                        letter = invalid_record(record.value, message, source, wall)
                        outcome = Poison(record.key, letter)
                    batch.add_cost(outcome, topic, partition, record.offset, now)
            elif topic == self.config.dead_letters_topic:
                for record in records:
                    source = Source(topic, partition, record.offset)
                    try:
                        failure = decode_batch_failure(record.value, source)
                    except Exception:  # a record must never stop the sink (nor be re-lettered)
                        failure = None
                    batch.add_batch_failure(failure, topic, partition, record.offset, now)
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
