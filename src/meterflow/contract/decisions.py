"""What reading one message of an input topic decides: apply it, delete the key, or reject it.

Returned by `locations.decide_location` and `market_prices.decide_market_prices`; each reader
acts on it in its own way (the stream's table stores or dead-letters, the API's view and the
sink's mirror apply or skip), but no reader decides differently from another.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Apply(Generic[T]):
    """A valid document for `key`: store it. `raw` is the message value as published."""

    key: str
    document: T
    raw: bytes


@dataclass(frozen=True, slots=True)
class Delete:
    """A tombstone (null value): forget `key`."""

    key: str


@dataclass(frozen=True, slots=True)
class Reject:
    """A message no reader may apply; the stream dead-letters it (`invalid_record`) with
    `reason`, the other readers skip it (the stream owns that report)."""

    reason: str
