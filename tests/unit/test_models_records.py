"""Shape rules of the contract's models that the cost engine relies on."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from meterflow.models import LocationProfile, MeterRecord, TimeOfUseRule

BASE: dict[str, Any] = {"location_id": "loc_1", "energy": 1}


@pytest.mark.parametrize(
    "stamp",
    ["2024-06-01T10:00:00Z", "2024-06-01T10:00:00+05:30", "2024-06-01T10:00:00.123456-03:00"],
)
def test_rfc3339_with_offset_is_accepted(stamp: str) -> None:
    record = MeterRecord.model_validate(BASE | {"start_time": stamp, "end_time": stamp})
    assert record.start_time.utcoffset() is not None


@pytest.mark.parametrize(
    "stamp",
    [
        "2024-06-01T10:00:00",
        "2024-06-01",
        1717236000,
        "1717236000",
        "2024-06-01T10:00Z",
        "yesterday",
    ],
)
def test_other_timestamps_are_rejected(stamp: Any) -> None:
    with pytest.raises(ValidationError):
        MeterRecord.model_validate(BASE | {"start_time": stamp, "end_time": "2024-06-01T10:00:00Z"})


def test_exactly_one_energy_form() -> None:
    times = {"start_time": "2024-06-01T10:00:00Z", "end_time": "2024-06-01T11:00:00Z"}
    MeterRecord.model_validate({"location_id": "l", "units": "W", "value": 1} | times)
    with pytest.raises(ValidationError):
        MeterRecord.model_validate({"location_id": "l", "units": "W"} | times)
    with pytest.raises(ValidationError):
        MeterRecord.model_validate({"location_id": "l"} | times)


def test_rule_times() -> None:
    assert TimeOfUseRule.model_validate({"from": "07:00", "to": "24:00", "rate": 1}).to == "24:00"
    for bad in (
        {"from": "08:00", "to": "07:00"},
        {"from": "24:00", "to": "24:00"},
        {"from": "7:00", "to": "08:00"},
    ):
        with pytest.raises(ValidationError):
            TimeOfUseRule.model_validate(bad | {"rate": 1})


def test_unknown_zone_and_keys_are_rejected() -> None:
    base = {"location_id": "l", "account_id": "a", "currency_code": "GBP"}
    with pytest.raises(ValidationError):
        LocationProfile.model_validate(base | {"timezone": "Mars/Olympus"})
    with pytest.raises(ValidationError):
        LocationProfile.model_validate(base | {"timezone": "UTC", "tarifs": {}})
