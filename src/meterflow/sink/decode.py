"""Kafka records -> what the sink does with them (pure): a row, a skip, or a dead letter."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from pydantic import ValidationError

from meterflow.contract.columns import location_row
from meterflow.contract.decisions import Apply, Delete
from meterflow.contract.locations import decide_location
from meterflow.models import (
    MAX_EXPONENT,
    DeadLetter,
    EnergyCost,
    ErrorCode,
    SourceRef,
    dead_letter,
    loads,
    validation_summary,
)
from meterflow.sink.rows import CostRows, Source, cost_rows
from meterflow.sink.text_rows import TextRows, text_cost_rows


@dataclass(frozen=True, slots=True)
class Persist:
    """A result to write, with the record it came from (to dead-letter it if PostgreSQL refuses
    a value that passed validation, e.g. a number beyond NUMERIC's range). `rows` are COPY text
    lines from the text path, or Python values (binary COPY) from the other two paths."""

    id: str
    rows: CostRows | TextRows
    key: bytes | None
    value: bytes
    source: Source


@dataclass(frozen=True, slots=True)
class Simulated:
    """A `non_persistent` result: acknowledged, never stored."""

    id: str


@dataclass(frozen=True, slots=True)
class Poison:
    """A record that can never be stored: it goes to `dead-letters` and is committed past."""

    key: bytes | None
    dead_letter: DeadLetter


@dataclass(frozen=True, slots=True)
class LocationUpsert:
    location_id: str
    row: tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class LocationDelete:
    location_id: str


@dataclass(frozen=True, slots=True)
class Ignored:
    """A record the sink cannot use and does not dead-letter (see `decode_location`)."""

    reason: str


CostOutcome = Persist | Simulated | Poison
LocationOutcome = LocationUpsert | LocationDelete | Ignored


def invalid_record(value: bytes | None, message: str, source: Source, now: datetime) -> DeadLetter:
    """The dead letter of a record the sink can never store."""
    where = SourceRef(topic=source.topic, partition=source.partition, offset=source.offset)
    return dead_letter(value, ErrorCode.INVALID_RECORD, message, where, now)


def _first_out_of_range(cost: EnergyCost) -> Decimal | None:
    """An amount whose magnitude lies outside 10^±`MAX_EXPONENT` (the models' bound on a stored
    number; no energy or money comes near it): NUMERIC stores up to ~10^131072, but asyncpg's
    binary encoder silently writes 0 for larger numbers. Values asyncpg refuses to encode (too
    many decimals) raise, and are found by the writer's per-row probe."""
    data = cost.data
    values = [data.energy.value, data.cost.value, data.cost.confidence]
    values += [number for number in (data.cost.tax, data.cost.total) if number is not None]
    for item in data.breakdown:
        values += (item.rate, item.energy, item.cost)
    for number in values:
        if number and not -MAX_EXPONENT <= number.adjusted() <= MAX_EXPONENT:
            return number
    return None


def _contains_nul(value: object) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_contains_nul(k) or _contains_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_contains_nul(item) for item in value)
    return False


def decode_cost(
    key: bytes | None, value: bytes | None, source: Source, now: datetime
) -> CostOutcome:
    """Decode one `energy-costs` record and map it to rows, or explain why not.

    Two paths: COPY text lines straight from the bytes (`text_rows`, every record the pipeline
    writes), and, for what it does not vouch for (e.g. strings with escapes), the model, the
    authority on poison. (A third path, `fast_rows`, was removed: 0 of 120,000 pipeline-shaped
    records reached it once the text path existed; docs/sink.md.)
    """
    if value is None:
        return Poison(
            key, invalid_record(value, "empty value: expected an EnergyCost", source, now)
        )
    text = text_cost_rows(value, source)
    if text is not None:
        return Persist(text.id, text, key, value, source)
    try:
        document = loads(value)
    except (ValueError, RecursionError) as exc:  # incl. UnicodeDecodeError, absurd nesting
        return Poison(key, invalid_record(value, f"not JSON: {exc}"[:500], source, now))
    if b"\\u0000" in value and _contains_nul(document):  # cheap test first, exact one after
        message = "contains a NUL character (\\u0000), which PostgreSQL text cannot store"
        return Poison(key, invalid_record(value, message, source, now))
    try:
        cost = EnergyCost.model_validate(document)
    except ValidationError as exc:
        message = f"not an EnergyCost: {validation_summary(exc)}"
        return Poison(key, invalid_record(value, message, source, now))
    if cost.non_persistent:
        return Simulated(cost.id)
    out_of_range = _first_out_of_range(cost)
    if out_of_range is not None:
        message = (
            f"{out_of_range} is beyond the range stored exactly (|exponent| <= {MAX_EXPONENT})"
        )
        return Poison(key, invalid_record(value, message, source, now))
    try:
        rows = cost_rows(cost, source)
    except ValueError as exc:  # e.g. a lone surrogate, which has no UTF-8 form
        return Poison(key, invalid_record(value, f"could not be stored: {exc}", source, now))
    return Persist(cost.id, rows, key, value, source)


def decode_location(key: bytes | None, value: bytes | None) -> LocationOutcome:
    """One `locations` record as the contract decides it: a profile to mirror, or a tombstone.

    A rejected message is not dead-lettered here: the cost agent reads the same topic and owns
    that report; the mirror keeps the last valid profile.
    """
    decision = decide_location(key, value)
    if isinstance(decision, Apply):
        return LocationUpsert(decision.key, location_row(decision.document))
    if isinstance(decision, Delete):
        return LocationDelete(decision.key)
    return Ignored(decision.reason)
