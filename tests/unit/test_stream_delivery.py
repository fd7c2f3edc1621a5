"""The lean conductor handler for raw topics against faust's own handler, without a broker: a
real faust app (never started), the real conductor building both handlers for one partition,
records handed to each, the events compared field by field.

The broker tests (`tests/integration/test_stream_pipeline.py`: SIGKILL, two workers,
transactional input) run the worker with the lean handler installed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import faust
import pytest
from faust.transport.conductor import ConductorCompiler
from faust.types import TP
from faust.types.tuples import ConsumerMessage
from faust_support import discard, unstarted_app

from meterflow.stream.delivery import is_raw, lean_raw_delivery

RAW, JSON = "mf-unit-delivery-raw", "mf-unit-delivery-json"


@pytest.fixture
async def app() -> AsyncIterator[faust.App]:
    app = unstarted_app("mf-unit-delivery")
    lean_raw_delivery(app)
    yield app
    discard(app)


def channel_of(app: faust.App, topic: str, serializer: str = "raw") -> Any:
    """The iterator clone an agent's stream reads, as `Topic.__aiter__` makes it."""
    return app.topic(topic, key_serializer=serializer, value_serializer=serializer).clone(
        is_iterator=True
    )


def record(tp: TP, offset: int, key: bytes | None, value: bytes | None) -> Any:
    headers = [("h", b"1")]
    return ConsumerMessage(tp.topic, tp.partition, offset, 0.0, 0, headers, key, value, None, tp=tp)


def fields(event: Any) -> tuple[Any, ...]:
    return (type(event), event.app, event.key, event.value, event.headers, event.message)


@pytest.mark.parametrize(
    ("key", "value"), [(b"loc_1", b'{"energy": 1.5}'), (None, b"x"), (b"loc_1", None), (b"", b"")]
)
async def test_a_raw_record_becomes_the_event_fausts_handler_makes(
    app: faust.App, key: bytes | None, value: bytes | None
) -> None:
    tp = TP(RAW, 0)
    ours_channel, faust_channel = channel_of(app, RAW), channel_of(app, RAW)
    conductor: Any = app.topics
    ours = conductor._build_handler(tp, {ours_channel})
    theirs = ConductorCompiler().build(conductor, tp, {faust_channel})
    assert ours is not theirs
    mine, reference = record(tp, 5, key, value), record(tp, 5, key, value)

    await ours(mine)
    await theirs(reference)

    got, expected = ours_channel.queue.get_nowait(), faust_channel.queue.get_nowait()
    assert fields(got)[:5] == fields(expected)[:5]
    assert got.message is mine
    assert expected.message is reference
    assert mine.refcount == reference.refcount == 1  # one channel: one reference to ack


async def test_a_partition_with_a_decoding_channel_keeps_fausts_handler(app: faust.App) -> None:
    tp = TP(JSON, 0)
    channel = channel_of(app, JSON, serializer="json")
    assert not is_raw(channel)
    conductor: Any = app.topics

    await conductor._build_handler(tp, {channel})(record(tp, 0, b'"k"', b'{"a": 1}'))

    event = channel.queue.get_nowait()
    assert (event.key, event.value) == ("k", {"a": 1})  # decoded: faust's path


async def test_a_channel_set_changed_after_building_goes_to_fausts_handler(
    app: faust.App,
) -> None:
    tp = TP(RAW, 1)
    first = channel_of(app, RAW)
    channels: set[Any] = {first}
    conductor: Any = app.topics
    handler = conductor._build_handler(tp, channels)
    decoding = channel_of(app, JSON, serializer="json")
    channels.add(decoding)  # faust rebuilds on every change; until then, its own handler

    await handler(record(tp, 0, b'"k"', b"[1]"))

    assert decoding.queue.get_nowait().value == [1]
    assert first.queue.get_nowait().value == b"[1]"


async def test_a_full_producer_buffer_is_waited_for_as_faust_does(
    app: faust.App, monkeypatch: pytest.MonkeyPatch
) -> None:
    tp = TP(RAW, 2)
    channel = channel_of(app, RAW)
    conductor: Any = app.topics
    buffer: Any = app.producer.buffer
    waits: list[int] = []

    async def wait_until_ebb() -> None:
        waits.append(buffer.pending.qsize())

    monkeypatch.setattr(buffer, "wait_until_ebb", wait_until_ebb)
    handler = conductor._build_handler(tp, {channel})
    for _ in range(buffer.max_messages):
        buffer.pending.put_nowait(object())
    await handler(record(tp, 0, b"k", b"v"))  # at the limit: no wait
    buffer.pending.put_nowait(object())
    await handler(record(tp, 1, b"k", b"v"))  # above it: faust's wait

    assert waits == [buffer.max_messages + 1]
    assert [channel.queue.get_nowait().message.offset for _ in range(2)] == [0, 1]


async def test_a_full_queue_holds_the_record_until_there_is_room(app: faust.App) -> None:
    tp = TP(RAW, 3)
    channel = channel_of(app, RAW)
    conductor: Any = app.topics
    handler = conductor._build_handler(tp, {channel})
    queue = channel.queue
    offset = 0
    while not queue.full():
        queue.put_nowait(offset)
        offset += 1

    delivery = asyncio.ensure_future(handler(record(tp, offset, b"k", b"v")))
    await asyncio.sleep(0.01)
    assert not delivery.done()  # waiting for room, not dropped
    first = queue.get_nowait()
    await asyncio.wait_for(delivery, 1)

    assert first == 0
    held = [queue.get_nowait() for _ in range(queue.qsize())]
    assert held[-1].message.offset == offset
