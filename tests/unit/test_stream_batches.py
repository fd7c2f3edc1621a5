"""`take_batches` without a broker: a real faust app and stream (never started, never
connected), events put in the queue the conductor fills, acks read from faust's consumer.

What the loop must keep of faust's per-event path: events of a stale generation or taken while
flow is suspended are skipped untracked (never acked), the others are tracked, and a batch is
acked only once the agent's body returned for it (the commit patches in `faust_fixes` read
those acks). The broker tests (`tests/integration/test_stream_pipeline.py`: SIGKILL, two
workers, transactional input) run the same loop in the worker.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import faust
import pytest
from faust.types import TP
from faust.types.tuples import ConsumerMessage
from faust_support import discard, unstarted_app

from meterflow.stream import faust_fixes
from meterflow.stream.batches import take_batches, uncontended_callback_lookup

INPUT = "mf-unit-batches-input"
IN0, IN1 = TP(INPUT, 0), TP(INPUT, 1)


@pytest.fixture
async def app() -> AsyncIterator[faust.App]:
    app = unstarted_app("mf-unit-batches")
    faust_fixes.guard_input(app, INPUT)
    app.consumer_generation_id = 3
    yield app
    discard(app)


async def input_stream(app: faust.App) -> Any:
    """The stream an agent of `INPUT` gets: `app.stream` `aiter()`s the topic, which
    registers the iterator clone with the conductor; its queue is the one the conductor fills."""
    stream = app.stream(app.topic(INPUT, key_serializer="raw", value_serializer="raw"))
    assert stream.channel in app.topics  # the conductor delivers to this channel
    conductor: Any = app.topics
    await conductor._update_indices()  # what subscribing does: the topic is acked
    return stream


async def put(stream: Any, tp: TP, offset: int, generation: int = 3) -> Any:
    """What the conductor does with a fetched record: decode it, queue the event."""
    message = ConsumerMessage(tp.topic, tp.partition, offset, 0.0, 0, None, b"k", b"v", None, tp=tp)
    message.generation_id = generation
    event = await stream.channel.decode(message, propagate=True)
    stream.channel.queue.put_nowait(event)
    return event


def acked(app: faust.App, tp: TP) -> list[int]:
    consumer: Any = app.consumer
    return sorted(consumer._acked[tp])


async def test_a_batch_is_acked_only_after_the_body_returned(app: faust.App) -> None:
    stream = await input_stream(app)
    for offset in range(3):
        await put(stream, IN0, offset)
    await put(stream, IN1, 7)
    batches = take_batches(stream, 500, within=0.001)
    batch = await anext(batches)
    assert [(e.message.partition, e.message.offset) for e in batch] == [
        (0, 0),
        (0, 1),
        (0, 2),
        (1, 7),
    ]
    assert all(e.message.tracked for e in batch)
    assert set(app.consumer.unacked) == {e.message for e in batch}
    assert acked(app, IN0) == []  # the body is still running
    await put(stream, IN0, 3)
    second = await anext(batches)  # asking for the next batch = the body returned
    assert acked(app, IN0) == [0, 1, 2]
    assert acked(app, IN1) == [7]
    assert [e.message.offset for e in second] == [3]
    await batches.aclose()


async def test_a_batch_holds_at_most_max_events(app: faust.App) -> None:
    stream = await input_stream(app)
    for offset in range(5):
        await put(stream, IN0, offset)
    batches = take_batches(stream, 2, within=0.001)
    sizes = [len(await anext(batches)) for _ in range(3)]
    assert sizes == [2, 2, 1]
    await batches.aclose()


async def test_events_of_a_stale_generation_are_skipped_untracked_mid_batch(
    app: faust.App,
) -> None:
    """A rebalance between fetches: events queued before it are dropped from the batch and
    never acked (the seek after the rebalance fetches them again); the others go on."""
    stream = await input_stream(app)
    await put(stream, IN0, 0)
    stale = await put(stream, IN0, 1, generation=2)
    await put(stream, IN0, 2)
    batches = take_batches(stream, 500, within=0.001)
    batch = await anext(batches)
    assert [e.message.offset for e in batch] == [0, 2]
    assert not stale.message.tracked
    assert stale.message not in app.consumer.unacked
    await put(stream, IN0, 3)
    await anext(batches)
    assert acked(app, IN0) == [0, 2]  # 1 was never processed: the commit stops before it
    await batches.aclose()


async def test_events_taken_while_flow_is_suspended_are_skipped(app: faust.App) -> None:
    """A rebalance began after the event was queued: it is not processed, nor acked."""
    stream = await input_stream(app)
    queued = await put(stream, IN0, 0)
    app.flow_control.suspend()
    batches = take_batches(stream, 500, within=0.001)
    next_batch = asyncio.ensure_future(anext(batches))
    for _ in range(5):
        await asyncio.sleep(0)
    assert stream.channel.queue.empty()
    assert not next_batch.done()  # taken from the queue and skipped
    app.flow_control.resume()
    await put(stream, IN0, 1)
    batch = await next_batch
    assert [e.message.offset for e in batch] == [1]
    assert not queued.message.tracked
    await put(stream, IN0, 2)
    await anext(batches)
    assert acked(app, IN0) == [1]
    await batches.aclose()


async def test_nothing_is_acked_when_the_body_raises(app: faust.App) -> None:
    stream = await input_stream(app)
    for offset in range(3):
        await put(stream, IN0, offset)
    seen: list[int] = []

    async def agent() -> None:
        async for batch in take_batches(stream, 500, within=0.001):
            seen.append(len(batch))
            raise RuntimeError("the body failed")

    with pytest.raises(RuntimeError):
        await agent()
    assert seen == [3]
    assert acked(app, IN0) == []
    assert len(app.consumer.unacked) == 3  # tracked, unacked: no commit passes them


async def test_a_stopping_channel_ends_the_batches(app: faust.App) -> None:
    """faust throws `StopAsyncIteration` into the queue when it stops: the loop ends quietly
    (out of an async generator it would be a RuntimeError: an agent crash and a restart)."""
    stream = await input_stream(app)
    await stream.channel.throw(StopAsyncIteration())
    assert [batch async for batch in take_batches(stream, 500, within=0.001)] == []


def test_what_the_loop_borrows_is_checked_at_start_up() -> None:
    """`take_batches` is declared with the faust fixes: `guard_input` (worker start-up)
    refuses a faust whose queue, tracking or ack internals differ from the declared ones."""
    assert "take_batches" in {patch.name for patch in faust_fixes.BORROWED.patches}
    faust_fixes.BORROWED.check()


async def test_a_free_conductor_lock_is_not_taken_a_held_one_is_waited_for(
    app: faust.App,
) -> None:
    """uncontended_callback_lookup: same callback, no lock round trip while the lock is free;
    while a rebalance rebuilds the index (lock held) a record waits for it, as in faust."""
    conductor: Any = app.topics
    tp = TP("mf-unit-batches-lookup", 0)
    got: list[int] = []

    async def callback(message: Any) -> None:
        got.append(message.offset)

    conductor._tp_to_callback[tp] = callback
    uncontended_callback_lookup(app)
    message = ConsumerMessage(tp.topic, 0, 1, 0.0, 0, None, b"k", b"v", None, tp=tp)
    await conductor.on_message(message)
    assert got == [1]
    async with conductor._tp_to_callback_lock:
        held = asyncio.ensure_future(conductor.on_message(message))
        for _ in range(3):
            await asyncio.sleep(0)
        assert not held.done()  # waits for the index
    await held
    assert got == [1, 1]
