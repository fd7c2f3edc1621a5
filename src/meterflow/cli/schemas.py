"""`meterflow schemas export [--check]`: write or verify `schemas/<Model>.schema.json`."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from meterflow.schemas import export as export_schemas


@click.group()
def schemas() -> None:
    """JSON Schemas of the contract's documents."""


@schemas.command("export")
@click.option(
    "--dir",
    "directory",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("schemas"),
    show_default=True,
)
@click.option(
    "--check", is_flag=True, help="Write nothing; exit 1 if a file differs from the models."
)
def export(directory: Path, check: bool) -> None:
    """Write schemas/<Model>.schema.json for every contract document."""
    if check and not directory.is_dir():  # else every file is "out of date", which misleads
        raise click.BadParameter(
            f"{directory} is not a directory (run from the project's root, or give --dir)",
            param_hint="--dir",
        )
    drifted = export_schemas(directory, check=check)
    if check and drifted:
        click.echo(f"out of date: {', '.join(drifted)} (run `meterflow schemas export`)", err=True)
        sys.exit(1)
    verb = "would update" if check else "updated"
    click.echo(f"{verb} {len(drifted)} schema file(s) in {directory}", err=True)
