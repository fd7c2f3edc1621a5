"""`meterflow produce`: a load generator for the pipeline (demo profiles + meter records, or
cumulative register readings with `--readings`)."""

from __future__ import annotations

import asyncio
import math
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


def _a_number(ctx: click.Context, param: click.Parameter, value: float) -> float:
    """`FloatRange` compares, and nan compares false with every bound: it got through."""
    if math.isnan(value):
        raise click.BadParameter("nan is not a rate")
    return value


@click.command(name="produce")
@click.option(
    "--locations",
    "location_count",
    type=click.IntRange(min=1),
    default=100,
    show_default=True,
    help="demo locations (5-period TOU profiles)",
)
@click.option(
    "--records",
    "record_count",
    type=click.IntRange(min=0),
    default=1000,
    show_default=True,
    help="synthetic records (or readings) to send (ignored with --file)",
)
@click.option(
    "--readings",
    is_flag=True,
    default=False,
    help="send cumulative register readings to meter-readings instead, one meter per location, "
    "with occasional duplicates and resets (design §10)",
)
@click.option(
    "--rate",
    type=click.FloatRange(min=0, max=1e9),
    callback=_a_number,
    default=0.0,
    show_default=True,
    help="records per second; 0 = max",
)
@click.option(
    "--file",
    "file_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="JSON Lines meter records (readings with --readings) to send instead of synthetic ones",
)
@click.option(
    "--profiles/--no-profiles",
    default=True,
    show_default=True,
    help="publish the demo profiles first",
)
def produce(
    location_count: int,
    record_count: int,
    readings: bool,
    rate: float,
    file_path: Path | None,
    profiles: bool,
) -> None:
    """Publish demo profiles to `locations`, then meter records to `meter-records` (or register
    readings to `meter-readings`)."""
    asyncio.run(_produce(location_count, record_count, readings, rate, file_path, profiles))


async def _produce(
    location_count: int,
    record_count: int,
    readings: bool,
    rate: float,
    file_path: Path | None,
    profiles: bool,
) -> None:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from meterflow.contract.topics import LOCATIONS, METER_READINGS, METER_RECORDS
    from meterflow.kafka_admin import ensure_topics
    from meterflow.stream.producing import (
        demo_location_id,
        demo_profile,
        kafka_producer,
        keyed,
        send_all,
        synthetic_readings,
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
        what, topic = ("readings", METER_READINGS) if readings else ("records", METER_RECORDS)
        generate = synthetic_readings if readings else synthetic_records
        if file_path is not None:
            messages = list(_file_records(file_path))
        else:
            messages = list(keyed(generate(location_ids, record_count), "location_id"))
        columns = (TextColumn(what), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns) as progress:
            task = progress.add_task(what, total=len(messages))
            summary = await send_all(
                producer,
                settings.topic(topic),
                messages,
                rate=rate or None,
                on_progress=lambda n: progress.advance(task, n),
            )
    click.echo(
        f"{what}: {summary.sent} sent, {summary.failed} failed to "
        f"{settings.topic(topic)} in {summary.elapsed_s:.2f} s "
        f"({summary.rate:,.0f} {what}/s)"
    )
    if summary.failed:
        raise SystemExit(1)
