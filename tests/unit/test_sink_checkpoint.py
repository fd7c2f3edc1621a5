"""The sink's checkpoint with fakes (no broker, no database): the order of effects.

Rows, then dead letters, then offsets; a failure at any step leaves offsets where they were and
the batch is retried whole; partitions revoked while a batch is pending get no commit, and no
record of theirs is lost (the next owner re-reads them from the last commit). The real clients
are exercised by tests/integration/test_sink_pipeline.py.
"""

from __future__ import annotations

import time
from collections.abc import Sequence, Set
from typing import Any

import asyncpg
import pytest
from aiokafka.errors import CommitFailedError
from aiokafka.structs import TopicPartition
from prometheus_client import REGISTRY

from meterflow.models import DeadLetter, dumps
from meterflow.sink.batch import Batch
from meterflow.sink.checkpoint import Checkpoint
from meterflow.sink.decode import Persist, Poison, decode_cost
from meterflow.sink.health import SinkHealth
from meterflow.sink.rows import Source
from meterflow.sink.writer import FOREIGN_REASON, ForeignResultsError, WriteResult
from sink_documents import NOW, valid

TOPIC = "energy-costs"
P0, P1 = TopicPartition(TOPIC, 0), TopicPartition(TOPIC, 1)


class Effects:
    """What happened, in order, across the three fakes."""

    def __init__(self) -> None:
        self.log: list[tuple[str, Any]] = []
        self.fail: set[str] = set()  # "write", "dead_letters", "commit": the next call raises

    def kinds(self) -> list[str]:
        return [kind for kind, _ in self.log]


class FakeWriter:
    def __init__(
        self, effects: Effects, *, unstorable: Sequence[str] = (), foreign: Sequence[str] = ()
    ) -> None:
        self.effects = effects
        self.stored: set[str] = set()
        self.unstorable = set(unstorable)  # ids PostgreSQL would refuse
        self.foreign = set(foreign)  # ids another account's stored result has
        self.before_write: list[Any] = []  # callables run inside the write (e.g. a revoke)

    async def write(self, batch: Batch) -> WriteResult:
        for hook in self.before_write:
            hook()
        if "write" in self.effects.fail:
            self.effects.fail.discard("write")
            raise ConnectionRefusedError("database down")
        if self.foreign & batch.costs.keys():  # one at a time, as rounds of a batch may
            raise ForeignResultsError({min(self.foreign & batch.costs.keys()): FOREIGN_REASON})
        if self.unstorable & batch.costs.keys():
            raise asyncpg.DataError("numeric field overflow")
        new = sorted(batch.costs.keys() - self.stored)
        self.stored |= set(new)
        self.effects.log.append(("rows", new))
        return WriteResult(len(new), 0, len(batch.locations), fast_path=True)

    async def find_unstorable(self, batch: Batch) -> tuple[dict[str, str], dict[str, str]]:
        return {
            i: "DataError: numeric field overflow" for i in self.unstorable & batch.costs.keys()
        }, {}


class FakeDeadLetters:
    def __init__(self, effects: Effects) -> None:
        self.effects = effects

    async def send(self, letters: Sequence[tuple[bytes | None, DeadLetter]]) -> None:
        if "dead_letters" in self.effects.fail:
            self.effects.fail.discard("dead_letters")
            raise TimeoutError("broker did not acknowledge")
        self.effects.log.append(("dead_letters", [letter.source for _, letter in letters]))


class FakeConsumer:
    def __init__(self, effects: Effects, owned: Set[TopicPartition]) -> None:
        self.effects = effects
        self.owned = set(owned)
        self.committed: dict[TopicPartition, int] = {}

    def assignment(self) -> Set[TopicPartition]:
        return set(self.owned)

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        if "commit" in self.effects.fail:
            self.effects.fail.discard("commit")
            raise CommitFailedError("the group rebalanced")
        self.committed.update(offsets)
        self.effects.log.append(("offsets", dict(offsets)))


class Harness:
    def __init__(self, *, unstorable: Sequence[str] = (), foreign: Sequence[str] = ()) -> None:
        self.effects = Effects()
        self.writer = FakeWriter(self.effects, unstorable=unstorable, foreign=foreign)
        self.consumer = FakeConsumer(self.effects, {P0, P1})
        self.health = SinkHealth()
        self.checkpoint = Checkpoint(
            writer=self.writer,
            dead_letters=FakeDeadLetters(self.effects),
            offsets=self.consumer,
            health=self.health,
            retry_max_s=10.0,
        )


def _database_errors() -> float:
    labels = {"operation": "checkpoint"}
    return REGISTRY.get_sample_value("meterflow_database_errors_total", labels) or 0.0


def batch_of(*records: tuple[int, int, str | None]) -> Batch:
    """(partition, offset, result id or None for a poison record) as the sink would read them."""
    batch = Batch()
    for partition, offset, cost_id in records:
        value = b"not json" if cost_id is None else dumps({**valid(), "id": cost_id})
        outcome = decode_cost(b"loc_1", value, Source(TOPIC, partition, offset), NOW)
        assert isinstance(outcome, Persist if cost_id else Poison)
        batch.add_cost(outcome, TOPIC, partition, offset, 0.0)
    return batch


def mixed_batch() -> Batch:
    return batch_of((0, 10, "ecs_a"), (0, 11, None), (1, 5, "ecs_b"))


