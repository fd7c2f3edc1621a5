"""In-memory stand-ins for what the stream agents touch: a topic and faust's event/message.

Shared by the agents' and the locations applier's tests, so both drive the bodies with the
same shapes faust hands them (no broker).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class FakeTopic:
    """A topic that keeps what was sent, in order, as (key, value), and each message's
    timestamp (ms or None) in `stamps`."""

    def __init__(self) -> None:
        self.sent: list[tuple[bytes | None, bytes | None]] = []
        self.stamps: list[int | None] = []

    async def send(
        self, *, key: bytes | None, value: bytes | None, timestamp_ms: int | None = None
    ) -> None:
        self.sent.append((key, value))
        self.stamps.append(timestamp_ms)

    async def send_many(self, messages: Sequence[tuple[bytes | None, bytes, int | None]]) -> None:
        for key, value, stamp in messages:
            await self.send(key=key, value=value, timestamp_ms=stamp)


@dataclass
class Message:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    timestamp: float | None = None  # as faust gives it: Kafka's ms / 1000.0


@dataclass
class Event:
    key: bytes | None
    value: bytes | None
    message: Message
