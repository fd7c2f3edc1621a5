"""The API's Kafka side: one producer for its writes, one reader that feeds the pricing view.

Every write waits for the broker's acknowledgement before the HTTP answer, so a 200 means the
record, result or profile is in Kafka (acks=all).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import RecordMetadata

from meterflow.api.views import Position, PricingView
from meterflow.contract.topics import LOCATIONS, MARKET_PRICES
from meterflow.kafka_admin import bootstrap_servers, broker_problem, stop_consumer
from meterflow.logs import event
from meterflow.settings import Settings

log = logging.getLogger("meterflow.api.kafka")


class Publisher:
    """Produce keyed documents and wait for the acknowledgements.

    A send the broker has not acknowledged within `MF_API_KAFKA_TIMEOUT_SECONDS` (5 s) fails
    (a KafkaError: 503 `broker_unavailable`), and aiokafka drops it then instead of sending it
    when the broker is back (seen: four 503s during a stopped broker, none stored after).
    With aiokafka's default 40 s, requests waited up to a minute while the broker was down,
    and clients timed out not knowing what happened."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap_servers(settings),
            acks="all",
            linger_ms=0,
            max_request_size=8 * 1024 * 1024,
            request_timeout_ms=round(settings.api_kafka_timeout_seconds * 1000),
        )

    async def start(self) -> None:
        await self._producer.start()

    async def stop(self) -> None:
        await self._producer.stop()

    async def send(self, topic: str, key: str, value: bytes | None) -> Position:
        meta: RecordMetadata = await self._producer.send_and_wait(
            self._settings.topic(topic), value=value, key=key.encode()
        )
        return Position(meta.partition, meta.offset)

    async def send_many(self, topic: str, items: Iterable[tuple[str, bytes]]) -> None:
        """Send all, then wait for every acknowledgement (batched on the wire, not one by one)."""
        full_topic = self._settings.topic(topic)
        futures = [
            await self._producer.send(full_topic, value=value, key=key.encode())
            for key, value in items
        ]
        await asyncio.gather(*futures)

    async def reachable(self) -> bool:
        return not await broker_problem(self._producer)


class ViewFeeder:
    """Reads `locations` and `market-prices` from the beginning into a `PricingView`, then follows.

    No consumer group: every API process reads the whole of both compacted topics, which is what
    a view of all profiles needs. `loaded` is set once the end offsets seen at start are reached.
    """

    def __init__(self, settings: Settings, view: PricingView) -> None:
        self._settings = settings
        self._view = view
        self.loaded = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap_servers(settings),
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            group_id=None,
        )

    async def start(self) -> None:
        await self._consumer.start()
        partitions: list[TopicPartition] = []
        for name in (LOCATIONS, MARKET_PRICES):
            topic = self._settings.topic(name)
            found = await self._partitions(topic)
            partitions += [TopicPartition(topic, p) for p in sorted(found)]
        self._consumer.assign(partitions)
        await self._consumer.seek_to_beginning(*partitions)
        ends = await self._consumer.end_offsets(partitions)
        self._task = asyncio.create_task(self._run(dict(ends)), name="api-view-feeder")

    async def _partitions(self, topic: str) -> set[int]:
        for _ in range(50):
            found = self._consumer.partitions_for_topic(topic)
            if found:
                return set(found)
            await self._consumer._client.force_metadata_update()
            await asyncio.sleep(0.1)
        raise RuntimeError(f"topic {topic} has no partitions; run ensure_topics first")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await stop_consumer(self._consumer)

    async def _run(self, ends: dict[TopicPartition, int]) -> None:
        locations = self._settings.topic(LOCATIONS)
        pending = {tp for tp, end in ends.items() if end > 0}
        self._mark_loaded_if(pending)
        while True:
            try:
                batches = await self._consumer.getmany(timeout_ms=500, max_records=5000)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("reading the profile topics failed; retrying")
                await asyncio.sleep(1)
                continue
            for tp, messages in batches.items():
                for message in messages:
                    position = Position(message.partition, message.offset)
                    if tp.topic == locations:
                        self._view.apply_location_message(message.key, message.value, position)
                    else:
                        self._view.apply_market_prices_message(message.key, message.value, position)
                if tp in pending and messages and messages[-1].offset + 1 >= ends[tp]:
                    pending.discard(tp)
            if pending:
                for tp in list(pending):
                    if await self._consumer.position(tp) >= ends[tp]:
                        pending.discard(tp)
            self._mark_loaded_if(pending)

    def _mark_loaded_if(self, pending: set[TopicPartition]) -> None:
        if not pending and not self.loaded.is_set():
            self.loaded.set()
            event(
                log,
                "api_view_loaded",
                locations=len(self._view.locations),
                market_price_days=len(self._view.market_prices),
            )
