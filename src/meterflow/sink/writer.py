"""One batch -> PostgreSQL in ONE transaction: costs, breakdown, corrections, locations.

Fast path: COPY straight into `energy_costs` and `energy_cost_breakdown`: the text path's lines
in COPY text format, the other results' Python values in binary format. The primary key
makes that transaction fail as a whole if any result is already stored (a replay after a crash
between the database commit and the Kafka commit, a duplicate, a correction); the batch is then
split: the ids not stored yet are COPYed straight in as above, the stored ones go the safe way:
COPY into session-local staging tables, then `INSERT … SELECT … ON CONFLICT (id) DO NOTHING`,
with breakdown rows only for the costs that statement inserted (if another member stores an id
between the two, the whole batch is staged). Only for the stored ids do the correction
statements run (`_correct`): a stored version whose content differs (`CONTENT_COLUMNS`) and
that was read earlier in partition order is archived with its breakdown in
`energy_cost_history`, then replaced, `revision + 1`. A result equal in content, or older,
changes nothing. Several reads of one id in a batch are written in rounds, in the order they
were read (`Batch.rounds`).
docs/sink.md, "Duplicates and corrections", says why an older version can never win.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg

from meterflow.contract.columns import (
    BREAKDOWN_COLUMNS,
    CONTENT_COLUMNS,
    COST_COLUMNS,
    LOCATION_COLUMNS,
)
from meterflow.db import connect
from meterflow.logs import error_text
from meterflow.sink.batch import Batch, version_key
from meterflow.sink.batch_failures import write_batch_failures
from meterflow.sink.decode import Persist
from meterflow.sink.text_rows import TextRows

log = logging.getLogger(__name__)

STAGE_COSTS = "mf_stage_energy_costs"
STAGE_BREAKDOWN = "mf_stage_energy_cost_breakdown"

_CREATE_STAGING = f"""
CREATE TEMP TABLE IF NOT EXISTS {STAGE_COSTS}
    (LIKE energy_costs INCLUDING DEFAULTS, PRIMARY KEY (id)) ON COMMIT DELETE ROWS;
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
       (SELECT count(*) FROM inserted_breakdown) AS breakdown,
       ARRAY(SELECT id FROM {STAGE_COSTS} EXCEPT SELECT id FROM inserted) AS stored
"""
"""`stored`: the staged ids already in the table, the only candidates for a correction."""

# A staged version `s` replaces the stored one `e` when its content differs and it was
# received later (`received_at`, the event's Kafka timestamp: its input record's, or the API's
# moment of pricing), so a correction sent through the API after its original went to
# `meter-records` wins however late the worker emits the original. Received in the same
# millisecond (or either without a timestamp): read later, in the same partition at a higher
# offset; across partitions (topic re-partitioned, a device moved to another location's key),
# by the time it was priced, then by where it was read. A replay decides every pair the same
# way again.
_DIFFERS = (
    f"({', '.join(f's.{c}' for c in CONTENT_COLUMNS)}) IS DISTINCT FROM "
    f"({', '.join(f'e.{c}' for c in CONTENT_COLUMNS)})"
)
_NEWER = """
CASE WHEN s.received_at <> e.received_at
     THEN s.received_at > e.received_at
     WHEN s.source_topic = e.source_topic AND s.source_partition = e.source_partition
     THEN s.source_offset > e.source_offset
     ELSE (s.time_created, s.source_topic, s.source_partition, s.source_offset)
          > (e.time_created, coalesce(e.source_topic, ''), coalesce(e.source_partition, -1),
             coalesce(e.source_offset, -1))
END"""

_FOREIGN = f"""
SELECT s.id FROM {STAGE_COSTS} s JOIN energy_costs e ON e.id = s.id
WHERE e.id = ANY($1::text[])
  AND (s.account_id, s.live_mode) IS DISTINCT FROM (e.account_id, e.live_mode)
