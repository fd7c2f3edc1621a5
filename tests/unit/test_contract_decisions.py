"""The contract's one decision per input topic, and the stored form of a profile: every reader
(stream table, API view, sink mirror) and every writer (API PUT, CLI) goes through these."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from meterflow.contract.columns import LOCATION_COLUMNS, location_row
from meterflow.contract.decisions import Apply, Delete, Reject
from meterflow.contract.keys import key_text, location_key, market_prices_key, market_prices_key_of
from meterflow.contract.locations import decide_location, parse_profile
from meterflow.contract.market_prices import decide_market_prices
from meterflow.models import LocationProfile, dumps, loads
from meterflow.stream.producing import demo_profile
from samples import market_day

# --- locations ---------------------------------------------------------------------------------


def test_a_valid_profile_applies_as_published_and_a_tombstone_deletes() -> None:
    raw = dumps(demo_profile("loc_a"))
    decision = decide_location(b"loc_a", raw)
    assert isinstance(decision, Apply)
    assert (decision.key, decision.raw) == ("loc_a", raw)
    assert decision.document == LocationProfile.model_validate(loads(raw))
    assert decide_location(b"loc_a", None) == Delete("loc_a")


def test_a_profile_breaking_a_whole_profile_rule_is_rejected_naming_the_gap() -> None:
    gap = demo_profile("loc_a")
    gap["tariffs"]["IMPORT"][0]["rules"].pop()  # 19:00-24:00 no longer covered
    decision = decide_location(b"loc_a", dumps(gap))
    assert isinstance(decision, Reject)
    assert "19:00" in decision.reason


def test_a_profile_under_another_key_is_rejected() -> None:
    decision = decide_location(b"loc_b", dumps(demo_profile("loc_a")))
    assert isinstance(decision, Reject)
    assert decision.reason == "key 'loc_b' is not the location profile's own key 'loc_a'"


@pytest.mark.parametrize(
    ("key", "value", "says"),
    [
        (None, dumps(demo_profile("loc_a")), "keyed"),
        (b"", dumps(demo_profile("loc_a")), "keyed"),
        (b"\xff", None, "keyed"),  # a tombstone whose key no profile can have
        (None, None, "keyed"),
        (b"loc_a", b"{not json", "invalid location profile"),
        (b"loc_a", b"\xff\xfe", "invalid location profile"),
        (b"loc_a", b"[1, 2]", "invalid location profile"),
        (b"loc_a", b"[" * 100_000, "invalid location profile"),  # absurd nesting
        (b"loc_a", dumps(demo_profile("loc_a") | {"tarifs": {}}), "tarifs"),
        (b"loc_a", dumps(demo_profile("loc_a") | {"timezone": "Mars/Base"}), "timezone"),
    ],
)
def test_what_no_reader_may_apply_is_rejected_with_the_reason(
    key: bytes | None, value: bytes | None, says: str
) -> None:
    decision = decide_location(key, value)
    assert isinstance(decision, Reject)
    assert says in decision.reason


def test_a_validation_reason_names_the_field_in_one_line() -> None:
    profile = demo_profile("loc_a")
    del profile["timezone"]
    decision = decide_location(b"loc_a", dumps(profile))
    assert isinstance(decision, Reject)
    assert decision.reason == "invalid location profile: timezone: Field required"


def test_parse_profile_applies_the_same_rules_as_the_decision() -> None:
    gap = demo_profile("loc_a")
    gap["tariffs"]["IMPORT"][0]["rules"].pop()
    with pytest.raises(ValueError, match="19:00"):
        parse_profile(dumps(gap))
    assert parse_profile(dumps(demo_profile("loc_a"))).location_id == "loc_a"


def test_the_mirror_stores_the_published_json_with_decimals_as_numbers() -> None:
    """Both writers of the mirror (sink and API PUT) write this row: the stored profile no
    longer depends on the writer (the PUT used to store rates as JSON strings)."""
    document = demo_profile("loc_a")
    document["tariffs"]["EXPORT"][0]["rate"] = "0.150"  # a string in, a number out
    profile = LocationProfile.model_validate(document)
    row = dict(zip(LOCATION_COLUMNS, location_row(profile), strict=True))
    assert row["location_id"] == "loc_a"
    assert row["profile"] == dumps(profile).decode()
    assert '"rate":0.150' in row["profile"]
    assert loads(row["profile"])["tariffs"]["EXPORT"][0]["rate"] == Decimal("0.150")


# --- market-prices -----------------------------------------------------------------------------


def test_market_prices_apply_under_their_own_key_only() -> None:
    raw = dumps(market_day())
    decision = decide_market_prices(b"agile/2026-01-05", raw)
    assert isinstance(decision, Apply)
    assert (decision.key, decision.raw) == ("agile/2026-01-05", raw)
    assert decision.document.prices[0].rate == Decimal("0.1")
    wrong_day = decide_market_prices(b"agile/2026-01-06", raw)
    assert isinstance(wrong_day, Reject)
    assert "'agile/2026-01-05'" in wrong_day.reason
    assert isinstance(decide_market_prices(b"other/2026-01-05", raw), Reject)
    assert decide_market_prices(b"agile/2026-01-05", None) == Delete("agile/2026-01-05")


@pytest.mark.parametrize(
    ("key", "value"),
    [
        (None, dumps(market_day())),
        (b"", None),
        (b"agile/2026-01-05", b"{oops"),
        (b"agile/2026-01-05", dumps(market_day() | {"day": "2026-13-01"})),
        (b"a/b/2026-01-05", dumps(market_day(series="a/b"))),  # `/` is not a series character
    ],
)
def test_invalid_market_prices_are_rejected(key: bytes | None, value: bytes | None) -> None:
    assert isinstance(decide_market_prices(key, value), Reject)


# --- keys --------------------------------------------------------------------------------------


def test_keys_have_the_contract_formats() -> None:
    assert location_key("loc_ä") == "loc_ä".encode()
    assert market_prices_key("agile", date(2026, 1, 5)) == "agile/2026-01-05"
    prices = decide_market_prices(b"agile/2026-01-05", dumps(market_day()))
    assert isinstance(prices, Apply)
    assert market_prices_key_of(prices.document) == "agile/2026-01-05"
    assert key_text(b"loc_a") == "loc_a"
    assert [key_text(k) for k in (None, b"", b"\xff")] == [None, None, None]
