"""`PUT /meters/cumulative/epoch`: cumulative register readings onto `meter-readings` (§10).

The API does not turn readings into intervals: the worker does, against the meter's state in its
table (`costing.readings`), so that the HTTP and Kafka paths give the same intervals under the
same ids. Here each reading of Flatpeak's body is checked alone (the same `MeterReading` rules as
the stream: a negative register, a non-numeric value or a bad time is `invalid_record` in
`failed_records`), and the accepted ones are published in time order, keyed by location, each
with `batch_id`/`batch_index`. What their batch status means is in docs/api.md ("Batch status of
readings"); `batch_store` stores, per reading, what finds its interval later.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from meterflow import ids
from meterflow.api import batches
from meterflow.api.batch_store import BatchEntry, ReadingKey
from meterflow.api.context import CONTEXT
from meterflow.api.costs import visible_profiles
from meterflow.api.errors import ApiError, not_found
from meterflow.api.http import answer, principal_of, read_json
from meterflow.api.schemas import CumulativeReadings, FailedRecord, MeterBatch
from meterflow.contract.topics import METER_READINGS
from meterflow.costing.readings import utc_text
from meterflow.models import (
    EnergyFlowDirection,
    MeterReading,
    TariffDirection,
    dumps,
    validation_summary,
)

ITEM_FIELDS = frozenset({"time", "value", "record_reference_id"})
LATEST_UNIX = 253_402_300_799
"""9999-12-31T23:59:59Z: the last instant RFC 3339 can write."""

_FLOW = {
    None: EnergyFlowDirection.INBOUND,
    TariffDirection.IMPORT: EnergyFlowDirection.INBOUND,
    TariffDirection.EXPORT: EnergyFlowDirection.OUTBOUND,
}


@dataclass(frozen=True, slots=True)
class Accepted:
    index: int
    reading: MeterReading
    payload: bytes


def _reference(item: dict[str, Any]) -> str | None:
    """The item's reference as the batch reply quotes it (a NUL one is refused and quoted as
    null: PostgreSQL text cannot hold it)."""
    reference = item.get("record_reference_id")
    return reference if isinstance(reference, str) and "\x00" not in reference else None


def _item_problem(item: dict[str, Any]) -> str | None:
    """What Flatpeak's item shape refuses before the MeterReading rules: unknown keys, a time
    that is not whole Unix seconds (a string, a fraction, before 1970, after 9999), a value that
    is not a JSON number (a numeric string included: the spec says number)."""
    unknown = sorted(set(item) - ITEM_FIELDS)
    if unknown:
        return f"invalid_record: unknown field(s) {', '.join(map(repr, unknown))}"
    time = item.get("time")
    if type(time) is not int:
        return "invalid_record: `time` must be a whole number of Unix seconds"
    if not 0 <= time <= LATEST_UNIX:
        return f"invalid_record: `time` {time} is out of range (0..{LATEST_UNIX})"
    value = item.get("value")
    if type(value) is not int and not (isinstance(value, Decimal) and value.is_finite()):
        return "invalid_record: `value` must be a number (the register)"
    return None


def check_reading(
    body: CumulativeReadings, item: Any, batch_id: str, index: int
) -> tuple[Accepted | None, str | None, str | None]:
    """(the accepted reading, its reference, the error): what the batch says about one item."""
    if not isinstance(item, dict):
        return None, None, "invalid_record: a reading must be a JSON object"
    reference = _reference(item)
    problem = _item_problem(item)
    if problem is not None:
        return None, reference, problem
    document: dict[str, Any] = {
        "location_id": body.location_id,
        "energy_flow_direction": _FLOW[body.direction].value,
        "time": utc_text(datetime.fromtimestamp(item["time"], UTC)),
        "value": item["value"],
        "units": body.units.value,
        "batch_id": batch_id,
        "batch_index": index,
    }
    for name, value in (
        ("device_id", body.device_id),
        ("session_reference_id", body.session_reference_id),
        ("record_reference_id", item.get("record_reference_id")),
    ):
        if value is not None:
            document[name] = value
    try:
        reading = MeterReading.model_validate(document)
    except ValidationError as exc:
        summary = validation_summary(exc, whole="reading", limit=3)
        return None, reference, f"invalid_record: {summary}"
    return Accepted(index, reading, dumps(document)), reference, None


def reading_keys(accepted: list[Accepted], max_record_hours: int) -> dict[int, ReadingKey]:
    """Per accepted index, what finds its interval: its meter and time, and the earliest start
    the interval can have. The worker's latest reading of a meter only moves forward, so once a
    reading at `t'` is processed the latest is at `t'` or later: the interval of a later reading
    starts at or after the batch's previous earlier reading; the first reading's interval is at
    most `max_record_hours` long (else it is `invalid_time_range`)."""
    keys: dict[int, ReadingKey] = {}
    earlier: datetime | None = None
    previous: datetime | None = None
    for item in accepted:  # in time order
        reading = item.reading
        if previous is not None and reading.time > previous:
            earlier = previous
        after = earlier if earlier is not None else reading.time - timedelta(hours=max_record_hours)
        keys[item.index] = ReadingKey(
            reading.location_id,
            reading.object_id,
            reading.energy_flow_direction.value,
            reading.time,
            after,
        )
        previous = reading.time
    return keys


async def submit_cumulative(request: web.Request) -> web.Response:
    """`PUT /meters/cumulative/epoch`: check the body and each reading, publish the good ones
    in time order (a stable sort: the client's order breaks ties), answer a `meter_batch`.

    The location must be the caller's (else 404, like every other endpoint), the device one of
    the location's (else 422 `unknown_device`): the body names one meter, so either refuses
    the whole request and nothing is published."""
    ctx = request.app[CONTEXT]
    principal = principal_of(request)
    document = await read_json(request)
    if not isinstance(document, dict):
        raise ApiError(400, "invalid_request", "the body must be a JSON object")
    try:
        body = CumulativeReadings.model_validate(document)
    except ValidationError as exc:
        raise ApiError(
            400, "invalid_request", validation_summary(exc, whole="body", limit=3)
        ) from None
    limit = ctx.settings.api_max_batch_records
    if len(body.data) > limit:
        raise ApiError(
            400, "too_many_records", f"at most {limit} readings per call, got {len(body.data)}"
        )
    profile = visible_profiles(ctx, principal)(body.location_id)
    if profile is None:
        raise not_found(f"location {body.location_id!r}")
    if body.device_id is not None and body.device_id not in profile.devices:
        raise ApiError(
            422,
            "unknown_device",
            f"device {body.device_id!r} is not a device of location {body.location_id!r}",
        )
    batch_id = ids.new_batch_id()
    accepted: list[Accepted] = []
    failed: list[FailedRecord] = []
    refused: list[BatchEntry] = []
    references: dict[int, str | None] = {}
    for index, item in enumerate(body.data):
        if index % 500 == 499:
            await asyncio.sleep(0)  # 10,000 readings must not stall other requests
        reading, reference, error = check_reading(body, item, batch_id, index)
        if reading is not None:
            accepted.append(reading)
            references[index] = reference
        else:
            error = error or "invalid_record: not accepted"
            failed.append(
                FailedRecord(record_num=index, record_reference_id=reference, error=error)
            )
            refused.append(batches.refused(index, reference, error))
    accepted.sort(key=lambda item: item.reading.time)
    keys = reading_keys(accepted, ctx.settings.max_record_hours)
    entries = refused + [
        batches.accepted_reading(item.index, references[item.index], keys[item.index])
        for item in accepted
    ]
    batch = MeterBatch(
        id=batch_id,
        account_id=principal.account_id,
        live_mode=principal.live_mode,
        records_submitted=len(body.data),
        records_accepted=len(accepted),
        failed_records=failed,
        time_created=ctx.clock(),
    )
    records = [(item.reading.location_id, item.payload) for item in accepted]
    await batches.store_and_publish(ctx, principal, batch, entries, records, topic=METER_READINGS)
    return answer(batch)
