"""PostgreSQL adapter: connections, pools and the versioned schema (design §6).

`connect` gives one plain asyncpg connection (the sink uses it: binary COPY needs asyncpg's own
codecs). `create_pool` gives a pool whose `json`/`jsonb` values decode with Decimal numbers, so a
stored request or profile reads back exactly as it was written.
"""

from __future__ import annotations

from meterflow.db.connections import close_pool, connect, create_pool, register_json_codecs
from meterflow.db.migrate import Migration, MigrationError, available_migrations, migrate

__all__ = [
    "Migration",
    "MigrationError",
    "available_migrations",
    "close_pool",
    "connect",
    "create_pool",
    "migrate",
    "register_json_codecs",
]
