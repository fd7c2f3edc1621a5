"""The SQL of batch status (design §9, migration 0004): storing a batch, reading it back.

Apart from `repository.py` because it is one feature's tables. The same rule holds: every query
is scoped by the caller's `account_id` and `live_mode`, so another account's batch is not
found (404), whoever asks.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

from meterflow.api.credentials import Principal
from meterflow.api.repository import Connection
from meterflow.contract.columns import BATCH_LOCK_NAMESPACE

BATCH_RECORD_COLUMNS = (
    "batch_id",
    "record_index",
    "account_id",
    "live_mode",
    "meter_record_id",
    "energy_cost_id",
    "record_reference_id",
    "error_code",
    "error_message",
    "location_id",
    "object_id",
    "energy_flow_direction",
    "reading_time",
    "reading_after",
)


@dataclass(frozen=True, slots=True)
class ReadingKey:
    """What finds an accepted reading's interval (migration 0006): the meter, the reading's
    time, and the earliest instant the interval can start."""

    location_id: str
    object_id: str
    energy_flow_direction: str
    time: datetime
    after: datetime


@dataclass(frozen=True, slots=True)
class Meter:
    """An accepted interval record's meter: its location and object (device, else location).
    A dead letter claiming the record's batch fields must name it too (`sink.batch_failures`):
    a reference alone is another account's as well."""

    location_id: str
    object_id: str


@dataclass(frozen=True, slots=True)
class BatchEntry:
    """What the PUT knew of one submitted record: accepted (ids and meter, or for a reading
    the key of its interval) or refused (error)."""

    index: int
    meter_record_id: str | None
    energy_cost_id: str | None
    record_reference_id: str | None
    error_code: str | None
    error_message: str | None
    reading: ReadingKey | None = None
    meter: Meter | None = None


async def insert_batch(
    conn: Connection,
    *,
    batch_id: str,
    principal: Principal,
    records_submitted: int,
    records_accepted: int,
    time_created: datetime,
    entries: list[BatchEntry],
) -> None:
    """The batch and one row per submitted record (a COPY: up to 10,000 rows).

    First the batch id's advisory lock, held until the caller's transaction ends: the records
    are published before the commit, and the sink waits on it for a dead letter of one of them
    to find these rows (`BATCH_LOCK_NAMESPACE`, migration 0007)."""
    account, live = principal.account_id, principal.live_mode
    await conn.execute(
        "SELECT pg_advisory_xact_lock($1, hashtext($2))", BATCH_LOCK_NAMESPACE, batch_id
    )
    await conn.execute(
        "INSERT INTO meter_batches (id, account_id, live_mode, records_submitted, "
        "records_accepted, time_created) VALUES ($1, $2, $3, $4, $5, $6)",
        batch_id,
        account,
        live,
        records_submitted,
        records_accepted,
        time_created,
    )
    if entries:
        await conn.copy_records_to_table(
            "meter_batch_records",
            columns=BATCH_RECORD_COLUMNS,
            records=[
                (
                    batch_id,
                    e.index,
                    account,
                    live,
                    e.meter_record_id,
                    e.energy_cost_id,
                    e.record_reference_id,
                    e.error_code,
                    e.error_message,
                    *_meter_columns(e),
                )
                for e in entries
            ],
        )


def _meter_columns(entry: BatchEntry) -> tuple[object, ...]:
    """A reading's key (migration 0006), or an interval record's meter (time columns NULL)."""
    key, meter = entry.reading, entry.meter
    if key is not None:
        return (key.location_id, key.object_id, key.energy_flow_direction, key.time, key.after)
    if meter is not None:
        return (meter.location_id, meter.object_id, None, None, None)
    return (None, None, None, None, None)


_RECORDS = """
SELECT r.record_index, r.record_reference_id, r.error_code, r.error_message,
       COALESCE(r.meter_record_id, i.meter_record_id) AS meter_record_id,
       COALESCE(c.id, i.id) AS cost_id, COALESCE(c.time_created, i.time_created) AS cost_time,
       b.found IS NOT NULL AS baseline,
       d.error_code AS late_code, d.error_message AS late_message, d.time_created AS late_time
FROM meter_batch_records r
LEFT JOIN energy_costs c
       ON c.id = r.energy_cost_id AND c.account_id = r.account_id AND c.live_mode = r.live_mode
LEFT JOIN LATERAL (  -- the earliest start of a reading's interval (docs/api.md)
    SELECT CASE WHEN EXISTS (
        -- the reading that bounds it failed: the meter's latest may be this reading already,
        -- a duplicate whose twin interval started before that bound
        SELECT 1 FROM meter_batch_records p JOIN batch_dead_letters pd
               ON pd.batch_id = p.batch_id AND pd.batch_index = p.record_index
              AND pd.account_id = p.account_id AND pd.live_mode = p.live_mode
        WHERE p.batch_id = r.batch_id AND p.account_id = r.account_id
          AND p.live_mode = r.live_mode AND p.location_id = r.location_id
          AND p.object_id = r.object_id AND p.energy_flow_direction = r.energy_flow_direction
          AND p.reading_time = r.reading_after
    ) THEN r.reading_time - make_interval(hours => $4) ELSE r.reading_after END AS after
) bound ON true
LEFT JOIN LATERAL (  -- a reading's interval: the meter's cost that ends at the reading
    SELECT e.id, e.meter_record_id, e.time_created FROM energy_costs e
    WHERE r.reading_time IS NOT NULL
      AND e.account_id = r.account_id AND e.location_id = r.location_id
      AND e.start_time >= bound.after AND e.start_time < r.reading_time
      AND e.end_time = r.reading_time AND e.object_id = r.object_id
      AND e.energy_flow_direction = r.energy_flow_direction AND e.live_mode = r.live_mode
    ORDER BY e.start_time DESC LIMIT 1
) i ON true
LEFT JOIN LATERAL (  -- none: a baseline, done once the meter's next interval starts at it
    SELECT 1 AS found FROM energy_costs e
    WHERE r.reading_time IS NOT NULL AND i.id IS NULL
      AND e.account_id = r.account_id AND e.location_id = r.location_id
      AND e.start_time = r.reading_time AND e.object_id = r.object_id
      AND e.energy_flow_direction = r.energy_flow_direction AND e.live_mode = r.live_mode
    LIMIT 1
) b ON true
LEFT JOIN batch_dead_letters d
       ON d.batch_id = r.batch_id AND d.batch_index = r.record_index
      AND d.account_id = r.account_id AND d.live_mode = r.live_mode
      AND r.error_code IS NULL
WHERE r.batch_id = $1 AND r.account_id = $2 AND r.live_mode = $3
ORDER BY r.record_index
"""


async def load_batch(
    pool: asyncpg.Pool, principal: Principal, batch_id: str, max_record_hours: int
) -> tuple[asyncpg.Record, list[asyncpg.Record]] | None:
    """(the batch, its records with their stored cost and dead letter, if any), or None when
    the caller has no such batch. One snapshot: both reads in one repeatable-read transaction.
    `max_record_hours` bounds how far back a reading's interval may start."""
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
        batch = await conn.fetchrow(
            "SELECT id, records_submitted, records_accepted, time_created FROM meter_batches "
            "WHERE id = $1 AND account_id = $2 AND live_mode = $3",
            batch_id,
            principal.account_id,
            principal.live_mode,
        )
        if batch is None:
            return None
        rows = await conn.fetch(
            _RECORDS, batch_id, principal.account_id, principal.live_mode, max_record_hours
        )
    return batch, list(rows)
