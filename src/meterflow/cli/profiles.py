"""`meterflow profiles put|delete` and `meterflow prices put`: publish validated documents."""

from __future__ import annotations

import asyncio
from pathlib import Path

import click

from meterflow.settings import get_settings

EXIT_INVALID = 2


async def _publish(topic_name: str, key: bytes, value: bytes | None) -> str:
    from meterflow.stream.producing import kafka_producer
    from meterflow.stream.topics import ensure_topics

    settings = get_settings()
    await ensure_topics(settings)
    topic = settings.topic(topic_name)
    async with kafka_producer(settings) as producer:
        metadata = await producer.send_and_wait(topic, value=value, key=key)
    return f"{topic}[{metadata.partition}]@{metadata.offset}"


@click.group(name="profiles")
def profiles() -> None:
    """Location profiles on the `locations` topic."""


@profiles.command(name="put")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def put_profile(file: Path) -> None:
    """Validate a LocationProfile JSON file, then publish it (keyed by its location_id)."""
    from meterflow.stream.profiles import parse_profile
    from meterflow.stream.topics import LOCATIONS

    raw = file.read_bytes()
    try:
        profile = parse_profile(raw)
    except ValueError as exc:
        click.echo(f"invalid profile {file}: {exc}", err=True)
        raise SystemExit(EXIT_INVALID) from None
    where = asyncio.run(_publish(LOCATIONS, profile.location_id.encode(), raw))
    click.echo(f"published profile {profile.location_id} to {where}")


@profiles.command(name="delete")
@click.argument("location_id")
def delete_profile(location_id: str) -> None:
    """Publish a tombstone: the location's profile is removed from the table."""
    from meterflow.stream.topics import LOCATIONS

    where = asyncio.run(_publish(LOCATIONS, location_id.encode(), None))
    click.echo(f"deleted profile {location_id} ({where})")


@click.group(name="prices")
def prices() -> None:
    """Market prices (one UTC day of one series) on the `market-prices` topic."""


@prices.command(name="put")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def put_prices(file: Path) -> None:
    """Validate a MarketPrices JSON file, then publish it under `{series_id}/{day}`."""
    from pydantic import ValidationError

    from meterflow.models import MarketPrices, loads
    from meterflow.stream.topics import MARKET_PRICES

    raw = file.read_bytes()
    try:
        document = MarketPrices.model_validate(loads(raw))
    except (ValueError, ValidationError) as exc:
        click.echo(f"invalid market prices {file}: {exc}", err=True)
        raise SystemExit(EXIT_INVALID) from None
    where = asyncio.run(_publish(MARKET_PRICES, document.key.encode(), raw))
    click.echo(f"published market prices {document.key} to {where}")
