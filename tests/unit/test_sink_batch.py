"""The sink's pure parts: decoding records into outcomes, and the batch's bookkeeping."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from meterflow.contract.columns import COST_COLUMNS
from meterflow.models import dumps
from meterflow.sink.batch import Batch
from meterflow.sink.decode import (
    Ignored,
    LocationDelete,
    LocationUpsert,
    Persist,
    Poison,
    Simulated,
    decode_cost,
    decode_location,
)
from meterflow.sink.rows import Source
from samples import Item, energy_cost

NOW = datetime(2026, 5, 1, tzinfo=UTC)
T0 = datetime(2026, 3, 29, 0, 30, tzinfo=UTC)


def cost(n: int, **changes: Any) -> dict[str, Any]:
    start, end = T0 + timedelta(hours=n), T0 + timedelta(hours=n, minutes=30)
    energy, price = Decimal("0.30000000000000004"), Decimal("0.073500")
    doc = energy_cost(
        f"ecs_{n:04d}",
        f"mre_{n:04d}",
        start,
        end,
        [Item(start, end, Decimal("0.245"), energy, price)],
        request={"location_id": "loc_1", "energy": energy},
        time_created=NOW,
    )
    # Without these optional keys the text path defers: these tests read the model path's rows.
    del doc["data"]["session_reference_id"], doc["data"]["record_reference_id"]
    doc.update(changes)
    return doc


def decode(doc: dict[str, Any] | bytes | None, offset: int = 0) -> Any:
    value = doc if isinstance(doc, bytes | None) else dumps(doc)
    return decode_cost(b"loc_1", value, Source("energy-costs", 0, offset), NOW)


def test_cost_rows_keep_decimal_digits() -> None:
    outcome = decode(cost(1))
    assert isinstance(outcome, Persist)
    row = dict(zip(COST_COLUMNS, outcome.rows.cost, strict=True))
    assert str(row["energy_kwh"]) == "0.30000000000000004"
    assert str(row["cost"]) == "0.073500"
    assert row["request"] == '{"location_id":"loc_1","energy":0.30000000000000004}'
    assert (row["source_topic"], row["source_partition"], row["source_offset"]) == (
        "energy-costs",
        0,
        0,
    )
    assert outcome.rows.breakdown[0][:2] == ("ecs_0001", 0)


def test_outcomes() -> None:
    assert isinstance(decode(cost(1, non_persistent=True)), Simulated)
    for flag in (1, "yes"):  # never read as true: a result silently left unstored
        assert isinstance(decode(cost(1, non_persistent=flag)), Poison), flag
    for bad in (b"{", None, b"\xff", dumps(cost(1, extra=1)), dumps(cost(1, id="x"))):
        outcome = decode(bad)
        assert isinstance(outcome, Poison), bad
        assert outcome.dead_letter.error.code.value == "invalid_record"
        assert outcome.dead_letter.source is not None
    nul = decode(dumps(cost(1, account_id="a\x00b")))
    assert isinstance(nul, Poison)
    assert "NUL" in nul.dead_letter.error.message
    literal = decode(dumps(cost(1, account_id="a\\u0000b")))  # a backslash, then "u0000"
    assert isinstance(literal, Persist)
    deep = decode(b"[" * 100_000 + b"]" * 100_000)
    assert isinstance(deep, Poison)
    huge = cost(1)
    huge["data"]["cost"]["value"] = Decimal("1E+5000")
    assert isinstance(decode(huge), Poison)


def test_locations() -> None:
    profile = {
        "location_id": "loc_9",
        "account_id": "acc_1",
        "timezone": "Europe/Paris",
        "currency_code": "EUR",
    }
    assert isinstance(decode_location(b"loc_9", dumps(profile)), LocationUpsert)
    assert decode_location(b"loc_9", None) == LocationDelete("loc_9")
    assert isinstance(decode_location(None, None), Ignored)
    assert isinstance(decode_location(b"loc_9", b"[]"), Ignored)
    assert isinstance(decode_location(b"loc_9", b"[" * 100_000), Ignored)


def test_batch_dedupes_and_tracks_offsets() -> None:
    batch = Batch()
    for offset, n in enumerate([1, 2, 1, 3]):
        batch.add_cost(decode(cost(n), offset), "energy-costs", 0, offset, 10.0 + offset)
    batch.add_cost(decode(b"{", 4), "energy-costs", 0, 4, 15.0)
    batch.add_cost(decode(cost(5, non_persistent=True), 7), "energy-costs", 2, 7, 16.0)
    assert len(batch) == 6
    assert list(batch.costs) == ["ecs_0001", "ecs_0002", "ecs_0003"]
    assert batch.duplicates == 1
    assert batch.simulated == 1
    assert len(batch.dead_letters) == 1
    assert batch.next_offsets == {("energy-costs", 0): 5, ("energy-costs", 2): 8}
    assert batch.age(12.5) == 2.5
    assert len(batch.breakdown_rows()) == 3


def test_location_changes_net_out_per_batch() -> None:
    profile = {"location_id": "loc_9", "account_id": "a", "timezone": "UTC", "currency_code": "EUR"}
    batch = Batch()
    batch.add_location(decode_location(b"loc_9", dumps(profile)), "locations", 0, 0, 1.0)
    batch.add_location(decode_location(b"loc_9", None), "locations", 0, 1, 1.0)
    change = batch.locations["loc_9"]
    assert change.deleted
    assert change.row is not None  # the profile read earlier, stored as deleted
    later = Batch()
    later.add_location(decode_location(b"loc_8", None), "locations", 1, 5, 2.0)
    assert later.locations["loc_8"].row is None


def test_then_puts_a_failed_batch_ahead_of_what_was_read_since() -> None:
    failed, since = Batch(), Batch()
    failed.add_cost(decode(cost(1), 0), "energy-costs", 0, 0, 1.0)
    failed.add_cost(decode(b"{", 1), "energy-costs", 0, 1, 1.0)
    since.add_cost(decode(cost(1), 2), "energy-costs", 0, 2, 2.0)  # a replayed duplicate
    since.add_cost(decode(cost(2), 3), "energy-costs", 1, 3, 2.0)
    merged = failed.then(since)
    assert len(merged) == 4
    assert list(sorted(merged.costs)) == ["ecs_0001", "ecs_0002"]
    assert merged.costs["ecs_0001"].source.offset == 0  # the first read wins
    assert merged.duplicates == 1
    assert merged.next_offsets == {("energy-costs", 0): 3, ("energy-costs", 1): 4}
    assert merged.started_at == 1.0
    assert len(merged.dead_letters) == 1


def test_reject_turns_unstorable_results_into_dead_letters() -> None:
    batch = Batch()
    batch.add_cost(decode(cost(1), 0), "energy-costs", 0, 0, 1.0)
    batch.add_cost(decode(cost(2), 1), "energy-costs", 0, 1, 1.0)
    batch.reject({"ecs_0002": "DataError: nope"}, {}, NOW)
    assert list(batch.costs) == ["ecs_0001"]
    ((key, letter),) = batch.dead_letters
    assert key == b"loc_1"
    assert letter.source is not None
    assert letter.source.offset == 1
    assert "nope" in letter.error.message
    assert batch.next_offsets == {("energy-costs", 0): 2}  # still committed past


def test_later_reads_of_an_id_are_written_in_rounds_in_read_order() -> None:
    """Several versions of one id in a batch: none is dropped; round k holds each id's
    (k+1)-th read, so writing the rounds in order applies the versions as they were read."""
    batch = Batch()
    for offset, n in enumerate([1, 2, 1, 3, 1, 2]):
        batch.add_cost(decode(cost(n), offset), "energy-costs", 0, offset, 1.0)
    assert (batch.results, batch.duplicates) == (6, 3)
    rounds = [{i: p.source.offset for i, p in r.items()} for r in batch.rounds()]
    assert rounds == [
        {"ecs_0001": 0, "ecs_0002": 1, "ecs_0003": 3},
        {"ecs_0001": 2, "ecs_0002": 5},
        {"ecs_0001": 4},
    ]
    assert len(batch.breakdown_rows(batch.rounds()[1])) == 2


def test_then_keeps_each_ids_reads_in_order() -> None:
    failed, since = Batch(), Batch()
    failed.add_cost(decode(cost(1), 0), "energy-costs", 0, 0, 1.0)
    failed.add_cost(decode(cost(1), 1), "energy-costs", 0, 1, 1.0)
    since.add_cost(decode(cost(1), 2), "energy-costs", 0, 2, 2.0)
    since.add_cost(decode(cost(2), 3), "energy-costs", 0, 3, 2.0)
    since.add_cost(decode(cost(1), 4), "energy-costs", 0, 4, 2.0)
    merged = failed.then(since)
    offsets = [{i: p.source.offset for i, p in r.items()} for r in merged.rounds()]
    assert offsets == [
        {"ecs_0001": 0, "ecs_0002": 3},
        {"ecs_0001": 1},
        {"ecs_0001": 2},
        {"ecs_0001": 4},
    ]
    assert merged.results == 5


def test_reject_takes_out_one_version_only() -> None:
    """A refused first read hands its place to the id's next read; a refused later read is
    named by id@partition:offset (`versions`). The other versions stay to be written."""
    batch = Batch()
    for offset in range(3):
        batch.add_cost(decode(cost(1), offset), "energy-costs", 0, offset, 1.0)
    assert list(batch.versions()) == ["ecs_0001", "ecs_0001@0:1", "ecs_0001@0:2"]
    batch.reject({"ecs_0001@0:2": "DataError: later"}, {}, NOW)
    batch.reject({"ecs_0001": "DataError: first"}, {}, NOW)
    assert [p.source.offset for p in batch.versions().values()] == [1]
    assert [letter.source.offset for _, letter in batch.dead_letters if letter.source] == [2, 0]
