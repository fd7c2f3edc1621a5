"""`parse_profile` reuses the validated versions of a direction's text it already accepted: its
answer (profile or error) is always `profile_from(loads(raw))`'s."""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from meterflow.contract import locations
from meterflow.contract.locations import parse_profile, profile_from
from meterflow.models import TariffDirection, TimeOfUseTariff, dumps, loads
from samples import NIGHT_AND_DAY, london, time_of_use


@pytest.fixture(autouse=True)
def empty_cache() -> Iterator[None]:
    locations._VALID_VERSIONS.clear()
    yield
    locations._VALID_VERSIONS.clear()


def profile(location_id: str, *bands: tuple[str, str, str], **fields: Any) -> dict[str, Any]:
    document: dict[str, Any] = london(
        time_of_use(*(bands or NIGHT_AND_DAY)),
        location_id=location_id,
        account_id="acc_1",
        **fields,
    )
    return document


def outcome(parse: Any, raw: bytes) -> Any:
    try:
        return parse(raw)
    except ValueError as exc:
        return f"ValueError: {exc}"


def same_answer(raw: bytes) -> Any:
    """`parse_profile(raw)` gives what the uncached path gives: the profile, or a ValueError
    with the same message; returns it."""
    expected = outcome(lambda r: profile_from(loads(r)), raw)
    assert outcome(parse_profile, raw) == expected
    return expected


def test_locations_sharing_a_tariff_get_their_own_profile_with_the_same_tariffs() -> None:
    first, second = (dumps(profile(loc)) for loc in ("loc_a", "loc_b"))
    a = parse_profile(first)
    b = parse_profile(second)  # from the cache
    assert len(locations._VALID_VERSIONS) == 1
    assert (a.location_id, b.location_id) == ("loc_a", "loc_b")
    assert b == profile_from(loads(second))
    assert b.tariffs == a.tariffs


def test_the_rest_of_the_document_is_still_validated() -> None:
    parse_profile(dumps(profile("loc_a")))
    same_answer(dumps(profile("loc_b", timezone="Mars/Olympus")))
    same_answer(dumps(profile("loc_b", currency_code="gbp")))
    same_answer(dumps(profile("loc_b", unexpected="field")))
    same_answer(dumps(profile("")))


def test_an_invalid_tariff_is_never_remembered() -> None:
    overlapping = dumps(profile("loc_a", ("00:00", "08:00", "0.10"), ("07:00", "24:00", "0.30")))
    for _ in range(2):
        same_answer(overlapping)
    assert locations._VALID_VERSIONS == {}


def test_tariffs_differing_only_in_a_decimal_s_digits_are_kept_apart() -> None:
    tenth = parse_profile(dumps(profile("loc_a", ("00:00", "24:00", "0.1"))))
    ten_hundredths = parse_profile(dumps(profile("loc_b", ("00:00", "24:00", "0.10"))))
    versions = [next(iter(p.tariffs.values()))[0] for p in (tenth, ten_hundredths)]
    rates = [v.rules[0].rate for v in versions if isinstance(v, TimeOfUseTariff)]
    assert [str(rate) for rate in rates] == ["0.1", "0.10"]
    assert len(locations._VALID_VERSIONS) == 2


def test_a_second_tariffs_key_is_never_taken_for_the_first() -> None:
    """A JSON decoder keeps the last of two equal keys: a valid `tariffs` text followed by an
    invalid one (spelled plainly or with an escape) must be judged on the invalid one."""
    valid = json.dumps(profile("loc_a")["tariffs"])
    invalid = json.dumps({"IMPORT": [{"type": "TIME_OF_USE", "rules": []}]})
    parse_profile(dumps(profile("loc_a")))  # the valid text is cached
    head = '{"location_id": "loc_b", "account_id": "acc_1", "timezone": "Europe/London", '
    for second_key in ('"tariffs"', '"\\u0074ariffs"'):
        raw = f'{head}"currency_code": "GBP", "tariffs": {valid}, {second_key}: {invalid}}}'
        assert str(same_answer(raw.encode())).startswith("ValueError")


