"""asyncpg connection helpers with the project's conventions (exact JSON, short timeouts)."""

from __future__ import annotations

from typing import Any

import asyncpg

from meterflow.models import dumps, loads

CONNECT_TIMEOUT_S = 10.0


async def connect(database_url: str, **kwargs: Any) -> asyncpg.Connection:
    """One connection with asyncpg's default codecs (jsonb values are `str`); a server that
    accepts the socket and never answers raises a TimeoutError saying so (asyncpg's says
    nothing)."""
    timeout = kwargs.setdefault("timeout", CONNECT_TIMEOUT_S)
    try:
        return await asyncpg.connect(database_url, **kwargs)
    except TimeoutError:
        raise TimeoutError(f"PostgreSQL did not accept a connection within {timeout:g} s") from None


def _encode_json(value: Any) -> str:
    return dumps(value).decode()


async def register_json_codecs(conn: asyncpg.Connection) -> None:
    """Read and write `json`/`jsonb` as Python values, numbers as `Decimal` (never float)."""
    for type_name in ("json", "jsonb"):
        await conn.set_type_codec(
            type_name, encoder=_encode_json, decoder=loads, schema="pg_catalog", format="text"
        )


async def create_pool(
    database_url: str, *, min_size: int = 1, max_size: int = 10, **kwargs: Any
) -> asyncpg.Pool:
    """A pool for request handlers; json/jsonb round-trip as Python values with exact numbers."""
    kwargs.setdefault("timeout", CONNECT_TIMEOUT_S)
    pool = await asyncpg.create_pool(
        database_url, min_size=min_size, max_size=max_size, init=register_json_codecs, **kwargs
    )
    assert pool is not None
    return pool


async def close_pool(pool: asyncpg.Pool) -> None:
    """Close `pool`, or drop its connections when the database does not answer the goodbye
    (it hangs: each close waits the pool's statement timeout, then raises): a process asked to
    stop must stop, and an error at the very end made a clean SIGTERM exit 1."""
    try:
        await pool.close()
    except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
        pool.terminate()
