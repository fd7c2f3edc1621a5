"""Dead letters of batch records -> `batch_dead_letters` rows (design §9, migration 0004).

The sink also reads `dead-letters`: a record accepted by `PUT /meters/interval` carries its
`batch_id` and `batch_index`, so when the worker cannot price it (`unknown_device`,
`tariff_not_available`, …) its letter is stored here, and `GET /meters/batch` shows it FAILED.
So does a letter the sink itself wrote for a result of a batch record that PostgreSQL refused
(the payload is then the EnergyCost, whose `request` is the record).

Every other letter is read and passed over: it is not ours to report, and a letter the sink
cannot read is never dead-lettered again (that would loop on its own topic). A letter is stored
once per (batch, index); a newer one for the same record (a replayed record that failed again)
replaces it, an older or the same one changes nothing: replaying the topic is harmless. A row
carries its batch's account and mode (migration 0007).

A letter is stored only when its record is the one the batch row describes (`Identity`): its
meter (location and device, which pin the account: a location id is one account's), and the
`id` the API gave it or its `record_reference_id`, or for a reading the time. A `batch_id` and
`batch_index` alone, or with a copied reference, would let any producer of `meter-records` who
learnt a batch id mark another account's record FAILED.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg

from meterflow.contract.columns import BATCH_LOCK_NAMESPACE
from meterflow.models import DeadLetter, loads_tolerant, original_payload
from meterflow.models.records import BATCH_INDEX_MAX
from meterflow.sink.rows import Source

MAX_MESSAGE = 1000
_BATCH_ID = re.compile(r"bat_[0-9a-f]{1,60}")


@dataclass(frozen=True, slots=True)
class Identity:
    """What the letter's record says it is, to be matched with its batch row: its meter
    (`location_id`, `object_id`: device, else location), and an interval record's `id` or
    `record_reference_id` (the row's `meter_record_id` and reference), a reading's time or a
    derived interval's end (a reading row's `reading_time`)."""

    record_id: str | None = None
    reference: str | None = None
    object_id: str | None = None
    at: datetime | None = None
    location_id: str | None = None


@dataclass(frozen=True, slots=True)
class BatchFailure:
    """One `batch_dead_letters` row: which record, why, when (the letter's time), where read."""

    batch_id: str
    batch_index: int
    code: str
    message: str
    time_created: datetime
    source: Source
    identity: Identity = Identity()

    @property
    def key(self) -> tuple[str, int, Identity]:
        """Letters of one record are kept apart from letters only claiming its batch fields: a
        newer forged one must not replace a real one before the database tells them apart."""
        return self.batch_id, self.batch_index, self.identity


def _storable(text: str) -> str:
    """PostgreSQL text holds neither NUL nor unpaired surrogates: a reason must never be the
    value that stops the sink."""
    return text.replace("\x00", "\ufffd").encode("utf-8", "replace").decode("utf-8")


def _batch_record(record: Any) -> dict[str, Any] | None:
    """The letter's record, when it carries valid batch fields."""
    if isinstance(record, dict) and "batch_id" not in record:
        record = record.get("request")  # the sink's own letter: an EnergyCost
    if not isinstance(record, dict):
        return None
    batch_id, index = record.get("batch_id"), record.get("batch_index")
    if not isinstance(batch_id, str) or _BATCH_ID.fullmatch(batch_id) is None:
        return None
    if type(index) is not int or not 0 <= index <= BATCH_INDEX_MAX:
        return None
    return record


def _text(value: Any) -> str | None:
    return _storable(value) if isinstance(value, str) else None


def _instant(value: Any) -> datetime | None:
    """An aware instant in UTC, or None: a time that cannot be one (naive, malformed, or out of
    range once in UTC, which asyncpg would refuse and so stop the sink) matches no row."""
    try:
        instant = datetime.fromisoformat(value) if isinstance(value, str) else None
        return instant.astimezone(UTC) if instant is not None and instant.tzinfo else None
    except (ValueError, OverflowError):
        return None


def identity_of(record: dict[str, Any]) -> Identity:
    """`Identity` of a batch record as published: a reading has `time`, an interval record
    `end_time` (which, for one derived from readings, is the time of the reading that closed
    it: the reading's row)."""
    device, location = _text(record.get("device_id")), _text(record.get("location_id"))
    return Identity(
        record_id=_text(record.get("id")),
        reference=_text(record.get("record_reference_id")),
        object_id=device if device is not None else location,
        at=_instant(record.get("time", record.get("end_time"))),
        location_id=location,
    )


def decode_batch_failure(value: bytes | None, source: Source) -> BatchFailure | None:
    """The row of a dead letter whose record came in a batch; None for any other letter."""
    if not value or b"batch_id" not in value:  # cheap: most letters are not batch records'
        return None
    try:
        letter = DeadLetter.model_validate(loads_tolerant(value))
        record = _batch_record(loads_tolerant(original_payload(letter)))
        when = letter.time_created
        when = (when if when.tzinfo is not None else when.replace(tzinfo=UTC)).astimezone(UTC)
    except (ValueError, RecursionError, OverflowError):  # ValidationError is a ValueError
        return None
    if record is None:
        return None
    message = _storable(letter.error.message[:MAX_MESSAGE])
    return BatchFailure(
        record["batch_id"],
        record["batch_index"],
        letter.error.code.value,
        message,
        when,
        source,
        identity_of(record),
    )


def newer(kept: BatchFailure | None, read: BatchFailure) -> BatchFailure:
    """Of two letters for one record, the newer; on a tie the one kept (the database's rule)."""
    if kept is None or read.time_created > kept.time_created:
        return read
    return kept


_WAIT_FOR_BATCHES = """
SELECT pg_advisory_xact_lock_shared($1, hashtext(b))
FROM (SELECT DISTINCT b FROM unnest($2::text[]) AS b ORDER BY b) AS batches
"""
"""Wait for the API's transaction that stores each batch to end (BATCH_LOCK_NAMESPACE): it
publishes the records before it commits, so a letter can be read before its batch is stored."""

_UPSERT = """
INSERT INTO batch_dead_letters AS d (batch_id, batch_index, account_id, live_mode, error_code,
    error_message, time_created, source_topic, source_partition, source_offset)
SELECT DISTINCT ON (l.batch_id, l.batch_index) l.batch_id, l.batch_index, r.account_id,
    r.live_mode, l.code, l.message, l.time_created, l.topic, l.part, l.off
FROM unnest($1::text[], $2::int[], $3::text[], $4::text[], $5::timestamptz[], $6::text[],
    $7::int[], $8::bigint[], $9::text[], $10::text[], $11::text[], $12::timestamptz[],
    $13::text[])
    AS l(batch_id, batch_index, code, message, time_created, topic, part, off, record_id,
    reference, object_id, at, location_id)
JOIN meter_batch_records r ON r.batch_id = l.batch_id AND r.record_index = l.batch_index
    -- its meter (an interval record's row stored before rows kept it has none)
    AND (r.location_id IS NULL OR (r.location_id = l.location_id AND r.object_id = l.object_id))
    AND CASE WHEN r.meter_record_id IS NOT NULL  -- an interval record: its id or reference
        THEN r.meter_record_id = l.record_id OR r.record_reference_id = l.reference
        ELSE r.reading_time = l.at  -- a reading: its time
    END
ORDER BY l.batch_id, l.batch_index, l.time_created DESC, l.off DESC  -- one each: the newest
ON CONFLICT (batch_id, batch_index) DO UPDATE SET
    error_code = excluded.error_code, error_message = excluded.error_message,
    time_created = excluded.time_created, source_topic = excluded.source_topic,
    source_partition = excluded.source_partition, source_offset = excluded.source_offset,
    inserted_at = now()
WHERE d.time_created < excluded.time_created
"""
"""The account and mode are the batch's (design §6, migration 0007); a letter whose batch row
does not exist (its batch was never committed, or a producer set `batch_id` on `meter-records`
itself), or whose record is not the row's (`Identity`), is not stored: no batch status could
show it. A refused row (no `meter_record_id`, no meter) matches no letter: its record was never
published."""


async def write_batch_failures(conn: asyncpg.Connection, failures: Iterable[BatchFailure]) -> None:
    """Two statements for the batch's letters (one per record: `Batch` keeps the newer): wait
    for their batches to be committed, then store them with their batch's account. Within the
    connection's statement timeout (`PostgresWriter`)."""
    rows = list(failures)
    if not rows:
        return
    batch_ids = [f.batch_id for f in rows]
    await conn.execute(_WAIT_FOR_BATCHES, BATCH_LOCK_NAMESPACE, batch_ids)
    await conn.execute(
        _UPSERT,
        batch_ids,
        [f.batch_index for f in rows],
        [f.code for f in rows],
        [f.message for f in rows],
        [f.time_created for f in rows],
        [f.source.topic for f in rows],
        [f.source.partition for f in rows],
        [f.source.offset for f in rows],
        [f.identity.record_id for f in rows],
        [f.identity.reference for f in rows],
        [f.identity.object_id for f in rows],
        [f.identity.at for f in rows],
        [f.identity.location_id for f in rows],
    )
