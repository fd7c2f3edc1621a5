"""Cumulative register readings -> interval meter records (design §10), pure.

`next_interval(latest, reading)` is the rule of §10 for one reading against the latest reading
of its meter. `advance(state, reading, offset)` adds what makes it crash-safe: the state is the
meter's recent readings *with the input offset of each*, so a reading the state already holds
(a replay after a crash: the table's changelog can run ahead of the committed input offset) is
decided again against the state as it was before that offset, and re-emits its interval under
the same deterministic id instead of passing for a duplicate (KAFKA-12508's trap).
docs/stream.md, "Readings: crash safety", has the argument.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import lru_cache
from typing import Any

from pydantic import ValidationError

from meterflow import ids
from meterflow.costing._trusted import trusted
from meterflow.costing.money import CONTEXT
from meterflow.costing.payload import unknown_meter
from meterflow.costing.timeline import (
    SUPPORTED_YEARS,
    US_PER_HOUR,
    to_us,
    within_supported_years,
)
from meterflow.models import (
    ErrorCode,
    LocationProfile,
    MeterReading,
    MeterRecord,
    PricingError,
    by_identity,
    dumps,
    loads,
    validation_summary,
)

MAX_POINTS = 1000
"""A memory bound on one meter's state. Points older than the committed input offset are pruned
first (`advance`), so this bound is reached only by a meter that sent this many readings since
the last offset commit (about a second of input)."""


def parse_reading(payload: bytes) -> MeterReading:
    """Decode and validate one `meter-readings` value; PricingError(INVALID_RECORD) otherwise
    (not JSON, a negative or non-numeric register, a time without offset, …), or
    INVALID_TIME_RANGE for a time outside the supported years. Numbers are read as Decimal,
    never float."""
    try:
        document = loads(payload)
    except ValueError as error:
        raise PricingError(ErrorCode.INVALID_RECORD, f"not valid JSON: {error}") from None
    if not isinstance(document, dict):
        raise PricingError(ErrorCode.INVALID_RECORD, "a meter reading must be a JSON object")
    try:
        reading = MeterReading.model_validate(document)
    except ValidationError as error:
        raise PricingError(
            ErrorCode.INVALID_RECORD, validation_summary(error, whole="reading")
        ) from None
    at = to_us(reading.time)
    if not within_supported_years(at, at):  # as a record's instants (some have no UTC form)
        raise PricingError(ErrorCode.INVALID_TIME_RANGE, f"a reading must lie {SUPPORTED_YEARS}")
    return reading


MAX_HOURS_AHEAD = 24
"""How far a reading's time may lie after it reached meterflow (its Kafka timestamp). Taken as
its meter's latest, a reading from a clock far ahead makes every true reading after it
`stale_reading` until that time comes (one dated 2099 stopped a meter's pricing); a day leaves
room for a meter whose clock is set to the wrong zone."""


def ahead_problem(reading: MeterReading, received_ms: int | None) -> PricingError | None:
    """`invalid_time_range` for a reading dated more than `MAX_HOURS_AHEAD` after it was
    received (checked before the meter's state is touched); None without a timestamp. Against
    the message's own Kafka timestamp (capped at the worker's clock: `agents.received_ms`), not
    the time it is processed, so a replay decides it the same way."""
    if received_ms is None or to_us(reading.time) <= (
        received_ms * 1000 + MAX_HOURS_AHEAD * US_PER_HOUR
    ):
        return None
    return PricingError(
        ErrorCode.INVALID_TIME_RANGE,
        f"the reading's time {utc_text(reading.time)} lies more than {MAX_HOURS_AHEAD} hours "
        "after it was received: its meter's clock is wrong",
    )


def meter_problem(reading: MeterReading, profile: LocationProfile | None) -> PricingError | None:
    """What makes a reading's meter unknown (checked before the meter's state is touched):
    the same rule as a record's."""
    return unknown_meter(reading.location_id, reading.device_id, profile)


