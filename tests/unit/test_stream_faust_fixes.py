"""The faust fixes without a broker: each class patch on real faust objects (a faust app that
is never started, with fakes where aiokafka would talk to the broker), queue clearing on resume,
the gap guard, and the guard that refuses to install the patches on a faust they were not
written for.

Their effect on a real broker is tested by the SIGKILL and two-worker tests
(tests/integration/test_stream_pipeline.py).
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import faust
import faust.transport.consumer as faust_consumer
import pytest
from aiokafka.client import AIOKafkaClient
from aiokafka.cluster import ClusterMetadata
from aiokafka.errors import IllegalStateError
from faust.transport.consumer import Consumer
from faust.transport.drivers.aiokafka import Consumer as WorkerConsumer
from faust.types import TP
from faust.types.tuples import ConsumerMessage
from mode.utils.queues import FlowControlEvent, FlowControlQueue

from meterflow import _guards
from meterflow._guards import BorrowedInternalsError
from meterflow.stream import faust_fixes
from meterflow.stream.faust_fixes import InputGapGuard


@dataclass
class FakeApp:
    flow_control: FlowControlEvent


def test_a_resume_after_a_suspension_still_drops_stale_events() -> None:
    app = FakeApp(FlowControlEvent(initially_suspended=False))
    faust_fixes.keep_queued_events_on_redundant_resume(app)
    queue: FlowControlQueue[str] = FlowControlQueue(
        flow_control=app.flow_control, clear_on_resume=True
    )
    queue.put_nowait("fetched before the rebalance")
    app.flow_control.suspend()
    app.flow_control.resume()
    assert queue.empty()
    assert app.flow_control.is_active()


def test_a_resume_while_flowing_keeps_queued_events() -> None:
    app = FakeApp(FlowControlEvent(initially_suspended=False))
    faust_fixes.keep_queued_events_on_redundant_resume(app)
    queue: FlowControlQueue[str] = FlowControlQueue(
        flow_control=app.flow_control, clear_on_resume=True
    )
    queue.put_nowait("fetched after the seek")
    app.flow_control.resume()  # what faust's recovery does once more at its end
    assert queue.qsize() == 1


TP0 = TP("mf-meter-records", 0)
TP1 = TP("mf-meter-records", 1)


@dataclass
class FakeThread:
    """The consumer's thread: `call_thread` runs `fun` there (here: counts, then runs it)."""

    calls: int = 0

    async def call_thread(self, fun: Any, *args: Any) -> Any:
        self.calls += 1
        return await fun(*args)


@dataclass
class FakeConsumer:
    highwaters: dict[TP, int]
    assigned: set[TP]
    flow_active: bool = True
    seeks: list[tuple[TP, int]] = field(default_factory=list)
    _thread: FakeThread = field(default_factory=FakeThread)
    _unacked_messages: set[Any] = field(default_factory=set)
    _acked: defaultdict[TP, list[int]] = field(default_factory=lambda: defaultdict(list))
    _acked_index: defaultdict[TP, set[int]] = field(default_factory=lambda: defaultdict(set))

    def assignment(self) -> set[TP]:
        return self.assigned

    def highwater(self, tp: TP) -> int:
        return self.highwaters[tp]

    async def seek(self, tp: TP, offset: int) -> None:
        self.seeks.append((tp, offset))


@dataclass
class FakeStreamApp:
    consumer: FakeConsumer
    rebalancing: bool = False


def guard_for(consumer: FakeConsumer, owed: dict[TP, int]) -> InputGapGuard:
    setattr(consumer, "_meterflow_next_offsets", dict(owed))  # noqa: B010
    return InputGapGuard(FakeStreamApp(consumer), stall_after_s=0.0)


class Message:
    def __init__(self, tp: TP, offset: int) -> None:
        self.tp, self.offset, self.acked = tp, offset, False


class Event:
    def __init__(self, tp: TP, offset: int) -> None:
        self.message = Message(tp, offset)


