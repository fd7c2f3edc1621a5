"""Raw bytes to a priced result or a DeadLetter: the one path shared by the Faust agent, the HTTP
API and the CLI.

Keeping a single path means the stream and the API accept, reject and price records the same
way, with the same error codes (design §5). The adapters take the result in its written form
(`cost_payload`: a `PricedCost`, which they send as bytes); `price_payload` gives the
`EnergyCost` model of the same result, for callers that read its fields.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import date, datetime
from typing import Any

import msgspec
from pydantic import ValidationError

from meterflow import ids
from meterflow.costing.engine import cost_record
from meterflow.models import (
    MAX_MESSAGE_BYTES,
    DeadLetter,
    EnergyCost,
    ErrorCode,
    LocationProfile,
    MarketPrices,
    MeterRecord,
    Position,
    PricedCost,
    PricingError,
    RequestEcho,
    dead_letter,
    dumps,
    loads_with_text,
    source_ref,
    validation_summary,
)

log = logging.getLogger("meterflow.costing")

MAX_ECHOED_TEXT = 4096
"""A record's text is echoed as received (not written again) up to this many bytes. A record
takes a few hundred; a longer text is padded (whitespace between members), and its padding
would count against the result's `MAX_MESSAGE_BYTES`: a valid record padded to 1 MB was
dead-lettered as too large. Beyond it the record is echoed as decoded, written again."""


def parse_record(payload: bytes) -> tuple[MeterRecord, dict[str, Any]]:
    """Decode and validate one record: (the model, the request dict as received).

    Numbers are decoded as `Decimal` (never float). Raises PricingError(INVALID_RECORD) for
    bytes that are not a JSON object or a record that breaks the schema (e.g. a naive time).
    The time range is checked by `cost_record`.
    """
    request, _ = _decode(payload)
    return validate_record(request), request


def _decode(payload: bytes) -> tuple[dict[str, Any], msgspec.Raw | None]:
    """The record as a dict, and its text when it may be echoed as received
    (`models.loads_with_text`)."""
    try:
        request, text = loads_with_text(payload)
    except ValueError as error:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise PricingError(ErrorCode.INVALID_RECORD, f"not valid JSON: {error}") from None
    if not isinstance(request, dict):
        raise PricingError(ErrorCode.INVALID_RECORD, "a meter record must be a JSON object")
    return request, text


def unknown_meter(
    location_id: str, device_id: str | None, profile: LocationProfile | None
) -> PricingError | None:
    """Why a record's (or a reading's) meter is unknown: no profile for its location, or a
    device the location does not list; None when the meter is known."""
    if profile is None:
        return PricingError(ErrorCode.UNKNOWN_LOCATION, f"no profile for location {location_id!r}")
    if device_id is not None and device_id not in profile.devices:
        return PricingError(
            ErrorCode.UNKNOWN_DEVICE,
            f"device {device_id!r} is not a device of location {location_id!r}",
        )
    return None


def validate_record(request: dict[str, Any]) -> MeterRecord:
    """The request as a MeterRecord; PricingError(INVALID_RECORD) naming what breaks it."""
    try:
        # `model_validate` without its Python frame and keyword arguments (0.4 µs a record)
        record: MeterRecord = MeterRecord.__pydantic_validator__.validate_python(request)
        return record
    except ValidationError as error:
        raise PricingError(
            ErrorCode.INVALID_RECORD, validation_summary(error, whole="record")
        ) from None


def referenced_record_id(record: MeterRecord, account_id: str, live_mode: bool) -> str | None:
    """The `mre_…` id a record's `record_reference_id` fixes for this account and mode
    (design §8.1: the object is the device if given, else the location), or None without one.

    For the adapters that need the id before pricing (a batch receipt); pricing itself calls
    `meter_record_id`, which gives the same answer."""
    fields = record.__dict__  # read as `models.Document` says
    reference = fields["record_reference_id"]
    if reference is None:
        return None
    device_id = fields["device_id"]
    object_id = device_id if device_id is not None else fields["location_id"]
    return ids.meter_record_id_for_reference(account_id, live_mode, object_id, reference)


def meter_record_id(record: MeterRecord, profile: LocationProfile, source: Position | None) -> str:
    """Which id a record gets, on every path (worker, API, `meterflow cost`); the one place
    this is decided.

    1. A `record_reference_id`: the id of (account, mode, object, reference), account and mode
       from the location's profile (design §8.1). It wins over an `id` the record carries, so a
       producer that re-sends a record with a new id, or a dead letter replayed with its
       positional id, still lands on the same result.
    2. Else the record's own `id` (the API's fresh one, a replayed dead letter's).
    3. Else its source position (design §4).
    """
    referenced = referenced_record_id(record, profile.account_id, profile.live_mode)
    if referenced is not None:
        return referenced
    if record.id is not None:
        return record.id
    if source is not None:
        return ids.meter_record_id_for_offset(source.topic, source.partition, source.offset)
    raise _MissingIdentityError("a record without `id` or reference needs its source position")


def price_payload(payload: bytes, **options: Any) -> EnergyCost | DeadLetter:
    """`cost_payload(payload, **options)` with the result as its `EnergyCost` model, for the
    callers that read its fields (tests, tools); the adapters send `cost_payload`'s bytes."""
    result = cost_payload(payload, **options)
    return result if isinstance(result, DeadLetter) else result.model()