"""
"""Stored ids whose staged version names another account or mode: a record's account and mode
are part of its identity (design §8.1), so no such version is a duplicate or a correction."""
FOREIGN_REASON = (
    "its id is the id of a result of another account or mode (a record's account and mode "
    "are part of its identity, design §8.1)"
)


class ForeignResultsError(Exception):
    """Raised inside the transaction (rolled back, the connection kept) when staged versions
    carry the id of a stored result of another account or mode (a record sent to
    `meter-records` with a copied `id`): `versions` maps their `version_key`s to the reason,
    for `Batch.reject`, and the batch is written again without them."""

    def __init__(self, versions: dict[str, str]) -> None:
        super().__init__(f"{len(versions)} result(s) with another account's id")
        self.versions = versions


_LOCK_CORRECTED = f"""
SELECT e.id FROM energy_costs e JOIN {STAGE_COSTS} s ON s.id = e.id
WHERE e.id = ANY($1::text[]) AND {_DIFFERS} AND {_NEWER}
ORDER BY e.id
FOR UPDATE OF e
"""
"""Which stored ids a staged version replaces, locked (in id order: two writers never
deadlock on them). The next statements take a new snapshot, so they see these rows as a
writer that held them before us left them."""

_HISTORY_COLUMNS = (*COST_COLUMNS, "revision", "inserted_at")
_BREAKDOWN_JSON = """coalesce((
    SELECT jsonb_agg(jsonb_build_object('seq', b.seq, 'start_time', b.start_time,
        'end_time', b.end_time, 'rate', b.rate, 'energy_kwh', b.energy_kwh, 'cost', b.cost)
        || CASE WHEN b.component IS NULL THEN '{}'::jsonb
                ELSE jsonb_build_object('component', b.component) END
        ORDER BY b.seq)
    FROM energy_cost_breakdown b WHERE b.cost_id = e.id), '[]'::jsonb)"""

_REPLACE = f"""
WITH archived AS (
    INSERT INTO energy_cost_history ({", ".join(_HISTORY_COLUMNS)}, breakdown)
    SELECT {", ".join(f"e.{c}" for c in _HISTORY_COLUMNS)}, {_BREAKDOWN_JSON}
    FROM energy_costs e JOIN {STAGE_COSTS} s ON s.id = e.id
    WHERE e.id = ANY($1::text[]) AND {_DIFFERS} AND {_NEWER}
    RETURNING id
)
UPDATE energy_costs e
SET ({", ".join(COST_COLUMNS[1:])}) = ({", ".join(f"s.{c}" for c in COST_COLUMNS[1:])}),
    revision = e.revision + 1, inserted_at = now()
FROM {STAGE_COSTS} s
WHERE s.id = e.id AND e.id = ANY($1::text[]) AND e.id IN (SELECT id FROM archived)
RETURNING e.id
"""
"""Write 1 of a correction: the stored version (row, revision, breakdown) into history, the
staged one in its place. Its breakdown follows in write 2 (`_DROP_BREAKDOWN`, then
`_ADD_BREAKDOWN`), in the same transaction: a crash between them leaves nothing."""

_DROP_BREAKDOWN = "DELETE FROM energy_cost_breakdown WHERE cost_id = ANY($1::text[])"
_ADD_BREAKDOWN = f"""
INSERT INTO energy_cost_breakdown ({_BREAKDOWN_LIST})
SELECT {_BREAKDOWN_SELECT}
FROM {STAGE_BREAKDOWN} b JOIN unnest($1::text[]) AS replaced (id) ON replaced.id = b.cost_id
"""

_STORED_IDS = "SELECT id FROM energy_costs WHERE id = ANY($1::text[])"

_DIRECT, _SPLIT, _STAGED = "direct", "split", "staged"
"""How `_write` stores the first read of each id (see there)."""

_MIRRORED = (*LOCATION_COLUMNS[1:], "deleted")
_UPSERT_LOCATION = f"""
INSERT INTO locations AS l ({", ".join(LOCATION_COLUMNS)}, deleted, updated_at)
VALUES ({", ".join(f"${i}" for i in range(1, len(LOCATION_COLUMNS) + 2))}, now())
ON CONFLICT (location_id) DO UPDATE SET
    {", ".join(f"{c} = excluded.{c}" for c in _MIRRORED)}, updated_at = now()
WHERE ({", ".join(f"l.{c}" for c in _MIRRORED)})
    IS DISTINCT FROM ({", ".join(f"excluded.{c}" for c in _MIRRORED)})
