"""The `locations` agent's body over a batch: the contract's decision on each message, the
local store written at once, the changelog records of the whole batch sent together.

Why not `DocumentApplier` (one event at a time, `table[key] = value`): reading 100,000 profiles
took ~90 s, and what was not the validation of the profiles was faust's per-event path and the
table's changelog through faust's producer buffer (`Table.on_key_set`, `ProducerBuffer`, and
the conductor awaiting `wait_until_ebb()` before every record while that buffer is full); the
same buffer kept commits from completing (`Timer commit is overlapping`, runtime 12 s), as it
did for the readings table (docs/stream.md, "faust details"). Here the events come in batches
(`take_batches`), each is written to the local store under its own event (RocksDB writes the
current event's partition: `enter_event`), and the changelog records go straight to the
producer (`TableChangelog.send`) before the batch is acked, so the flush before each commit
waits for exactly them: a committed `locations` offset has its changelog record delivered.

The decision stays `contract.locations.decide_location`, one message at a time, in offset order:
an invalid profile is dead-lettered (`invalid_record`) and never replaces the valid one.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any

from meterflow.contract.clock import Clock, utc_now
from meterflow.contract.decisions import Apply, Delete, Reject
from meterflow.logs import event as log_event
from meterflow.models import ErrorCode, dead_letter, dumps
from meterflow.stream.agents import EventLike, Sender, no_current_event, send_or_die

log = logging.getLogger(__name__)

ChangelogWrite = tuple[int, bytes, bytes | None]  # (partition, key, value; None = tombstone)


class BatchApplier:
    """Keep a table equal to the valid documents published, a batch of events at a time.

    `store` is the table's local store (writes send no changelog record), `changelog(writes)`
    hands the batch's changelog records to the producer, `enter_event(event)` makes an event
    faust's current one (the store's partition; a memory store needs none), and
    `on_applied(partition, offset)` is told of each message once the batch's changelog
    records are with the producer.
    """

    def __init__(
        self,
        *,
        store: MutableMapping[bytes, bytes],
        changelog: Callable[[Sequence[ChangelogWrite]], Awaitable[None]],
        dead_letters: Sender,
        decide: Callable[[bytes | None, bytes | None], Apply[Any] | Delete | Reject],
        kind: str,
        enter_event: Callable[[Any], None] = no_current_event,
        on_applied: Callable[[int, int], None] | None = None,
        clock: Clock = utc_now,
    ) -> None:
        self._store = store
        self._changelog = changelog
        self._dead_letters = dead_letters
        self._decide = decide
        self._kind = kind
        self._enter_event = enter_event
        self._on_applied = on_applied
        self._clock = clock
        self.stored = 0
        self.deleted = 0
        self.rejected = 0

    async def on_events(self, events: Sequence[EventLike]) -> None:
        writes: list[ChangelogWrite] = []
        for event in events:
            message = event.message
            change: Apply[Any] | Delete | Reject
            try:
                change = self._decide(message.key, event.value)
            except Exception as exc:  # never escape the agent
                change = Reject(f"unexpected error while reading the {self._kind}: {exc!r}")
            if isinstance(change, Reject):
                await self._reject(event, change.reason)
                continue
            self._enter_event(event)
            key = change.key.encode()
            if isinstance(change, Apply):
                self._store[key] = change.raw
                writes.append((message.partition, key, change.raw))
                self.stored += 1
            else:
                self._store.pop(key, None)
                writes.append((message.partition, key, None))
                self.deleted += 1
            log_event(
                log,
                f"{self._kind}_{'stored' if isinstance(change, Apply) else 'deleted'}",
                logging.DEBUG,  # one line per document: 100,000 lines on a first read
                key=change.key,
                offset=message.offset,
            )
        if writes:
            await self._changelog(writes)
        if self._on_applied is not None:
            for event in events:
                self._on_applied(event.message.partition, event.message.offset)

    async def _reject(self, event: EventLike, reason: str) -> None:
        message = event.message
        key = message.key
        letter = dead_letter(event.value, ErrorCode.INVALID_RECORD, reason, message, self._clock())
        log_event(
            log,
            f"{self._kind}_rejected",
            logging.WARNING,
            code=letter.error.code.value,
            reason=reason,
            key=key.decode(errors="replace") if isinstance(key, bytes) else None,
            topic=message.topic,
            partition=message.partition,
            offset=message.offset,
        )
        await send_or_die(self._dead_letters, key=key, value=dumps(letter), kind="dead_letter")
        self.rejected += 1
