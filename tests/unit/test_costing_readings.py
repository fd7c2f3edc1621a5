"""Readings -> intervals (design §10): every rule, and the replay rule that makes it crash-safe."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

import meterflow.costing.readings as readings_module
from meterflow.costing.readings import (
    MAX_HOURS_AHEAD,
    MAX_POINTS,
    Baseline,
    Duplicate,
    Interval,
    MeterState,
    RegisterPoint,
    Rejected,
    advance,
    ahead_problem,
    decode_state,
    encode_state,
    interval_meter_record,
    interval_record,
    meter_key,
    meter_problem,
    next_interval,
    parse_reading,
    utc_text,
)
from meterflow.ids import reading_interval_reference
from meterflow.models import (
    ErrorCode,
    LocationProfile,
    MeterReading,
    MeterRecord,
    PricingError,
    dumps,
)

T0 = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)


def reading(minutes: int, value: str, units: str = "WH", **extra: Any) -> MeterReading:
    time = (T0 + timedelta(minutes=minutes)).isoformat().replace("+00:00", "Z")
    return MeterReading.model_validate(
        {"location_id": "loc_r", "time": time, "value": Decimal(value), "units": units, **extra}
    )


def point(minutes: int, kwh: str, offset: int) -> RegisterPoint:
    return RegisterPoint(T0 + timedelta(minutes=minutes), Decimal(kwh), offset)


def decide(latest: RegisterPoint | None, r: MeterReading, offset: int = 9) -> Any:
    return next_interval(latest, r, offset, max_record_hours=744)


def test_the_first_reading_only_sets_the_baseline() -> None:
    assert decide(None, reading(0, "1553"), 4) == Baseline(point(0, "1.553", 4))


def test_a_newer_reading_is_the_interval_since_the_latest_in_kwh() -> None:
    decision = decide(point(0, "1.553", 4), reading(30, "2053"))
    assert isinstance(decision, Interval)
    assert decision.record["energy"] == Decimal("0.500")
    assert decision.record["start_time"] == "2026-01-05T08:00:00Z"
    assert decision.record["end_time"] == "2026-01-05T08:30:00Z"
    assert decision.record["record_reference_id"] == reading_interval_reference(
        "loc_r", "INBOUND", "2026-01-05T08:00:00Z", "2026-01-05T08:30:00Z"
    )
    assert decision.point == point(30, "2.053", 9)


def test_units_do_not_matter_for_duplicates_and_a_zero_increase_is_an_interval() -> None:
    assert decide(point(0, "1.553", 4), reading(0, "1.553", "KWH")) == Duplicate()
    decision = decide(point(0, "1.553", 4), reading(30, "1553"))
    assert isinstance(decision, Interval)
    assert decision.record["energy"] == 0


def test_a_long_register_prices_its_exact_increase() -> None:
    # 35 digits, beyond the default context's 28: before, both registers rounded alike and the
    # increase of 0.00000050000000000001 kWh, just over half a millionth, was a tie (to 0)
    latest = reading(0, "123456789012345.12345678901234567890", "KWH")
    newer = reading(30, "123456789012345.12345728901234567891", "KWH")
    previous = RegisterPoint(latest.time, latest.kwh, 4)
    energy = interval_record(newer, previous)["energy"]
    assert energy == Decimal("0.00000050000000000001")
    assert reading(0, "123456789012345.12345678901234567890").kwh == Decimal(
        "123456789012.34512345678901234567890"
    )
    assert decide(previous, reading(0, "123456789012345.1234567890123456788", "KWH")).code is (
        ErrorCode.STALE_READING  # another value at the same time, though equal in 28 digits
    )


def test_another_value_at_or_before_the_latest_time_is_stale() -> None:
    for minutes, value in ((0, "1600"), (-5, "1000"), (-5, "1553")):
        decision = decide(point(0, "1.553", 4), reading(minutes, value))
        assert isinstance(decision, Rejected)
        assert (decision.code, decision.point) == (ErrorCode.STALE_READING, None)


def test_a_decrease_is_a_reset_and_the_new_baseline() -> None:
    decision = decide(point(0, "1.553", 4), reading(30, "12"), 9)
    assert isinstance(decision, Rejected)
    assert decision.code is ErrorCode.REGISTER_RESET
    assert decision.point == point(30, "0.012", 9)


def test_a_gap_longer_than_the_limit_is_invalid_and_the_new_baseline() -> None:
    latest = point(0, "1", 4)
    ok = next_interval(latest, reading(60, "2000"), 9, max_record_hours=1)
    assert isinstance(ok, Interval)
    decision = next_interval(latest, reading(61, "2000"), 9, max_record_hours=1)
    assert isinstance(decision, Rejected)
    assert decision.code is ErrorCode.INVALID_TIME_RANGE
    assert decision.point == point(61, "2", 9)


def test_the_derived_record_carries_the_readings_reference_device_session_confidence() -> None:
    r = reading(
        30,
        "2",
        "KWH",
        device_id="dev_1",
        energy_flow_direction="OUTBOUND",
        session_reference_id="ses_1",
        record_reference_id="ref_1",
        confidence="0.8",
    )
    record = interval_record(r, point(0, "1", 4))
    assert record == {
        "location_id": "loc_r",
        "device_id": "dev_1",
        "energy_flow_direction": "OUTBOUND",
        "energy": Decimal(1),
        "start_time": "2026-01-05T08:00:00Z",
        "end_time": "2026-01-05T08:30:00Z",
        "session_reference_id": "ses_1",
        "record_reference_id": "ref_1",
        "confidence": Decimal("0.8"),
    }


def test_the_derived_reference_depends_on_meter_and_instants_not_on_spelling() -> None:
    spelled = MeterReading.model_validate(
        {"location_id": "loc_r", "time": "2026-01-05T09:30:00+01:00", "value": 2, "units": "KWH"}
    )
    a = interval_record(spelled, point(0, "1", 4))["record_reference_id"]
    b = interval_record(reading(30, "2", "KWH"), point(0, "1", 4))["record_reference_id"]
    c = interval_record(reading(30, "2", "KWH", device_id="d"), point(0, "1", 4))
    assert a == b != c["record_reference_id"]
    assert a.startswith("rdg_")


@pytest.mark.parametrize(
    ("document", "code"),
    [
        ({"value": -1}, ErrorCode.INVALID_RECORD),
        ({"value": "lots"}, ErrorCode.INVALID_RECORD),
        ({"value": "NaN"}, ErrorCode.INVALID_RECORD),
        ({"time": "2026-01-05T08:00:00"}, ErrorCode.INVALID_RECORD),
        ({"units": "W"}, ErrorCode.INVALID_RECORD),
        ({"value": "1.000000000000000000001"}, ErrorCode.INVALID_RECORD),  # 21 places
        ({"value": "1E+16"}, ErrorCode.INVALID_RECORD),  # beyond MAX_INPUT_VALUE: absurd
        ({"value": "1e1000000"}, ErrorCode.INVALID_RECORD),
        ({"confidence": "1e-1001"}, ErrorCode.INVALID_RECORD),  # its interval's: not stored
        # no UTC form (it was an OverflowError, "unexpected error"), and the years around them
        ({"time": "0001-01-01T00:00:00+01:00"}, ErrorCode.INVALID_TIME_RANGE),
        ({"time": "9999-12-31T23:59:59-01:00"}, ErrorCode.INVALID_TIME_RANGE),
        ({"time": "0001-12-31T23:59:59Z"}, ErrorCode.INVALID_TIME_RANGE),
        ({"time": "9998-01-01T00:00:01Z"}, ErrorCode.INVALID_TIME_RANGE),
    ],
)
def test_bad_readings_are_refused(document: dict[str, Any], code: ErrorCode) -> None:
    base = {"location_id": "l", "time": "2026-01-05T08:00:00Z", "value": 1, "units": "WH"}
    with pytest.raises(PricingError) as caught:
        parse_reading(dumps({**base, **document}))
    assert caught.value.code is code
    with pytest.raises(PricingError):
        parse_reading(b"[1]")
    with pytest.raises(PricingError):
        parse_reading(b"\xff")


def test_a_reading_from_a_clock_far_ahead_is_refused() -> None:
    """Against the message's timestamp (a replay decides the same), a day's slack."""
    at = reading(30, "2", "KWH")  # 2026-01-05T08:30:00Z
    received_ms = int(at.time.timestamp() * 1000)
    day_before = received_ms - MAX_HOURS_AHEAD * 3_600_000
    assert ahead_problem(at, received_ms) is None
    assert ahead_problem(at, day_before) is None  # exactly a day ahead
    problem = ahead_problem(at, day_before - 1)
    assert problem is not None
    assert problem.code is ErrorCode.INVALID_TIME_RANGE
    assert "2026-01-05T08:30:00Z lies more than 24 hours after it was received" in problem.message
    assert ahead_problem(at, None) is None  # no timestamp (a test fake): no rule


def test_unknown_location_and_device() -> None:
    profile = LocationProfile.model_validate(
        {
            "location_id": "loc_r",
            "account_id": "acc",
            "timezone": "UTC",
            "currency_code": "GBP",
            "devices": ["dev_1"],
            "tariffs": {},
        }
    )
    problem = meter_problem(reading(0, "1"), None)
    assert problem is not None
    assert problem.code is ErrorCode.UNKNOWN_LOCATION
    problem = meter_problem(reading(0, "1", device_id="dev_2"), profile)
    assert problem is not None
    assert problem.code is ErrorCode.UNKNOWN_DEVICE
    assert meter_problem(reading(0, "1", device_id="dev_1"), profile) is None


def owner(account_id: str = "acc", live_mode: bool = False) -> LocationProfile:
    return LocationProfile.model_validate(
        {
            "location_id": "loc_r",
            "account_id": account_id,
            "live_mode": live_mode,
            "timezone": "UTC",
            "currency_code": "GBP",
            "tariffs": {},
        }
    )


def test_meter_key_separates_devices_directions_and_owners() -> None:
    # a location id published again for another account or mode starts from its own baseline:
    # the former owner's register never prices (or shows up in the letters of) the new one's
    keys = {
        meter_key(reading(0, "1"), owner()),
        meter_key(reading(0, "1", device_id="d"), owner()),
        meter_key(reading(0, "1", energy_flow_direction="OUTBOUND"), owner()),
        meter_key(reading(0, "1"), owner("acc_other")),
        meter_key(reading(0, "1"), owner(live_mode=True)),
    }
    assert len(keys) == 5
    assert meter_key(reading(0, "1"), owner()) == meter_key(reading(30, "2"), owner())


def test_state_round_trips() -> None:
    state = MeterState((point(0, "1.553", 4), point(30, "2.000000001", 7)))
    assert decode_state(encode_state(state)) == state
    assert decode_state(None) is None


@pytest.mark.parametrize(
    "kwh", ["1.553", "0", "2.000000001", "1E+3", "12345678901234567890.123", "0.10"]
)
def test_the_hand_written_state_encoding_is_dumps_byte_for_byte(kwh: str) -> None:
    paris = timezone(timedelta(hours=1))
    state = MeterState(
        (
            point(0, kwh, 4),
            RegisterPoint(datetime(2026, 3, 1, 9, 0, 0, 250, tzinfo=paris), Decimal(kwh), 2**40),
            RegisterPoint(reading(45, "7").time, Decimal(kwh), 0),  # pydantic's own tzinfo
        )
    )
    expected = dumps([[utc_text(p.time), p.kwh, p.offset] for p in state.points])
    assert encode_state(state) == expected
    assert encode_state(decode_state(expected) or state) == expected


@pytest.mark.parametrize(
    "extra",
    [
        {},
        {"device_id": "d1", "session_reference_id": "s 1", "confidence": Decimal("0.25")},
        {"record_reference_id": "ref-9", "batch_id": "bat_0a1b", "batch_index": 7},
        {"energy_flow_direction": "OUTBOUND", "time": "2026-01-05T09:30:00.5+01:00"},
    ],
)
def test_the_derived_meter_record_is_the_validated_record(extra: dict[str, Any]) -> None:
    """The agent prices `interval_meter_record` instead of validating `interval_record` again:
    both must be the same MeterRecord, field by field and with the same text form."""
    later = reading(30, "2053", **extra)
    previous = point(0, "1.553", 4)
    decision = next_interval(previous, later, 9, max_record_hours=744)
    assert isinstance(decision, Interval)
    built = interval_meter_record(later, decision)
    validated = MeterRecord.model_validate(decision.record)
    assert dict(built) == dict(validated)
    assert built.model_dump_json() == validated.model_dump_json()
    assert set(built.model_fields_set) == set(MeterRecord.model_fields)


# --- replay safety ----------------------------------------------------------------------------


def _run(
    readings: list[tuple[int, MeterReading]],
    state: MeterState | None = None,
    committed: int | None = None,
) -> tuple[list[Any], MeterState | None]:
    decisions = []
    for offset, r in readings:
        step = advance(state, r, offset, committed=committed, max_record_hours=744)
        decisions.append(step.decision)
        if step.state is not None:
            state = step.state
    return decisions, state


def test_a_replayed_reading_the_state_holds_re_emits_its_interval() -> None:
    """KAFKA-12508's trap: the table has the reading, its interval may never have been sent."""
    inputs = [(10, reading(0, "1000")), (11, reading(30, "1500")), (12, reading(60, "1700"))]
    first, state = _run(inputs)
    assert state is not None
    again, after = _run(inputs, state)  # the whole input replayed onto the state it produced
    assert again == first
    assert after == state


