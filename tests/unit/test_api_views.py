"""The API's pricing view: latest value per key, tombstones, and no stale overwrite."""

from __future__ import annotations

from datetime import date

from meterflow.api.views import Position, PricingView, TopicView
from meterflow.models import dumps

PROFILE = {
    "location_id": "loc_1",
    "account_id": "acc_1",
    "timezone": "Europe/London",
    "currency_code": "GBP",
}


def test_a_late_older_message_never_overwrites_a_newer_write() -> None:
    view: TopicView[str] = TopicView()
    assert view.apply("k", "new", Position(0, 5))
    assert not view.apply("k", "old", Position(0, 4))
    assert view.get("k") == "new"
    assert view.apply("k", "same", Position(0, 5))  # the consumer re-reading our own write
    assert view.apply("k", None, Position(0, 6))
    assert view.get("k") is None
    assert len(view) == 0


def test_messages_decode_into_profiles_and_prices() -> None:
    view = PricingView()
    view.apply_location_message(b"loc_1", dumps(PROFILE), Position(0, 0))
    profile = view.profile("loc_1")
    assert profile is not None
    assert profile.account_id == "acc_1"
    view.apply_location_message(b"loc_2", b"{not json", Position(0, 1))
    view.apply_location_message(b"loc_3", dumps({"location_id": "x"}), Position(0, 2))
    assert view.profile("loc_2") is None
    assert view.profile("loc_3") is None
    view.apply_location_message(b"loc_1", None, Position(0, 3))
    assert view.profile("loc_1") is None

    prices = {
        "series_id": "agile",
        "day": "2025-01-01",
        "prices": [
            {
                "valid_from": "2025-01-01T00:00:00Z",
                "valid_to": "2025-01-01T00:30:00Z",
                "rate": "0.1",
            }
        ],
    }
    view.apply_market_prices_message(b"agile/2025-01-01", dumps(prices), Position(1, 0))
    found = view.prices("agile", date(2025, 1, 1))
    assert found is not None
    assert len(found.prices) == 1
    assert view.prices("agile", date(2025, 1, 2)) is None
