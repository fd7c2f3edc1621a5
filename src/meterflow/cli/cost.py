"""`meterflow cost`: price meter records offline, JSON Lines in, JSON Lines out, no Kafka.

Each input line goes through `costing.cost_payload`, the same path as the stream and the API,
so offline simulations and the checks run from outside see exactly what production computes.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import IO, NoReturn

import click
from pydantic import ValidationError

from meterflow.cli.inputs import InputError, read_market_prices, read_profile
from meterflow.costing import cost_payload
from meterflow.costing.timeline import SUPPORTED_YEARS, to_us, within_supported_years
from meterflow.models import (
    DeadLetter,
    LocationProfile,
    MarketPrices,
    SourceRef,
    dumps,
    parse_instant,
)

STDIN_TOPIC = "stdin"
"""A record without `id` gets `ids.meter_record_id_for_offset("stdin", 0, <line number>)`."""


def _fail(message: str) -> NoReturn:
    click.echo(f"meterflow cost: {message}", err=True)
    sys.exit(2)


def price_lines(
    lines: IO[bytes],
    out: IO[bytes],
    profile: LocationProfile,
    market_prices: Callable[[str, date], MarketPrices | None],
    now: datetime,
    max_record_hours: int,
) -> tuple[int, int]:
    """Price every non-blank line; write one result line each; return (priced, failed)."""
    priced = failed = 0

    def profiles(location_id: str) -> LocationProfile | None:
        return profile if location_id == profile.location_id else None

    for number, line in enumerate(lines, start=1):
        payload = line.rstrip(b"\r\n")
        if not payload.strip():
            continue
        result = cost_payload(
            payload,
            profiles=profiles,
            market_prices=market_prices,
            now=now,
            source=SourceRef.model_construct(topic=STDIN_TOPIC, partition=0, offset=number),
            max_record_hours=max_record_hours,
        )
        if isinstance(result, DeadLetter):
            failed += 1
            out.write(dumps({"error": result.error}) + b"\n")
        else:
            priced += 1
            out.write(dumps(result) + b"\n")
    return priced, failed


def _rfc3339(text: str) -> datetime:
    """`--now` read as a record's instants are (any RFC 3339 form with `Z` or an offset)."""
    try:
        instant = parse_instant(text)
    except ValidationError:
        raise click.BadParameter(
            f"{text!r} is not an RFC 3339 timestamp with Z or an offset"
        ) from None
    at = to_us(instant)
    if not within_supported_years(at, at):  # some have no UTC form: a traceback, below
        raise click.BadParameter(f"{text!r} must lie {SUPPORTED_YEARS}")
    return instant


@click.command()
@click.option(
    "--profile",
    "profile_path",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="LocationProfile JSON file (validated first; a bad profile exits with status 2).",
)
@click.option(
    "--market-prices",
    "market_path",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    default=None,
    help="JSON Lines of MarketPrices documents, for DYNAMIC tariffs with a series_id.",
)
@click.option(
    "--max-record-hours",
    type=click.IntRange(min=1),
    envvar="MF_MAX_RECORD_HOURS",
    default=744,
    show_default=True,
)
@click.option(
    "--now",
    metavar="RFC3339",
    default=None,
    callback=lambda _ctx, _param, text: None if text is None else _rfc3339(text),
    help="time_created of the results (default: the current time), for reproducible output.",
)
def cost(
    profile_path: Path, market_path: Path | None, max_record_hours: int, now: datetime | None
) -> None:
    """Price meter records (JSON Lines on stdin) against one location profile.

    Writes one line per record, in order: the EnergyCost, or {"error": {"code", "message"}}.
    A bad record never stops the others. Records without `id` get an id derived from their
    line number.
    """
    try:
        profile = read_profile(profile_path)
        market_prices = read_market_prices(market_path)
    except InputError as error:
        _fail(str(error))
    when = now.astimezone(UTC) if now is not None else datetime.now(UTC)
    stdout = sys.stdout.buffer
    priced, failed = price_lines(
        sys.stdin.buffer, stdout, profile, market_prices, when, max_record_hours
    )
    stdout.flush()
    click.echo(f"priced {priced} record(s), {failed} failed", err=True)
