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
)


@dataclass(frozen=True, slots=True)
class BatchEntry:
    """What the PUT knew of one submitted record: accepted (ids) or refused (error)."""

    index: int
    meter_record_id: str | None
    energy_cost_id: str | None
    record_reference_id: str | None
    error_code: str | None
    error_message: str | None


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
    """The batch and one row per submitted record (a COPY: up to 10,000 rows)."""
    account, live = principal.account_id, principal.live_mode
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
                )
                for e in entries
            ],
        )


_RECORDS = """
SELECT r.record_index, r.meter_record_id, r.record_reference_id, r.error_code, r.error_message,
       c.id AS cost_id, c.time_created AS cost_time,
       d.error_code AS late_code, d.error_message AS late_message, d.time_created AS late_time
FROM meter_batch_records r
LEFT JOIN energy_costs c
       ON c.id = r.energy_cost_id AND c.account_id = r.account_id AND c.live_mode = r.live_mode
LEFT JOIN batch_dead_letters d
       ON d.batch_id = r.batch_id AND d.batch_index = r.record_index
      AND r.meter_record_id IS NOT NULL
WHERE r.batch_id = $1 AND r.account_id = $2 AND r.live_mode = $3
ORDER BY r.record_index
"""


async def load_batch(
    pool: asyncpg.Pool, principal: Principal, batch_id: str
) -> tuple[asyncpg.Record, list[asyncpg.Record]] | None:
    """(the batch, its records with their stored cost and dead letter, if any), or None when
    the caller has no such batch. One snapshot: both reads in one repeatable-read transaction."""
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
        rows = await conn.fetch(_RECORDS, batch_id, principal.account_id, principal.live_mode)
    return batch, list(rows)
