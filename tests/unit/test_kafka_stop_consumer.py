"""`kafka_admin.stop_consumer`: aiokafka's leaked cancellation is not ours (aiokafka #647)."""

from __future__ import annotations

import asyncio

import pytest

from meterflow.kafka_admin import stop_consumer


class _LeakingConsumer:
    """What aiokafka's consumer does when stopped with the broker gone: its fetcher cancels a
    fetch waiting to retry, then awaits it unguarded."""

    def __init__(self) -> None:
        self.stopping = asyncio.Event()

    async def stop(self) -> None:
        self.stopping.set()
        retry = asyncio.ensure_future(asyncio.sleep(3600))
        await asyncio.sleep(0)
        retry.cancel()
        await retry


async def test_a_cancellation_leaked_by_stopping_the_consumer_is_swallowed() -> None:
    await stop_consumer(_LeakingConsumer())  # type: ignore[arg-type]


async def test_a_cancellation_of_the_caller_itself_goes_through() -> None:
    consumer = _LeakingConsumer()

    async def slow_stop() -> None:
        consumer.stopping.set()
        await asyncio.sleep(3600)

    consumer.stop = slow_stop  # type: ignore[method-assign]
    task = asyncio.ensure_future(stop_consumer(consumer))  # type: ignore[arg-type]
    await consumer.stopping.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
