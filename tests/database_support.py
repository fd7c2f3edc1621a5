"""Temporary PostgreSQL databases for the tests, created next to the shared one and dropped
after use, so tests never see each other's rows."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator
from urllib.parse import urlparse, urlunparse

import asyncpg

from meterflow.db import migrate


@contextlib.asynccontextmanager
async def temporary_database(database_url: str, *, migrated: bool = False) -> AsyncIterator[str]:
    """A new database `mf_test_<random>` owned by the test role (empty, or with every migration
    applied when `migrated`), dropped on exit even when connections are still open."""
    name = f"mf_test_{secrets.token_hex(6)}"
    admin = await asyncpg.connect(database_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        url = urlunparse(urlparse(database_url)._replace(path=f"/{name}"))
        if migrated:
            await migrate(url)
        yield url
    finally:
        await _drop(database_url, name)


async def _drop(database_url: str, name: str, attempts: int = 60) -> None:
    """DROP … WITH (FORCE), again while an autovacuum worker is in the database: PostgreSQL 15
    lets only a superuser or pg_signal_backend terminate one, and our role is neither (a test
    that wrote many rows failed its teardown so in CI). The worker is gone in a moment."""
    admin = await asyncpg.connect(database_url)
    try:
        for attempt in range(attempts):
            try:
                await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                return
            except asyncpg.InsufficientPrivilegeError:
                if attempt == attempts - 1:
                    raise
                await asyncio.sleep(0.5)
    finally:
        await admin.close()
