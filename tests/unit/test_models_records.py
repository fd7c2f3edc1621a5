"""Shape rules of the contract's models that the cost engine relies on."""

from __future__ import annotations

import itertools
import re
from datetime import datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from meterflow.models import LocationProfile, MeterReading, MeterRecord, TimeOfUseRule, profiles

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


def test_the_wall_clock_table_is_the_rule_and_minutes_are_as_computed() -> None:
    """Brute force over every 5-character text of digits and colons: the look-up table the
    validator reads holds exactly the texts the schema's HH:MM pattern accepts (read as JSON
    Schema reads it), with their minutes; a final newline or other digits are refused."""
    pattern = re.compile(profiles._HHMM_PATTERN, re.ASCII)
    accepted = {
        text
        for text in map("".join, itertools.product("0123456789:", repeat=5))
        if pattern.fullmatch(text)
    }
    assert accepted == set(profiles._MINUTES)
    for text in accepted:
        hours, minutes = text.split(":")
        assert profiles.minutes_of(text) == int(hours) * 60 + int(minutes)
    for bad in ("07:00\n", "٠٧:٠٠", " 07:00"):  # the regex's `$` once let the first through
        with pytest.raises(ValidationError, match="not a wall-clock time"):
            TimeOfUseRule.model_validate({"from": bad, "to": "08:00", "rate": 1})


def test_unknown_zone_and_keys_are_rejected() -> None:
    base = {"location_id": "l", "account_id": "a", "currency_code": "GBP"}
    with pytest.raises(ValidationError):
        LocationProfile.model_validate(base | {"timezone": "Mars/Olympus"})
    with pytest.raises(ValidationError):
        LocationProfile.model_validate(base | {"timezone": "UTC", "tarifs": {}})


_PYDANTIC_INSTANT = TypeAdapter(datetime)
"""pydantic's own parse of an instant: what `AwareDatetime` did before it shared parses."""


@settings(max_examples=400)
@given(
    st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)),  # noqa: DTZ001
    st.integers(0, 6),
    st.sampled_from(["Z", "+", "-"]),
    st.integers(0, 29),
    st.integers(0, 69),
)
def test_shared_instants_read_as_pydantic_reads_them(
    moment: datetime, digits: int, sign: str, hours: int, minutes: int
) -> None:
    """The common RFC 3339 shape is parsed by `datetime.fromisoformat` and shared; for every
    such text (odd offsets included) the value is pydantic's, or both refuse it."""
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if digits:
        text += "." + f"{moment.microsecond:06d}"[:digits]
    text += "Z" if sign == "Z" else f"{sign}{hours:02d}:{minutes:02d}"
    try:
        expected: datetime | None = _PYDANTIC_INSTANT.validate_python(text)
    except ValidationError:
        expected = None
    try:
        found: datetime | None = MeterRecord.model_validate(
            BASE | {"start_time": text, "end_time": text}
        ).start_time
    except ValidationError:
        found = None
    if expected is None:
        assert found is None
        return
    assert found == expected
    assert found is not None
    assert found.utcoffset() == expected.utcoffset()
    assert found.isoformat() == expected.isoformat()


def test_one_text_is_one_shared_instant() -> None:
    stamp = "2024-06-01T10:30:00Z"
    first = MeterRecord.model_validate(BASE | {"start_time": stamp, "end_time": stamp})
    second = MeterRecord.model_validate(BASE | {"start_time": stamp, "end_time": stamp})
    assert first.start_time is second.start_time is first.end_time


def test_a_naive_datetime_built_in_code_is_rejected() -> None:
    with pytest.raises(ValidationError, match="must carry a UTC offset"):
        MeterRecord.model_validate(
            BASE | {"start_time": datetime(2024, 6, 1), "end_time": datetime(2024, 6, 1)}  # noqa: DTZ001
        )


