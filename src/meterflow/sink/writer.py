"""One batch -> PostgreSQL in ONE transaction: costs, breakdown and location changes.

Fast path: COPY straight into `energy_costs` and `energy_cost_breakdown`: the text path's lines
in COPY text format, the other results' Python values in binary format. The primary key
makes that transaction fail as a whole if any result is already stored (a replay after a crash
between the database commit and the Kafka commit); the batch is then written again the safe way:
COPY into session-local staging tables, then `INSERT … SELECT … ON CONFLICT (id) DO NOTHING`.
Either way a row is never doubled. Breakdown rows are inserted only for costs the statement
inserted, so a result that is already stored keeps exactly the breakdown it was stored with.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg

from meterflow.contract.columns import BREAKDOWN_COLUMNS, COST_COLUMNS, LOCATION_COLUMNS
from meterflow.db import connect
from meterflow.sink.batch import Batch
from meterflow.sink.text_rows import TextRows

log = logging.getLogger(__name__)

STAGE_COSTS = "mf_stage_energy_costs"
STAGE_BREAKDOWN = "mf_stage_energy_cost_breakdown"

_CREATE_STAGING = f"""
CREATE TEMP TABLE IF NOT EXISTS {STAGE_COSTS}
    (LIKE energy_costs INCLUDING DEFAULTS) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS {STAGE_BREAKDOWN}
    (LIKE energy_cost_breakdown INCLUDING DEFAULTS) ON COMMIT DELETE ROWS;
"""

_COST_LIST = ", ".join(COST_COLUMNS)
_BREAKDOWN_LIST = ", ".join(BREAKDOWN_COLUMNS)
_BREAKDOWN_SELECT = ", ".join(f"b.{c}" for c in BREAKDOWN_COLUMNS)

_MERGE_STAGED = f"""
WITH inserted AS (
    INSERT INTO energy_costs ({_COST_LIST})
    SELECT {_COST_LIST} FROM {STAGE_COSTS}
    ON CONFLICT (id) DO NOTHING
    RETURNING id
), inserted_breakdown AS (
    INSERT INTO energy_cost_breakdown ({_BREAKDOWN_LIST})
    SELECT {_BREAKDOWN_SELECT} FROM {STAGE_BREAKDOWN} b JOIN inserted i ON i.id = b.cost_id
    RETURNING 1
)
SELECT (SELECT count(*) FROM inserted) AS costs,
       (SELECT count(*) FROM inserted_breakdown) AS breakdown
"""

_UPSERT_LOCATION = f"""
INSERT INTO locations ({", ".join(LOCATION_COLUMNS)}, deleted, updated_at)
VALUES ({", ".join(f"${i}" for i in range(1, len(LOCATION_COLUMNS) + 2))}, now())
ON CONFLICT (location_id) DO UPDATE SET
    {", ".join(f"{c} = excluded.{c}" for c in LOCATION_COLUMNS[1:])},
    deleted = excluded.deleted, updated_at = now()
