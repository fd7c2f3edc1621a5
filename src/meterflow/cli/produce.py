"""`meterflow produce`: a load generator for the pipeline (demo profiles + meter records)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import click

from meterflow.settings import get_settings


def _file_records(path: Path) -> Iterator[tuple[bytes | None, bytes]]:
    """JSON Lines as given (bytes untouched), keyed by each line's `location_id`."""
    from meterflow.models import loads

    with path.open("rb") as lines:
        for number, line in enumerate(lines, start=1):
            raw = line.strip()
            if not raw:
                continue
            try:
                document = loads(raw)
                location = document.get("location_id") if isinstance(document, dict) else None
            except ValueError:
                location = None  # sent anyway: the pipeline dead-letters it, as it should
            if location is None:
                click.echo(f"line {number}: no location_id, sent without a key", err=True)
            yield (str(location).encode() if location is not None else None), raw


@click.command(name="produce")
@click.option(
    "--locations",
    "location_count",
    default=100,
    show_default=True,
    help="demo locations (5-period TOU profiles)",
)
@click.option(
    "--records",
    "record_count",
    default=1000,
    show_default=True,
    help="synthetic records to send (ignored with --file)",
)
@click.option("--rate", default=0.0, show_default=True, help="records per second; 0 = max")
@click.option(
    "--file",
    "file_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="JSON Lines meter records to send instead of synthetic ones",
)
@click.option(
    "--profiles/--no-profiles",
    default=True,
    show_default=True,
    help="publish the demo profiles first",
)
def produce(
    location_count: int, record_count: int, rate: float, file_path: Path | None, profiles: bool
) -> None:
    """Publish demo profiles to `locations`, then meter records to `meter-records`."""
    asyncio.run(_produce(location_count, record_count, rate, file_path, profiles))


async def _produce(
    location_count: int, record_count: int, rate: float, file_path: Path | None, profiles: bool
) -> None:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from meterflow.contract.topics import LOCATIONS, METER_RECORDS
    from meterflow.kafka_admin import ensure_topics
    from meterflow.stream.producing import (
        demo_location_id,
        demo_profile,
        kafka_producer,
        keyed,
        send_all,
        synthetic_records,
    )

    settings = get_settings()
    await ensure_topics(settings)
    location_ids = [demo_location_id(i) for i in range(location_count)]
    async with kafka_producer(settings) as producer:
        if profiles:
            result = await send_all(
                producer,
                settings.topic(LOCATIONS),
                keyed((demo_profile(loc) for loc in location_ids), "location_id"),
            )
            click.echo(
                f"profiles: {result.sent} sent, {result.failed} failed "
                f"to {settings.topic(LOCATIONS)}"
            )
        if file_path is not None:
            messages = list(_file_records(file_path))
        else:
            messages = list(keyed(synthetic_records(location_ids, record_count), "location_id"))
        columns = (TextColumn("records"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns) as progress:
            task = progress.add_task("records", total=len(messages))
            summary = await send_all(
                producer,
                settings.topic(METER_RECORDS),
                messages,
                rate=rate or None,
                on_progress=lambda n: progress.advance(task, n),
            )
    click.echo(
        f"records: {summary.sent} sent, {summary.failed} failed to "
        f"{settings.topic(METER_RECORDS)} in {summary.elapsed_s:.2f} s "
        f"({summary.rate:,.0f} records/s)"
    )
    if summary.failed:
        raise SystemExit(1)
