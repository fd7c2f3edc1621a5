"""The sink's Kafka and PostgreSQL clients, built in one place and handed to `Sink`.

`Sink` receives its clients instead of building them, so its checkpoint can be driven by fakes
(tests/unit/test_sink_checkpoint.py) and a caller can tune a client without touching the loop.
`Sink.run` starts them and closes them when it stops.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from meterflow.contract.topics import MAX_DEAD_LETTER_BYTES
from meterflow.models import DeadLetter, dumps
from meterflow.sink.writer import PostgresWriter

if TYPE_CHECKING:
    from meterflow.sink.service import SinkConfig


class KafkaDeadLetters:
    """`DeadLetterSender` on an idempotent producer: returns when the broker acked them all."""

    def __init__(self, producer: AIOKafkaProducer, topic: str) -> None:
        self._producer = producer
        self._topic = topic

    async def send(self, letters: Sequence[tuple[bytes | None, DeadLetter]]) -> None:
        if not letters:
            return
        sent = [
            await self._producer.send(self._topic, dumps(letter), key=key)
            for key, letter in letters
        ]
        await asyncio.gather(*sent)


@dataclass(frozen=True)
class SinkClients:
    consumer: AIOKafkaConsumer  # manual commits: it is also the checkpoint's offset committer
    producer: AIOKafkaProducer  # dead letters
    writer: PostgresWriter


def sink_clients(config: SinkConfig) -> SinkClients:
    """The clients `meterflow sink` runs with (not started; `Sink.run` starts them)."""
    return SinkClients(
        consumer=AIOKafkaConsumer(
            bootstrap_servers=config.bootstrap,
            group_id=config.group_id,
            client_id=f"{config.group_id}-sink",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=MAX_DEAD_LETTER_BYTES,  # it reads dead-letters too
            session_timeout_ms=10_000,
            heartbeat_interval_ms=1_000,
        ),
        producer=AIOKafkaProducer(
            bootstrap_servers=config.bootstrap,
            acks="all",
            enable_idempotence=True,
            max_request_size=MAX_DEAD_LETTER_BYTES,
        ),
        writer=PostgresWriter(config.database_url, timeout_s=config.statement_timeout_s),
    )
