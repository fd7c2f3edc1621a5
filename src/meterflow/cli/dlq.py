"""`meterflow dlq replay`: re-drive dead letters through the pipeline."""

from __future__ import annotations

import asyncio

import click

from meterflow.models import ErrorCode
from meterflow.settings import get_settings


@click.group(name="dlq")
def dlq() -> None:
    """Dead letters on the `dead-letters` topic."""


@dlq.command(name="replay")
@click.option(
    "--code",
    "codes",
    multiple=True,
    type=click.Choice([c.value for c in ErrorCode]),
    help="only dead letters with this code (repeatable); default: all",
)
@click.option(
    "--from-beginning",
    is_flag=True,
    help="start at the oldest dead letter, not at the replay group's committed offset",
)
@click.option(
    "--dry-run", is_flag=True, help="count what would be replayed; send and commit nothing"
)
@click.option(
    "--group",
    "group_id",
    default=None,
    help="consumer group that remembers what was replayed (default {prefix}{app_id}-dlq-replay)",
)
def replay(
    codes: tuple[str, ...], from_beginning: bool, dry_run: bool, group_id: str | None
) -> None:
    """Re-publish dead-lettered meter records and readings (with their original ids).

    A record goes back to `meter-records`, a reading to `meter-readings` (or, when its interval
    was derived and only pricing it failed, that interval to `meter-records`). What fails again
    goes back to `dead-letters` through the agents.
    """
    from meterflow.logs import configure_logging
    from meterflow.stream.replay import replay_dead_letters

    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)
    summary = asyncio.run(
        replay_dead_letters(
            settings, codes=codes, from_beginning=from_beginning, dry_run=dry_run, group_id=group_id
        )
    )
    verb = "would replay" if dry_run else "replayed"
    by_code = ", ".join(f"{code}: {n}" for code, n in sorted(summary.by_code.items())) or "none"
    click.echo(
        f"read {summary.read} dead letters; {verb} {summary.replayed} ({by_code}), "
        f"{summary.readings} of them readings; skipped {summary.skipped_code} by code, "
        f"{summary.skipped_not_a_record} not meter records or readings, "
        f"{summary.unreadable} unreadable"
    )
