"""The faust fixes that need no broker: queue clearing on resume, and the tail-stall rewind.

Their effect on a real broker is tested by the SIGKILL and two-worker tests
(tests/integration/test_stream_pipeline.py).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from faust.types import TP
from mode.utils.queues import FlowControlEvent, FlowControlQueue

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
class FakeConsumer:
    highwaters: dict[TP, int]
    assigned: set[TP]
    flow_active: bool = True
    seeks: list[tuple[TP, int]] = field(default_factory=list)
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
