"""`meterflow profiles put|delete` and `meterflow prices put`: publish validated documents."""

from __future__ import annotations

import asyncio
from pathlib import Path

import click

from meterflow.models import problem_text
from meterflow.settings import get_settings

EXIT_INVALID = 2


async def _publish(topic_name: str, key: bytes, value: bytes | None) -> str:
    from meterflow.kafka_admin import ensure_topics
    from meterflow.stream.producing import kafka_producer

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
    from meterflow.contract.keys import location_key
    from meterflow.contract.locations import parse_profile
    from meterflow.contract.topics import LOCATIONS

    raw = file.read_bytes()
    try:
        profile = parse_profile(raw)
    except ValueError as exc:
        click.echo(f"invalid profile {file}: {problem_text(exc, whole='profile')}", err=True)
        raise SystemExit(EXIT_INVALID) from None
    where = asyncio.run(_publish(LOCATIONS, location_key(profile.location_id), raw))
    click.echo(f"published profile {profile.location_id} to {where}")


@profiles.command(name="delete")
@click.argument("location_id")
def delete_profile(location_id: str) -> None:
    """Publish a tombstone: the location's profile is removed from the table."""
    if not location_id:  # an empty key names no profile (it was published, harmlessly)
        raise click.BadParameter("a location id is not empty", param_hint="LOCATION_ID")
    from meterflow.contract.keys import location_key
    from meterflow.contract.topics import LOCATIONS

    where = asyncio.run(_publish(LOCATIONS, location_key(location_id), None))
    click.echo(f"deleted profile {location_id} ({where})")


@click.group(name="prices")
def prices() -> None:
    """Market prices (one UTC day of one series) on the `market-prices` topic."""


@prices.command(name="put")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def put_prices(file: Path) -> None:
    """Validate a MarketPrices JSON file, then publish it under `{series_id}/{day}`."""
    from meterflow.contract.keys import market_prices_key_of
    from meterflow.contract.market_prices import parse_market_prices
    from meterflow.contract.topics import MARKET_PRICES

    raw = file.read_bytes()
    try:
        document = parse_market_prices(raw)
    except ValueError as exc:  # ValidationError is one
        click.echo(f"invalid market prices {file}: {problem_text(exc, whole='prices')}", err=True)
        raise SystemExit(EXIT_INVALID) from None
    key = market_prices_key_of(document)
    where = asyncio.run(_publish(MARKET_PRICES, key.encode(), raw))
    click.echo(f"published market prices {key} to {where}")
