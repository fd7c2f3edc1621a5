"""The sink's fast row decoder (`sink/fast_rows.py`) against the model path (hypothesis).

(a) on random valid EnergyCosts, `decode_cost` gives exactly the rows the model path gives
    (Decimal digits and exponents, instants and offsets, types), and the fast path does answer;
(b) on random broken documents, `decode_cost` gives exactly the outcome of the model path
    (the same Poison message, or the same rows), so the fast path never accepts what the model
    rejects; it may only defer.
The text path (`sink/text_rows.py`), which runs before this one, is switched off here so that
`decode_cost` exercises `fast_rows`; `test_sink_text_rows.py` tests the text path.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from decimal import Decimal
from typing import Any
from unittest.mock import patch

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from meterflow.models import dumps, loads
from meterflow.sink import decode
from meterflow.sink.decode import CostOutcome, Persist, Poison, Simulated, decode_cost
from meterflow.sink.fast_rows import fast_cost_rows
from meterflow.sink.rows import Source
from sink_documents import (
    DELETE,
    NOW,
    PATHS,
    SETTINGS,
    WRONG,
    WRONG_VALUES,
    energy_costs,
    exact,
    plain,
    set_path,
    valid,
    with_changes,
)

SOURCE = Source("energy-costs", 3, 42)


@pytest.fixture(autouse=True, scope="module")
def _without_text_path() -> Iterator[None]:
    with patch.object(decode, "text_cost_rows", lambda value, source: None):
        yield


def model_path(value: bytes) -> CostOutcome:
    with patch.object(decode, "fast_cost_rows", lambda document, source: None):
        return decode_cost(b"key", value, SOURCE, NOW)


def assert_same(fast: CostOutcome, model: CostOutcome) -> None:
    assert type(fast) is type(model)
    if isinstance(fast, Persist):
        assert isinstance(model, Persist)
        assert fast.id == model.id
        assert exact(fast.rows.cost) == exact(model.rows.cost)
        assert exact(fast.rows.breakdown) == exact(model.rows.breakdown)
    elif isinstance(fast, Poison):
        assert isinstance(model, Poison)
        assert fast.dead_letter == model.dead_letter
    else:
        assert fast == model


@SETTINGS
@given(energy_costs())
def test_fast_rows_equal_model_rows_on_random_energy_costs(document: dict[str, Any]) -> None:
    value = dumps(document)
    assert_same(decode_cost(b"key", value, SOURCE, NOW), model_path(value))


@SETTINGS
@given(energy_costs())
def test_fast_path_answers_for_documents_the_pipeline_writes(document: dict[str, Any]) -> None:
    value = dumps(plain(document))
    assume(b"\\u0000" not in value)  # refused before either path (PostgreSQL text has no NUL)
    rows = fast_cost_rows(loads(value), SOURCE)
    assert rows is not None, "the fast path must not defer on a plain EnergyCost"
    assert_same(Persist(rows.cost[0], rows, b"key", value, SOURCE), model_path(value))


@SETTINGS
@given(energy_costs(), st.lists(st.tuples(st.sampled_from(PATHS), WRONG), min_size=1, max_size=2))
def test_broken_documents_get_the_model_paths_outcome(
    document: dict[str, Any], changes: list[tuple[tuple[str | int, ...], object]]
) -> None:
    value = dumps(with_changes(document, changes))
    assert_same(decode_cost(b"key", value, SOURCE, NOW), model_path(value))


def test_special_numbers_defer_to_the_model_path() -> None:
    assert fast_cost_rows({"id": "ecs_1"}, SOURCE) is None  # missing keys: defer
    for raw in (b"NaN", b"Infinity", b"-Infinity", b"1e5000", b"true"):
        value = dumps(plain(valid())).replace(b'"confidence":1', b'"confidence":' + raw)
        assert b'"confidence":' + raw in value
        outcome = decode_cost(b"key", value, SOURCE, NOW)
        assert isinstance(outcome, Poison), raw
        assert_same(outcome, model_path(value))


def test_simulated_results_still_skip() -> None:
    value = dumps(plain(valid()) | {"non_persistent": True})
    assert decode_cost(b"key", value, SOURCE, NOW) == Simulated("ecs_1")


def test_every_single_breakage_gets_the_model_paths_outcome() -> None:
    """Each wrong value at each place, exhaustively (the random test above pairs them)."""
    base = valid()
    base["data"]["breakdown"] = [
        {
            "start_time": base["time_created"],
            "end_time": base["time_created"],
            "rate": Decimal("0.245"),
            "energy": Decimal("1.5E-3"),
            "cost": Decimal("-0.000"),
        }
    ]
    assert isinstance(decode_cost(b"key", dumps(base), SOURCE, NOW), Persist)
    for path in PATHS:
        for new in WRONG_VALUES:
            broken = copy.deepcopy(base)
            if new is DELETE and path[-1] == "unexpected":
                continue
            set_path(broken, path, new)
            value = dumps(broken)
            assert_same(decode_cost(b"key", value, SOURCE, NOW), model_path(value))
