"""The `locations` agent's batch body: the contract's decision per message, the local store,
the batch's changelog records, dead letters; with in-memory fakes (no broker)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pytest
from stream_fakes import Event, FakeTopic, Message

from meterflow.contract.locations import decide_location
from meterflow.models import dumps, loads
from meterflow.stream.applier import BatchApplier, ChangelogWrite
from meterflow.stream.producing import demo_profile

NOW = datetime(2026, 1, 6, tzinfo=UTC)


def event(value: bytes | None, key: bytes | None, *, partition: int = 0, offset: int = 0) -> Event:
    return Event(key, value, Message("locations", partition, offset, key))


class Harness:
    def __init__(self) -> None:
        self.store: dict[bytes, bytes] = {}
        self.changelog: list[list[ChangelogWrite]] = []
        self.letters = FakeTopic()
        self.current: list[Any] = []
        self.applied: list[tuple[int, int, int]] = []  # partition, offset, changelog batches
        self.applier = BatchApplier(
            store=self.store,
            changelog=self._send,
            dead_letters=self.letters,
            decide=decide_location,
            kind="profile",
            enter_event=self.current.append,
            on_applied=lambda p, o: self.applied.append((p, o, len(self.changelog))),
            clock=lambda: NOW,
        )

    async def _send(self, writes: Sequence[ChangelogWrite]) -> None:
        self.changelog.append(list(writes))


def profile(location_id: str, rate: str = "0.15") -> bytes:
    document = demo_profile(location_id)
    document["tariffs"]["EXPORT"][0]["rate"] = rate
    return dumps(document)


async def test_a_batch_is_stored_and_its_changelog_sent_once_in_order() -> None:
    h = Harness()
    a, b = profile("loc_a"), profile("loc_b")
    events = [event(a, b"loc_a", partition=2, offset=5), event(b, b"loc_b", partition=4, offset=9)]
    await h.applier.on_events(events)
    assert h.store == {b"loc_a": a, b"loc_b": b}
    assert h.changelog == [[(2, b"loc_a", a), (4, b"loc_b", b)]]
    assert h.current == events  # each write under its own event (RocksDB: its partition)
    assert h.applied == [(2, 5, 1), (4, 9, 1)]  # told after the changelog was handed over
    assert (h.applier.stored, h.applier.deleted, h.applier.rejected) == (2, 0, 0)


async def test_an_invalid_profile_is_dead_lettered_and_the_valid_one_stays() -> None:
    h = Harness()
    good, newer = profile("loc_a"), profile("loc_a", rate="0.20")
    bad = dumps(demo_profile("loc_a") | {"timezone": "Mars/Olympus"})
    await h.applier.on_events(
        [
            event(good, b"loc_a", offset=0),
            event(bad, b"loc_a", offset=1),
            event(profile("loc_b"), b"loc_a", offset=2),  # keyed by another location
        ]
    )
    assert h.store == {b"loc_a": good}
    assert h.changelog == [[(0, b"loc_a", good)]]
    assert [key for key, _ in h.letters.sent] == [b"loc_a", b"loc_a"]
    letters = [loads(value or b"") for _, value in h.letters.sent]
    assert [letter["error"]["code"] for letter in letters] == ["invalid_record"] * 2
    assert [letter["source"]["offset"] for letter in letters] == [1, 2]
    assert h.applied == [(0, 0, 1), (0, 1, 1), (0, 2, 1)]  # rejected ones are applied too
    await h.applier.on_events([event(newer, b"loc_a", offset=3)])
    assert h.store == {b"loc_a": newer}  # later messages still apply, in order


async def test_a_tombstone_deletes_and_sends_a_tombstone() -> None:
    h = Harness()
    raw = profile("loc_a")
    await h.applier.on_events([event(raw, b"loc_a", offset=0), event(None, b"loc_a", offset=1)])
    await h.applier.on_events([event(None, b"loc_never_seen", offset=2)])
    assert h.store == {}
    assert h.changelog == [
        [(0, b"loc_a", raw), (0, b"loc_a", None)],
        [(0, b"loc_never_seen", None)],
    ]
    assert h.applier.deleted == 2


async def test_a_batch_of_rejects_sends_no_changelog() -> None:
    h = Harness()
    await h.applier.on_events([event(b"not json", b"loc_a"), event(profile("loc_a"), None)])
    assert h.changelog == []
    assert len(h.letters.sent) == 2
    assert h.applier.rejected == 2


async def test_a_decision_that_raises_is_a_dead_letter(monkeypatch: pytest.MonkeyPatch) -> None:
    h = Harness()

    def explode(key: bytes | None, value: bytes | None) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(h.applier, "_decide", explode)
    await h.applier.on_events([event(profile("loc_a"), b"loc_a")])
    assert h.store == {}
    [(_, value)] = h.letters.sent
    assert "boom" in loads(value or b"")["error"]["message"]
