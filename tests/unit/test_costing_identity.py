"""Design §8.1: a record with `record_reference_id` is identified by (account, mode, object,
reference) alone, whatever its transport, position or carried `id`; without one, §4 holds.

The one rule is `costing.meter_record_id` (its digest `ids.meter_record_id_for_reference`);
these tests price through `price_payload`, the path every transport takes."""

from __future__ import annotations

from typing import Any

import pytest
from costing_support import NOW, encode, fixed, no_market, profile, record
from hypothesis import given, settings
from hypothesis import strategies as st

from meterflow import ids
from meterflow.costing import price_payload, referenced_record_id
from meterflow.models import DeadLetter, EnergyCost, LocationProfile, MeterRecord, SourceRef, dumps
from meterflow.models._base import LONE_SURROGATE

TARIFFS = {"IMPORT": [fixed("0.25")], "EXPORT": [fixed("0.05")]}
TEST_MODE = profile(TARIFFS, devices=["dev_1", "dev_2"])
LIVE_MODE = profile(TARIFFS, devices=["dev_1", "dev_2"], live_mode=True)


def _other_account() -> LocationProfile:
    return TEST_MODE.model_copy(update={"account_id": "acc_other"})


def _price(
    body: dict[str, Any], location: LocationProfile = TEST_MODE, source: SourceRef | None = None
) -> EnergyCost:
    result = price_payload(
        encode(body),
        profiles=lambda lid: location if lid == location.location_id else None,
        market_prices=no_market,
        now=NOW,
        source=source,
    )
    assert isinstance(result, EnergyCost), result
    return result


def _referenced(reference: str = "R-1", **extra: Any) -> dict[str, Any]:
    body = record("2024-06-01T10:00:00Z", "2024-06-01T11:00:00Z", record_reference_id=reference)
    del body["id"]
    body.update(extra)
    return body


def _at(offset: int, partition: int = 0, topic: str = "meter-records") -> SourceRef:
    return SourceRef(topic=topic, partition=partition, offset=offset)


def test_the_reference_fixes_the_ids() -> None:
    cost = _price(_referenced(), source=_at(7))
    expected = ids.meter_record_id_for_reference("acc_test", False, "loc_test", "R-1")
    assert cost.meter_record_id == expected
    assert cost.id == ids.energy_cost_id(expected)
    assert expected.startswith("mre_")
    assert cost.id.startswith("ecs_")


def test_the_reference_wins_over_a_carried_id_and_over_the_position() -> None:
    by_offset = _price(_referenced(), source=_at(1))
    with_id = _price(_referenced(id="mre_given_by_producer"), source=_at(2))
    replayed = _price(_referenced(id=ids.meter_record_id_for_offset("meter-records", 0, 1)))
    without_source = _price(_referenced())  # the API's path: no position, no id
    assert {by_offset.id, with_id.id, replayed.id, without_source.id} == {by_offset.id}


def test_the_object_is_the_device_when_given() -> None:
    on_device = _price(_referenced(device_id="dev_1"))
    assert on_device.meter_record_id == ids.meter_record_id_for_reference(
        "acc_test", False, "dev_1", "R-1"
    )
    on_other_device = _price(_referenced(device_id="dev_2"))
    on_location = _price(_referenced())
    assert len({on_device.id, on_other_device.id, on_location.id}) == 3


def test_account_mode_and_reference_each_make_a_different_record() -> None:
    base = _price(_referenced())
    other_account = _price(_referenced(), _other_account())
    other_mode = _price(_referenced(), LIVE_MODE)
    other_reference = _price(_referenced("R-2"))
    assert len({base.id, other_account.id, other_mode.id, other_reference.id}) == 4


def test_content_is_not_identity() -> None:
    """A correction (different energy, instants, direction) keeps the id (design §8.3)."""
    first = _price(_referenced())
    corrected = _price(
        _referenced(energy="3", end_time="2024-06-01T11:30:00Z", tariff_direction="EXPORT")
    )
    assert corrected.id == first.id
    assert corrected.data.cost.value != first.data.cost.value


def test_without_a_reference_section_4_holds() -> None:
    body = _referenced()
    del body["record_reference_id"]
    assert _price(body, source=_at(5)).meter_record_id == ids.meter_record_id_for_offset(
        "meter-records", 0, 5
    )
    assert _price(body | {"id": "mre_carried"}, source=_at(5)).meter_record_id == "mre_carried"
    with pytest.raises(ValueError, match="source"):
        _price(body)


def test_referenced_record_id_is_what_pricing_gives() -> None:
    """The adapters' id before pricing (a batch receipt) equals the priced one."""
    body = _referenced(device_id="dev_2")
    parsed = MeterRecord.model_validate(body)
    assert referenced_record_id(parsed, "acc_test", False) == _price(body).meter_record_id
    del body["record_reference_id"]
    assert referenced_record_id(MeterRecord.model_validate(body), "acc_test", False) is None


