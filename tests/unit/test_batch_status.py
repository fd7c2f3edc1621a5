"""Batch status (design §9), the pure parts: the sink's reading of dead letters of batch
records, the batch's bookkeeping of them, and the API's status rule."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from meterflow.api.batches import record_status, refused
from meterflow.api.schemas import RecordStatus
from meterflow.models import ErrorCode, SourceRef, dead_letter, dumps
from meterflow.sink.batch import Batch
from meterflow.sink.batch_failures import Identity, decode_batch_failure
from meterflow.sink.rows import Source

T1 = datetime(2026, 5, 1, 12, tzinfo=UTC)
T2 = T1 + timedelta(seconds=5)
WHERE = Source("dead-letters", 0, 7)


def record(**extra: Any) -> dict[str, Any]:
    return {
        "location_id": "loc_1",
        "energy": "1",
        "start_time": "2026-05-01T00:00:00Z",
        "end_time": "2026-05-01T00:30:00Z",
        **extra,
    }


def letter(payload: Any, when: datetime = T1, code: ErrorCode = ErrorCode.UNKNOWN_DEVICE) -> bytes:
    raw = payload if isinstance(payload, bytes) else dumps(payload)
    source = SourceRef(topic="meter-records", partition=0, offset=3)
    return dumps(dead_letter(raw, code, "device 'dev_x' is not a device", source, when))


def test_a_batch_records_letter_becomes_its_row() -> None:
    failure = decode_batch_failure(letter(record(batch_id="bat_ab12", batch_index=4)), WHERE)
    assert failure is not None
    assert failure.key[:2] == ("bat_ab12", 4)
    assert failure.code == "unknown_device"
    assert failure.time_created == T1
    assert failure.source == WHERE


def test_the_sinks_own_letter_of_a_batch_records_result_counts_too() -> None:
    cost = {"id": "ecs_1", "request": record(batch_id="bat_ab12", batch_index=0)}
    failure = decode_batch_failure(letter(cost, code=ErrorCode.INVALID_RECORD), WHERE)
    assert failure is not None
    assert failure.key[:2] == ("bat_ab12", 0)


def test_a_letter_says_which_record_it_is() -> None:
    """What the database matches with the batch row (`Identity`): the meter (location and
    object), an interval record's id or reference, a reading's time, a derived interval's end."""
    by_id = record(id="mre_1", batch_id="bat_1", batch_index=0)
    referenced = record(
        device_id="dev_1", record_reference_id="R7", batch_id="bat_1", batch_index=1
    )
    reading = {
        "location_id": "loc_1",
        "device_id": "dev_1",
        "time": "2026-05-01T10:42:17+02:00",
        "value": "1553",
        "units": "WH",
        "batch_id": "bat_2",
        "batch_index": 0,
    }
    identities = [
        decode_batch_failure(letter(document), WHERE) for document in (by_id, referenced, reading)
    ]
    end = datetime(2026, 5, 1, 0, 30, tzinfo=UTC)
    assert [i.identity if i else None for i in identities] == [
        Identity(record_id="mre_1", object_id="loc_1", at=end, location_id="loc_1"),
        Identity(reference="R7", object_id="dev_1", at=end, location_id="loc_1"),
        Identity(
            object_id="dev_1", at=datetime(2026, 5, 1, 8, 42, 17, tzinfo=UTC), location_id="loc_1"
        ),
    ]
    for unusable in ("2026-05-01T10:42:17", "0001-01-01T00:00:00+14:00", "not a time"):
        failure = decode_batch_failure(letter(reading | {"time": unusable}), WHERE)
        assert failure is not None
        assert failure.identity.at is None  # matches no reading row, never stops the sink


def test_other_letters_and_garbage_are_passed_over() -> None:
    passed_over = [
        None,
        b"",
        b"not json batch_id",
        letter(record()),  # not a batch record
        letter(record(batch_id="bat_ab12")),  # no index
        letter(record(batch_id="bat_ab12", batch_index=True)),
        letter(record(batch_id="bat_ab12", batch_index=-1)),
        letter(record(batch_id="bat_ab12", batch_index=2**31)),
        letter(record(batch_id="BAT_1", batch_index=1)),
        letter(b"\xff\xfe batch_id"),  # a base64 payload
        dumps({"error": "x", "payload": '{"batch_id": "bat_1", "batch_index": 1}'}),
        # a number no Decimal holds: InvalidOperation out of the decoder stopped the sink
        letter(b'{"batch_id": "bat_1", "batch_index": 1, "energy": 1e9999999999999999999}'),
    ]
    assert [decode_batch_failure(value, WHERE) for value in passed_over] == [None] * 12


