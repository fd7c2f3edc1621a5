"""Temporary PostgreSQL databases for the tests, created next to the shared one and dropped
after use, so tests never see each other's rows."""

from __future__ import annotations

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
        admin = await asyncpg.connect(database_url)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()
