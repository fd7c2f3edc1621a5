"""Batch status (design §9): what `PUT /meters/interval` and `PUT /meters/cumulative/epoch`
store, `GET /meters/batch` answers.

The PUT stores the batch and one row per submitted record in the transaction around publishing
its records, before it answers (`store_and_publish`). A record's later status is not stored but
read, each time, from what the pipeline left (`record_status`): its result in `energy_costs`,
written by the sink, or its dead letter in `batch_dead_letters`, which the sink persists from
`dead-letters` (records carry `batch_id`/`batch_index` on Kafka for that).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import asyncpg
from aiohttp import web

from meterflow import ids
from meterflow.api import batch_store
from meterflow.api.batch_store import BatchEntry, Meter, ReadingKey
from meterflow.api.context import CONTEXT, ApiContext
from meterflow.api.credentials import Principal
from meterflow.api.errors import ApiError, not_found
from meterflow.api.http import answer, principal_of, query_value
from meterflow.api.schemas import (
    BatchRecord,
    FailedRecord,
    MeterBatch,
    MeterBatchStatus,
    RecordError,
    RecordStatus,
)
from meterflow.contract.topics import METER_RECORDS

BATCH_FIELDS = ("batch_id", "batch_index")
"""MeterRecord fields only the API sets: a client's own values are dropped on every path."""


def _storable(text: str | None) -> str | None:
    """PostgreSQL text holds neither NUL nor unpaired surrogates, and a refused record's
    reference and error (which may quote a key it had) are the client's text."""
    return None if text is None else _storable_text(text)


def _storable_text(text: str) -> str:
    return text.replace("\x00", "\ufffd").encode("utf-8", "replace").decode("utf-8")


def accepted(index: int, meter_record_id: str, reference: str | None, meter: Meter) -> BatchEntry:
    """An accepted record: its id, the id its result will have (design §4, §8.1), its meter."""
    return BatchEntry(
        index,
        meter_record_id,
        ids.energy_cost_id(meter_record_id),
        _storable(reference),
        None,
        None,
        meter=Meter(_storable_text(meter.location_id), _storable_text(meter.object_id)),
    )


def accepted_reading(index: int, reference: str | None, key: ReadingKey) -> BatchEntry:
    """An accepted reading: no ids yet (its interval's depend on the meter's previous reading,
    which only the worker knows), what finds its interval instead (migration 0006)."""
    return BatchEntry(index, None, None, _storable(reference), None, None, key)


def refused(index: int, reference: str | None, error: str) -> BatchEntry:
    """A record refused at acceptance; `error` is the batch reply's `code: message`."""
    code, _, message = error.partition(": ")
    return BatchEntry(index, None, None, _storable(reference), code, _storable(message))


async def store_and_publish(
    ctx: ApiContext,
    principal: Principal,
    batch: MeterBatch,
    entries: list[BatchEntry],
    records: list[tuple[str, bytes]],
    *,
    topic: str = METER_RECORDS,
) -> None:
    """Store the batch, publish its accepted records, then commit: a failed publish stores no
    batch, and a batch id the client is given can always be read back. (If the commit itself
    fails after the publish, the client gets a 500 and the records are priced anyway: a retry
    with `record_reference_id`s costs nothing twice, design §8.)"""
    async with ctx.db().acquire() as conn, conn.transaction():
        await batch_store.insert_batch(
            conn,
            batch_id=batch.id,
            principal=principal,
            records_submitted=batch.records_submitted,
            records_accepted=batch.records_accepted,
            time_created=batch.time_created,
            entries=entries,
        )
        if records:
            await ctx.kafka().send_many(topic, records)


def record_status(row: Mapping[str, Any] | asyncpg.Record) -> BatchRecord:
    """The status rule (docs/api.md, Batch status):

    1. refused at acceptance -> FAILED, with the reply's error;
    2. a dead letter for (batch, index) no older than the stored result (or with none) ->
       FAILED with the letter's error: a correction that failed leaves the earlier result
       stored, and still failed;
    3. a stored result -> PRICED (also when a replayed dead letter was priced later); a
       reading's result is the stored interval of its meter that ends at it (batch_store);
    4. a reading with no such interval whose meter has a stored interval starting at it: it was
       the baseline (it prices nothing) -> PRICED with no ids;
    5. else ACCEPTED: not priced yet.
    Both times are the worker's (`time_created` of the letter and of the EnergyCost).
    """
    index, cost_id = row["record_index"], row["cost_id"]
    if row["error_code"] is not None:
        refusal = RecordError(code=row["error_code"], message=row["error_message"] or "")
        return BatchRecord(
            index=index,
            status=RecordStatus.FAILED,
            meter_record_id=None,
            energy_cost_id=None,
            error=refusal,
        )
    late_time, cost_time = row["late_time"], row["cost_time"]
    failed = late_time is not None and (cost_time is None or late_time >= cost_time)
    if failed:
        status = RecordStatus.FAILED
    elif cost_id is not None or row["baseline"]:
        status = RecordStatus.PRICED
    else:
        status = RecordStatus.ACCEPTED
    return BatchRecord(
        index=index,
        status=status,
        meter_record_id=row["meter_record_id"],
        energy_cost_id=cost_id,
        error=RecordError(code=row["late_code"], message=row["late_message"]) if failed else None,
    )


async def batch_status(request: web.Request) -> web.Response:
    """`GET /meters/batch?batch_id=bat_…`: the batch and every record's status; 404 for an id
    the caller's account and mode do not have (another account's batch included)."""
    ctx = request.app[CONTEXT]
    principal = principal_of(request)
    batch_id = query_value(request, "batch_id")
    if not batch_id:
        raise ApiError(400, "invalid_request", "query parameter `batch_id` is required")
    found = await batch_store.load_batch(
        ctx.db(), principal, batch_id, ctx.settings.max_record_hours
    )
    if found is None:
        raise not_found(f"batch {batch_id!r}")
    batch, rows = found
    data, failed = [], []
    for row in rows:
        item = record_status(row)
        data.append(item)
        if item.error is not None and item.status is RecordStatus.FAILED:
            failed.append(
                FailedRecord(
                    record_num=item.index,
                    record_reference_id=row["record_reference_id"],
                    error=f"{item.error.code}: {item.error.message}",
                )
            )
    done = sum(item.status is not RecordStatus.ACCEPTED for item in data)
    status = MeterBatchStatus(
        id=batch["id"],
        account_id=principal.account_id,
        live_mode=principal.live_mode,
        records_submitted=batch["records_submitted"],
        records_accepted=batch["records_accepted"],
        records_processed=done,
        records_failed=len(failed),
        failed_records=failed,
        data=data,
        time_created=batch["time_created"],
    )
    return answer(status)
