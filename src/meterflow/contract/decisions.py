"""What reading one message of an input topic decides: apply it, delete the key, or reject it.

Returned by `locations.decide_location` and `market_prices.decide_market_prices`; each reader
acts on it in its own way (the stream's table stores or dead-letters, the API's view and the
sink's mirror apply or skip), but no reader decides differently from another.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from pydantic import ValidationError

from meterflow.contract.keys import key_text
from meterflow.models import validation_summary

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


def decide(
    key: bytes | None,
    value: bytes | None,
    *,
    parse: Callable[[bytes], T],
    key_of: Callable[[T], str],
    topic: str,
    keyed_by: str,
    document: str,
) -> Apply[T] | Delete | Reject:
    """The rule of every compacted input topic: a null value deletes its key; a value applies
    when `parse` accepts it and `key_of(parsed)` is the message key; anything else is rejected,
    naming why (`document` names the kind in the reason)."""
    text = key_text(key)
    if text is None:
        return Reject(f"a message on `{topic}` must be keyed by {keyed_by} (UTF-8)")
    if value is None:
        return Delete(text)
    try:
        parsed = parse(value)
    except ValidationError as exc:
        return Reject(f"invalid {document}: {validation_summary(exc, limit=3)}")
    except (ValueError, RecursionError) as exc:  # JSON, UTF-8, whole-document rules, nesting
        return Reject(f"invalid {document}: {str(exc)[:500]}")
    own = key_of(parsed)
    if own != text:
        return Reject(f"key {text!r} is not the {document}'s own key {own!r}")
    return Apply(text, parsed, value)