async def test_rows_then_dead_letters_then_offsets() -> None:
    h = Harness()
    assert await h.checkpoint(mixed_batch())
    assert h.effects.kinds() == ["rows", "dead_letters", "offsets"]
    assert h.effects.log[0][1] == ["ecs_a", "ecs_b"]
    assert [(s.partition, s.offset) for s in h.effects.log[1][1]] == [(0, 11)]
    assert h.consumer.committed == {P0: 12, P1: 6}  # the offset after the last record read
    stats = h.health.stats
    assert (stats.costs_inserted, stats.dead_lettered, stats.batches_written) == (2, 1, 1)
    assert h.health.healthy
    assert h.checkpoint.retry_at == 0.0


@pytest.mark.parametrize("step", ["write", "dead_letters"])
async def test_a_failed_step_moves_no_offset_and_the_whole_batch_is_retried(step: str) -> None:
    h = Harness()
    batch = mixed_batch()
    h.effects.fail.add(step)
    database_errors = _database_errors()
    assert not await h.checkpoint(batch)
    # the broker refusing dead letters is not a database error
    assert _database_errors() == database_errors + (step == "write")
    assert "offsets" not in h.effects.kinds()
    assert h.consumer.committed == {}
    assert not h.health.healthy
    assert h.health.stats.write_failures == 1
    assert h.checkpoint.retry_at > 0  # the loop waits before the next attempt
    done_before_retry = len(h.effects.log)

    # The caller keeps the batch and retries it whole: rows already stored are skipped by the
    # writer (primary key), the dead letters are sent (again, if step 2 had failed), then offsets.
    assert await h.checkpoint(batch)
    retried = h.effects.log[done_before_retry:]
    assert [kind for kind, _ in retried] == ["rows", "dead_letters", "offsets"]
    assert retried[0][1] == ([] if step == "dead_letters" else ["ecs_a", "ecs_b"])
    assert h.consumer.committed == {P0: 12, P1: 6}
    assert h.health.healthy
    assert h.checkpoint.retry_at == 0.0
    assert h.checkpoint.failures == 0
    assert h.health.stats.costs_inserted + h.health.stats.costs_already_stored == 2


async def test_backoff_doubles_while_failing_and_is_capped() -> None:
    h = Harness()
    delays = []
    for _ in range(8):
        h.effects.fail.add("write")
        before = time.monotonic()
        assert not await h.checkpoint(mixed_batch())
        delays.append(round(h.checkpoint.retry_at - before, 1))
    assert delays == [0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 10.0, 10.0]


async def test_a_refused_commit_keeps_the_rows_and_a_later_commit_covers_them() -> None:
    h = Harness()
    h.effects.fail.add("commit")
    # Rows and dead letters are durable: the batch counts as written (nothing to retry); the
    # offsets stay behind until the next batch of the same partitions commits past them.
    assert await h.checkpoint(mixed_batch())
    assert h.effects.kinds() == ["rows", "dead_letters"]
    assert h.consumer.committed == {}
    assert h.health.stats.commit_failures == 1
    assert await h.checkpoint(batch_of((0, 12, "ecs_c"), (1, 6, "ecs_d")))
    assert h.consumer.committed == {P0: 13, P1: 7}


async def test_partitions_revoked_mid_batch_get_no_commit_and_lose_nothing() -> None:
    h = Harness()
    # The group takes partition 1 away while the batch is being written.
    h.writer.before_write.append(lambda: h.consumer.owned.discard(P1))
    assert await h.checkpoint(mixed_batch())
    assert h.effects.kinds() == ["rows", "dead_letters", "offsets"]
    assert h.consumer.committed == {P0: 12}  # nothing for the partition no longer owned
    # Its records are stored, and its committed offset did not move: the next owner re-reads
    # them from there and finds them stored; nothing was acknowledged that is not durable.
    assert "ecs_b" in h.writer.stored


async def test_revoked_everything_while_the_database_is_down_commits_nothing() -> None:
    h = Harness()
    h.writer.before_write.append(lambda: h.consumer.owned.clear())
    h.effects.fail.add("write")
    assert not await h.checkpoint(mixed_batch())  # the sink drops it unacknowledged
    assert h.effects.kinds() == []
    assert h.consumer.committed == {}


async def test_unstorable_rows_become_dead_letters_before_offsets() -> None:
    h = Harness(unstorable=["ecs_b"])
    assert await h.checkpoint(mixed_batch())
    assert h.effects.kinds() == ["rows", "dead_letters", "offsets"]
    assert h.effects.log[0][1] == ["ecs_a"]
    letters = h.effects.log[1][1]
    assert sorted((s.partition, s.offset) for s in letters) == [(0, 11), (1, 5)]
    assert h.consumer.committed == {P0: 12, P1: 6}


async def test_results_with_another_accounts_ids_become_dead_letters_one_by_one() -> None:
    """Each refused attempt takes one result out; the rest is stored, also past an
    unstorable row, and every refused result is a dead letter before the offsets move."""
    h = Harness(foreign=["ecs_a", "ecs_c"], unstorable=["ecs_b"])
    batch = batch_of((0, 10, "ecs_a"), (0, 11, "ecs_b"), (1, 5, "ecs_c"), (1, 6, "ecs_d"))
    assert await h.checkpoint(batch)
    assert h.effects.kinds() == ["rows", "dead_letters", "offsets"]
    assert h.effects.log[0][1] == ["ecs_d"]
    letters = h.effects.log[1][1]
    assert sorted((s.partition, s.offset) for s in letters) == [(0, 10), (0, 11), (1, 5)]
    reasons = {letter.error.message for _, letter in batch.dead_letters}
    assert f"could not be stored: {FOREIGN_REASON}" in reasons
    assert h.consumer.committed == {P0: 12, P1: 7}
