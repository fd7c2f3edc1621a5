"""The conductor's hand-over of a fetched record to its channels, lean for raw topics.

faust's conductor runs a handler per partition for every fetched record
(`ConductorCompiler.build`): flow control, the producer buffer check, then the record
decoded into an `Event` and put in each channel's queue. For a topic without a schema the
decode is still the general one: the key and then the value through the serializer registry
(the "raw" codec, `Model._maybe_reconstruct`, a try/except each), then `app.create_event`,
which looks the Event class up in the settings; and the buffer check reads the producer buffer's
size through `app.conf` (the settings registry's `__getattribute__`) per record. Sampled
with py-spy (`bench/bench_stages.py`), that was ~24 µs of a worker's ~130 µs per record, the
decode and event two thirds of it, the buffer check a fifth.

Every topic meterflow reads is raw (`create_app`'s `raw_topic`: bytes keys and values, no
schema), and decoding a raw record gives back its own key and value. So for a partition whose
channels are all raw, the handler here builds the one event from the message itself and checks
the buffer's length with `qsize()`; everything else (flow control, the reference count, the
queues' pressure callbacks, the wait on a full queue) is faust's handler, step for step. A
partition with any other channel gets faust's handler; so does one whose set of channels
changed after the handler was built (faust rebuilds every handler when it does).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Set
from typing import Any

import faust
from faust.events import Event
from faust.serializers.registry import Registry
from faust.serializers.schemas import Schema
from faust.topics import Topic
from faust.transport.conductor import Conductor, ConductorCompiler
from faust.transport.producer import ProducerBuffer

from meterflow._guards import Names, Signature
from meterflow.stream.faust_fixes import BORROWED

Handler = Callable[[Any], Awaitable[None]]
_RAW = "raw"


def is_raw(channel: Any) -> bool:
    """A topic whose events carry the record's own key and value bytes (no model, no codec)."""
    if not isinstance(channel, Topic):
        return False
    schema = channel.schema
    return (
        type(schema) is Schema
        and schema.key_serializer == _RAW
        and schema.value_serializer == _RAW
        and schema.key_type in (None, bytes)
        and schema.value_type in (None, bytes)
    )


@BORROWED.patch(
    Signature(Conductor, "_build_handler", "(self, tp, channels)"),
    Names(Conductor, "_update_callback_map", ("_build_handler", "_tp_index")),
    # the steps the lean handler repeats, in faust's order
    Names(
        ConductorCompiler,
        "build",
        (
            "acquire",
            "wait_until_ebb",
            "incref",
            "decode",
            "queue",
            "full",
            "put_nowait_enhanced",
            "on_buffer_full",
            "on_buffer_drop",
            "on_topic_buffer_full",
            "put",
        ),
    ),
    # what decoding a raw record is: the registry's codec, then the event
    Names(Schema, "compile", ("loads_key", "loads_value", "create_event", "headers")),
    Names(Registry, "loads_key", ("_loads", "_prepare_payload")),
    Names(Registry, "_prepare_payload", ("_maybe_reconstruct", "want_bytes")),
    Names(faust.App, "create_event", ("conf", "Event")),
    Signature(Event, "__init__", "(self, app, key, value, headers, message)"),
    # the buffer check: faust waits only above `max_messages` queued (unthreaded producer)
    Names(ProducerBuffer, "wait_until_ebb", ("size", "max_messages", "flush_atmost")),
    Names(ProducerBuffer, "put", ("producer_threaded", "pending", "put_nowait")),
)
def lean_raw_delivery(app: Any) -> None:
    """Give every partition whose channels are all raw the lean handler (before subscribing:
    the conductor builds its handlers when partitions are assigned)."""
    conductor = app.topics
    faust_handler = conductor._build_handler

    def build(tp: Any, channels: Set[Any]) -> Handler:
        if channels and all(is_raw(channel) for channel in channels):
            return raw_handler(app, tp, channels, lambda: faust_handler(tp, channels))
        handler: Handler = faust_handler(tp, channels)
        return handler

    conductor._build_handler = build


def raw_handler(
    app: Any, tp: Any, channels: Set[Any], faust_handler: Callable[[], Handler]
) -> Handler:
    """`ConductorCompiler.build`'s handler for raw channels, with the event made directly."""
    consumer = app.consumer
    acquire_flow_control = app.flow_control.acquire
    buffer = app.producer.buffer
    pending_size = buffer.pending.qsize
    threaded = app.conf.producer_threaded  # then only faust's check knows the buffer's size
    make_event = app.conf.Event
    on_topic_buffer_full = app.sensors.on_topic_buffer_full
    width = len(channels)
    fallback: Handler | None = None

    def on_pressure_high() -> None:
        on_topic_buffer_full(tp)
        consumer.on_buffer_full(tp)

    def on_pressure_drop() -> None:
        consumer.on_buffer_drop(tp)

    async def on_message(message: Any) -> None:
        nonlocal fallback
        if len(channels) != width:  # changed since built: faust's handler, until rebuilt
            fallback = fallback or faust_handler()
            return await fallback(message)
        await acquire_flow_control()
        if threaded or pending_size() > buffer.max_messages:
            await buffer.wait_until_ebb()
        message.incref(width)
        event = make_event(app, message.key, message.value, message.headers, message)
        full = []
        for channel in channels:
            queue = channel.queue
            if queue.full():
                full.append(channel)
                continue
            queue.put_nowait_enhanced(
                event, on_pressure_high=on_pressure_high, on_pressure_drop=on_pressure_drop
            )
        if full:
            for _ in full:
                on_topic_buffer_full(tp)
            await asyncio.wait(
                [asyncio.ensure_future(channel.put(event)) for channel in full],
                return_when=asyncio.ALL_COMPLETED,
            )

    return on_message
