"""Cost endpoints: instant cost and batch submission (Kafka), cost reports (Postgres)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web
from pydantic import ValidationError

from meterflow import ids, metrics
from meterflow.api import batches, bills, repository
from meterflow.api.batch_store import BatchEntry, Meter
from meterflow.api.context import CONTEXT, ApiContext
from meterflow.api.credentials import Principal
from meterflow.api.errors import JSON, ApiError, not_found, not_ready
from meterflow.api.http import (
    answer,
    principal_of,
    query_bool,
    query_direction,
    query_value,
    read_json,
)
from meterflow.api.schemas import (
    Aggregation,
    CostReport,
    FailedRecord,
    MeterBatch,
    ReportBody,
    ReportRow,
    SessionBody,
)
from meterflow.contract.topics import ENERGY_COSTS
from meterflow.costing import check_energy, check_time_range, cost_payload, referenced_record_id
from meterflow.costing.standing import TooManyDaysError, standing_days
from meterflow.costing.timeline import SUPPORTED_YEARS, to_us, within_supported_years
from meterflow.models import (
    DeadLetter,
    EnergyValue,
    LocationProfile,
    MeterRecord,
    PricingError,
    TariffDirection,
    dumps,
    validation_summary,
)


def visible_profiles(
    ctx: ApiContext, principal: Principal
) -> Callable[[str], LocationProfile | None]:
    """The engine's profile lookup, restricted to the caller's account and mode: another
    account's location is, to this caller, an unknown location (same answer, nothing leaks).

    503 `not_ready` until the view has read `locations` and `market-prices` to their end (a
    started API's first seconds, `/readyz`): an unknown location then would be a lie, and a
    client would take its 422 for good (a batch's records refused, an instant cost lost)."""
    feeder = ctx.feeder
    if feeder is not None and not feeder.loaded.is_set():
        raise not_ready()

    def lookup(location_id: str) -> LocationProfile | None:
        profile = ctx.view.profile(location_id)
        if profile is None or profile.account_id != principal.account_id:
            return None
        return profile if profile.live_mode == principal.live_mode else None

    return lookup


def assign_record_id(document: dict[str, Any]) -> None:
    """The id an HTTP record travels with, the same on both paths (instant and batch).

    Without a `record_reference_id`, a fresh one (design §4). With one, none: pricing derives
    the id from the reference (`costing.meter_record_id`, design §8.1), so a retry gets the
    same id and cost, and the priced `request` is the same bytes whichever path it took. A
    client's own `id` is never used (it would not match the reference's anyway)."""
    if document.get("record_reference_id") is None:
        document["id"] = ids.new_meter_record_id()
    else:
        document.pop("id", None)


async def instant_cost(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    principal = principal_of(request)
    non_persistent = query_bool(request, "non_persistent")
    document = await read_json(request, code="invalid_record")
    if isinstance(document, dict):
        assign_record_id(document)
        for name in batches.BATCH_FIELDS:  # set by the batch PUT only (design §9)
            document.pop(name, None)
        if non_persistent is not None:
            document["non_persistent"] = non_persistent
    with metrics.time_pricing():
        result = cost_payload(
            dumps(document),
            profiles=visible_profiles(ctx, principal),
            market_prices=ctx.view.prices,
            now=ctx.clock(),
            max_record_hours=ctx.settings.max_record_hours,
        )
    if isinstance(result, DeadLetter):
        # design §5: the same failure as the stream path, as a 422 with the dead letter's code
        raise ApiError(422, result.error.code.value, result.error.message)
    encoded = dumps(result)  # one encoding: the event and the answer are the same bytes
    await ctx.kafka().send(ENERGY_COSTS, result.location_id, encoded)
    return web.Response(body=encoded, content_type=JSON)


_SIMULATION_IN_BATCH = (
    "a batch's records are stored: simulate with POST /costs/instant?non_persistent=true"
)


def _check_record(
    ctx: ApiContext, principal: Principal, document: Any
) -> tuple[MeterRecord | None, str | None, str | None]:
    """(the record if accepted, record_reference_id, error): what the batch says about one."""
    if not isinstance(document, dict):
        return None, None, "invalid_record: a meter record must be a JSON object"
    reference = document.get("record_reference_id")
    # a NUL is refused below (invalid_record) and PostgreSQL text cannot hold it (the batch is
    # stored, api/batches.py): such a reference is reported as null
    reference = reference if isinstance(reference, str) and "\x00" not in reference else None
    try:
        record = MeterRecord.model_validate(document)
    except ValidationError as exc:
        return (
            None,
            reference,
            f"invalid_record: {validation_summary(exc, whole='record', limit=3)}",
        )
    if record.non_persistent:  # never stored, so its batch status would stay ACCEPTED
        return None, reference, f"invalid_record: {_SIMULATION_IN_BATCH}"
    try:  # the engine's rules, so that a batch accepts no record the worker then refuses
        start, end = to_us(record.start_time), to_us(record.end_time)
        check_time_range(start, end, ctx.settings.max_record_hours)
        check_energy(record, end - start)
    except PricingError as error:
        return None, reference, f"{error.code.value}: {error.message}"

    if visible_profiles(ctx, principal)(record.location_id) is None:
        return None, reference, f"unknown_location: no location {record.location_id!r}"
    return record, reference, None


async def submit_interval(request: web.Request) -> web.Response:
    """`PUT /meters/interval`: check each record, publish the good ones, report the rest.

    Records are checked for shape, time range and ownership here; pricing happens in the stream,
    where a record that cannot be priced becomes a dead letter. Accepted records carry
    `batch_id`/`batch_index`, and the batch is stored before the answer, so that
    `GET /meters/batch` shows each record's fate (api/batches.py).
    """
    ctx = request.app[CONTEXT]
    principal = principal_of(request)
    documents = await read_json(request)
    limit = ctx.settings.api_max_batch_records
    if not isinstance(documents, list):
        raise ApiError(400, "invalid_request", "the body must be a JSON array of meter records")
    if len(documents) > limit:
        raise ApiError(
            400, "too_many_records", f"at most {limit} records per call, got {len(documents)}"
        )
    batch_id = ids.new_batch_id()
    accepted: list[tuple[str, bytes]] = []
    failed: list[FailedRecord] = []
    entries: list[BatchEntry] = []  # one per record, for `GET /meters/batch`
    for number, document in enumerate(documents):
        if number % 500 == 499:
            await asyncio.sleep(0)  # a 10,000-record batch must not stall other requests
        if isinstance(document, dict):
            assign_record_id(document)
            for name in batches.BATCH_FIELDS:
                document.pop(name, None)
        record, reference, error = _check_record(ctx, principal, document)
        if record is not None and error is None:
            document["batch_id"], document["batch_index"] = batch_id, number
            accepted.append((record.location_id, dumps(document)))
            referenced = referenced_record_id(record, principal.account_id, principal.live_mode)
            meter_record_id = referenced or record.id
            assert meter_record_id is not None  # `assign_record_id` gave it one, or a reference
            meter = Meter(record.location_id, record.device_id or record.location_id)
            entries.append(batches.accepted(number, meter_record_id, reference, meter))
        else:
            error = error or "invalid_record: not accepted"
            failed.append(
                FailedRecord(record_num=number, record_reference_id=reference, error=error)
            )
            entries.append(batches.refused(number, reference, error))
    batch = MeterBatch(
        id=batch_id,
        account_id=principal.account_id,
        live_mode=principal.live_mode,
        records_submitted=len(documents),
        records_accepted=len(accepted),
        failed_records=failed,
        time_created=ctx.clock(),
    )
    await batches.store_and_publish(ctx, principal, batch, entries, accepted)
    return answer(batch)


def _aggregation(request: web.Request, body_value: Aggregation | None) -> Aggregation | None:
    raw = query_value(request, "aggregation")
    if raw is None:
        return body_value
    try:
        return Aggregation(raw)
    except ValueError:
        raise ApiError(400, "invalid_request", "`aggregation` must be DAY or MONTH") from None


def _bill(
    subject: repository.ReportSubject, direction: TariffDirection, start: datetime, end: datetime
) -> bills.Bill:
    """The standing charges and tax rate a location's summed report adds (none for a device).
    Read from the mirror's current profile: its versions' effective ranges say which
    standing charge was in force on each day; its `tax_percentage` taxes them."""
    profile = subject.profile
    if profile is None:
        return bills.Bill()
    try:
        days = standing_days(profile, direction, start, end)
    except TooManyDaysError as exc:
        raise ApiError(422, "invalid_time_range", str(exc)) from None
    return bills.Bill(days, profile.tax_percentage, direction is TariffDirection.EXPORT)


def _one_currency(currency_code: str, found: Iterable[str]) -> None:
    """A report adds money in its `currency_code` only. Records in another (a device listed in
    locations of two currencies, a location whose currency changed, a session across
    locations) make it 422 `mixed_currencies`: a sum of unlike amounts is no bill."""
    others = sorted(set(found) - {currency_code})
    if others:
        raise ApiError(
            422,
            "mixed_currencies",
            f"the records to report are in {currency_code} and {', '.join(others)}: a report"
            " adds one currency; report each location (or each side of a currency change)"
            " on its own",
        )


def _report_row(
    row: dict[str, Any], zone: ZoneInfo, start: datetime | None = None, end: datetime | None = None
) -> ReportRow:
    """One `data` item; times in the location's zone (a bucket passes its own bounds)."""
    return ReportRow(
        start_time=(start or row["start_time"]).astimezone(zone),
        end_time=(end or row["end_time"]).astimezone(zone),
        session_reference_id=row.get("session_reference_id"),
        record_reference_id=row.get("record_reference_id"),
        records=row["records"],
        revision=row.get("revision"),
        energy=EnergyValue(value=row["energy_kwh"]),
        cost=bills.taxed_value(row),
    )


async def interval_report(request: web.Request) -> web.Response:
    """`POST /costs/interval/{id}`: stored costs of a location or device, per record or summed
    per local DAY or MONTH (cut at the location's midnight, so DST days have 23 or 25 hours).
    A record counts in the bucket (and the range) where it starts."""
    ctx = request.app[CONTEXT]
    principal = principal_of(request)
    object_id = request.match_info["object_id"]
    try:
        body = ReportBody.model_validate(await read_json(request))
    except ValidationError as exc:
        raise ApiError(
            400, "invalid_request", validation_summary(exc, whole="body", limit=3)
        ) from None
    if body.end_time <= body.start_time:
        raise ApiError(422, "invalid_time_range", "end_time must be after start_time")
    if not within_supported_years(to_us(body.start_time), to_us(body.end_time)):
        raise ApiError(422, "invalid_time_range", f"the range must lie {SUPPORTED_YEARS}")
    direction = query_direction(request, also=body.tariff_direction)
    aggregation = _aggregation(request, body.aggregation)
    subject = await repository.report_subject(ctx.db(), principal, object_id)
    if subject is None:
        raise not_found(f"location or device {object_id!r}")
    zone = ZoneInfo(subject.timezone)
    scope: dict[str, Any] = {
        "object_id": object_id,
        "tariff_direction": direction.value,
        "start": body.start_time,
        "end": body.end_time,
    }
    if aggregation is None:
        most = ctx.settings.api_max_report_records
        rows = await repository.cost_rows(ctx.db(), principal, **scope, limit=most + 1)
        if len(rows) > most:
            raise ApiError(
                422,
                "too_many_records",
                f"more than {most:,} records in the range (MF_API_MAX_REPORT_RECORDS): ask for a"
                " shorter range or an aggregation (DAY or MONTH)",
            )
        _one_currency(subject.currency_code, {row["currency_code"] for row in rows})
        data = [_report_row(dict(row), zone) for row in rows]
    else:
        bill = _bill(subject, direction, body.start_time, body.end_time)
        buckets = await repository.cost_buckets(
            ctx.db(), principal, **scope, unit=aggregation.value.lower(), timezone=subject.timezone
        )
        _one_currency(subject.currency_code, {c for b in buckets for c in b["currencies"]})
        data = bills.summed_rows([dict(b) for b in buckets], bill, aggregation, zone)
    report = CostReport(
        id=ids.new_report_id(),
        account_id=principal.account_id,
        object_id=object_id,
        live_mode=principal.live_mode,
        tariff_direction=direction,
        location_timezone=subject.timezone,
        currency_code=subject.currency_code,
        request={
            "start_time": body.start_time.isoformat(),
            "end_time": body.end_time.isoformat(),
            "tariff_direction": direction.value,
            "aggregation": aggregation.value if aggregation else None,
        },
        data=data,
        time_created=ctx.clock(),
    )
    return answer(report)


async def session_report(request: web.Request) -> web.Response:
    """`POST /costs/session/{session_reference_id}`: the session's totals in one direction."""
    ctx = request.app[CONTEXT]
    principal = principal_of(request)
    session_id = request.match_info["session_reference_id"]
    raw = await request.read()
    body = SessionBody()
    if raw.strip():
        try:
            body = SessionBody.model_validate(await read_json(request))
        except ValidationError as exc:
            raise ApiError(
                400, "invalid_request", validation_summary(exc, whole="body", limit=3)
            ) from None
    direction = query_direction(request, also=body.tariff_direction)
    summary = await repository.session_summary(
        ctx.db(), principal, session_reference_id=session_id, tariff_direction=direction.value
    )
    if summary is None:
        raise not_found(f"session {session_id!r}")
    _one_currency(summary["currency_code"], summary["currencies"] or ())
    zone = ZoneInfo(summary["location_timezone"])
    data = []
    if summary["records"]:
        summary["session_reference_id"] = session_id
        data.append(_report_row(summary, zone))
    report = CostReport(
        id=ids.new_report_id(),
        account_id=principal.account_id,
        object_id=summary["object_id"],
        live_mode=principal.live_mode,
        tariff_direction=direction,
        location_timezone=summary["location_timezone"],
        currency_code=summary["currency_code"],
        request={"session_reference_id": session_id, "tariff_direction": direction.value},
        data=data,
        time_created=ctx.clock(),
    )
    return answer(report)
