"""Pure parts of the stream adapter: dead letters and their replay payload, table lookups.
No broker. (The decisions on `locations` / `market-prices`: test_contract_decisions.py.)"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from meterflow.ids import meter_record_id_for_offset
from meterflow.models import ErrorCode, SourceRef, dead_letter, dumps, loads, original_payload
from meterflow.stream.dead_letters import replay_key, replay_message, replay_payload
from meterflow.stream.lookups import MarketPricesLookup, ProfileLookup
from meterflow.stream.producing import demo_profile
from samples import market_day

NOW = datetime(2026, 1, 5, 12, tzinfo=UTC)
SOURCE = SourceRef(topic="meter-records", partition=2, offset=41)


def letter_for(payload: bytes, source: SourceRef | None = SOURCE) -> Any:
    return dead_letter(payload, ErrorCode.UNKNOWN_LOCATION, "no profile", source, NOW)


def test_utf8_payload_travels_as_text_and_other_bytes_as_base64() -> None:
    text = letter_for('{"location_id": "café"}'.encode())
    assert text.payload_encoding == "utf-8"
    assert text.payload == '{"location_id": "café"}'
    binary = letter_for(b"\xff\xfe\x00garbage")
    assert binary.payload_encoding == "base64"
    assert original_payload(binary) == b"\xff\xfe\x00garbage"
    assert original_payload(text) == '{"location_id": "café"}'.encode()


def test_replay_injects_the_id_the_record_had_from_its_position() -> None:
    raw = b'{"location_id": "loc_1", "energy": 1.230, "start_time": "x", "end_time": "y"}'
    payload, record_id = replay_payload(letter_for(raw))
    assert record_id == meter_record_id_for_offset("meter-records", 2, 41)
    document = loads(payload)
    assert document["id"] == record_id
    assert document["energy"] == Decimal("1.230")
    assert b"1.230" in payload  # digits kept exactly, never via float


def test_replay_keeps_an_existing_id_and_leaves_non_objects_alone() -> None:
    raw = dumps({"id": "mre_given", "location_id": "loc_1"})
    assert replay_payload(letter_for(raw)) == (raw, "mre_given")
    assert replay_payload(letter_for(b"{broken")) == (b"{broken", None)
    assert replay_payload(letter_for(b"[1, 2]")) == (b"[1, 2]", None)
    assert replay_payload(letter_for(b'{"location_id": "x"}', source=None)) == (
        b'{"location_id": "x"}',
        None,
    )


def test_replay_sends_a_record_under_its_locations_key() -> None:
    """One refused for its key is priced when replayed; bytes naming no location keep theirs."""
    assert replay_key(b'{"location_id": "loc_1", "time": "t"}', b"wrong") == b"loc_1"
    assert replay_key(b'{"location_id": "loc_1"}', None) == b"loc_1"
    for raw in (b"{broken", b"[1]", b'{"location_id": 5}', b"{}"):
        assert replay_key(raw, b"original") == b"original"


def test_replay_sends_a_reading_back_to_readings_and_a_derived_interval_to_records() -> None:
    topics = {"records_topic": "meter-records", "readings_topic": "meter-readings"}
    at = SourceRef(topic="meter-readings", partition=1, offset=9)
    reading = b'{"location_id": "loc_1", "time": "2026-01-05T00:30:00Z", "value": 1500}'
    assert replay_message(letter_for(reading, at), **topics) == ("meter-readings", reading)
    broken = b'{"location_id": "loc_1", "time": '
    assert replay_message(letter_for(broken, at), **topics) == ("meter-readings", broken)
    # pricing the derived interval failed: the table moved on, the interval itself goes back,
    # unchanged (its record_reference_id names it; no position id is added)
    interval = dumps(
        {
            "location_id": "loc_1",
            "energy": Decimal("0.5"),
            "start_time": "2026-01-05T00:00:00+00:00",
            "end_time": "2026-01-05T00:30:00+00:00",
            "record_reference_id": "rdg_x",
        }
    )
    assert replay_message(letter_for(interval, at), **topics) == ("meter-records", interval)
    record = b'{"location_id": "loc_1", "energy": 1}'
    topic, payload = replay_message(letter_for(record), **topics) or ("", b"")
    assert (topic, payload) == ("meter-records", replay_payload(letter_for(record))[0])
    profile = SourceRef(topic="locations", partition=0, offset=3)
    assert replay_message(letter_for(b"{}", profile), **topics) is None


def test_profile_lookup_parses_once_and_sees_updates() -> None:
    table: dict[bytes, bytes] = {b"loc_a": dumps(demo_profile("loc_a"))}
    lookup = ProfileLookup(table)
    first = lookup("loc_a")
    assert first is not None
    assert first.account_id == "acc_demo"
    assert lookup("loc_a") is first  # cached: same bytes, same object
    table[b"loc_a"] = dumps(demo_profile("loc_a", account_id="acc_other"))
    updated = lookup("loc_a")
    assert updated is not None
    assert updated.account_id == "acc_other"
    del table[b"loc_a"]
    assert lookup("loc_a") is None
    assert lookup("loc_unknown") is None


def test_market_prices_lookup_by_series_and_utc_day() -> None:
    table = {b"agile/2026-01-05": dumps(market_day()), b"agile/2026-01-06": dumps(market_day())}
    lookup = MarketPricesLookup(table)
    found = lookup("agile", date(2026, 1, 5))
    assert found is not None
    assert found.prices[0].rate == Decimal("0.1")
    assert lookup("agile", date(2026, 1, 7)) is None
    assert lookup("agile", date(2026, 1, 6)) is None  # body says another day: not trusted
