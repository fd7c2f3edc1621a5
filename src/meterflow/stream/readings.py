"""The readings agent's body: `meter-readings` events -> interval costs on `energy-costs`.

Per reading: parse it (a time outside the years 0002-9997 refused), check its key and that it
is not dated more than a day after it arrived, check its meter (location, device), look up the
meter's state in the readings table, `costing.readings.advance` it, store the new state, and
price the interval it yields through `cost_request` (`cost_payload`'s path, without the JSON
round trip), the same path as a record on `meter-records`. Nothing raises out of it: every
failure is a dead letter (design §4). Why a SIGKILL at any moment loses and doubles nothing is
in docs/stream.md, "Readings: crash safety".
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from datetime import date
from typing import Any

from faust.types import TP

from meterflow import metrics
from meterflow.contract.clock import BatchClock, Clock, utc_now
from meterflow.contract.keys import misplaced
from meterflow.costing import cost_request
from meterflow.costing.readings import (
    Duplicate,
    Interval,
    MeterState,
    Rejected,
    Step,
    advance,
    ahead_problem,
    decode_state,
    encode_state,
    interval_meter_record,
    meter_key,
    meter_problem,
    parse_reading,
)
from meterflow.logs import event as log_event
from meterflow.models import (
    DeadLetter,
    ErrorCode,
    LocationProfile,
    MarketPrices,
    Position,
    PricedCost,
    PricingError,
    dead_letter,
    dumps,
)
from meterflow.stream.agents import (
    NO_VALUE,
    EventLike,
    KeyValue,
    Sender,
    costs_emitted,
    no_current_event,
    received_ms,
    send_many_or_die,
    send_or_die,
    stop_worker,
)

log = logging.getLogger(__name__)

STATE_CACHE_SIZE = 100_000
"""Decoded meter states kept (emptied when full): about 1 kB each."""


class TableChangelog:
    """Writes a faust table's changelog records straight to faust's producer, awaited.

    faust's `table[key] = value` queues the changelog record in the producer's send buffer,
    and the `producer.flush()` before each offset commit waits until that buffer is *empty*
    (or returns early after 0.1 s without a send): under a steady stream of table writes the
    buffer never empties, so commits stalled for tens of seconds (seen: a worker that
    processed 4,600 readings had committed none), and a commit could pass records still in the
    buffer. Sent here, each record is with aiokafka before the batch is acked, and aiokafka's
    flush (part of the same pre-commit flush) waits for exactly those. The delivery callback
    keeps RocksDB's persisted changelog offset, as faust's own `_on_changelog_sent` does.
    """

    def __init__(self, app: Any, table: Any) -> None:
        self._app = app
        self.table = table
        self.topic: str = table.changelog_topic.get_topic_name()

    def store(self, key: bytes, value: bytes) -> None:
        """The local store only (under faust's current event: its partition)."""
        self.table.data[key] = value

    async def send(self, writes: Sequence[tuple[int, bytes, bytes | None]]) -> None:
        """`(partition, key, value)` records, in order; a `None` value is a tombstone.

        As closed produce batches, one per partition (more when one fills up), handed to
        aiokafka in order, like `ProducerTopic.send_many`: per record, a `producer.send` was a
        tenth of the readings agent's time. aiokafka's flush before the commit waits for these
        batches as for any send, so what reaches aiokafka before the ack is unchanged."""
        try:
            kafka = self._app.producer._ensure_producer()  # faust's aiokafka producer
            open_batches: dict[int, Any] = {}
            for partition, key, value in writes:
                batch = open_batches.get(partition)
                if batch is not None and batch.append(key=key, value=value, timestamp=None):
                    continue
                if batch is not None:  # full: ship it, then start the next one
                    await self._ship(kafka, open_batches.pop(partition), partition)
                batch = kafka.create_batch()  # its first record always fits, whatever its size
                batch.append(key=key, value=value, timestamp=None)
                open_batches[partition] = batch
            for partition, batch in open_batches.items():
                await self._ship(kafka, batch, partition)
        except BaseException as exc:
            stop_worker(f"changelog send to {self.topic}", repr(exc))

    async def _ship(self, kafka: Any, batch: Any, partition: int) -> None:
        last = batch.record_count() - 1  # the batch's future answers its first record's offset
        batch.close()
        future = await kafka.send_batch(batch, self.topic, partition=partition)
        future.add_done_callback(lambda done: self._delivered(done, last))

    def _delivered(self, done: Any, last: int) -> None:
        if done.cancelled() or done.exception() is not None:
            error = "cancelled" if done.cancelled() else repr(done.exception())
            stop_worker(f"changelog delivery to {self.topic}", error)
            return
        metadata = done.result()
        self.table.data.set_persisted_offset(
            TP(metadata.topic, metadata.partition), metadata.offset + last
        )


class ReadingsAgent:
    """Turns readings into priced intervals, keeping each meter's state in `table`.

    `table` is the local store of a faust table (raw bytes; writes to it send no changelog
    record), `changelog(writes)` sends the changelog records `(partition, key, value)` of a
    batch (`TableChangelog`). Reads and writes must happen while the event that causes them is
    faust's current event, so that they use that event's partition (its RocksDB database);
    `enter_event(event)` makes it so (events come in batches that mix partitions); a memory
    store, one dict for every partition, needs none.
    `committed_offset(partition)` is the partition's committed input offset (None if unknown),
    which bounds what a meter's state keeps."""

    def __init__(
        self,
        *,
        table: MutableMapping[bytes, bytes],
        changelog: Callable[[Sequence[tuple[int, bytes, bytes]]], Awaitable[None]],
        profiles: Callable[[str], LocationProfile | None],
        market_prices: Callable[[str, date], MarketPrices | None],
        energy_costs: Sender,
        dead_letters: Sender,
        max_record_hours: int,
        committed_offset: Callable[[int], int | None],
        enter_event: Callable[[Any], None] = no_current_event,
        before_partition: Callable[[int, int], Awaitable[None]] | None = None,
        clock: Clock = utc_now,
    ) -> None:
        self._table = table
        self._changelog = changelog
        self._writes: list[tuple[int, bytes, bytes]] = []
        self._profiles = profiles
        self._market_prices = market_prices
        self._energy_costs = energy_costs
        self._dead_letters = dead_letters
        self._max_record_hours = max_record_hours
        self._committed_offset = committed_offset
        self._enter_event = enter_event
        self._before_partition = before_partition
        self._clock = BatchClock(clock)
        # meter key -> (stored bytes, their decoded state): decoding what this agent just
        # encoded was a twentieth of its time; a hit only when the store holds those bytes
        self._states: dict[bytes, tuple[bytes, MeterState]] = {}
        self._committed: dict[int, int | None] = {}
        self.consumed = 0
        self.intervals = 0
        self.priced = 0
        self.dead_lettered = 0

    async def on_events(self, events: Sequence[EventLike]) -> None:
        """Decide and store each reading in input order, then hand the costs to the producer
        as one batch and the dead letters one by one; all before faust acks the batch."""
        if not events:
            return
        costs: list[KeyValue] = []
        letters: list[tuple[EventLike, DeadLetter]] = []
        now = self._clock()
        intervals = self.intervals
        self._committed.clear()  # read once per partition and batch (an older value is safe)
        if self._before_partition is not None:
            # Every partition's wait before the first reading is stored: a wait that a
            # rebalance interrupts (`CatchUpInterruptedError`) leaves the batch untouched.
            for event in events:
                await self._before_partition(event.message.partition, event.message.offset)
        for event in events:
            message = event.message
            # faust's current event picks the table partition reads and writes go to (RocksDB
            # reads only that partition's database): the batch's last event is not this one
            self._enter_event(event)
            try:
                result = self._handle(event, message, now)
            except Exception as exc:  # never escape the agent (design §4)
                log.exception("reading raised", extra={"fields": {"offset": message.offset}})
                result = dead_letter(
                    event.value,
                    ErrorCode.INVALID_RECORD,
                    f"unexpected error with a reading: {exc!r}",
                    message,
                    now,
                )
            if isinstance(result, PricedCost):
                # stamped with the closing reading's Kafka timestamp (`received_ms`)
                costs.append((result.location_id.encode(), dumps(result), received_ms(message)))
            elif isinstance(result, DeadLetter):
                letters.append((event, result))
                now = self._clock()  # what follows it in the batch comes after it
        metrics.readings_consumed(len(events))
        metrics.reading_intervals_derived(self.intervals - intervals)
        self.consumed += len(events)
        writes, self._writes = self._writes, []
        await self._changelog(writes)
        await send_many_or_die(self._energy_costs, costs, kind="energy_cost")
        costs_emitted("meter-readings", costs)
        self.priced += len(costs)
        for event, letter in letters:
            await self._dead_letter(event, letter)

    def _handle(
        self, event: EventLike, source: Position, now: Any
    ) -> PricedCost | DeadLetter | None:
        if event.value is None:
            return dead_letter(b"", ErrorCode.INVALID_RECORD, NO_VALUE, source, now)
        raw = event.value
        try:
            reading = parse_reading(raw)
        except PricingError as error:
            return dead_letter(raw, error.code, error.message, source, now)
        # under another key, the meter's state would live in another partition (design §1)
        problem = misplaced(event.message.key, reading.location_id)
        if problem is not None:
            return dead_letter(raw, problem.code, problem.message, source, now)
        problem = ahead_problem(reading, received_ms(event.message))
        if problem is not None:
            return dead_letter(raw, problem.code, problem.message, source, now)
        profile = self._profiles(reading.location_id)
        problem = meter_problem(reading, profile)
        if problem is not None:
            return dead_letter(raw, problem.code, problem.message, source, now)
        assert profile is not None  # `meter_problem` answers an unknown location
        key = meter_key(reading, profile)
        partition = source.partition
        if partition not in self._committed:
            self._committed[partition] = self._committed_offset(partition)
        step: Step = advance(
            self._state(key),
            reading,
            source.offset,
            committed=self._committed[partition],
            max_record_hours=self._max_record_hours,
        )
        if step.state is not None:
            value = encode_state(step.state)
            self._table[key] = value
            self._writes.append((partition, key, value))
            if len(self._states) >= STATE_CACHE_SIZE:
                self._states.clear()
            self._states[key] = (value, step.state)
        decision = step.decision
        if isinstance(decision, Interval):
            self.intervals += 1
            # `cost_payload`'s path without encoding the record and parsing it back
            return cost_request(
                decision.record,
                profiles=lambda _: profile,  # the same location's, looked up above
                market_prices=self._market_prices,
                now=now,
                source=source,
                max_record_hours=self._max_record_hours,
                record=interval_meter_record(reading, decision),
            )
        if isinstance(decision, Rejected):
            if decision.code is ErrorCode.REGISTER_RESET:
                metrics.reading_reset()
            elif decision.code is ErrorCode.STALE_READING:
                metrics.reading_stale()
            return dead_letter(raw, decision.code, decision.message, source, now)
        if isinstance(decision, Duplicate):
            log.debug("duplicate reading", extra={"fields": {"offset": source.offset}})
        return None  # a baseline or a duplicate: nothing to send

    def _state(self, key: bytes) -> MeterState | None:
        raw = self._table.get(key)
        if raw is None:
            return None
        cached = self._states.get(key)
        if cached is not None and cached[0] == raw:
            return cached[1]
        return decode_state(raw)

    async def _dead_letter(self, event: EventLike, letter: DeadLetter) -> None:
        source = letter.source
        log_event(
            log,
            "reading_dead_lettered",
            logging.WARNING,
            code=letter.error.code.value,
            reason=letter.error.message,
            topic=source.topic if source else None,
            partition=source.partition if source else None,
            offset=source.offset if source else None,
        )
        await send_or_die(
            self._dead_letters,
            key=event.message.key,
            value=dumps(letter),
            kind="dead_letter",
            timestamp_ms=received_ms(event.message),
        )
        metrics.record_dead_lettered("meter-readings", letter.error.code)
        self.dead_lettered += 1