async def admitted(guard: InputGapGuard, consumer: FakeConsumer, *offsets: int) -> list[int]:
    """Offer fresh events (a fetch makes new messages); return the offsets let through."""
    through = []
    for offset in offsets:
        event = Event(TP0, offset)
        consumer._unacked_messages.add(event.message)
        if await guard.admit(event):
            through.append(offset)
        else:
            assert event.message.acked, "a turned-away record must never be acked by faust"
            assert event.message not in consumer._unacked_messages
    return through


async def test_an_idle_agent_behind_the_highwater_is_rewound_to_what_it_is_owed() -> None:
    consumer = FakeConsumer(highwaters={TP0: 900, TP1: 40}, assigned={TP0, TP1})
    guard = guard_for(consumer, {TP0: 205, TP1: 40})
    await guard.rewind_stalled()
    assert consumer.seeks == [(TP0, 205)]  # TP1 has nothing more to give
    assert consumer._thread.calls == 1  # on the fetcher's thread, never racing its fetch


async def test_a_busy_agent_or_a_rebalance_is_never_taken_for_a_stall() -> None:
    consumer = FakeConsumer(highwaters={TP0: 900}, assigned={TP0})
    guard = guard_for(consumer, {TP0: 205})
    with guard.handling():
        await guard.rewind_stalled()
    consumer.flow_active = False
    await guard.rewind_stalled()
    assert consumer.seeks == []


async def test_partitions_no_longer_assigned_are_left_alone() -> None:
    consumer = FakeConsumer(highwaters={TP0: 900}, assigned=set())
    guard = guard_for(consumer, {TP0: 205})
    await guard.rewind_stalled()
    assert consumer.seeks == []


async def test_a_recent_event_postpones_the_check() -> None:
    consumer = FakeConsumer(highwaters={TP0: 900}, assigned={TP0})
    setattr(consumer, "_meterflow_next_offsets", {TP0: 205})  # noqa: B010
    guard = InputGapGuard(FakeStreamApp(consumer), stall_after_s=60.0)
    with guard.handling():
        assert await guard.admit(Event(TP0, 205))
    await guard.rewind_stalled()
    assert consumer.seeks == []


async def test_a_hole_is_fetched_again_and_records_after_it_wait() -> None:
    consumer = FakeConsumer(highwaters={TP0: 100}, assigned={TP0})
    guard = guard_for(consumer, {TP0: 10})
    assert await admitted(guard, consumer, 10, 13, 14) == [10]  # 11 and 12 went missing
    assert consumer.seeks == [(TP0, 11)]
    assert await admitted(guard, consumer, 15, 11, 12, 13, 14) == [11, 12, 13, 14]
    assert consumer.seeks == [(TP0, 11)]
    assert consumer._acked[TP0] == []  # nothing marked done that the agent did not process


async def test_offsets_without_records_are_passed_once_the_refetch_shows_them() -> None:
    consumer = FakeConsumer(highwaters={TP0: 100}, assigned={TP0})
    guard = guard_for(consumer, {TP0: 10})
    # 10 and 11 are a transaction's commit markers: the refetch from 10 starts at 12 again
    assert await admitted(guard, consumer, 12, 13) == []
    assert consumer.seeks == [(TP0, 10)]
    assert await admitted(guard, consumer, 12, 13) == [12, 13]
    assert sorted(consumer._acked[TP0]) == [10, 11]


async def test_a_tail_without_records_is_passed_after_a_rewind_that_brought_nothing() -> None:
    consumer = FakeConsumer(highwaters={TP0: 41}, assigned={TP0})
    guard = guard_for(consumer, {TP0: 40})  # offset 40: the commit marker ending the partition
    await guard.rewind_stalled()
    assert consumer.seeks == [(TP0, 40)]
    await guard.rewind_stalled()
    assert consumer.seeks == [(TP0, 40)]
    assert consumer._acked[TP0] == [40]
    await guard.rewind_stalled()
    assert consumer.seeks == [(TP0, 40)]  # nothing owed any more