def test_identity_parts_cannot_run_into_each_other() -> None:
    """Free-text ids are encoded, not joined: moving text between parts changes the id."""
    assert ids.meter_record_id_for_reference(
        "acc", False, "loc\x1fR", "1"
    ) != ids.meter_record_id_for_reference("acc", False, "loc", "R\x1f1")
    assert ids.meter_record_id_for_reference(
        "acc", False, "a", "b"
    ) != ids.meter_record_id_for_reference("acc", True, "a", "b")


@pytest.mark.parametrize("field", ["record_reference_id", "session_reference_id", "location_id"])
def test_a_lone_surrogate_anywhere_in_a_record_is_an_invalid_record(field: str) -> None:
    """A JSON string may decode to one (`"\\ud800"`); it is refused with the JSON, before any
    digest, and before a result echoing it could fail to be written."""
    document = {
        "location_id": "loc_test",
        "energy": 1,
        "start_time": "2024-06-01T10:00:00Z",
        "end_time": "2024-06-01T11:00:00Z",
        field: "?",
    }
    result = price_payload(
        dumps(document).replace(b'"?"', b'"\\ud800"'),
        profiles=lambda _: TEST_MODE,
        market_prices=no_market,
        now=NOW,
    )
    assert isinstance(result, DeadLetter)
    assert result.error.code == "invalid_record"
    assert result.error.message == f"not valid JSON: {LONE_SURROGATE}"


_TEXT = st.text(st.characters(max_codepoint=0x2FF, exclude_categories=("Cc", "Cs")))
"""Printable text: Cc is exactly the C0 controls, DEL and the C1 controls the model refuses."""
_REFERENCE = _TEXT.filter(lambda text: 1 <= len(text) <= 256)


@settings(max_examples=60, deadline=None)
@given(
    reference=_REFERENCE,
    offsets=st.lists(st.integers(min_value=0, max_value=2**40), min_size=2, max_size=4),
    partitions=st.lists(st.integers(min_value=0, max_value=63), min_size=2, max_size=4),
    carried=st.none() | st.from_regex(r"mre_[A-Za-z0-9_]{1,24}", fullmatch=True),
)
def test_same_identity_same_ids_whatever_the_transport(
    reference: str, offsets: list[int], partitions: list[int], carried: str | None
) -> None:
    body = _referenced(reference)
    if carried is not None:
        body["id"] = carried
    results = {
        _price(body, source=_at(offset, partition)).id
        for offset, partition in zip(offsets, partitions, strict=False)
    }
    results.add(_price(body, source=_at(offsets[0], topic="stdin")).id)  # `meterflow cost`
    results.add(_price(_referenced(reference)).id)  # the API: no position, no id
    assert len(results) == 1


@settings(max_examples=60, deadline=None)
@given(
    first=st.tuples(st.sampled_from(["acc_a", "acc_b"]), st.booleans(), _TEXT, _REFERENCE),
    second=st.tuples(st.sampled_from(["acc_a", "acc_b"]), st.booleans(), _TEXT, _REFERENCE),
)
def test_different_identity_different_ids(
    first: tuple[str, bool, str, str], second: tuple[str, bool, str, str]
) -> None:
    same = ids.meter_record_id_for_reference(*first) == ids.meter_record_id_for_reference(*second)
    assert same == (first == second)


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        ("record_reference_id", "x" * 257, "at most 256"),
        ("record_reference_id", "line\nbreak", "U+000A at 4"),
        ("record_reference_id", "nul\x00", "U+0000"),
        ("record_reference_id", "del\x7f", "U+007F"),
        ("record_reference_id", "c1\x85", "U+0085"),
        ("record_reference_id", "", "at least 1"),
        ("session_reference_id", "x" * 257, "at most 256"),
        ("session_reference_id", "tab\there", "U+0009"),
    ],
)
def test_a_bad_reference_is_an_invalid_record(field: str, value: str, says: str) -> None:
    body = _referenced()
    body[field] = value
    result = price_payload(
        encode(body), profiles=lambda _: TEST_MODE, market_prices=no_market, now=NOW
    )
    assert isinstance(result, DeadLetter)
    assert result.error.code == "invalid_record"
    assert field in result.error.message
    assert says in result.error.message


def test_the_longest_and_unusual_printable_references_are_fine() -> None:
    for reference in ["x" * 256, "é ünïcødé 参考 🙂", " spaced out ", "a/b#c?d=e"]:
        assert _price(_referenced(reference)).data.record_reference_id == reference
