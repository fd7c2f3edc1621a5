"""The sink's checkpoint: the one place that orders the effects of a batch.

    1. rows and location changes .. one database transaction          (`RowWriter`)
    2. dead letters ............... acknowledged by the broker          (`DeadLetterSender`)
    3. offsets .................... only for partitions still owned    (`OffsetCommitter`)

Offsets move only after 1 and 2 are durable, so a crash or a failure between any two steps
replays the batch from the last commit: rows are deduplicated by their primary key and a
correction applies only over an older version (a replay costs time, never a row or a revision),
a dead letter may be sent twice. The collaborators are injected
protocols, so this order is unit-tested with fakes (tests/unit/test_sink_checkpoint.py); the
real ones are `PostgresWriter`, `clients.KafkaDeadLetters` and the aiokafka consumer itself.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence, Set
from typing import Any, Protocol

import asyncpg
from aiokafka.errors import KafkaError
from aiokafka.structs import TopicPartition

from meterflow import metrics
from meterflow.contract.clock import utc_now
from meterflow.logs import event
from meterflow.models import DeadLetter
from meterflow.sink.batch import Batch
from meterflow.sink.health import SinkHealth
from meterflow.sink.writer import ForeignResultsError, WriteResult

log = logging.getLogger(__name__)

RETRY_BASE_S = 0.2
UNSTORABLE = (asyncpg.DataError, ValueError)
"""What a write raises when a value passed validation but can never be stored: PostgreSQL
refuses it (a JSON number beyond NUMERIC in `request`) or asyncpg cannot encode it (a lone
surrogate). Retrying cannot help, so those rows are found and dead-lettered instead."""


class RowWriter(Protocol):
    async def write(self, batch: Batch) -> WriteResult:
        """Costs, breakdown and location changes in ONE transaction; raises if not committed."""
        ...

    async def find_unstorable(self, batch: Batch) -> tuple[dict[str, str], dict[str, str]]:
        """(cost id -> reason, location id -> reason) of the rows that can never be stored."""
        ...


class DeadLetterSender(Protocol):
    async def send(self, letters: Sequence[tuple[bytes | None, DeadLetter]]) -> None:
        """Returns once the broker acknowledged every letter; raises otherwise."""
        ...


class OffsetCommitter(Protocol):
    """The subset of `AIOKafkaConsumer` the checkpoint uses."""

    def assignment(self) -> Set[Any]:  # set[TopicPartition]; aiokafka is untyped
        ...

    async def commit(self, offsets: dict[Any, int]) -> None:
        """Raises `KafkaError` when the group refuses the commit (it moved on)."""
        ...


class Checkpoint:
    """`await checkpoint(batch)` applies a batch in order; it also keeps the retry backoff and
    the health/counters, which follow from each attempt's outcome."""

    def __init__(
        self,
        writer: RowWriter,
        dead_letters: DeadLetterSender,
        offsets: OffsetCommitter,
        health: SinkHealth,
        retry_max_s: float,
    ) -> None:
        self._writer = writer
        self._dead_letters = dead_letters
        self._offsets = offsets
        self.health = health
        self._retry_max_s = retry_max_s
        self.failures = 0  # consecutive failed attempts
        self.retry_at = 0.0  # time.monotonic() before which no new attempt should start

    async def __call__(self, batch: Batch) -> bool:
        """Write the batch, send its dead letters, then commit its offsets.

        False: step 1 or 2 failed, no offset moved, a retry is scheduled (`retry_at`); the
        caller keeps the batch to retry it whole, or drops it unacknowledged (either is safe).
        """
        try:
            with metrics.time_sink_write():
                written = await self._write_rows(batch)  # 1. one database transaction
        except Exception as exc:
            metrics.database_error("checkpoint")
            self._failed(exc, batch)
            return False
        try:
            await self._dead_letters.send(batch.dead_letters)  # 2. acked by the broker
        except Exception as exc:  # the broker's, not the database's: no database error
            self._failed(exc, batch)
            return False
        self._log_dead_letters(batch)
        await self._commit(batch.next_offsets)  # 3. offsets, only after 1 and 2
        self._succeeded(batch, written)
        return True

    async def _write_rows(self, batch: Batch) -> WriteResult:
        """Write, taking out (as dead letters) the results that can never be stored: each
        attempt refused this way takes at least one out, so the loop ends."""
        while True:
            try:
                return await self._writer.write(batch)
            except ForeignResultsError as error:
                batch.reject(error.versions, {}, utc_now())
            except UNSTORABLE:
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
                batch.reject(costs, locations, utc_now())  # results -> its dead letters

    async def _commit(self, next_offsets: dict[tuple[str, int], int]) -> None:
        owned = self._offsets.assignment()
        offsets = {
            tp: offset
            for (topic, partition), offset in next_offsets.items()
            if (tp := TopicPartition(topic, partition)) in owned
        }
        if len(offsets) < len(next_offsets):
            # Revoked since they were read: the next owner re-reads them (and skips stored rows).
            event(log, "commit_skipped_unowned", partitions=len(next_offsets) - len(offsets))
        if not offsets:
            return
        try:
            await self._offsets.commit(offsets)
        except KafkaError as exc:
            # The rows are durable; whoever owns these partitions now re-reads and skips them.
            self.health.stats.commit_failures += 1
            event(log, "commit_failed", logging.WARNING, error=f"{type(exc).__name__}: {exc}")

    def _failed(self, exc: Exception, batch: Batch) -> None:
        self.failures += 1
        delay = min(self._retry_max_s, RETRY_BASE_S * 2 ** (self.failures - 1))
        self.retry_at = time.monotonic() + delay
        self.health.stats.write_failures += 1
        reason = f"{type(exc).__name__}: {exc}"[:500]
        self.health.mark_unhealthy(reason)
        event(
            log,
            "checkpoint_failed",
            logging.WARNING,
            error=reason,
            attempt=self.failures,
            retry_in_s=round(delay, 3),
            records=len(batch),
        )

    def _succeeded(self, batch: Batch, written: WriteResult) -> None:
        stats = self.health.stats
        # Neither inserted nor replacing: a duplicate, a replay, or an older version.
        already_stored = batch.results - written.costs_inserted - written.costs_replaced
        metrics.sink_batch_written(
            rows=written.costs_inserted, duplicates=already_stored, replaced=written.costs_replaced
        )
        stats.batches_written += 1
        stats.costs_inserted += written.costs_inserted
        stats.costs_already_stored += already_stored
        stats.costs_replaced += written.costs_replaced
        stats.breakdown_inserted += written.breakdown_inserted
        stats.simulated_skipped += batch.simulated
        stats.dead_lettered += len(batch.dead_letters)
        stats.locations_changed += written.locations_changed
        if not self.health.healthy:
            event(log, "sink_recovered", failures=self.failures, records=len(batch))
        self.failures, self.retry_at = 0, 0.0
        self.health.mark_healthy()
        event(
            log,
            "batch_written",
            logging.DEBUG,
            records=len(batch),
            inserted=written.costs_inserted,
            already_stored=already_stored,
            replaced=written.costs_replaced,
            simulated=batch.simulated,
            dead_letters=len(batch.dead_letters),
            locations=written.locations_changed,
            fast_path=written.fast_path,
        )

    @staticmethod
    def _log_dead_letters(batch: Batch) -> None:
        for _, letter in batch.dead_letters:
            assert letter.source is not None
            metrics.record_dead_lettered("energy-costs", letter.error.code)
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