def cost_payload(
    payload: bytes,
    *,
    profiles: Callable[[str], LocationProfile | None],
    market_prices: Callable[[str, date], MarketPrices | None],
    now: datetime,
    source: Position | None = None,
    max_record_hours: int = 744,
) -> PricedCost | DeadLetter:
    """Parse, validate and price one raw record; every failure becomes a DeadLetter.

    Never raises, except ValueError when the record has no `record_reference_id`, no `id` and
    no `source` was given (a programming error: the API sets an id on every record without a
    reference, the stream always has a source position). The result id is `meter_record_id`'s.
    """
    try:
        request, text = _decode(payload)
        record = validate_record(request)
        echo = request if text is None or len(payload) > MAX_ECHOED_TEXT else text
        return _price_valid(record, echo, profiles, market_prices, now, source, max_record_hours)
    except PricingError as error:
        log.debug("record not priced: %s", error, extra={"source": source_ref(source)})
        return dead_letter(payload, error.code, error.message, source, now)
    except _MissingIdentityError:
        raise
    except Exception as error:  # an agent must never die on one record (design §4)
        log.exception("unexpected error pricing a record", extra={"source": source_ref(source)})
        return dead_letter(
            payload, ErrorCode.INVALID_RECORD, f"{type(error).__name__}: {error}", source, now
        )


def cost_request(
    request: dict[str, Any],
    *,
    profiles: Callable[[str], LocationProfile | None],
    market_prices: Callable[[str, date], MarketPrices | None],
    now: datetime,
    source: Position | None = None,
    max_record_hours: int = 744,
    record: MeterRecord | None = None,
) -> PricedCost | DeadLetter:
    """`cost_payload(dumps(request))` without the JSON round trip, for a record built in
    process (the readings agent's derived interval): `request` must be what `loads` would
    return for it (numbers as Decimal), and the result is the same, the dead letter's payload
    included (encoded only when one is needed). `record`, when given, is
    `MeterRecord.model_validate(request)` built by the caller from validated values
    (`costing.readings.interval_meter_record`): it is not validated again."""
    try:
        if record is None:
            record = validate_record(request)
        return _price_valid(record, request, profiles, market_prices, now, source, max_record_hours)
    except PricingError as error:
        log.debug("record not priced: %s", error, extra={"source": source_ref(source)})
        return dead_letter(dumps(request), error.code, error.message, source, now)
    except _MissingIdentityError:
        raise
    except Exception as error:  # an agent must never die on one record (design §4)
        log.exception("unexpected error pricing a record", extra={"source": source_ref(source)})
        return dead_letter(
            dumps(request),
            ErrorCode.INVALID_RECORD,
            f"{type(error).__name__}: {error}",
            source,
            now,
        )


def _price_valid(
    record: MeterRecord,
    request: RequestEcho,
    profiles: Callable[[str], LocationProfile | None],
    market_prices: Callable[[str, date], MarketPrices | None],
    now: datetime,
    source: Position | None,
    max_record_hours: int,
) -> PricedCost:
    """A schema-valid record priced; raises PricingError for an unknown meter or a record the
    tariffs cannot price."""
    fields = record.__dict__  # read as `models.Document` says
    location_id: str = fields["location_id"]
    profile = profiles(location_id)
    problem = unknown_meter(location_id, fields["device_id"], profile)
    if problem is not None:
        raise problem
    assert profile is not None  # unknown_meter's first check
    priced = cost_record(
        record,
        profile,
        meter_record_id=meter_record_id(record, profile, source),
        request=request,
        market_prices=market_prices,
        now=now,
        max_record_hours=max_record_hours,
    )
    size = len(priced.encode())  # written once: the adapter sends these bytes
    if size > MAX_MESSAGE_BYTES:
        raise PricingError(
            ErrorCode.INVALID_RECORD,
            f"its result would take {size:,} bytes, more than the {MAX_MESSAGE_BYTES:,} a "
            "message may hold (its breakdown has an item per rate change): send shorter records",
        )
    return priced


class _MissingIdentityError(ValueError):
    """A caller bug: no record id and no source position to derive one from."""
