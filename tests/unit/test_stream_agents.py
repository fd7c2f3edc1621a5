"""The agents' bodies with in-memory topics and tables: one event in, exactly one send out."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from stream_fakes import Event, FakeTopic, Message

from meterflow.contract.locations import decide_location
from meterflow.ids import energy_cost_id, meter_record_id_for_offset
from meterflow.models import dumps, loads
from meterflow.stream import agents
from meterflow.stream.agents import DocumentApplier, RecordPricer
from meterflow.stream.lookups import ProfileLookup
from meterflow.stream.producing import demo_profile

NOW = datetime(2026, 1, 6, tzinfo=UTC)


def event(value: bytes | None, key: bytes | None, offset: int = 7) -> Event:
    return Event(key, value, Message("meter-records", 1, offset, key))


def record(location_id: str, **extra: Any) -> bytes:
    return dumps(
        {
            "location_id": location_id,
            "energy": Decimal("2"),
            "start_time": "2026-01-05T08:00:00Z",
            "end_time": "2026-01-05T08:30:00Z",
            **extra,
        }
    )


@pytest.fixture
def topics() -> tuple[FakeTopic, FakeTopic]:
    return FakeTopic(), FakeTopic()


def pricer(costs: FakeTopic, letters: FakeTopic) -> RecordPricer:
    table = {b"loc_a": dumps(demo_profile("loc_a"))}
    return RecordPricer(
        profiles=ProfileLookup(table),
        market_prices=lambda series, day: None,
        energy_costs=costs,
        dead_letters=letters,
        max_record_hours=744,
        clock=lambda: NOW,
    )


async def test_a_priced_record_goes_to_energy_costs_keyed_by_location(
    topics: tuple[FakeTopic, FakeTopic],
) -> None:
    costs, letters = topics
    await pricer(costs, letters).on_event(event(record("loc_a"), b"loc_a"))
    [(key, value)] = costs.sent
    assert key == b"loc_a"
    assert value is not None
    cost = loads(value)
    assert cost["id"] == energy_cost_id(meter_record_id_for_offset("meter-records", 1, 7))
    assert cost["data"]["cost"]["value"] == Decimal("0.49")  # 2 kWh x 0.2450
    assert letters.sent == []


async def test_an_unpriceable_record_goes_to_dead_letters_under_its_original_key(
    topics: tuple[FakeTopic, FakeTopic],
) -> None:
    costs, letters = topics
    body = record("loc_nowhere")
    await pricer(costs, letters).on_event(event(body, b"loc_nowhere"))
    [(key, value)] = letters.sent
    assert key == b"loc_nowhere"
    assert value is not None
    letter = loads(value)
    assert letter["error"]["code"] == "unknown_location"
    assert letter["payload"].encode() == body
    assert letter["source"] == {"topic": "meter-records", "partition": 1, "offset": 7}
    assert costs.sent == []


@pytest.mark.parametrize(("key", "shown"), [(b"some-key", "the key 'some-key'"), (None, "no key")])
async def test_a_record_under_another_key_than_its_location_is_refused(
    topics: tuple[FakeTopic, FakeTopic], key: bytes | None, shown: str
) -> None:
    """Its location's profile is in the table (a memory store would price it), but its key
    put it in another partition: refused on every store, with a reason naming the key."""
    costs, letters = topics
    await pricer(costs, letters).on_event(event(record("loc_a"), key))
    [(sent_key, value)] = letters.sent
    assert sent_key == key  # the original key, so a replay goes where it came from
    assert value is not None
    error = loads(value)["error"]
    assert error["code"] == "invalid_record"
    assert f"sent under {shown}, not its location_id 'loc_a'" in error["message"]
    assert costs.sent == []


async def test_results_and_dead_letters_carry_their_records_kafka_timestamp(
    topics: tuple[FakeTopic, FakeTopic],
) -> None:
    """When the record reached meterflow, to the millisecond: the sink applies corrections
    in that order, and a replayed dead letter keeps it."""
    costs, letters = topics
    stamped = [
        Event(key, body, Message("meter-records", 1, offset, key, 1_780_000_000.123 + offset))
        for offset, (key, body) in enumerate(
            [(b"loc_a", record("loc_a")), (b"k", record("loc_nowhere")), (b"loc_a", b"{")]
        )
    ]
    await pricer(costs, letters).on_events(stamped)
    assert costs.stamps == [1_780_000_000_123]
    assert letters.stamps == [1_780_000_001_123, 1_780_000_002_123]
    await pricer(costs, letters).on_event(event(record("loc_a"), b"loc_a"))  # none given
    assert costs.stamps[-1] is None


async def test_what_follows_a_dead_letter_in_a_batch_is_stamped_after_it(
    topics: tuple[FakeTopic, FakeTopic],
) -> None:
    """A batch record's status compares its dead letter's `time_created` with its stored
    result's, a tie reading FAILED: a record that failed, then its correction priced in the
    same batch, shared one instant and read FAILED though the correction was stored."""
    costs, letters = topics
    batch = [
        event(
            record("loc_a", start_time="1990-01-05T08:00:00Z", end_time="1990-01-05T08:30:00Z"),
            b"loc_a",
            offset=1,
        ),  # before the tariff: tariff_not_available
        event(record("loc_a"), b"loc_a", offset=2),
        event(record("loc_a"), b"loc_a", offset=3),
    ]
    subject = pricer(costs, letters)  # its clock stands still at NOW
    await subject.on_events(batch)
    [letter] = [loads(v) for _, v in letters.sent if v is not None]
    assert letter["error"]["code"] == "tariff_not_available"
    times = [datetime.fromisoformat(loads(v)["time_created"]) for _, v in costs.sent if v]
    assert datetime.fromisoformat(letter["time_created"]) == NOW
    assert times == [NOW + timedelta(microseconds=1)] * 2  # one instant for the rest
    await subject.on_events([event(record("loc_a"), b"loc_a", offset=4)])
    last = datetime.fromisoformat(loads(costs.sent[-1][1] or b"")["time_created"])
    assert last > times[-1]  # never back, though the clock stands still


async def test_a_timestamp_ahead_of_the_worker_counts_as_when_it_was_read(
    topics: tuple[FakeTopic, FakeTopic],
) -> None:
    """A producer's clock an hour ahead made its record win over every correction sent in
    that hour (the sink orders versions by these stamps)."""
    costs, letters = topics
    ahead = time.time() + 3600
    before = time.time_ns() // 1_000_000
    stamped = Event(b"loc_a", record("loc_a"), Message("meter-records", 1, 0, b"loc_a", ahead))
    await pricer(costs, letters).on_events([stamped])
    (stamp,) = costs.stamps
    assert stamp is not None
    assert before <= stamp <= time.time_ns() // 1_000_000


async def test_a_tombstone_or_an_exception_inside_pricing_is_a_dead_letter(
    topics: tuple[FakeTopic, FakeTopic], monkeypatch: pytest.MonkeyPatch
) -> None:
    costs, letters = topics
    subject = pricer(costs, letters)
    await subject.on_event(event(None, b"k", offset=1))

    def explode(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(agents, "cost_payload", explode)
    await subject.on_event(event(record("loc_a"), b"loc_a", offset=2))
    codes = [loads(value or b"")["error"]["code"] for _, value in letters.sent]
    assert codes == ["invalid_record", "invalid_record"]
    tombstone = loads(letters.sent[0][1] or b"")
    assert "has no value (a tombstone)" in tombstone["error"]["message"]
    assert tombstone["payload"] == ""
    assert "boom" in loads(letters.sent[1][1] or b"")["error"]["message"]
    assert costs.sent == []
    assert (subject.priced, subject.dead_lettered) == (0, 2)


async def test_profiles_are_stored_deleted_or_dead_lettered(
    topics: tuple[FakeTopic, FakeTopic],
) -> None:
    _, letters = topics
    table: dict[bytes, bytes] = {}
    applier = DocumentApplier(
        table=table, dead_letters=letters, decide=decide_location, kind="profile", clock=lambda: NOW
    )
    raw = dumps(demo_profile("loc_a"))
    await applier.on_event(event(raw, b"loc_a"))
    assert table == {b"loc_a": raw}
    await applier.on_event(event(b'{"location_id": "loc_a"}', b"loc_a"))
    assert table == {b"loc_a": raw}  # an invalid profile never replaces a valid one
    [(key, value)] = letters.sent
    assert key == b"loc_a"
    assert loads(value or b"")["error"]["code"] == "invalid_record"
    await applier.on_event(event(None, b"loc_a"))
    assert table == {}
    await applier.on_event(event(None, b"loc_never_seen"))  # deleting nothing is fine
    assert table == {}


async def test_a_profile_with_a_bad_bill_field_is_dead_lettered_and_the_old_one_stays(
    topics: tuple[FakeTopic, FakeTopic],
) -> None:
    _, letters = topics
    table: dict[bytes, bytes] = {}
    applier = DocumentApplier(
        table=table, dead_letters=letters, decide=decide_location, kind="profile", clock=lambda: NOW
    )
    good = demo_profile("loc_a")
    raw = dumps(good)
    await applier.on_event(event(raw, b"loc_a"))
    await applier.on_event(event(dumps(good | {"tax_percentage": "120"}), b"loc_a"))
    assert table == {b"loc_a": raw}
    [(key, value)] = letters.sent
    error = loads(value or b"")["error"]
    assert (key, error["code"]) == (b"loc_a", "invalid_record")
    assert "tax_percentage" in error["message"]


async def test_a_failed_send_stops_the_process_before_anything_is_acked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class BrokenTopic:
        async def send(
            self, *, key: bytes | None, value: bytes | None, timestamp_ms: int | None = None
        ) -> None:
            raise ConnectionError("broker gone")

        async def send_many(
            self, messages: Sequence[tuple[bytes | None, bytes, int | None]]
        ) -> None:
            raise ConnectionError("broker gone")

    exits: list[int] = []

    def fake_exit(code: int) -> None:
        exits.append(code)
        raise SystemExit(code)

    monkeypatch.setattr(agents.os, "_exit", fake_exit)
    subject = pricer(BrokenTopic(), BrokenTopic())  # type: ignore[arg-type]
    with pytest.raises(SystemExit):
        await subject.on_event(event(record("loc_a"), b"loc_a"))
    assert exits == [agents.EXIT_SEND_FAILED]


async def test_each_record_of_a_batch_is_looked_up_under_its_own_event(
    topics: tuple[FakeTopic, FakeTopic],
) -> None:
    """RocksDB reads the current event's partition only: a batch mixes partitions, so each
    event must be current when its profile is read, not the batch's last one."""
    costs, letters = topics
    current: list[Event] = []
    lookups: list[tuple[str, int]] = []
    profiles = ProfileLookup({b"loc_a": dumps(demo_profile("loc_a"))})

    def looked_up(location_id: str) -> Any:
        lookups.append((location_id, current[-1].message.partition))
        return profiles(location_id)

    subject = RecordPricer(
        profiles=looked_up,
        market_prices=lambda series, day: None,
        energy_costs=costs,
        dead_letters=letters,
        max_record_hours=744,
        clock=lambda: NOW,
        enter_event=current.append,
    )
    batch = [
        Event(b"loc_a", record("loc_a"), Message("meter-records", partition, offset, b"loc_a"))
        for offset, partition in enumerate([2, 0, 1, 2])
    ]
    await subject.on_events(batch)
    assert current == batch
    assert lookups == [("loc_a", 2), ("loc_a", 0), ("loc_a", 1), ("loc_a", 2)]
    assert len(costs.sent) == 4
