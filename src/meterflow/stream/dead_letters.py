"""The way back from a dead letter: the topic and the bytes to re-publish, with the id the
record had, so a replay is idempotent. (Dead letters are built by `models.dead_letter`, on every
path.)"""

from __future__ import annotations

from typing import Any

from meterflow.contract.keys import location_key
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


def replay_message(
    letter: DeadLetter, *, records_topic: str, readings_topic: str
) -> tuple[str, bytes] | None:
    """Where a dead letter goes back to, and the bytes; None for one that is not replayable
    (an invalid profile or market-prices document: its producer must send it again).

    A meter record goes back to `meter-records` (with its id, `replay_payload`). A letter from
    `meter-readings` holds one of two things: the reading itself (it was refused before the
    readings table changed: bad input, unknown meter, stale, reset), which goes back to
    `meter-readings` as it was (under its location's key, `replay_key`), so the readings agent
    decides it again
    against the meter's state; or the interval record derived from it (the table moved on, and
    pricing the interval failed, e.g. `tariff_not_available`), which goes to `meter-records`:
    sending the reading again would only meet the state it already set, a duplicate. The
    interval's `record_reference_id` names it, so either path gives it the same result id.
    """
    source = letter.source
    if source is None or source.topic == records_topic:
        payload, _ = replay_payload(letter)
        return records_topic, payload
    if source.topic != readings_topic:
        return None
    raw = original_payload(letter)
    return (records_topic if _is_interval_record(raw) else readings_topic), raw


def _is_interval_record(raw: bytes) -> bool:
    """A derived interval (`costing.readings.interval_record`) has a start and an end; a
    reading has a single `time`."""
    try:
        document: Any = loads(raw)
    except ValueError:
        return False
    return isinstance(document, dict) and "start_time" in document and "time" not in document


def replay_key(payload: bytes, original: bytes | None) -> bytes | None:
    """The key a replayed record or reading goes under: its location's (design §1), so that one
    the agents refused for its key (`contract.keys.misplaced`) is priced when replayed; the
    original key when the bytes name no location (they fail again, as they did)."""
    try:
        document: Any = loads(payload)
    except ValueError:
        return original
    location_id = document.get("location_id") if isinstance(document, dict) else None
    return location_key(location_id) if isinstance(location_id, str) else original