async def test_a_batch_turned_away_is_never_acked_and_is_owed_again() -> None:
    """A rebalance interrupted the batch (`CatchUpInterruptedError`): its records must come
    again, even if no seek followed, and no commit may pass them."""
    consumer = FakeConsumer(highwaters={TP0: 100}, assigned={TP0})
    guard = guard_for(consumer, {TP0: 10})
    batch = [Event(TP0, offset) for offset in (10, 11, 12)]
    for event in batch:
        consumer._unacked_messages.add(event.message)
        assert await guard.admit(event)
    guard.turn_away(batch)
    assert all(event.message.acked for event in batch)  # faust's ack is a no-op on them
    assert consumer._unacked_messages == set()  # the revocation's wait_empty is not held
    assert consumer._acked[TP0] == []  # nothing a commit could pass
    assert await admitted(guard, consumer, 13) == []  # a hole now: fetched again from 10
    assert consumer.seeks == [(TP0, 10)]
    assert await admitted(guard, consumer, 10, 11, 12, 13) == [10, 11, 12, 13]


# The class patches, on the consumer of a faust app that is never started.

INPUT = "mf-unit-fixes-input"
OTHER = "mf-unit-fixes-other"
IN0, IN1, IN2 = TP(INPUT, 0), TP(INPUT, 1), TP(INPUT, 2)
OTHER0 = TP(OTHER, 0)


_CREATED: list[faust.App] = []


def new_app(*, guarded: bool) -> faust.App:
    app = faust.App(
        "mf-unit-fixes",
        broker="kafka://127.0.0.1:1",  # never connected: nothing here starts the app
        autodiscover=False,
        web_enabled=False,
    )
    app.Table("profiles", partitions=1, key_type=bytes, value_type=bytes)
    if guarded:
        faust_fixes.guard_input(app, INPUT)
    else:
        faust_fixes.install()
    _CREATED.append(app)
    return app


@pytest.fixture
async def app() -> AsyncIterator[faust.App]:
    app = new_app(guarded=True)
    for name in (INPUT, OTHER):
        app.topics.add(app.topic(name))
    await app.topics._update_indices()  # what subscribing does: both topics are acked
    yield app
    while _CREATED:  # the consumer thread's event loop, made with the consumer, never ran
        _CREATED.pop().consumer._thread.thread_loop.close()


def fetched(tp: TP, offset: int) -> ConsumerMessage:
    return ConsumerMessage(tp.topic, tp.partition, offset, 0.0, 0, None, b"k", b"v", None, tp=tp)


def test_the_input_topic_is_never_taken_for_already_read(app: faust.App) -> None:
    """never_drop: the fetch loop drops a record below the partition's read offset."""
    read_offset = app.consumer._read_offset
    read_offset[IN0] = 500  # what the fetch loop records after delivering offset 500
    read_offset[OTHER0] = 500
    assert read_offset[IN0] is None
    assert read_offset[OTHER0] == 500


def test_an_app_without_an_input_topic_keeps_fausts_read_offsets(app: faust.App) -> None:
    read_offset = new_app(guarded=False).consumer._read_offset
    read_offset[IN0] = 500
    assert read_offset[IN0] == 500


class Fetcher:
    def __init__(self) -> None:
        self._stopped = asyncio.Event()


async def test_the_fetch_loop_delivers_a_refetched_input_record_inline(app: faust.App) -> None:
    """never_drop and inline_delivery through faust's own fetch loop: after a seek back, the
    input record below the read offset is delivered (another topic's is dropped, as faust
    does), each from the fetch loop's task itself."""
    consumer = app.consumer
    fetcher = Fetcher()
    batches = [
        [(IN0, fetched(IN0, 500)), (OTHER0, fetched(OTHER0, 500))],
        [(IN0, fetched(IN0, 20)), (OTHER0, fetched(OTHER0, 20))],
    ]
    delivered: list[tuple[str, int, bool]] = []
    loop_task = asyncio.current_task()

    async def callback(message: ConsumerMessage) -> None:
        delivered.append((message.topic, message.offset, asyncio.current_task() is loop_task))

    def getmany(timeout: float) -> AsyncIterator[tuple[TP, ConsumerMessage]]:
        async def one_batch() -> AsyncIterator[tuple[TP, ConsumerMessage]]:
            for pair in batches.pop(0):
                yield pair
            if not batches:
                fetcher._stopped.set()

        return one_batch()

    consumer.callback = callback
    consumer.getmany = getmany
    await consumer._drain_messages(fetcher)
    assert delivered == [(INPUT, 500, True), (OTHER, 500, True), (INPUT, 20, True)]