def test_a_real_duplicate_after_the_latest_is_ignored() -> None:
    inputs = [(10, reading(0, "1000")), (11, reading(30, "1500"))]
    _, state = _run(inputs)
    decisions, after = _run([(12, reading(30, "1500"))], state)
    assert decisions == [Duplicate()]
    assert after == state


def test_a_replay_from_any_committed_offset_gives_the_first_decisions() -> None:
    """Random streams of one meter (duplicates, stale readings, resets); the state is written
    after each reading, the worker dies after any reading and the input is replayed from any
    committed offset not after the crash point onto the state it left: the decisions of the
    replayed readings equal the first run's, and the state ends the same."""
    rng = random.Random(7)
    for _ in range(200):
        inputs: list[tuple[int, MeterReading]] = []
        value, minutes, offset = 1000, 0, rng.randrange(5)
        for _ in range(rng.randrange(2, 25)):
            roll = rng.random()
            if roll < 0.1 and inputs:
                inputs.append((offset, inputs[-1][1]))  # duplicate
            elif roll < 0.15 and inputs:
                inputs.append((offset, reading(minutes - 1, str(value + 7))))  # stale
            elif roll < 0.2:
                value = rng.randrange(0, 50)  # reset
                minutes += 30
                inputs.append((offset, reading(minutes, str(value))))
            else:
                value += rng.randrange(0, 900)
                minutes += rng.choice((15, 30, 60))
                inputs.append((offset, reading(minutes, str(value))))
            offset += rng.randrange(1, 4)  # other meters' readings in between
        first, final = _run(inputs)
        crash = rng.randrange(len(inputs))
        committed_at = rng.randrange(crash + 1)
        committed = inputs[committed_at][0]
        # the state the crash left: written up to `crash`, pruned with the committed offset
        _, left = _run(inputs[: crash + 1], committed=committed)
        replayed, end = _run(inputs[committed_at:], left, committed=committed)
        assert replayed == first[committed_at:]
        assert end is not None
        assert final is not None
        assert end.latest == final.latest


