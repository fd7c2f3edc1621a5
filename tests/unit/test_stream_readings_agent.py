"""The readings agent's body with in-memory topics and table (the rules themselves are
`test_costing_readings.py`'s; the crash tests are `tests/integration/test_stream_readings.py`)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from stream_fakes import Event, FakeTopic, Message

from meterflow.models import LocationProfile, dumps, loads
from meterflow.stream.producing import demo_profile
from meterflow.stream.readings import ReadingsAgent

NOW = datetime(2026, 1, 6, tzinfo=UTC)


class Readings:
    """One agent over a location whose owner the test can change, as a `locations` update
    would (a location id deleted by one account and published again for another)."""

    def __init__(self) -> None:
        self.profile = LocationProfile.model_validate(demo_profile("loc_a", account_id="acc_a"))
        self.costs, self.letters = FakeTopic(), FakeTopic()
        self.offset = 0

        async def changelog(writes: Sequence[tuple[int, bytes, bytes]]) -> None:
            pass

        self.agent = ReadingsAgent(
            table={},
            changelog=changelog,
            profiles=lambda location_id: self.profile,
            market_prices=lambda series, day: None,
            energy_costs=self.costs,
            dead_letters=self.letters,
            max_record_hours=744,
            committed_offset=lambda partition: None,
            clock=lambda: NOW,
        )

    async def send(self, time: str, wh: int, key: bytes | None = b"loc_a") -> None:
        body = dumps({"location_id": "loc_a", "time": time, "value": wh, "units": "WH"})
        self.offset += 1
        message = Message("meter-readings", 0, self.offset, key)
        await self.agent.on_events([Event(key, body, message)])

    def sent(self) -> list[dict[str, Any]]:
        return [loads(value) for _, value in self.costs.sent + self.letters.sent if value]


async def test_a_location_published_for_another_account_starts_from_its_own_baseline() -> None:
    readings = Readings()
    await readings.send("2026-01-05T08:00:00Z", 1000)
    await readings.send("2026-01-05T08:30:00Z", 1500)
    [interval] = readings.sent()
    assert interval["account_id"] == "acc_a"

    readings.profile = LocationProfile.model_validate(demo_profile("loc_a", account_id="acc_b"))
    await readings.send("2026-01-05T08:15:00Z", 9000)  # acc_b's first reading: a baseline
    await readings.send("2026-01-05T09:00:00Z", 9400)
    # no stale_reading letter quoting acc_a's register, no interval from acc_a's 1500 Wh
    [_, theirs] = readings.sent()
    assert theirs["account_id"] == "acc_b"
    assert theirs["data"]["start_time"] == "2026-01-05T08:15:00+00:00"
    assert theirs["data"]["energy"]["value"] == Decimal("0.4")


async def test_a_reading_under_another_key_is_refused_and_keeps_no_state() -> None:
    """Under another key the meter's state would be kept in another partition: two registers
    of one meter, and intervals derived from either."""
    readings = Readings()
    await readings.send("2026-01-05T08:00:00Z", 1000)
    await readings.send("2026-01-05T08:30:00Z", 1500, key=b"loc_b")
    await readings.send("2026-01-05T09:00:00Z", 2000, key=None)
    assert readings.costs.sent == []
    first, second = readings.sent()
    assert [first["error"]["code"], second["error"]["code"]] == ["invalid_record"] * 2
    assert "sent under the key 'loc_b', not its location_id 'loc_a'" in first["error"]["message"]
    assert "sent under no key" in second["error"]["message"]
    await readings.send("2026-01-05T09:30:00Z", 2600)  # from the state the refused left alone
    [(_, value)] = readings.costs.sent
    assert value is not None
    interval = loads(value)
    assert interval["data"]["start_time"] == "2026-01-05T08:00:00+00:00"
    assert interval["data"]["energy"]["value"] == Decimal("1.6")


async def test_a_null_reading_is_a_dead_letter_that_says_so() -> None:
    readings = Readings()
    message = Message("meter-readings", 0, 1, b"loc_a")
    await readings.agent.on_events([Event(b"loc_a", None, message)])
    [letter] = readings.sent()
    assert letter["error"]["code"] == "invalid_record"
    assert "has no value (a tombstone)" in letter["error"]["message"]