async def test_a_delivery_while_flow_is_suspended_keeps_fausts_wait(app: faust.App) -> None:
    """inline_delivery applies only while flow runs: a suspension must still abandon it."""
    consumer = app.consumer
    ran_in: list[bool] = []

    async def callback() -> None:
        ran_in.append(asyncio.current_task() is this_task)

    this_task = asyncio.current_task()
    assert await consumer.wait_first(callback(), consumer.suspend_flow.wait()) is None
    assert ran_in == [True]
    consumer.suspend_flow.set()
    results = await consumer.wait_first(callback(), consumer.suspend_flow.wait())
    assert results is not None  # mode's WaitResults: faust's own race against the suspension
    assert True not in ran_in[1:]


def test_a_record_no_stream_processed_is_never_acked(app: faust.App) -> None:
    """ack_only_tracked: `Stream` acks records it skipped; those stay uncommitted now."""
    consumer = app.consumer
    skipped = fetched(IN0, 5)
    assert not skipped.tracked
    assert consumer.ack(skipped) is False
    processed = fetched(IN0, 6)
    processed.tracked = True  # what a stream does before handing a record to the agent
    assert consumer.ack(processed) is True
    assert consumer._acked[IN0] == [6]


def test_an_unprocessed_head_record_holds_the_commit_back(app: faust.App) -> None:
    """contiguous_commits: faust commits past one missing head record (#606's `> 1`)."""
    consumer = app.consumer
    for tp in (IN0, OTHER0):
        consumer._committed_offset[tp] = 10
        consumer._acked[tp].extend([11, 12])
        consumer._acked_index[tp].update([11, 12])
    assert consumer._new_offset(IN0) is None  # 10 was never processed
    assert consumer._new_offset(OTHER0) == 13  # faust's own rule, kept for other topics
    consumer._acked[IN0].extend([10, 8])  # 8: acked before a seek back to 10
    consumer._acked_index[IN0].update([10, 8])
    assert consumer._new_offset(IN0) == 13
    assert consumer._acked[IN0] == []
    assert not consumer._acked_index[IN0]


async def test_a_refused_commit_leaves_the_committed_offsets_as_they_were(
    app: faust.App, monkeypatch: pytest.MonkeyPatch
) -> None:
    """committed_means_committed: faust wrote a refused commit's offsets as committed, and the
    readings agent drops register points below them (a replay from the real commit needed
    them)."""
    consumer = app.consumer
    answers = [False, True]

    async def commit(offsets: Any) -> bool:
        return answers.pop(0)  # refused during a rebalance, then accepted

    async def flush() -> None:
        return None

    monkeypatch.setattr(consumer, "_commit", commit)
    monkeypatch.setattr(consumer, "assignment", lambda: {IN0, OTHER0})
    monkeypatch.setattr(app.producer, "flush", flush)
    monkeypatch.setattr(app.tables, "on_commit", lambda offsets: None)
    consumer._committed_offset[IN0] = 10
    assert await consumer._commit_offsets({IN0: 15, OTHER0: 3}) is False
    assert consumer._committed_offset[IN0] == 10
    assert OTHER0 not in consumer._committed_offset  # never committed: still unknown
    assert await consumer._commit_offsets({IN0: 15}) is True
    assert consumer._committed_offset[IN0] == 15


def test_nothing_is_committed_before_a_partitions_start_is_known(app: faust.App) -> None:
    consumer = app.consumer
    consumer._acked[IN0].extend([0, 1])
    consumer._acked_index[IN0].update([0, 1])
    assert consumer._new_offset(IN0) is None


