"""`meterflow keys create|revoke|list`: API keys, stored hashed; the clear key is shown once."""

from __future__ import annotations

import asyncio
import re

import click

from meterflow.settings import get_settings

_ACCOUNT = re.compile(r"^acc_[A-Za-z0-9_]{1,124}$")


@click.group(name="keys")
def keys() -> None:
    """Manage API keys (sk_test_…/sk_live_…)."""


@keys.command(name="create")
@click.option("--account", "account_id", required=True, help="account id, acc_…")
@click.option("--mode", type=click.Choice(["test", "live"]), default="test", show_default=True)
def create_command(account_id: str, mode: str) -> None:
    """Create a key and print it once (only its hash is stored)."""
    from meterflow.api.repository import create_api_key
    from meterflow.db import connect

    if not _ACCOUNT.match(account_id):
        raise click.BadParameter(
            "expected acc_ followed by letters, digits or _", param_hint="--account"
        )

    async def run() -> tuple[str, str]:
        conn = await connect(get_settings().database_url)
        try:
            info, key = await create_api_key(conn, account_id=account_id, live_mode=mode == "live")
            return info.id, key
        finally:
            await conn.close()

    key_id, key = asyncio.run(run())
    click.echo(
        f"created {key_id} for {account_id} ({mode}); store this key now, it is not shown again:",
        err=True,
    )
    click.echo(key)


@keys.command(name="revoke")
@click.argument("key_id")
def revoke_command(key_id: str) -> None:
    """Revoke a key by id (key_…); APIs refuse it within MF_API_KEY_CACHE_SECONDS."""
    from meterflow.api.repository import revoke_api_key
    from meterflow.db import connect

    async def run() -> bool:
        conn = await connect(get_settings().database_url)
        try:
            return await revoke_api_key(conn, key_id)
        finally:
            await conn.close()

    if not asyncio.run(run()):
        raise click.ClickException(f"no active key {key_id}")
    click.echo(f"revoked {key_id}")


@keys.command(name="list")
@click.option("--account", "account_id", default=None, help="only this account")
def list_command(account_id: str | None) -> None:
    """List keys (id, account, mode, prefix, created, revoked); never the keys themselves."""
    from meterflow.api.repository import list_api_keys
    from meterflow.db import connect

    async def run() -> list[str]:
        conn = await connect(get_settings().database_url)
        try:
            found = await list_api_keys(conn, account_id)
        finally:
            await conn.close()
        return [
            "\t".join(
                [
                    info.id,
                    info.account_id,
                    "live" if info.live_mode else "test",
                    info.key_prefix + "…",
                    info.created_at.isoformat(),
                    info.revoked_at.isoformat() if info.revoked_at else "active",
                ]
            )
            for info in found
        ]

    for line in asyncio.run(run()):
        click.echo(line)
