"""Dead letters written by the stream adapter itself, and the way back: the original payload.

The cost engine builds the dead letters of records it cannot price; this module covers what only
the adapter sees (an invalid profile on `locations`, an unexpected exception) and turns a dead
letter back into bytes to re-publish, with the id the record had, so a replay is idempotent.
"""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any, Literal

from meterflow.ids import meter_record_id_for_offset
from meterflow.models import DeadLetter, ErrorCode, ErrorInfo, SourceRef, dumps, loads


def make_dead_letter(
    payload: bytes, code: ErrorCode, message: str, source: SourceRef | None, now: datetime
) -> DeadLetter:
    """A dead letter carrying the original bytes: UTF-8 text when they are, else base64."""
    encoding: Literal["utf-8", "base64"] = "utf-8"
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        text, encoding = base64.b64encode(payload).decode("ascii"), "base64"
    return DeadLetter(
        error=ErrorInfo(code=code, message=message),
        payload=text,
        payload_encoding=encoding,
        source=source,
        time_created=now,
    )


def original_payload(letter: DeadLetter) -> bytes:
    """The exact bytes that were dead-lettered."""
    if letter.payload_encoding == "base64":
        return base64.b64decode(letter.payload)
    return letter.payload.encode("utf-8")


def replay_payload(letter: DeadLetter) -> tuple[bytes, str | None]:
    """The bytes to re-publish and the meter record id they carry (None if not a JSON object).

    A record that arrived without an `id` was identified by its position (design §4); the replay
    carries that id explicitly, so its result gets the same `ecs_…` id as a first attempt would
    have, and replaying twice never yields two different results. Numbers keep their digits
    (decoded as Decimal, written back exactly).
    """
    raw = original_payload(letter)
    try:
        document: Any = loads(raw)
    except ValueError:
        return raw, None  # not JSON: it will fail again, as it should
    if not isinstance(document, dict):
        return raw, None
    if document.get("id") is not None:
        record_id = document["id"]
        return raw, record_id if isinstance(record_id, str) else None
    if letter.source is None:
        return raw, None
    record_id = meter_record_id_for_offset(
        letter.source.topic, letter.source.partition, letter.source.offset
    )
    return dumps({**document, "id": record_id}), record_id
