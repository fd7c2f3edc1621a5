"""Versioned, forward-only schema migrations: `migrations/NNNN_name.sql`, applied in order.

Each migration runs in its own transaction together with its `schema_migrations` row, so it is
applied fully or not at all. A session-level advisory lock serialises concurrent runners (two
workers starting at once): the second waits, then finds nothing left to do. An applied migration
whose file changed since is an error, never silently skipped: fix forward with a new file.
Why not yoyo-migrations or alembic: docs/architecture.md, "Libraries and what we keep by hand".
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from importlib import resources

import asyncpg

from meterflow.db.connections import connect
from meterflow.logs import event

log = logging.getLogger(__name__)

# Arbitrary, fixed: the advisory lock key every meterflow migrator takes ("mf" + "migr").
ADVISORY_LOCK_KEY = 0x6D66_6D69_6772
_FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")

_CREATE_LEDGER = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version     int PRIMARY KEY,
    name        text NOT NULL,
    checksum    text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
)
"""


class MigrationError(Exception):
    """The database's schema history disagrees with the migration files."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def available_migrations() -> list[Migration]:
    """The migration files shipped in the package, in version order."""
    found: list[Migration] = []
    for entry in resources.files("meterflow.db").joinpath("migrations").iterdir():
        match = _FILE_NAME.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"two migration files share a version: {versions}")
    return found


async def migrate(database_url: str, migrations: list[Migration] | None = None) -> list[Migration]:
    """Apply every pending migration; returns those applied now (empty when up to date)."""
    todo = available_migrations() if migrations is None else migrations
    conn = await connect(database_url)
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", ADVISORY_LOCK_KEY)
        try:
            return await _apply_pending(conn, todo)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", ADVISORY_LOCK_KEY)
    finally:
        await conn.close()


async def _apply_pending(conn: asyncpg.Connection, migrations: list[Migration]) -> list[Migration]:
    await conn.execute(_CREATE_LEDGER)
    applied = {
        row["version"]: row
        for row in await conn.fetch("SELECT version, name, checksum FROM schema_migrations")
    }
    done: list[Migration] = []
    for migration in migrations:
        row = applied.get(migration.version)
        if row is not None:
            if row["checksum"] != migration.checksum:
                raise MigrationError(
                    f"migration {migration.version:04d}_{migration.name} was changed after it was "
                    "applied; migrations are forward-only: add a new file instead"
                )
            continue
        async with conn.transaction():
            await conn.execute(migration.sql)
            await conn.execute(
                "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                migration.version,
                migration.name,
                migration.checksum,
            )
        event(log, "migration_applied", version=migration.version, name=migration.name)
        done.append(migration)
    unknown = sorted(set(applied) - {m.version for m in migrations})
    if unknown:
        event(log, "migrations_unknown", logging.WARNING, versions=unknown)
    return done