def test_pruning_keeps_the_last_point_before_the_committed_offset() -> None:
    state = MeterState((point(0, "1", 1), point(1, "2", 5), point(2, "3", 9)))
    pruned = state.then(point(3, "4", 12), committed=8)
    assert [p.offset for p in pruned.points] == [5, 9, 12]
    assert state.then(point(3, "4", 12), committed=None).points[0].offset == 1
    long = MeterState(tuple(point(i, str(i), i) for i in range(MAX_POINTS)))
    assert len(long.then(point(MAX_POINTS, "9999", MAX_POINTS), None).points) == MAX_POINTS


def _then_by_brute_force(
    points: tuple[RegisterPoint, ...], point: RegisterPoint, committed: int | None, cap: int
) -> tuple[RegisterPoint, ...]:
    """The pruning rule read literally: keep from the last point below `committed`, then at
    most `cap` (MAX_POINTS)."""
    kept = (*points, point)
    if committed is not None:
        below = [index for index, p in enumerate(kept) if p.offset < committed]
        kept = kept[below[-1] if below else 0 :]
    return kept[-cap:]


@settings(max_examples=300, deadline=None)
@given(
    steps=st.lists(
        st.tuples(
            st.integers(1, 40),  # offset gap to the previous point
            st.one_of(st.none(), st.integers(-5, 40)),  # committed: this far behind the point
            st.sampled_from(["1.553", "0", "12345678901234567890.123", "1E+3"]),
        ),
        min_size=1,
        max_size=60,
    ),
    cap=st.sampled_from([1, 3, 7, MAX_POINTS]),
)
def test_each_state_s_text_is_its_points_written_out(
    steps: list[tuple[int, int | None, str]], cap: int
) -> None:
    """`then` makes the next state's text from this one's: it must be the points as `dumps`
    writes them, and the points those the pruning rule keeps, after any run of writes."""
    offset = 0
    state: MeterState | None = None
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(readings_module, "MAX_POINTS", cap)
        for minute, (gap, behind, kwh) in enumerate(steps):
            offset += gap
            new = point(minute, kwh, offset)
            if state is None:
                state = MeterState((new,))
                continue
            committed = None if behind is None else offset - behind
            expected = _then_by_brute_force(state.points, new, committed, cap)
            state = state.then(new, committed)
            assert state.points == expected
            written = dumps([[utc_text(p.time), p.kwh, p.offset] for p in expected])
            assert encode_state(state) == written


def test_a_batch_reading_s_interval_carries_its_batch_fields() -> None:
    """So a dead letter of the interval (e.g. tariff_not_available) shows FAILED in the batch
    status of the reading that closed it (design §9); a reading outside a batch adds none."""
    batched = reading(30, "2053", batch_id="bat_0a1b", batch_index=7)
    record = interval_record(batched, point(0, "1.553", 4))
    assert (record["batch_id"], record["batch_index"]) == ("bat_0a1b", 7)
    assert "batch_id" not in interval_record(reading(30, "2053"), point(0, "1.553", 4))
    with pytest.raises(ValidationError, match="batch_index"):
        reading(30, "2053", batch_id="bat_0a1b", batch_index="7")  # strict, as on records
