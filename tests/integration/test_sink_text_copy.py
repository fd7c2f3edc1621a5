"""PostgreSQL stores the text path's COPY lines as it stores the model path's rows (hypothesis).

Random EnergyCosts (tests/sink_documents.py) are written both ways, the text path's lines
with a text COPY and the model path's values with asyncpg's binary COPY, into twin tables shaped
like `energy_costs` and `energy_cost_breakdown`; every stored value must be the same: NUMERIC
digits and scale, instants, jsonb, NULLs.
"""

from __future__ import annotations

import asyncio
from typing import Any
from unittest.mock import patch

import asyncpg
import pytest
from hypothesis import given
from hypothesis import strategies as st

from meterflow.contract.columns import BREAKDOWN_COLUMNS, COST_COLUMNS
from meterflow.models import dumps
from meterflow.sink import decode
from meterflow.sink.decode import Persist, decode_cost
from meterflow.sink.rows import CostRows, Source
from meterflow.sink.text_rows import text_cost_rows
from sink_documents import NOW, SETTINGS, energy_costs, plain, unescaped_texts

pytestmark = pytest.mark.integration

_TWINS = """
CREATE TEMP TABLE text_costs (LIKE energy_costs INCLUDING DEFAULTS);
CREATE TEMP TABLE model_costs (LIKE energy_costs INCLUDING DEFAULTS);
CREATE TEMP TABLE text_breakdown (LIKE energy_cost_breakdown INCLUDING DEFAULTS);
CREATE TEMP TABLE model_breakdown (LIKE energy_cost_breakdown INCLUDING DEFAULTS);
"""


async def _once(data: bytes) -> Any:
    yield data


def _model_rows(value: bytes, source: Source) -> CostRows | None:
    with patch.object(decode, "text_cost_rows", lambda value, source: None):
        outcome = decode_cost(b"key", value, source, NOW)
    if not isinstance(outcome, Persist):
        return None
    assert isinstance(outcome.rows, CostRows)
    return outcome.rows


async def _round_trip(url: str, documents: list[dict[str, Any]]) -> int:
    """Write both forms of every document the text path answers for; compare; how many."""
    text_costs, text_breakdown = [], []
    model_costs: list[tuple[Any, ...]] = []
    model_breakdown: list[tuple[Any, ...]] = []
    for n, document in enumerate(documents):
        value = dumps(document | {"id": f"ecs_{n}"})
        source = Source("energy-costs", n % 3, n)
        text = text_cost_rows(value, source)
        if text is None:
            continue
        model = _model_rows(value, source)
        assert model is not None, "the text path accepted what the model path refuses"
        text_costs.append(text.cost)
        text_breakdown.append(text.breakdown)
        model_costs.append(model.cost)
        model_breakdown.extend(model.breakdown)
    if not text_costs:
        return 0
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(_TWINS)
        await conn.copy_to_table(
            "text_costs", source=_once("".join(text_costs).encode()), columns=COST_COLUMNS
        )
        await conn.copy_records_to_table("model_costs", records=model_costs, columns=COST_COLUMNS)
        if model_breakdown:
            await conn.copy_to_table(
                "text_breakdown",
                source=_once("".join(text_breakdown).encode()),
                columns=BREAKDOWN_COLUMNS,
            )
            await conn.copy_records_to_table(
                "model_breakdown", records=model_breakdown, columns=BREAKDOWN_COLUMNS
            )
        for table, columns, order in (
            ("costs", ", ".join(COST_COLUMNS), "id"),  # not `inserted_at`: a clock
            ("breakdown", ", ".join(BREAKDOWN_COLUMNS), "cost_id, seq"),
        ):
            # numbers and jsonb as PostgreSQL prints them: digits and scale, not just values
            stored = [
                [str(value) for value in row]
                for row in await conn.fetch(f"SELECT {columns} FROM text_{table} ORDER BY {order}")
            ]
            expected = [
                [str(value) for value in row]
                for row in await conn.fetch(f"SELECT {columns} FROM model_{table} ORDER BY {order}")
            ]
            assert stored == expected
    finally:
        await conn.close()
    return len(text_costs)


def test_postgres_stores_text_lines_as_the_model_paths_rows(migrated_database: str) -> None:
    written = []

    @SETTINGS
    @given(
        st.lists(energy_costs(unescaped_texts).map(plain) | energy_costs(), min_size=5, max_size=16)
    )
    def check(documents: list[dict[str, Any]]) -> None:
        written.append(asyncio.run(_round_trip(migrated_database, documents)))

    check()
    assert sum(written) > 100  # the comparison did run, on many rows