"""
"""A profile the row already holds (the API wrote it before publishing it, a replay) changes
nothing: its `updated_at` is the location's `time_updated`, which moved a moment after every
PUT when the sink read the same profile back."""

_DELETE_LOCATION = (
    "UPDATE locations SET deleted = true, updated_at = now() WHERE location_id = $1 AND NOT deleted"
)


@contextlib.asynccontextmanager
async def _by_index(conn: asyncpg.Connection) -> AsyncIterator[None]:
    """Plan the statements inside with index look-ups (for this transaction only).

    They touch a given list of ids, a small part of a large table, where a look-up per id is the
    only good plan; but right after a bulk load, before autovacuum has analysed the table, the
    planner's row count is stale and it scans `energy_costs` whole for every statement instead
    (measured in `bench_sink.py`'s mixed run: ~500 µs of PostgreSQL per correction instead of
    ~50 µs, and growing with the table)."""
    await conn.execute("SET LOCAL enable_seqscan = off")
    yield
    await conn.execute("SET LOCAL enable_seqscan = on")


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
    costs_replaced: int = 0  # corrections applied (each archived one version)


class PostgresWriter:
    """Owns one connection; a broken connection is dropped and reopened on the next write.

    Every statement on it gives up after `timeout_s`: the connection's `command_timeout`, which
    asyncpg applies to each statement given no timeout of its own, BEGIN, COPY and COMMIT
    included (they had none). A database that hangs instead of refusing then fails the
    checkpoint, which is retried, rather than holding the sink, its health and its shutdown for
    as long as it does not answer."""

    def __init__(self, database_url: str, *, timeout_s: float = 30.0) -> None:
        self._database_url = database_url
        self._timeout_s = timeout_s
        self._conn: asyncpg.Connection | None = None
        self._expect_stored = False
        """The last batch met stored ids: split the next one at once (a stream of duplicates
        or corrections would otherwise pay a failed COPY per batch). Reset by a batch that met
        none, so a plain stream keeps the fast path."""

    async def _connection(self) -> asyncpg.Connection:
        if self._conn is None or self._conn.is_closed():
            conn = await connect(self._database_url, command_timeout=self._timeout_s)
            try:
                await conn.execute(_CREATE_STAGING)
            except BaseException:
                conn.terminate()
                raise
            self._conn = conn
        return self._conn

    async def write(self, batch: Batch) -> WriteResult:
        """Write the batch atomically; raises (and forgets the connection) on any failure."""
        try:
            conn = await self._connection()
            result: WriteResult | None = None
            if not self._expect_stored:
                with contextlib.suppress(asyncpg.UniqueViolationError):
                    result = await self._write(conn, batch, _DIRECT)  # some id was stored
            if result is None:
                try:
                    result = await self._write(conn, batch, _SPLIT)
                except asyncpg.UniqueViolationError:  # another member stored one meanwhile
                    result = await self._write(conn, batch, _STAGED)
                self._expect_stored = result.costs_inserted < len(batch.costs)
            return result
        except ForeignResultsError:
            raise  # rolled back; the connection is sound
        except TimeoutError as error:  # a statement's says nothing; `connect`'s says which
            self._forget()
            raise TimeoutError(str(error) or self._no_answer(self._timeout_s)) from None
        except BaseException:
            self._forget()
            raise

    async def _write(self, conn: asyncpg.Connection, batch: Batch, mode: str) -> WriteResult:
        """Round 0 (the first read of every id): `_DIRECT` COPYs it straight into the tables,
        which fails as a whole on any stored id; `_SPLIT` asks which ids are stored, COPYs the
        others straight in and stages the stored ones; `_STAGED` stages all. Staged results
        are merged (`ON CONFLICT (id) DO NOTHING`), then corrections are applied. Later rounds
        (ids read again in this batch) are always staged. Same end state in every mode."""
        inserted = breakdown_inserted = replaced = 0
        async with conn.transaction():
            rounds = [results for results in batch.rounds() if results]
            for n, results in enumerate(rounds):
                if n > 0:
                    await conn.execute(f"TRUNCATE {STAGE_COSTS}, {STAGE_BREAKDOWN}")
                elif mode != _STAGED:
                    new, results = await self._split(conn, results, mode)
                    breakdown_inserted += await self._copy_results(conn, batch, new, staged=False)
                    inserted += len(new)
                    if not results:
                        continue
                await self._copy_results(conn, batch, results, staged=True)
                merged = await conn.fetchrow(_MERGE_STAGED)
                assert merged is not None
                inserted += merged["costs"]
                breakdown_inserted += merged["breakdown"]
                if merged["stored"]:
                    foreign = await conn.fetch(_FOREIGN, merged["stored"])
                    if foreign:
                        first = n == 0
                        raise ForeignResultsError(
                            {
                                version_key(results[r["id"]], first=first): FOREIGN_REASON
                                for r in foreign
                            }
                        )
                    corrected, items = await self._correct(conn, merged["stored"])
                    replaced += corrected
                    breakdown_inserted += items
            locations = await self._write_locations(conn, batch)
            failures = batch.batch_failures.values()
            await write_batch_failures(conn, failures)
        return WriteResult(inserted, breakdown_inserted, locations, mode == _DIRECT, replaced)

    async def _split(
        self, conn: asyncpg.Connection, results: dict[str, Persist], mode: str
    ) -> tuple[dict[str, Persist], dict[str, Persist]]:
        """(results to COPY straight in, results to stage): `_SPLIT` stages the stored ids."""
        if mode == _DIRECT:
            return results, {}
        async with _by_index(conn):
            rows = await conn.fetch(_STORED_IDS, list(results))
        stored = {row["id"] for row in rows}
        new = {i: p for i, p in results.items() if i not in stored}
        return new, {i: p for i, p in results.items() if i in stored}

    async def _copy_results(
        self, conn: asyncpg.Connection, batch: Batch, results: dict[str, Persist], *, staged: bool
    ) -> int:
        """COPY the results and their breakdown (both forms); returns the breakdown rows."""
        costs_table = STAGE_COSTS if staged else "energy_costs"
        breakdown_table = STAGE_BREAKDOWN if staged else "energy_cost_breakdown"
        await self._copy(
            conn, costs_table, COST_COLUMNS, batch.cost_text(results), batch.cost_rows(results)
        )
        text, rows = batch.breakdown_text(results), batch.breakdown_rows(results)
        await self._copy(conn, breakdown_table, BREAKDOWN_COLUMNS, text, rows)
        return text.count("\n") + len(rows)

    async def _correct(self, conn: asyncpg.Connection, stored: list[str]) -> tuple[int, int]:
        """Replace the stored versions the staged ones supersede: (costs, breakdown rows)."""
        async with _by_index(conn):
            locked = [r["id"] for r in await conn.fetch(_LOCK_CORRECTED, stored)]
            if not locked:
                return 0, 0  # duplicates and replays of older versions: nothing changes
            ids = [r["id"] for r in await conn.fetch(_REPLACE, locked)]
            await conn.execute(_DROP_BREAKDOWN, ids)
        status = await conn.execute(_ADD_BREAKDOWN, ids)  # scans staging
        return len(ids), int(status.rsplit(" ", 1)[1])

    async def _write_locations(self, conn: asyncpg.Connection, batch: Batch) -> int:
        upserts: list[tuple[Any, ...]] = []
        deletes: list[tuple[Any, ...]] = []
        for location_id, change in batch.locations.items():
            if change.row is not None:
                upserts.append((*change.row, change.deleted))
            else:
                deletes.append((location_id,))
        if upserts:
            await conn.executemany(_UPSERT_LOCATION, upserts)
        if deletes:
            await conn.executemany(_DELETE_LOCATION, deletes)
        return len(upserts) + len(deletes)

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
            )
        if records:
            await conn.copy_records_to_table(table, records=records, columns=columns)

    async def find_unstorable(self, batch: Batch) -> tuple[dict[str, str], dict[str, str]]:
        """Rows that cannot be stored (PostgreSQL data errors, values asyncpg cannot encode),
        tried one at a time in a transaction that is rolled back: (cost id -> reason,
        location id -> reason). Slow; only used after such an error."""
        conn = await self._connection()
        costs: dict[str, str] = {}
        locations: dict[str, str] = {}
        try:
            async with conn.transaction():
                for cost_id, persist in batch.versions().items():
                    try:
                        # A savepoint per row, always rolled back: versions of one id share it.
                        async with conn.transaction():
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
                            raise _ProbeRollbackError
                    except _ProbeRollbackError:
                        pass
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
            self._forget()
            raise
        return costs, locations

    async def problem(self, timeout_s: float = 2.0) -> str:
        """Why PostgreSQL did not answer a round trip on the writer's connection ("" when it
        did): a sink with nothing to write would not notice the database gone. Never while a
        write is in flight (one connection: the sink's lock orders them)."""
        try:
            conn = await asyncio.wait_for(self._connection(), timeout_s)
            await conn.fetchval("SELECT 1", timeout=timeout_s)
        except TimeoutError:
            self._forget()
            return self._no_answer(timeout_s)
        except Exception as error:
            self._forget()
            return f"PostgreSQL unreachable: {error_text(error)}"[:500]
        except BaseException:  # cancelled mid-round-trip: the connection's state is unknown
            self._forget()
            raise
        return ""

    @staticmethod
    def _no_answer(timeout_s: float) -> str:
        return f"PostgreSQL did not answer within {timeout_s:g} s"

    def _forget(self) -> None:
        """Drop the connection: the next write or probe opens a new one."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.terminate()

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            try:
                await conn.close(timeout=5)
            except Exception:
                conn.terminate()