async def test_a_seek_makes_the_earliest_offset_the_start_of_an_uncommitted_partition(
    app: faust.App, monkeypatch: pytest.MonkeyPatch
) -> None:
    """contiguous_commits' perform_seek: acks from before the seek are dropped, a partition
    without a commit starts at its earliest offset, and the gap guard learns what each input
    partition owes the agent."""
    consumer = app.consumer
    consumer._acked[IN0].extend([3, 9])
    consumer._acked_index[IN0].update([3, 9])
    asked_earliest: list[tuple[TP, ...]] = []

    async def seek_to_committed() -> Mapping[TP, int | None]:
        return {IN0: 7, IN1: 0, OTHER0: 0}

    async def earliest_offsets(*tps: TP) -> Mapping[TP, int]:
        asked_earliest.append(tps)
        return {IN1: 4}  # retention deleted offsets 0-3

    monkeypatch.setattr(consumer, "seek_to_committed", seek_to_committed)
    monkeypatch.setattr(consumer, "earliest_offsets", earliest_offsets)
    monkeypatch.setattr(consumer, "assignment", lambda: {IN0, IN1, OTHER0})
    await consumer.perform_seek()
    assert asked_earliest == [(IN1,)]
    assert consumer._committed_offset[IN0] == 7
    assert consumer._committed_offset[IN1] == 4
    assert consumer._committed_offset[OTHER0] is None  # faust's own reading, left alone
    assert consumer._acked[IN0] == []
    assert getattr(consumer, "_meterflow_next_offsets") == {IN0: 7, IN1: 4}  # noqa: B009


class AIOKafkaConsumer:
    """What faust's consumer thread calls on aiokafka when seeking."""

    def __init__(self, committed: Mapping[TP, int | None]) -> None:
        self.committed = committed
        self.rewound: list[tuple[TP, ...]] = []

    async def seek_to_committed(self) -> Mapping[TP, int | None]:
        return self.committed

    async def seek_to_beginning(self, *tps: TP) -> None:
        self.rewound.append(tps)