"""

_DELETE_LOCATION = (
    "UPDATE locations SET deleted = true, updated_at = now() WHERE location_id = $1 AND NOT deleted"
)


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


class _ProbeRollbackError(Exception):
    """Raised to roll back a probing transaction."""


@dataclass(frozen=True)
class WriteResult:
    costs_inserted: int
    breakdown_inserted: int
    locations_changed: int
    fast_path: bool


class PostgresWriter:
    """Owns one connection; a broken connection is dropped and reopened on the next write."""

    def __init__(self, database_url: str, *, timeout_s: float = 60.0) -> None:
        self._database_url = database_url
        self._timeout_s = timeout_s
        self._conn: asyncpg.Connection | None = None

    async def _connection(self) -> asyncpg.Connection:
        if self._conn is None or self._conn.is_closed():
            conn = await connect(self._database_url)
            try:
                await conn.execute(_CREATE_STAGING)
            except BaseException:
                conn.terminate()
                raise
            self._conn = conn
        return self._conn

    async def write(self, batch: Batch) -> WriteResult:
        """Write the batch atomically; raises (and forgets the connection) on any failure."""
        conn = await self._connection()
        try:
            try:
                return await self._write(conn, batch, direct=True)
            except asyncpg.UniqueViolationError:
                # Some result is already stored (a replay): merge through staging instead.
                return await self._write(conn, batch, direct=False)
        except BaseException:
            self._conn = None
            conn.terminate()
            raise

    async def _write(self, conn: asyncpg.Connection, batch: Batch, *, direct: bool) -> WriteResult:
        """`direct`: COPY straight into the tables, which fails as a whole on any duplicate id;
        else COPY into staging and merge with ON CONFLICT (id) DO NOTHING. Same end state."""
        costs_inserted = breakdown_inserted = 0
        async with conn.transaction():
            if batch.costs:
                costs, breakdown = batch.cost_rows(), batch.breakdown_rows()
                breakdown_text = batch.breakdown_text()
                cost_table = "energy_costs" if direct else STAGE_COSTS
                breakdown_table = "energy_cost_breakdown" if direct else STAGE_BREAKDOWN
                await self._copy(conn, cost_table, COST_COLUMNS, batch.cost_text(), costs)
                await self._copy(
                    conn, breakdown_table, BREAKDOWN_COLUMNS, breakdown_text, breakdown
                )
                if direct:
                    costs_inserted = len(batch.costs)
                    breakdown_inserted = breakdown_text.count("\n") + len(breakdown)
                else:
                    merged = await conn.fetchrow(_MERGE_STAGED, timeout=self._timeout_s)
                    assert merged is not None
                    costs_inserted, breakdown_inserted = merged["costs"], merged["breakdown"]
            upserts: list[tuple[Any, ...]] = []
            deletes: list[tuple[Any, ...]] = []
            for location_id, change in batch.locations.items():
                if change.row is not None:
                    upserts.append((*change.row, change.deleted))
                else:
                    deletes.append((location_id,))
            if upserts:
                await conn.executemany(_UPSERT_LOCATION, upserts, timeout=self._timeout_s)
            if deletes:
                await conn.executemany(_DELETE_LOCATION, deletes, timeout=self._timeout_s)
        return WriteResult(
            costs_inserted, breakdown_inserted, len(upserts) + len(deletes), fast_path=direct
        )

    async def _copy(
        self,
        conn: asyncpg.Connection,
        table: str,
        columns: tuple[str, ...],
        text: str,
        records: list[tuple[Any, ...]],
    ) -> None:
        """COPY both forms into one table: text lines as they are, Python values in binary."""
        if text:
            await conn.copy_to_table(
                table,
                source=_once(text.encode()),  # plain `bytes` would be taken for a path
                columns=columns,
                format="text",
                timeout=self._timeout_s,
            )
        if records:
            await conn.copy_records_to_table(
                table, records=records, columns=columns, timeout=self._timeout_s
            )

    async def find_unstorable(self, batch: Batch) -> tuple[dict[str, str], dict[str, str]]:
        """Rows that cannot be stored (PostgreSQL data errors, values asyncpg cannot encode),
        tried one at a time in a transaction that is rolled back: (cost id -> reason,
        location id -> reason). Slow; only used after such an error."""
        conn = await self._connection()
        costs: dict[str, str] = {}
        locations: dict[str, str] = {}
        try:
            async with conn.transaction():
                for cost_id, persist in batch.costs.items():
                    try:
                        async with conn.transaction():  # a savepoint per row
                            rows = persist.rows
                            if isinstance(rows, TextRows):
                                await self._copy(conn, STAGE_COSTS, COST_COLUMNS, rows.cost, [])
                                await self._copy(
                                    conn, STAGE_BREAKDOWN, BREAKDOWN_COLUMNS, rows.breakdown, []
                                )
                            else:
                                await self._copy(conn, STAGE_COSTS, COST_COLUMNS, "", [rows.cost])
                                await self._copy(
                                    conn, STAGE_BREAKDOWN, BREAKDOWN_COLUMNS, "", rows.breakdown
                                )
                    except (asyncpg.DataError, ValueError) as exc:
                        costs[cost_id] = f"{type(exc).__name__}: {exc}"[:300]
                for location_id, change in batch.locations.items():
                    if change.row is None:
                        continue
                    try:
                        async with conn.transaction():
                            await conn.execute(_UPSERT_LOCATION, *change.row, change.deleted)
                    except (asyncpg.DataError, ValueError) as exc:
                        locations[location_id] = f"{type(exc).__name__}: {exc}"[:300]
                raise _ProbeRollbackError
        except _ProbeRollbackError:
            pass
        except BaseException:
            self._conn = None
            conn.terminate()
            raise
        return costs, locations

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            try:
                await conn.close(timeout=5)
            except Exception:
                conn.terminate()