def test_the_cache_keeps_at_most_its_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(locations, "TARIFFS_CACHED", 3)
    for index in range(5):
        rate = str(Decimal("0.10") + Decimal(index) / 100)
        same_answer(dumps(profile(f"loc_{index}", ("00:00", "24:00", rate))))
    assert len(locations._VALID_VERSIONS) == 3


def test_documents_the_shortcut_cannot_read_take_the_full_path() -> None:
    valid = dumps(profile("loc_a"))
    for raw in (
        b"[1, 2]",
        b'{"location_id": "loc_a"}',
        dumps({**profile("loc_a"), "tariffs": [1]}),  # `tariffs` not an object
        b"\xef\xbb\xbf" + valid,  # a BOM: `loads` reads it, msgspec does not
        b"{" + b'"\\ud800": 1, ' + valid[1:],  # a key with a lone surrogate escape
        b"not json",
    ):
        same_answer(raw)
    assert locations._VALID_VERSIONS == {}


def test_the_word_tariffs_elsewhere_is_read_as_what_it_is() -> None:
    raw = dumps({**profile("loc_a"), "devices": ["tariffs"]})
    assert same_answer(raw).devices == ["tariffs"]
    assert len(locations._VALID_VERSIONS) == 1


def with_export(location_id: str, rate: str, **fields: Any) -> dict[str, Any]:
    document = profile(location_id, **fields)
    document["tariffs"]["EXPORT"] = [
        {"type": "FIXED", "effective_from": "2024-01-01T00:00:00Z", "rate": rate}
    ]
    return document


def test_a_shared_import_version_is_validated_once_an_export_rate_each_time() -> None:
    first = parse_profile(dumps(with_export("loc_a", "0.15")))
    raw = dumps(with_export("loc_b", "0.16"))
    second = parse_profile(raw)  # the import text is known
    assert second == profile_from(loads(raw))
    assert len(locations._VALID_VERSIONS) == 3  # one import text, two export texts
    assert second.tariffs[TariffDirection.IMPORT][0] is first.tariffs[TariffDirection.IMPORT][0]
    assert second.tariffs[TariffDirection.EXPORT][0] != first.tariffs[TariffDirection.EXPORT][0]


def test_a_known_direction_beside_an_invalid_one_gives_the_full_path_s_error() -> None:
    parse_profile(dumps(with_export("loc_a", "0.15")))
    for broken in (
        {"type": "FIXED", "effective_from": "2024-01-01T00:00:00Z", "rate": "x"},  # the shape
        {
            "type": "TIME_OF_USE",
            "effective_from": "2024-01-01T00:00:00Z",
            "rules": [
                {"from": "00:00", "to": "08:00", "rate": "0.1"},
                {"from": "07:00", "to": "24:00", "rate": "0.2"},
            ],
        },  # the whole-version rules
    ):
        document = with_export("loc_b", "0.15")
        document["tariffs"]["EXPORT"] = [broken]
        assert str(same_answer(dumps(document))).startswith("ValueError")
    assert len(locations._VALID_VERSIONS) == 2  # nothing invalid remembered


def test_a_second_direction_key_is_never_taken_for_the_first() -> None:
    valid = json.dumps(profile("loc_a")["tariffs"]["IMPORT"])
    invalid = json.dumps([{"type": "TIME_OF_USE", "rules": []}])
    parse_profile(dumps(profile("loc_a")))  # the valid import text is cached
    head = '{"location_id": "loc_b", "account_id": "acc_1", "timezone": "Europe/London", '
    raw = f'{head}"currency_code": "GBP", "tariffs": {{"IMPORT": {valid}, "IMPORT": {invalid}}}}}'
    assert str(same_answer(raw.encode())).startswith("ValueError")