@pytest.mark.parametrize("energy", ["NaN", "Infinity", "-Infinity", "sNaN"])
def test_money_is_finite(energy: str) -> None:
    """Neither a record's nor a profile's money is NaN or infinite: not a decimal text, and
    pydantic's own `finite_number` check (a `Decimal`'s default) behind it."""
    stamp = "2024-06-01T10:00:00Z"
    with pytest.raises(ValidationError, match="is not a decimal number"):
        MeterRecord.model_validate(
            BASE | {"energy": energy, "start_time": stamp, "end_time": stamp}
        )
    with pytest.raises(ValidationError, match="finite"):
        MeterRecord.model_validate(
            BASE | {"energy": Decimal(energy), "start_time": stamp, "end_time": stamp}
        )
    with pytest.raises(ValidationError):
        TimeOfUseRule.model_validate({"from": "07:00", "to": "08:00", "rate": energy})


DECIMAL_TEXTS = ["1_000", " 2", "2 ", "١٢", "1e", "+1", "0x10", "1,5", "", "1.5\n"]
"""Texts the schema's decimal string refuses; `Decimal` itself reads six of them (`1_000`, the
spaces, other scripts' digits, `+1`, a final newline)."""


@pytest.mark.parametrize("text", DECIMAL_TEXTS)
def test_numbers_as_text_are_the_schemas_decimal_strings(text: str) -> None:
    """A record's, a reading's or a profile's number given as a string must be one the
    published schema accepts: `"1_000"` was priced as 1,000 kWh, Arabic-Indic digits as
    theirs, a rate with spaces as the rate (found by probing the running system)."""
    stamp = "2024-06-01T10:00:00Z"
    record = BASE | {"start_time": stamp, "end_time": stamp}
    for document, field in (
        (record | {"energy": text}, "energy"),
        (record | {"energy": None, "units": "WH", "value": text}, "value"),
        (record | {"confidence": text}, "confidence"),
    ):
        with pytest.raises(ValidationError, match=rf"\n{field}\n .* is not a"):
            MeterRecord.model_validate(document)
    with pytest.raises(ValidationError, match="is not a decimal number"):
        TimeOfUseRule.model_validate({"from": "07:00", "to": "08:00", "rate": text})
    reading = {"location_id": "loc_1", "time": stamp, "value": text, "units": "WH"}
    with pytest.raises(ValidationError, match="is not a decimal number"):
        MeterReading.model_validate(reading)


@pytest.mark.parametrize("text", ["1", "-0.25", ".5", "5.", "1E+3", "1e-3", "007"])
def test_decimal_strings_of_the_schema_are_read(text: str) -> None:
    stamp = "2024-06-01T10:00:00Z"
    record = MeterRecord.model_validate(
        BASE | {"energy": text, "start_time": stamp, "end_time": stamp}
    )
    assert record.energy == Decimal(text)
    rule = TimeOfUseRule.model_validate({"from": "07:00", "to": "08:00", "rate": text})
    assert rule.rate == Decimal(text)


@pytest.mark.parametrize("month", [True, "2", 3.0, Decimal(3)])
def test_months_are_json_integers(month: Any) -> None:
    """`true` was read as January, "2" and 3.0 as months."""
    with pytest.raises(ValidationError, match="months"):
        TimeOfUseRule.model_validate({"from": "07:00", "to": "08:00", "rate": 1, "months": [month]})


@pytest.mark.parametrize("flag", [1, 0, "yes", "true", Decimal("1E-999999"), 1.0])
def test_non_persistent_is_a_json_boolean(flag: Any) -> None:
    """A number or a string is refused, never read as one: `"yes"` read as true would silently
    leave a billable record unstored, and `1E-999999` read as false was echoed in `request`,
    which the database cannot store."""
    stamp = "2024-06-01T10:00:00Z"
    with pytest.raises(ValidationError, match="non_persistent"):
        MeterRecord.model_validate(
            BASE | {"start_time": stamp, "end_time": stamp, "non_persistent": flag}
        )


def test_a_dynamic_version_with_no_prices_is_refused() -> None:
    """`"prices": []` was accepted, and every record of the version then failed with
    `tariff_not_available` instead of the profile being refused at `PUT`."""
    version = {"type": "DYNAMIC", "prices": [], "effective_from": "2024-01-01T00:00:00Z"}
    document = {
        "location_id": "loc_1",
        "account_id": "acc_1",
        "timezone": "Europe/London",
        "currency_code": "GBP",
        "tariffs": {"IMPORT": [version]},
    }
    with pytest.raises(ValidationError, match="prices"):
        LocationProfile.model_validate(document)
