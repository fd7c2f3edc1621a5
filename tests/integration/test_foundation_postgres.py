"""The real database: NUMERIC values round-trip as exact Decimals in a fresh database."""

from __future__ import annotations

from decimal import Decimal

import asyncpg
import pytest

pytestmark = pytest.mark.integration

VALUES = [
    Decimal("0.1"),
    Decimal("0.2"),
    Decimal("12345678901234567890.123456789012"),
    Decimal("-0.000000000001"),
    Decimal("0.30000000000000004"),
]


async def test_numeric_round_trips_exactly(fresh_database: str) -> None:
    conn = await asyncpg.connect(fresh_database)
    try:
        assert await conn.fetchval("select current_database()") == fresh_database.rsplit("/", 1)[1]
        await conn.execute("create table amounts (id int primary key, amount numeric not null)")
        await conn.executemany(
            "insert into amounts (id, amount) values ($1, $2)", list(enumerate(VALUES))
        )
        rows = await conn.fetch("select amount from amounts order by id")
        total = await conn.fetchval("select sum(amount) from amounts where id in (0, 1)")
    finally:
        await conn.close()
    read = [row["amount"] for row in rows]
    assert all(isinstance(value, Decimal) for value in read)
    assert read == VALUES
    assert [str(value) for value in read] == [str(value) for value in VALUES]
    assert total == Decimal("0.3")
