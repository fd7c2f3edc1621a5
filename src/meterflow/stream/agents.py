"""The agents' bodies: one event in, exactly one send out, nothing raised.

Delivery (design §4, at-least-once): faust acks an event when the agent asks for the next one,
and commits acked offsets every `commit_interval_s`, calling `producer.flush()` right before the
commit (faust/transport/consumer.py `_commit_offsets`; `stream_publish_on_commit` is off). So a
result is written to the producer before its input is acked, and delivered before that ack is
committed: a crash at any point redelivers the input, and the result id (from the input's
id or position) makes the duplicate recognisable. A send that fails outright leaves no safe way
on (raising would ack and drop the event), so the worker stops at once, uncommitted.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from datetime import date, datetime
from time import perf_counter, time_ns
from typing import Any, Protocol

from meterflow import metrics
from meterflow.contract.clock import BatchClock, Clock, utc_now
from meterflow.contract.decisions import Apply, Delete, Reject
from meterflow.contract.keys import misplaced
from meterflow.costing import cost_payload
from meterflow.logs import event as log_event
from meterflow.models import (
    DeadLetter,
    ErrorCode,
    LocationProfile,
    MarketPrices,
    Position,
    PricedCost,
    dead_letter,
    dumps,
)

log = logging.getLogger(__name__)

EXIT_SEND_FAILED = 70


KeyValue = tuple[bytes | None, bytes, int | None]
"""A message to send: (key, value, Kafka timestamp in ms, None for the producer's clock)."""


def received_ms(message: Any) -> int | None:
    """The input record's Kafka timestamp (ms), which its result and dead letter carry on:
    when the record reached meterflow, the order in which the sink applies corrections
    (docs/sink.md, "Duplicates and corrections"). None when it has none (unit-test fakes).

    Never later than now: a record cannot reach meterflow after the worker read it, and a
    producer's clock running ahead would otherwise make its record win over every correction
    sent before that time came (50 minutes ahead froze a row for 50 minutes)."""
    stamp: float | None = getattr(message, "timestamp", None)  # faust: Kafka's ms / 1000.0
    if stamp is None or stamp < 0:
        return None
    return min(round(stamp * 1000), time_ns() // 1_000_000)


def costs_emitted(input: str, costs: Sequence[KeyValue]) -> None:
    """`metrics.costs_emitted` for results priced from `input` handed to the producer: their
    timestamps are their records' (`received_ms`), in seconds there."""
    metrics.costs_emitted(input, [None if stamp is None else stamp / 1000 for _, _, stamp in costs])


class Sender(Protocol):
    """Where the agents send: a topic, seen as "hand these messages to the producer"."""

    def send(
        self, *, key: bytes | None, value: bytes | None, timestamp_ms: int | None = None
    ) -> Awaitable[Any]: ...

    def send_many(self, messages: Sequence[KeyValue]) -> Awaitable[Any]:
        """Like `send` for each message in turn (same partitions, same order per partition)."""
        ...


class ProducerTopic:
    """Sends straight to faust's producer (aiokafka underneath), skipping `Topic.send`'s
    per-message bookkeeping (FutureMessage, sensors, callbacks): a third of the agent's time in
    the profile. Delivery is unchanged: the consumer flushes this same producer (batches from
    `send_many` included) before it commits offsets. A delivery that fails later, after the
    producer's own retries, stops the worker like a failed send does.
    """

    def __init__(self, app: Any, topic: str) -> None:
        self._app = app
        self.topic = topic

    async def send(
        self, *, key: bytes | None, value: bytes | None, timestamp_ms: int | None = None
    ) -> None:
        # faust takes seconds and truncates seconds × 1000: half a millisecond more keeps the ms
        seconds = None if timestamp_ms is None else (timestamp_ms + 0.5) / 1000
        future = await self._app.producer.send(
            self.topic, key, value, partition=None, timestamp=seconds, headers=None
        )
        future.add_done_callback(self._check_delivery)

    async def send_many(self, messages: Sequence[KeyValue]) -> None:
        """One produce batch per partition rather than one `send` per message: half the CPU per
        message (measured 5.3 vs 11.6 us), one delivery future per batch. The partitioner is
        the producer's own, so every message lands where `send` would have put it, in order.
        """
        producer = self._app.producer
        kafka = producer._ensure_producer()  # faust's aiokafka producer (no public accessor)
        partitions = sorted(await kafka.partitions_for(self.topic))
        choose = producer.partitioner  # what the aiokafka producer was built with
        open_batches: dict[int, Any] = {}
        for key, value, stamp in messages:
            partition = choose(key, partitions, partitions)
            batch = open_batches.get(partition)
            if batch is not None and batch.append(key=key, value=value, timestamp=stamp):
                continue
            if batch is not None:  # full: ship it, then start the next one
                await self._ship(kafka, open_batches.pop(partition), partition)
            batch = kafka.create_batch()
            if batch.append(key=key, value=value, timestamp=stamp):
                open_batches[partition] = batch
            else:  # larger than a whole batch: `send` sizes a batch for it
                await self.send(key=key, value=value, timestamp_ms=stamp)
        for partition, batch in open_batches.items():
            await self._ship(kafka, batch, partition)

    async def _ship(self, kafka: Any, batch: Any, partition: int) -> None:
        batch.close()
        future = await kafka.send_batch(batch, self.topic, partition=partition)
        future.add_done_callback(self._check_delivery)

    def _check_delivery(self, done: Any) -> None:
        if done.cancelled() or done.exception() is not None:
            error = "cancelled" if done.cancelled() else repr(done.exception())
            stop_worker(f"delivery to {self.topic}", error)


def stop_worker(kind: str, error: str) -> None:
    """A send or delivery failed: stop at once, before anything commits (restart = redelivery)."""
    log_event(log, "send_failed_worker_stopping", logging.CRITICAL, kind=kind, error=error)
    logging.shutdown()
    os._exit(EXIT_SEND_FAILED)


def no_current_event(event: Any) -> None:
    """`enter_event` where no event has to be faust's current one: a memory store's tables
    are one dict for every partition (and the unit tests' fakes have no partitions)."""


class EventLike(Protocol):
    key: Any
    value: Any
    message: Any


async def send_or_die(
    topic: Sender,
    *,
    key: bytes | None,
    value: bytes,
    kind: str,
    timestamp_ms: int | None = None,
) -> None:
    """Hand a message to the producer; if that fails, stop the process before anything commits."""
    try:
        await topic.send(key=key, value=value, timestamp_ms=timestamp_ms)
    except BaseException as exc:
        stop_worker(kind, repr(exc))


async def send_many_or_die(topic: Sender, messages: Sequence[KeyValue], *, kind: str) -> None:
    """`send_or_die` for a batch."""
    try:
        await topic.send_many(messages)
    except BaseException as exc:
        stop_worker(kind, repr(exc))


NO_VALUE = "the message has no value (a tombstone): a record or reading is a JSON object"
"""A null message's dead letter reason (which "not valid JSON" would misstate)."""


class RecordPricer:
    """The cost agent's body: raw `meter-records` event -> `energy-costs` or `dead-letters`.

    `enter_event(event)` makes each event faust's current one before its profile is looked up
    (`faust_fixes.enter_event`): with RocksDB a table read goes to the current event's partition
    only, and batches mix partitions (docs/stream.md, "The current event"). A memory store
    needs none: its reads see every partition.
    """

    def __init__(
        self,
        *,
        profiles: Callable[[str], LocationProfile | None],
        market_prices: Callable[[str, date], MarketPrices | None],
        energy_costs: Sender,
        dead_letters: Sender,
        max_record_hours: int,
        clock: Clock = utc_now,
        before_partition: Callable[[int, int], Awaitable[None]] | None = None,
        enter_event: Callable[[Any], None] = no_current_event,
    ) -> None:
        self._before_partition = before_partition
        self._enter_event = enter_event
        self._profiles = profiles
        self._market_prices = market_prices
        self._energy_costs = energy_costs
        self._dead_letters = dead_letters
        self._max_record_hours = max_record_hours
        self._clock = BatchClock(clock)
        self._key: bytes | None = None  # the key of the record being priced
        self.priced = 0
        self.dead_lettered = 0

    def price(
        self, raw: bytes | None, key: bytes | None, source: Position, now: datetime
    ) -> PricedCost | DeadLetter:
        """Never raises: an unexpected exception is a dead letter too (design §4). A record
        under another key than its location_id is `invalid_record` (`contract.keys.misplaced`)."""
        if raw is None:
            return dead_letter(b"", ErrorCode.INVALID_RECORD, NO_VALUE, source, now)
        payload = raw
        self._key = key
        try:
            return cost_payload(
                payload,
                profiles=self._profile_under_key,
                market_prices=self._market_prices,
                now=now,
                source=source,
                max_record_hours=self._max_record_hours,
            )
        except Exception as exc:
            log.exception("pricing raised", extra={"fields": {"offset": source.offset}})
            return dead_letter(
                payload,
                ErrorCode.INVALID_RECORD,
                f"unexpected error while pricing: {exc!r}",
                source,
                now,
            )

    def _profile_under_key(self, location_id: str) -> LocationProfile | None:
        """The engine's profile lookup, for the record `price` is pricing: raises when it is
        not under its location's key (the engine turns that into the dead letter)."""
        problem = misplaced(self._key, location_id)
        if problem is not None:
            raise problem
        return self._profiles(location_id)

    async def on_event(self, event: EventLike) -> None:
        await self.on_events((event,))

    async def on_events(self, events: Sequence[EventLike]) -> None:
        """Price and write each record of a batch, then hand the batch to the producer, in
        input order.

        Each result is written as soon as it is priced, while its document is still in the
        CPU's caches: pricing the whole batch first and writing it after read 500 documents
        back from memory, 30-40 % more per record (docs/stream.md, "Seventh pass"). The costs
        go to the producer as one batch per partition. Every result is with the producer
        before the batch's events are acked (`take_batches` acks a batch after this returns,
        and faust flushes the producer before it commits). `before_partition` may raise (a
        rebalance interrupted its wait): nothing of the batch has been sent then.
        """
        if not events:
            return
        costs: list[KeyValue] = []
        letters: list[tuple[EventLike, DeadLetter, bytes]] = []
        durations: list[float] = []
        # one `time_created` per batch (and after each dead letter: `BatchClock`), as the
        # readings agent does: a datetime per record was an `isoformat` per record (~1 µs) and
        # churned the encoder's cache of instant texts
        now = self._clock()
        for event in events:
            message = event.message
            if self._before_partition is not None:
                await self._before_partition(message.partition, message.offset)
            # The profile lookup reads the table partition of faust's current event (RocksDB:
            # that partition's database only); in a batch nothing makes this event current.
            self._enter_event(event)
            started = perf_counter()
            # the message is the record's position: a SourceRef only when dead-lettered
            result = self.price(event.value, message.key, message, now)
            durations.append(perf_counter() - started)
            value = dumps(result)
            if isinstance(result, PricedCost):
                costs.append((result.location_id.encode(), value, received_ms(message)))
            else:
                letters.append((event, result, value))
                now = self._clock()  # what follows it in the batch comes after it
        metrics.pricing_observed(durations)
        metrics.record_consumed(events[0].message.topic, len(events))
        for event, letter, value in letters:
            await self._dead_letter(event, letter, value)
        await send_many_or_die(self._energy_costs, costs, kind="energy_cost")
        costs_emitted("meter-records", costs)
        self.priced += len(costs)

    async def _dead_letter(self, event: EventLike, letter: DeadLetter, value: bytes) -> None:
        message = event.message
        log_event(
            log,
            "record_dead_lettered",
            logging.WARNING,
            code=letter.error.code.value,
            reason=letter.error.message,
            topic=message.topic,
            partition=message.partition,
            offset=message.offset,
        )
        await send_or_die(
            self._dead_letters,
            key=message.key,
            value=value,
            kind="dead_letter",
            timestamp_ms=received_ms(message),  # a replay sends the record on with it
        )
        metrics.record_dead_lettered("meter-records", letter.error.code)
        self.dead_lettered += 1


class DocumentApplier:
    """Body of the `locations` and `market-prices` agents: keep a table equal to the valid
    documents published; an invalid one is dead-lettered (`invalid_record`), never stored.

    Must run inside the agent's stream iteration (faust only allows table writes there).
    """

    def __init__(
        self,
        *,
        table: MutableMapping[bytes, bytes],
        dead_letters: Sender,
        decide: Callable[[bytes | None, bytes | None], Apply[Any] | Delete | Reject],
        kind: str,
        clock: Clock = utc_now,
        on_applied: Callable[[int, int], None] | None = None,
    ) -> None:
        self._on_applied = on_applied
        self._table = table
        self._dead_letters = dead_letters
        self._decide = decide
        self._kind = kind
        self._clock = clock

    async def on_event(self, event: EventLike) -> None:
        message = event.message
        key = message.key
        change: Apply[Any] | Delete | Reject
        try:
            change = self._decide(key, event.value)
        except Exception as exc:  # never escape the agent
            change = Reject(f"unexpected error while reading the {self._kind}: {exc!r}")
        name = key.decode(errors="replace") if isinstance(key, bytes) else None
        if isinstance(change, Apply):
            self._table[change.key.encode()] = change.raw
            log_event(log, f"{self._kind}_stored", key=name, offset=message.offset)
        elif isinstance(change, Delete):
            self._table.pop(change.key.encode(), None)
            log_event(log, f"{self._kind}_deleted", key=name, offset=message.offset)
        else:
            letter = dead_letter(
                event.value, ErrorCode.INVALID_RECORD, change.reason, message, self._clock()
            )
            log_event(
                log,
                f"{self._kind}_rejected",
                logging.WARNING,
                code=letter.error.code.value,
                reason=change.reason,
                key=name,
                topic=message.topic,
                partition=message.partition,
                offset=message.offset,
            )
            await send_or_die(self._dead_letters, key=key, value=dumps(letter), kind="dead_letter")
        if self._on_applied is not None:
            self._on_applied(message.partition, message.offset)