def meter_key(reading: MeterReading, owner: LocationProfile) -> bytes:
    """The state table's key: the meter (object + direction) within its location, and the
    location's owner (account and mode). The location is part of it because the table is
    partitioned like `meter-readings`, by location; the owner because a location id can be
    published again for another account (`meterflow profiles`), whose meter must start from
    its own baseline and never see the former owner's register."""
    return _meter_key(
        owner.account_id,
        owner.live_mode,
        reading.location_id,
        reading.object_id,
        reading.energy_flow_direction.value,
    )


@lru_cache(maxsize=65536)
def _meter_key(
    account_id: str, live_mode: bool, location_id: str, object_id: str, direction: str
) -> bytes:
    """Cached: the same meters report again and again, and `dumps` of a list is ~5 us."""
    return dumps([account_id, live_mode, location_id, object_id, direction])


def _utc_text(instant: datetime) -> str:
    return instant.astimezone(UTC).isoformat().replace("+00:00", "Z")


utc_text: Callable[[datetime], str] = by_identity(_utc_text)
"""RFC 3339 in UTC with `Z`: the one spelling of an instant in ids and derived records.
Remembered per object (~2.5 µs to write, a reading's time is usually a shared object)."""


# The value objects below are never changed once built, but are not `frozen`: a frozen
# dataclass sets each field through `object.__setattr__`, which made the four built per reading
# (a point, an interval, a step, a state) cost ~2.8 µs instead of ~1.2.


