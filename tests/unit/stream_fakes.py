"""In-memory stand-ins for what the stream agents touch: a topic and faust's event/message.

Shared by the agents' and the locations applier's tests, so both drive the bodies with the
same shapes faust hands them (no broker).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class FakeTopic:
    """A topic that keeps what was sent, in order, as (key, value)."""

    def __init__(self) -> None:
        self.sent: list[tuple[bytes | None, bytes | None]] = []

    async def send(self, *, key: bytes | None, value: bytes | None) -> None:
        self.sent.append((key, value))

    async def send_many(self, messages: Sequence[tuple[bytes | None, bytes]]) -> None:
        self.sent.extend(messages)


@dataclass
class Message:
    topic: str
    partition: int
    offset: int
    key: bytes | None


@dataclass
class Event:
    key: bytes | None
    value: bytes | None
    message: Message
