"""`meterflow db migrate`: bring the database schema up to date (idempotent)."""

from __future__ import annotations

import asyncio

import click

from meterflow.settings import get_settings


@click.group(name="db")
def db() -> None:
    """Database schema management."""


@db.command(name="migrate")
@click.option(
    "--database-url", envvar="MF_DATABASE_URL", default=None, help="default: MF_DATABASE_URL"
)
def migrate_command(database_url: str | None) -> None:
    """Apply pending schema migrations (forward-only; a no-op when up to date)."""
    from meterflow.db import available_migrations, migrate
    from meterflow.logs import configure_logging

    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)
    url = database_url or settings.database_url
    applied = asyncio.run(migrate(url))
    latest = available_migrations()[-1].version if available_migrations() else 0
    if applied:
        names = ", ".join(f"{m.version:04d}_{m.name}" for m in applied)
        click.echo(f"applied {len(applied)} migration(s): {names}; schema at version {latest}")
    else:
        click.echo(f"schema up to date at version {latest}")
