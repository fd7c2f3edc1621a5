"""The way back from a dead letter: the bytes to re-publish, with the id the record had, so a
replay is idempotent. (Dead letters are built by `models.dead_letter`, on every path.)"""

from __future__ import annotations

from typing import Any

from meterflow.ids import meter_record_id_for_offset
from meterflow.models import DeadLetter, dumps, loads, original_payload


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