def test_a_message_postgresql_could_not_store_is_made_storable() -> None:
    raw = dumps(record(batch_id="bat_ab12", batch_index=1))
    source = SourceRef(topic="meter-records", partition=0, offset=3)
    bad = dead_letter(raw, ErrorCode.INVALID_RECORD, "nul \x00 and \ud800", source, T1)
    encoded = json.dumps(bad.model_dump(mode="json")).encode()  # ASCII: \ud800 escaped
    failure = decode_batch_failure(encoded, WHERE)
    assert failure is not None
    failure.message.encode("utf-8")  # no lone surrogate left
    assert "\x00" not in failure.message


def test_a_batch_keeps_the_newer_letter_per_record_also_when_merged() -> None:
    old = decode_batch_failure(letter(record(batch_id="bat_1", batch_index=0), T1), WHERE)
    new = decode_batch_failure(letter(record(batch_id="bat_1", batch_index=0), T2), WHERE)
    other = decode_batch_failure(letter(record(batch_id="bat_1", batch_index=1), T1), WHERE)
    first, second = Batch(), Batch()
    first.add_batch_failure(new, "dead-letters", 0, 1, 0.0)
    first.add_batch_failure(old, "dead-letters", 0, 2, 0.0)  # older: read, not kept
    first.add_batch_failure(None, "dead-letters", 0, 3, 0.0)  # another letter: read only
    second.add_batch_failure(other, "dead-letters", 1, 9, 0.0)
    assert new is not None
    assert other is not None
    assert first.batch_failures == {new.key: new}
    assert len(first) == 3
    assert first.next_offsets == {("dead-letters", 0): 4}
    merged = second.then(first)
    assert merged.batch_failures == {new.key: new, other.key: other}
    assert first.then(Batch()).batch_failures == first.batch_failures


def row(**values: Any) -> dict[str, Any]:
    base = {
        "record_index": 2,
        "meter_record_id": "mre_1",
        "record_reference_id": None,
        "error_code": None,
        "error_message": None,
        "cost_id": None,
        "cost_time": None,
        "late_code": None,
        "late_message": None,
        "late_time": None,
        "baseline": False,
    }
    return base | values


LATE = {"late_code": "unknown_device", "late_message": "no such device"}


def test_status_rule() -> None:
    refused = record_status(
        row(meter_record_id=None, error_code="invalid_record", error_message="bad")
    )
    assert refused.status is RecordStatus.FAILED
    assert refused.error is not None
    assert refused.error.code == "invalid_record"
    assert refused.meter_record_id is None

    assert record_status(row()).status is RecordStatus.ACCEPTED
    priced = record_status(row(cost_id="ecs_1", cost_time=T1))
    assert (priced.status, priced.energy_cost_id, priced.error) == (
        RecordStatus.PRICED,
        "ecs_1",
        None,
    )

    failed = record_status(row(**LATE, late_time=T1))
    assert failed.status is RecordStatus.FAILED
    assert failed.error is not None
    assert failed.error.code == "unknown_device"
    # a correction that failed after an earlier version was stored: FAILED, the result stays
    corrected = record_status(row(**LATE, late_time=T2, cost_id="ecs_1", cost_time=T1))
    assert (corrected.status, corrected.energy_cost_id) == (RecordStatus.FAILED, "ecs_1")
    # a replayed dead letter priced after its failure: PRICED
    replayed = record_status(row(**LATE, late_time=T1, cost_id="ecs_1", cost_time=T2))
    assert (replayed.status, replayed.error) == (RecordStatus.PRICED, None)


def test_status_rule_of_a_reading() -> None:
    """A reading has no ids at acceptance (docs/api.md, Batch status of readings): PRICED with
    its interval's ids once found, PRICED with none when it was the baseline, and a dead
    letter (stale_reading, register_reset) wins over a baseline."""
    accepted = record_status(row(meter_record_id=None))
    assert (accepted.status, accepted.meter_record_id) == (RecordStatus.ACCEPTED, None)
    priced = record_status(row(meter_record_id="mre_9", cost_id="ecs_9", cost_time=T1))
    assert (priced.status, priced.meter_record_id, priced.energy_cost_id) == (
        RecordStatus.PRICED,
        "mre_9",
        "ecs_9",
    )
    baseline = record_status(row(meter_record_id=None, baseline=True))
    assert (baseline.status, baseline.energy_cost_id, baseline.error) == (
        RecordStatus.PRICED,
        None,
        None,
    )
    reset = {"late_code": "register_reset", "late_message": "went down"}
    after_reset = record_status(row(meter_record_id=None, baseline=True, **reset, late_time=T1))
    assert after_reset.status is RecordStatus.FAILED
    assert after_reset.error is not None
    assert after_reset.error.code == "register_reset"


def test_a_refused_records_text_is_stored_without_nul_or_lone_surrogates() -> None:
    entry = refused(5, "ref\x00\udc00", "invalid_record: <\x00: extra inputs are not permitted")
    assert entry.error_code == "invalid_record"
    assert entry.error_message == "<\ufffd: extra inputs are not permitted"
    assert entry.record_reference_id == "ref\ufffd?"