@dataclass(slots=True)
class RegisterPoint:
    """A reading that moved the meter's state, and the input offset it came from.

    `text` is `utc_text(time)`, made once: a point's time is spelled in every state write and
    in the intervals on both its sides (it was a tenth of the readings agent's time). `entry`
    is the point as `encode_state` writes it, made once too: a state holds every point since
    the last offset commit (~10 while a backlog drains), and each state write wrote them all
    again (another tenth)."""

    time: datetime
    kwh: Decimal
    offset: int
    text: str = field(default="", compare=False, repr=False)
    entry: str = field(default="", init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not self.text:
            self.text = utc_text(self.time)
        self.entry = f'["{self.text}",{self.kwh},{self.offset}]'


@dataclass(slots=True)
class MeterState:
    """One meter's recent state-changing readings, oldest first (never empty), their offsets
    increasing.

    `text` is the points' entries joined by commas, as `encode_state` writes them. `then`
    makes the next state's from this one's (a slice and one appended entry) instead of
    joining every point since the last offset commit again on each write (~12 points on
    average while `bench_readings.py` drains its backlog, more when commits lag)."""

    points: tuple[RegisterPoint, ...]
    text: str = field(default="", compare=False, repr=False)

    def __post_init__(self) -> None:
        if not self.text:
            self.text = ",".join([point.entry for point in self.points])

    @property
    def latest(self) -> RegisterPoint:
        return self.points[-1]

    def before(self, offset: int) -> RegisterPoint | None:
        """The latest reading as it was when the input reached `offset`."""
        for point in reversed(self.points):
            if point.offset < offset:
                return point
        return None

    def then(self, point: RegisterPoint, committed: int | None) -> MeterState:
        """This state with `point` as its latest; points that no replay can need are dropped:
        a replay starts at the committed offset or later, and only needs the last point
        before it."""
        points = (*self.points, point)
        start = max(len(points) - MAX_POINTS, 0)
        if committed is not None:
            # on to the last point below `committed` (offsets increase): a step per point
            # dropped, each dropped once, where a bisection cost 1 µs a write
            while start + 1 < len(points) and points[start + 1].offset < committed:
                start += 1
        if start == 0:
            return MeterState(points, f"{self.text},{point.entry}")
        if start == len(self.points):
            return MeterState((point,), point.entry)
        # where the first kept entry begins: `["` begins every entry and nothing else, and an
        # entry's offset is its own, so the entry's text occurs once
        kept = self.text.index(points[start].entry)
        return MeterState(points[start:], f"{self.text[kept:]},{point.entry}")


def encode_state(state: MeterState) -> bytes:
    """`dumps([[time text, kWh, offset], …])` byte for byte, written out by hand (twice as
    fast): the texts are `utc_text`'s (no character to escape) and a Decimal is written by its
    own digits, as `dumps` does."""
    return f"[{state.text}]".encode()


def decode_state(raw: bytes | None) -> MeterState | None:
    if raw is None:
        return None
    points = tuple(
        RegisterPoint(datetime.fromisoformat(time), Decimal(kwh), int(offset), time)
        for time, kwh, offset in loads(raw)
    )
    return MeterState(points) if points else None


# --- decisions -------------------------------------------------------------------------------


@dataclass(slots=True)
class Baseline:
    """The meter's first reading: sets the state, nothing priced."""

    point: RegisterPoint


@dataclass(slots=True)
class Interval:
    """A newer reading: the interval `[previous.time, point.time)` is priced."""

    previous: RegisterPoint
    point: RegisterPoint
    record: dict[str, Any]


@dataclass(slots=True)
class Duplicate:
    """The latest reading again (same time, same value): nothing to do."""


@dataclass(slots=True)
class Rejected:
    """A dead letter with `code`; `point` is the new baseline (reset, over-long gap), or None
    when the state stays as it is (stale reading)."""

    code: ErrorCode
    message: str
    point: RegisterPoint | None


Decision = Baseline | Interval | Duplicate | Rejected


def next_interval(
    latest: RegisterPoint | None, reading: MeterReading, offset: int, *, max_record_hours: int
) -> Decision:
    """The rules of design §10 for `reading` (at input `offset`) after the meter's `latest`."""
    point = RegisterPoint(reading.time, reading.kwh, offset)
    if latest is None:
        return Baseline(point)
    if point.time == latest.time and point.kwh == latest.kwh:
        return Duplicate()
    if point.time <= latest.time:
        return Rejected(
            ErrorCode.STALE_READING,
            f"reading at {utc_text(point.time)} ({point.kwh} kWh) is not after the latest "
            f"reading at {utc_text(latest.time)} ({latest.kwh} kWh)",
            None,
        )
    if point.kwh < latest.kwh:
        return Rejected(
            ErrorCode.REGISTER_RESET,
            f"register went down from {latest.kwh} kWh at {utc_text(latest.time)} to "
            f"{point.kwh} kWh: nothing priced across it, new baseline",
            point,
        )
    if point.time - latest.time > _hours(max_record_hours):
        return Rejected(
            ErrorCode.INVALID_TIME_RANGE,
            f"{utc_text(latest.time)} to {utc_text(point.time)} is longer than "
            f"{max_record_hours} hours: nothing priced across it, new baseline",
            point,
        )
    return Interval(latest, point, interval_record(reading, latest, point.text))


@lru_cache(maxsize=16)
def _hours(count: int) -> timedelta:
    """`timedelta(hours=count)`, made once: 0.8 µs a reading otherwise."""
    return timedelta(hours=count)


def interval_record(
    reading: MeterReading, previous: RegisterPoint, end: str | None = None
) -> dict[str, Any]:
    """The MeterRecord (as published on `meter-records`) for `[previous.time, reading.time)`.

    Its reference is the reading's own, else `rdg_…` of (meter, both instants); it carries the
    reading's device, session and confidence (design §10), and its `batch_id`/`batch_index`.
    `end` is `utc_text(reading.time)` when the caller has it."""
    start, end = previous.text, end or utc_text(reading.time)
    direction = reading.energy_flow_direction.value
    reference = reading.record_reference_id or ids.reading_interval_reference(
        reading.object_id, direction, start, end
    )
    record: dict[str, Any] = {
        "location_id": reading.location_id,
        "energy_flow_direction": direction,
        "energy": CONTEXT.subtract(reading.kwh, previous.kwh),  # exact (`REGISTER_PLACES`)
        "start_time": start,
        "end_time": end,
        "record_reference_id": reference,
    }
    if reading.device_id is not None:
        record["device_id"] = reading.device_id
    if reading.session_reference_id is not None:
        record["session_reference_id"] = reading.session_reference_id
    if reading.confidence is not None:
        record["confidence"] = reading.confidence
    if reading.batch_id is not None:  # the batch's status finds the interval's dead letter
        record["batch_id"], record["batch_index"] = reading.batch_id, reading.batch_index
    return record


def interval_meter_record(reading: MeterReading, interval: Interval) -> MeterRecord:
    """`MeterRecord.model_validate(interval.record)`, built without validating it again.

    Every field is either the validated reading's own (a MeterReading holds them under the same
    constraints as a MeterRecord) or made here: the two instants in UTC, a finite energy that
    is not negative (a decrease is a reset, never an interval), an `rdg_` reference. Validating
    was an eighth of the readings agent's time; `test_costing_readings` checks the two agree."""
    record = interval.record
    return trusted(
        MeterRecord,
        {
            "id": None,
            "location_id": reading.location_id,
            "device_id": reading.device_id,
            "energy_flow_direction": reading.energy_flow_direction,
            "energy": record["energy"],
            "units": None,
            "value": None,
            "start_time": interval.previous.time.astimezone(UTC),
            "end_time": interval.point.time.astimezone(UTC),
            "session_reference_id": reading.session_reference_id,
            "record_reference_id": record["record_reference_id"],
            "tariff_direction": None,
            "confidence": Decimal(1) if reading.confidence is None else reading.confidence,
            "non_persistent": False,
            "batch_id": reading.batch_id,
            "batch_index": reading.batch_index,
            "direction": None,
            "tariff_rate": None,
        },
    )


@dataclass(slots=True)
class Step:
    """What one reading does: its decision, and the state to store (None: leave it)."""

    decision: Decision
    state: MeterState | None
    replayed: bool = False


def advance(
    state: MeterState | None,
    reading: MeterReading,
    offset: int,
    *,
    committed: int | None,
    max_record_hours: int,
) -> Step:
    """`next_interval` against the meter's state, safe under replays.

    Input offsets of one meter only grow (one partition, keyed by location), so a reading at or
    below the latest point's offset was processed before: the state ran ahead of the committed
    input (a crash, a rebalance). It is decided against the state as it was before its offset,
    which gives the same decision as the first time (an interval again, under the same id), and
    the state is left alone. `committed` (the partition's committed input offset, None if
    unknown) bounds what the state keeps."""
    if state is not None and offset <= state.latest.offset:
        decision = next_interval(
            state.before(offset), reading, offset, max_record_hours=max_record_hours
        )
        return Step(decision, None, replayed=True)
    latest = state.latest if state is not None else None
    decision = next_interval(latest, reading, offset, max_record_hours=max_record_hours)
    point = _moves_to(decision)
    if point is None:
        return Step(decision, None)
    if state is None:
        return Step(decision, MeterState((point,)))
    return Step(decision, state.then(point, committed))


def _moves_to(decision: Decision) -> RegisterPoint | None:
    if isinstance(decision, Baseline | Interval):
        return decision.point
    if isinstance(decision, Rejected):
        return decision.point
    return None


__all__ = [
    "MAX_HOURS_AHEAD",
    "MAX_POINTS",
    "Baseline",
    "Decision",
    "Duplicate",
    "Interval",
    "MeterState",
    "RegisterPoint",
    "Rejected",
    "Step",
    "advance",
    "ahead_problem",
    "decode_state",
    "encode_state",
    "interval_meter_record",
    "interval_record",
    "meter_key",
    "meter_problem",
    "next_interval",
    "parse_reading",
    "utc_text",
]
