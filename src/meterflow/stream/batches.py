"""Batches of input events straight from an agent's queue: faust's per-event path, lean.

`take_batches(stream, max_, within)` replaces `stream.take_events(max_, within)` in the agents
that price records (`price-records`, `derive-intervals`). faust's `take_events` runs the stream
iterator in a background task (the passive drainer): per event an event-loop turn, sensor
calls, a contextvar, processors under `trace()` (its `add_to_buffer`, an `await` each), then
per event after the batch an `await stream.ack(event)` with two more sensor calls; a measured
third of the worker's per-record time outside the agent body (docs/stream.md, "Faust's
per-event path"). Here the agent's own task takes the events from the queue the conductor
fills, keeps what our delivery guarantees rest on, and nothing else:

- the queue is the stream's channel, the iterator clone `app.stream()` made with `aiter()`
  (`Topic.__aiter__` registered it with the conductor, which puts each decoded event in its
  `queue`); its own `get`/`get_nowait` are used, so the pressure-drop callbacks that resume a
  paused partition still run;
- `Stream`'s check per event: an event fetched before the current generation, or while flow
  is suspended (a rebalance), is skipped: not tracked, never acked (`ack_only_tracked`), the
  seek after the rebalance fetches it again;
- `Stream`'s tracking: `message.tracked = True` and the consumer's unacked set, which the
  ack, commit and gap-guard patches of `faust_fixes` read;
- the acks come after the agent's body returned for the batch (`message.ack`, as
  `Event.ack` does), and only then: a body that raises acks nothing (`take_events` acked in a
  `finally`).

faust's stream sensors (`on_stream_event_in/out`, `on_message_in/out`: its Monitor's counters)
are not called for these events; meterflow's metrics are its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Any

import faust
import faust.transport.conductor as faust_conductor
from faust.events import Event
from faust.streams import Stream
from faust.topics import Topic
from faust.transport.conductor import Conductor
from faust.transport.consumer import Consumer
from faust.types.tuples import Message
from mode.utils.queues import FlowControlEvent, FlowControlQueue, ThrowableQueue

from meterflow._guards import Names, Signature
from meterflow.stream.faust_fixes import BORROWED


@BORROWED.patch(
    # the queue the conductor fills: the stream's channel, `aiter()`-ed by `app.stream`
    Names(faust.App, "stream", ("aiter",)),
    Names(Topic, "__aiter__", ("clone", "topics", "add")),
    Names(Stream, "__init__", ("channel",)),
    Names(faust_conductor.ConductorCompiler, "build", ("queue", "put_nowait_enhanced")),
    Signature(ThrowableQueue, "get", "async (self)"),
    Signature(ThrowableQueue, "get_nowait", "(self)"),
    Signature(ThrowableQueue, "empty", "(self)"),
    Names(FlowControlQueue, "get_nowait", ("maybe_endorse_pressure_drop",)),
    # what `Stream`'s iterator does per event, done here the same way
    Names(
        Stream,
        "_py_aiter",
        (
            "is_active",
            "generation_id",
            "consumer_generation_id",
            "acking_topics",
            "tracked",
            "unacked",
        ),
    ),
    Signature(FlowControlEvent, "is_active", "(self)"),
    Names(Consumer, "__init__", ("_unacked_messages",)),  # what `Consumer.unacked` returns
    Names(Message, "__init__", ("tracked", "generation_id")),
    Signature(Message, "ack", "(self, consumer, n=1)"),
    Names(Event, "ack", ("message", "ack", "consumer")),
    Signature(Stream, "maybe_start", "async (self)"),
    also_written_for={"mode-streaming": "0.7"},
)
async def take_batches(stream: Any, max_: int, within: float) -> AsyncGenerator[list[Any], None]:
    """Yield lists of up to `max_` events of `stream`, each gathered for at most `within`
    seconds after its first event; ack a batch's events once the caller asks for the next.

    Only tracked events are yielded: the generation and flow check of faust's `Stream` is made
    as each event is taken from the queue.
    """
    app = stream.app
    queue = stream.channel.queue
    consumer = app.consumer
    flow_control = app.flow_control
    acking_topics = app.topics.acking_topics
    track = consumer.unacked.add
    loop = asyncio.get_running_loop()
    started_here = await stream.maybe_start()
    events: list[Any] = []

    def admit(event: Any) -> None:
        message = event.message
        if not flow_control.is_active() or message.generation_id != app.consumer_generation_id:
            return  # fetched before this generation: the seek after the rebalance refetches it
        if message.topic in acking_topics and not message.tracked:
            message.tracked = True
            track(message)
        events.append(event)

    try:
        while not stream.should_stop:
            admit(await queue.get())
            deadline = loop.time() + within
            while len(events) < max_:
                if not queue.empty():
                    admit(queue.get_nowait())
                    continue
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    async with asyncio.timeout(remaining):
                        admit(await queue.get())
                except TimeoutError:
                    break
            if not events:
                continue
            batch, events = events, []
            yield batch
            # Reached only when the body returned: a body that raised closes this generator
            # at the `yield` above, and its events stay unacked.
            for event in batch:
                event.message.ack(consumer)
    except StopAsyncIteration:
        # Stopping: faust throws it into the channel's queue (`Stream` returns on it too);
        # raised out of an async generator it would become a RuntimeError, an agent crash,
        # and a restart by the supervisor in the middle of the shutdown.
        return
    finally:
        if started_here:
            await stream.stop()
            stream.service_reset()


@BORROWED.patch(
    Names(Conductor, "__init__", ("_tp_to_callback", "_tp_to_callback_lock", "on_message")),
    # faust's handler: the callback is looked up under the lock, then awaited outside it
    Names(Conductor, "_compile_message_handler", ("_tp_to_callback_lock", "__getitem__", "tp")),
    Names(asyncio.Lock, "acquire", ("_locked", "_waiters")),  # what "free" means here
)
def uncontended_callback_lookup(app: Any) -> None:
    """Look up a fetched record's topic callback without `async with` when the lock is free.

    faust's conductor takes an `asyncio.Lock` around a dict lookup for every record (the lock
    is held while a rebalance rebuilds the index, `_update_indices`): 4.4 µs per record measured
    (docs/stream.md, "Faust's per-event path"). Acquiring a free asyncio lock with no waiter
    never suspends, and nothing else runs between the check and the lookup, so reading the
    dict directly then is the same; when the lock is held or awaited, faust's path is taken.
    Set on `app.topics.on_message` before the consumer is made (it is its fetch callback).
    """
    conductor = app.topics
    if app.client_only:
        return
    locked_path = conductor.on_message
    lock = conductor._tp_to_callback_lock
    callback_for = conductor._tp_to_callback.__getitem__  # cleared and refilled, never replaced

    async def on_message(message: Any) -> Any:
        if lock._locked or lock._waiters:
            return await locked_path(message)
        return await callback_for(message.tp)(message)

    conductor.on_message = on_message
