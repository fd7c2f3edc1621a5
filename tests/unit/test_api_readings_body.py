"""`PUT /meters/cumulative/epoch` item by item (api/readings.py): Flatpeak's body becomes
MeterReadings with the stream's rules, bad items are `invalid_record`, and each accepted
reading's status key bounds where its interval can start."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from meterflow.api.readings import check_reading, reading_keys
from meterflow.api.schemas import CumulativeReadings
from meterflow.models import loads

T = 1_721_991_392  # Flatpeak's example: 2024-07-26T10:56:32Z


def body(**fields: Any) -> CumulativeReadings:
    base: dict[str, Any] = {"location_id": "loc_r", "units": "WH", "data": []}
    return CumulativeReadings.model_validate(base | fields)


def check(item: Any, **fields: Any) -> tuple[Any, str | None, str | None]:
    return check_reading(body(**fields), item, "bat_0f", 3)


def test_an_item_becomes_a_meter_reading_with_the_body_s_meter_and_the_batch_fields() -> None:
    accepted, reference, error = check(
        {"time": T, "value": Decimal("1553.5"), "record_reference_id": "MET1"},
        device_id="dev_1",
        session_reference_id="S1",
        direction="EXPORT",
        units="KWH",
    )
    assert error is None
    assert reference == "MET1"
    assert accepted is not None
    assert loads(accepted.payload) == {
        "location_id": "loc_r",
        "device_id": "dev_1",
        "session_reference_id": "S1",
        "record_reference_id": "MET1",
        "energy_flow_direction": "OUTBOUND",
        "time": "2024-07-26T10:56:32Z",
        "value": Decimal("1553.5"),
        "units": "KWH",
        "batch_id": "bat_0f",
        "batch_index": 3,
    }
    assert accepted.reading.kwh == Decimal("1553.5")


def test_import_is_inbound_and_the_default() -> None:
    for fields in ({}, {"direction": "IMPORT"}):
        accepted, _, _ = check({"time": T, "value": 1}, **fields)
        assert accepted is not None
        assert accepted.reading.energy_flow_direction.value == "INBOUND"


@pytest.mark.parametrize(
    ("item", "says"),
    [
        ({"time": T, "value": -1}, "value"),  # a register is never negative
        ({"time": T, "value": "12"}, "must be a number"),  # the spec says number
        ({"time": T, "value": "abc"}, "must be a number"),
        ({"time": T, "value": True}, "must be a number"),
        ({"time": "2024-07-26T10:56:32", "value": 1}, "Unix seconds"),  # no offset, not epoch
        ({"time": Decimal("1721991392.5"), "value": 1}, "Unix seconds"),
        ({"time": -1, "value": 1}, "out of range"),
        ({"time": 10**12, "value": 1}, "out of range"),
        ({"value": 1}, "Unix seconds"),
        ({"time": T}, "must be a number"),
        ({"time": T, "value": 1, "end_time": T}, "unknown field"),
        ({"time": T, "value": 1, "record_reference_id": "a\x00b"}, "record_reference_id"),
        ([T, 1], "JSON object"),
    ],
)
def test_a_bad_item_is_an_invalid_record(item: Any, says: str) -> None:
    accepted, _, error = check(item)
    assert accepted is None
    assert error is not None
    assert error.startswith("invalid_record: ")
    assert says in error


def test_a_nul_reference_is_quoted_as_null() -> None:
    _, reference, error = check({"time": T, "value": 1, "record_reference_id": "a\x00"})
    assert (reference, error is not None) == (None, True)


def test_a_session_with_control_characters_refuses_the_body() -> None:
    with pytest.raises(ValidationError):
        body(session_reference_id="s\x01")


def test_status_keys_bound_each_interval_s_start_by_the_previous_earlier_reading() -> None:
    times = [T + 60, T, T + 120, T + 120]  # sorted by the handler; a tie keeps its order
    accepted = [
        check_reading(body(), {"time": t, "value": i}, "bat_0f", i)[0] for i, t in enumerate(times)
    ]
    ordered = sorted((a for a in accepted if a is not None), key=lambda a: a.reading.time)
    keys = reading_keys(ordered, max_record_hours=744)

    def at(seconds: int) -> datetime:
        return datetime.fromtimestamp(seconds, UTC)

    assert keys[1].after == at(T) - timedelta(hours=744)  # the first: the longest record back
    assert keys[0].after == at(T)
    assert keys[2].after == keys[3].after == at(T + 60)  # the same time: the one before both
    assert {(k.location_id, k.object_id, k.energy_flow_direction) for k in keys.values()} == {
        ("loc_r", "loc_r", "INBOUND")
    }
    assert keys[2].time == at(T + 120)