@pytest.fixture
def consumer_thread(app: faust.App, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    thread = app.consumer._thread

    async def call_thread(fun: Any, *args: Any) -> Any:  # run here, not on the thread's loop
        return await fun(*args)

    monkeypatch.setattr(thread, "call_thread", call_thread)
    yield thread
    thread._consumer = None


async def test_uncommitted_input_partitions_are_rewound_after_the_seek(
    app: faust.App, consumer_thread: Any
) -> None:
    """rewind: aiokafka seeks only to committed offsets > 0, leaving a fresh partition's fetch
    position past records dropped during recovery; changelogs are left to recovery."""
    (changelog,) = app.tables.changelog_topics
    committed = {IN0: None, IN1: 0, IN2: 42, TP(changelog, 0): None}
    consumer_thread._consumer = aio = AIOKafkaConsumer(committed)
    assert await consumer_thread.seek_to_committed() == committed
    assert aio.rewound == [(IN0, IN1)]


async def test_nothing_is_rewound_when_every_partition_has_a_commit(consumer_thread: Any) -> None:
    consumer_thread._consumer = aio = AIOKafkaConsumer({IN0: 3, IN1: 9})
    await consumer_thread.seek_to_committed()
    assert aio.rewound == []


class FetchingAIOKafkaConsumer:
    """aiokafka as a fetch leaves it: every partition's position after what it handed out."""

    def __init__(self, positions: dict[TP, int | None]) -> None:
        self.positions = positions  # None: revoked while its position was awaited
        self.seeks: list[tuple[TP, int]] = []

    def assignment(self) -> set[TP]:
        return set(self.positions)

    async def position(self, tp: TP) -> int:
        position = self.positions[tp]
        if position is None:
            raise IllegalStateError(f"No current assignment for partition {tp}")
        return position

    def seek(self, tp: TP, offset: int) -> None:
        self.seeks.append((tp, offset))
        self.positions[tp] = offset


async def batch_dropped_by_getmany(
    app: faust.App, monkeypatch: pytest.MonkeyPatch, records: Mapping[TP, list[Any]]
) -> list[Any]:
    """Run faust's own `getmany` over a fetch during which a rebalance stopped the flow."""
    consumer = app.consumer
    seeks_to_committed: list[bool] = []

    async def fetch_across_a_rebalance(active_partitions: Any, timeout: float) -> Any:  # noqa: ASYNC109
        consumer.stop_flow()
        return records

    async def perform_seek() -> None:
        seeks_to_committed.append(True)

    monkeypatch.setattr(consumer, "_getmany", fetch_across_a_rebalance)
    monkeypatch.setattr(consumer, "perform_seek", perform_seek)
    monkeypatch.setattr(consumer, "_active_partitions", set(records))
    yielded = [pair async for pair in consumer.getmany(timeout=1.0)]
    assert seeks_to_committed == [True]  # faust's own answer, for the input topics
    return yielded


def records_at(*offsets: int) -> list[Any]:
    return [ConsumerMessage("t", 0, o, 0.0, 0, None, b"k", b"v", None) for o in offsets]


async def test_changelog_records_dropped_with_a_stopped_flow_are_fetched_again(
    app: faust.App, consumer_thread: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """refetch_dropped_changelogs: the recovery that waited forever for a changelog partition
    whose records a fetch spanning the rebalance had taken and faust had dropped."""
    (changelog,) = app.tables.changelog_topics
    log0, log1 = TP(changelog, 0), TP(changelog, 1)
    consumer_thread._consumer = aio = FetchingAIOKafkaConsumer({log0: 164, log1: 40, IN0: 12})
    records = {log0: records_at(0, 1, 163), log1: records_at(30, 39), IN0: records_at(10, 11)}
    assert await batch_dropped_by_getmany(app, monkeypatch, records) == []
    assert aio.seeks == [(log0, 0), (log1, 30)]  # the input partition is perform_seek's


async def test_a_changelog_sought_meanwhile_to_its_records_or_before_is_left_there(
    app: faust.App, consumer_thread: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    (changelog,) = app.tables.changelog_topics
    log0, log1, log2 = TP(changelog, 0), TP(changelog, 1), TP(changelog, 2)
    consumer_thread._consumer = aio = FetchingAIOKafkaConsumer({log0: 0, log1: 30, log2: None})
    records = {log0: records_at(0, 1, 163), log1: records_at(30, 39), log2: records_at(5)}
    assert await batch_dropped_by_getmany(app, monkeypatch, records) == []
    assert aio.seeks == []


async def test_a_batch_fetched_while_flowing_is_delivered_and_nothing_sought(
    app: faust.App, consumer_thread: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    (changelog,) = app.tables.changelog_topics
    log0 = TP(changelog, 0)
    consumer_thread._consumer = aio = FetchingAIOKafkaConsumer({log0: 164})
    consumer = app.consumer

    async def fetch(active_partitions: Any, timeout: float) -> Any:  # noqa: ASYNC109
        return {log0: records_at(162, 163)}

    monkeypatch.setattr(consumer, "_getmany", fetch)
    monkeypatch.setattr(consumer, "_active_partitions", {log0})
    monkeypatch.setattr(consumer, "_to_message", lambda tp, record: record)
    monkeypatch.setattr(consumer, "highwater", lambda tp: 164)
    yielded = [message.offset async for _, message in consumer.getmany(timeout=1.0)]
    assert yielded == [162, 163]
    assert aio.seeks == []


@dataclass
class FakeRecovery:
    active_offsets: dict[TP, int | None]
    active_highwaters: dict[TP, int]
    in_recovery: bool = True

    @property
    def active_tps(self) -> set[TP]:
        return set(self.active_offsets)


LOG0, LOG1, LOG2 = TP("cl", 0), TP("cl", 1), TP("cl", 2)


def stall_guard(
    recovery: FakeRecovery, aio: FetchingAIOKafkaConsumer
) -> tuple[faust_fixes.RecoveryStallGuard, list[float]]:
    async def call_thread(fun: Any, *args: Any) -> Any:
        return await fun(*args)

    thread = SimpleNamespace(_consumer=aio, call_thread=call_thread)
    consumer = SimpleNamespace(flow_active=True, _thread=thread)
    app = SimpleNamespace(tables=SimpleNamespace(recovery=recovery), consumer=consumer)
    now = [0.0]
    return faust_fixes.RecoveryStallGuard(app, clock=lambda: now[0]), now


async def test_a_changelog_recovery_that_stopped_moving_is_sought_back() -> None:
    """RecoveryStallGuard: the partition of the stall above, whatever lost its records."""
    recovery = FakeRecovery({LOG0: -1, LOG1: 10, LOG2: 50}, {LOG0: 163, LOG1: 40, LOG2: 50})
    aio = FetchingAIOKafkaConsumer({LOG0: 164, LOG1: 30, LOG2: 51})
    guard, now = stall_guard(recovery, aio)
    for moment in (0.0, 2.0, 4.9):
        now[0] = moment
        recovery.active_offsets[LOG1] = 10 + int(moment)  # LOG1 moves (slowly): no stall
        await guard.refetch_stalled()
    assert aio.seeks == []
    now[0] = 5.0
    await guard.refetch_stalled()
    assert aio.seeks == [(LOG0, 0)]  # LOG1 still moving, LOG2 done
    now[0] = 7.0
    await guard.refetch_stalled()
    assert aio.seeks == [(LOG0, 0)]  # once per window


async def test_a_position_not_past_the_next_record_or_no_reading_is_left_alone() -> None:
    recovery = FakeRecovery({LOG0: 99}, {LOG0: 163})
    aio = FetchingAIOKafkaConsumer({LOG0: 100})  # sought there, the fetch just slow
    guard, now = stall_guard(recovery, aio)
    for moment in (0.0, 6.0, 12.0):
        now[0] = moment
        await guard.refetch_stalled()
    assert aio.seeks == []
    aio.positions[LOG0] = 164
    recovery.in_recovery = False  # recovery over, or (flow stopped) a rebalance under way
    for moment in (13.0, 20.0):
        now[0] = moment
        await guard.refetch_stalled()
    assert aio.seeks == []


async def test_the_input_is_read_committed_when_the_app_asks(app: faust.App) -> None:
    """worker_consumer_options: faust reads uncommitted (aborted transactions too) unless it
    produces transactionally itself."""
    for each, expected in ((app, "read_committed"), (new_app(guarded=False), "read_uncommitted")):
        aio = each.consumer._thread._create_worker_consumer(each.transport)
        try:
            assert aio._isolation_level == expected
        finally:
            await aio.stop()


async def test_the_broker_holds_a_fetch_as_long_as_the_app_says() -> None:
    """worker_consumer_options: faust passes aiokafka a constant 1,500 ms, which a fetch of idle
    partitions waits out while the busy ones, drained, cannot be fetched (one fetch in flight
    per broker)."""
    bounded = new_app(guarded=False)
    faust_fixes.bound_fetch_wait(bounded, 100)
    for each, expected in ((bounded, 100), (new_app(guarded=False), 1500)):
        aio = each.consumer._thread._create_worker_consumer(each.transport)
        try:
            assert aio._fetch_max_wait_ms == expected
        finally:
            await aio.stop()


async def test_a_failed_metadata_update_waits_the_retry_backoff_before_it_answers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """metadata_backoff: with no broker reachable an update failed at once, and the sender and
    fetcher, which force the next one as soon as it answers, spun a core (14,000 log lines a
    second). A failed update now sleeps `retry_backoff_ms` first; a successful one does not."""
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    monkeypatch.setattr(faust_fixes.asyncio, "sleep", sleep)
    faust_fixes.install()
    client = AIOKafkaClient(bootstrap_servers="127.0.0.1:1", retry_backoff_ms=250)
    assert not await client._metadata_update(ClusterMetadata(), set())  # no broker known
    assert slept == [0.25]

    async def succeeds(self: Any, cluster_metadata: Any, topics: Any) -> bool:
        return True

    slept.clear()
    assert await faust_fixes._backing_off(succeeds)(client, ClusterMetadata(), set())
    assert slept == []


# The guard on what the patches borrow.


async def test_a_fetch_waits_briefly_while_an_input_partition_is_paused(
    app: faust.App, monkeypatch: pytest.MonkeyPatch
) -> None:
    """prompt_resume: while a partition is paused under pressure (its queue full), a fetch of
    the other partitions waits 10 ms at most, so the paused one is fetched soon after its
    resume; otherwise, and after the resume, faust's own wait."""
    consumer = app.consumer
    waits: list[float] = []

    async def getmany(active_partitions: Any, timeout: float) -> dict[Any, Any]:  # noqa: ASYNC109
        waits.append(timeout)
        return {}

    monkeypatch.setattr(consumer._thread, "getmany", getmany)
    await consumer._getmany({IN0, OTHER0}, 1.0)
    consumer.on_buffer_full(IN0)
    await consumer._getmany({OTHER0}, 1.0)
    consumer.on_buffer_drop(IN0)
    await consumer._getmany({IN0, OTHER0}, 1.0)
    assert waits == [1.0, 0.01, 1.0]


def test_the_guard_passes_on_the_pinned_versions_installed_or_not(app: faust.App) -> None:
    faust_fixes.BORROWED.check()  # `app` has installed the patches: originals are still read
    names = {patch.name for patch in faust_fixes.BORROWED.patches}
    assert {
        "rewind",
        "never_drop",
        "ack_only_tracked",
        "contiguous_commits",
        "committed_means_committed",
        "inline_delivery",
        "worker_consumer_options",
        "metadata_backoff",
        "prompt_resume",
    } <= names


def faust_at(monkeypatch: pytest.MonkeyPatch, faust_version: str) -> None:
    real = _guards.installed_version
    monkeypatch.setattr(
        _guards,
        "installed_version",
        lambda dist: faust_version if dist == "faust-streaming" else real(dist),
    )


def test_another_faust_version_stops_the_worker_naming_every_patch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    faust_at(monkeypatch, "0.16.0")
    with pytest.raises(BorrowedInternalsError) as raised:
        new_app(guarded=True)  # create_app calls guard_input at worker start-up
    message = str(raised.value)
    assert "patch 'ack_only_tracked': faust-streaming: expected version 0.15.3, found 0.16.0" in (
        message
    )
    assert "patch 'rewind': faust-streaming" in message
    assert 'docs/stream.md, "Guards on the patched internals"' in message


def test_a_changed_signature_names_the_patch_the_attribute_and_both_signatures(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def ack(self: Any, message: Any, *, force: bool = False) -> bool:
        return True

    monkeypatch.setattr(Consumer, "ack", ack)
    with pytest.raises(BorrowedInternalsError) as raised:
        faust_fixes.install()
    assert (
        "patch 'ack_only_tracked': faust.transport.consumer.Consumer.ack: expected signature "
        "(self, message), found (self, message, *, force=False)"
    ) in str(raised.value)


def test_an_override_in_the_workers_consumer_class_is_seen(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def new_offset(self: Any, tp: Any) -> int | None:
        return None

    monkeypatch.setattr(WorkerConsumer, "_new_offset", new_offset, raising=False)
    with pytest.raises(BorrowedInternalsError, match=r"patch 'contiguous_commits': .*overridden"):
        faust_fixes.install()


def test_a_fetch_loop_that_no_longer_waits_on_the_suspension_is_seen(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def drain_messages(self: Any, fetcher: Any) -> None:
        await self.callback(fetcher)

    monkeypatch.setattr(Consumer, "_drain_messages", drain_messages)
    monkeypatch.setattr(faust_consumer, "Event", object)
    with pytest.raises(BorrowedInternalsError) as raised:
        faust_fixes.install()
    message = str(raised.value)
    assert (
        "patch 'inline_delivery': faust.transport.consumer.Consumer._drain_messages: expected "
        "its code to name wait_first, suspend_flow, wait, found no wait_first, suspend_flow, wait"
    ) in message
    assert "patch 'never_drop': faust.transport.consumer.Consumer._drain_messages" in message
    assert (
        "patch 'inline_delivery': faust.transport.consumer.Event: expected "
        "<class 'asyncio.locks.Event'>, found <class 'object'>"
    ) in message
