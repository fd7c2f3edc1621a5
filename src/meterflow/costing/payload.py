"""Raw bytes to EnergyCost | DeadLetter: the one path shared by the Faust agent and the HTTP API.

Keeping a single path means the stream and the API accept, reject and price records the same
way, with the same error codes (design §5).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import date, datetime
from typing import Any

from pydantic import ValidationError

from meterflow import ids
from meterflow.costing.engine import price_record
from meterflow.models import (
    DeadLetter,
    EnergyCost,
    ErrorCode,
    LocationProfile,
    MarketPrices,
    MeterRecord,
    PricingError,
    SourceRef,
    dead_letter,
    loads,
    validation_summary,
)

log = logging.getLogger("meterflow.costing")


def parse_record(payload: bytes) -> tuple[MeterRecord, dict[str, Any]]:
    """Decode and validate one record: (the model, the request dict as received).

    Numbers are decoded as `Decimal` (never float). Raises PricingError(INVALID_RECORD) for
    bytes that are not a JSON object or a record that breaks the schema (e.g. a naive time).
    The time range is checked by `price_record`.
    """
    try:
        request = loads(payload)
    except ValueError as error:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise PricingError(ErrorCode.INVALID_RECORD, f"not valid JSON: {error}") from None
    if not isinstance(request, dict):
        raise PricingError(ErrorCode.INVALID_RECORD, "a meter record must be a JSON object")
    try:
        record = MeterRecord.model_validate(request)
    except ValidationError as error:
        raise PricingError(
            ErrorCode.INVALID_RECORD, validation_summary(error, whole="record")
        ) from None
    return record, request


def price_payload(
    payload: bytes,
    *,
    profiles: Callable[[str], LocationProfile | None],
    market_prices: Callable[[str, date], MarketPrices | None],
    now: datetime,
    source: SourceRef | None = None,
    max_record_hours: int = 744,
) -> EnergyCost | DeadLetter:
    """Parse, validate and price one raw record; every failure becomes a DeadLetter.

    Never raises, except ValueError when the record has no `id` and no `source` was given (a
    programming error: the API always sets an id, the stream always has a source position).
    The result id derives from the record's `id`, else from its source position (design §4).
    """
    try:
        record, request = parse_record(payload)
        profile = profiles(record.location_id)
        if profile is None:
            raise PricingError(
                ErrorCode.UNKNOWN_LOCATION, f"no profile for location {record.location_id!r}"
            )
        if record.device_id is not None and record.device_id not in profile.devices:
            raise PricingError(
                ErrorCode.UNKNOWN_DEVICE,
                f"device {record.device_id!r} is not a device of location {record.location_id!r}",
            )
        if record.id is not None:
            meter_record_id = record.id
        elif source is not None:
            meter_record_id = ids.meter_record_id_for_offset(
                source.topic, source.partition, source.offset
            )
        else:
            raise _MissingIdentityError("a record without `id` needs its source position")
        return price_record(
            record,
            profile,
            meter_record_id=meter_record_id,
            request=request,
            market_prices=market_prices,
            now=now,
            max_record_hours=max_record_hours,
        )
    except PricingError as error:
        log.debug("record not priced: %s", error, extra={"source": source})
        return dead_letter(payload, error.code, error.message, source, now)
    except _MissingIdentityError:
        raise
    except Exception as error:  # an agent must never die on one record (design §4)
        log.exception("unexpected error pricing a record", extra={"source": source})
        return dead_letter(
            payload, ErrorCode.INVALID_RECORD, f"{type(error).__name__}: {error}", source, now
        )


class _MissingIdentityError(ValueError):
    """A caller bug: no record id and no source position to derive one from."""
