"""`meterflow rates` and `meterflow slots`: design §12 offline, from a location profile file.

The same pure calls as `GET /tariffs/rates` and `GET /slots/time` (`costing.quotes`), so a
schedule planned from a file is the one the API would answer. A table by default (rich), or
`--json` with the API's `data` items. Times are written in the `--to` offset, as the API does
with `end_time`.

Exit status: 0 answered, 1 no tariff in force somewhere in the window, 2 bad input (profile,
window, duration).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import date, datetime, tzinfo
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click
from pydantic import ValidationError

from meterflow.cli.inputs import InputError, read_market_prices, read_profile
from meterflow.costing import quotes
from meterflow.costing.timeline import US_PER_MINUTE, from_us, to_us
from meterflow.models import (
    LocationProfile,
    MarketPrices,
    PricingError,
    TariffDirection,
    dumps,
    parse_instant,
)

T = TypeVar("T")


def _fail(command: str, message: str, status: int = 2) -> NoReturn:
    click.echo(f"meterflow {command}: {message}", err=True)
    sys.exit(status)


def _inputs(
    command: str, profile_path: Path, market_path: Path | None
) -> tuple[LocationProfile, Callable[[str, date], MarketPrices | None]]:
    try:
        return read_profile(profile_path), read_market_prices(market_path)
    except InputError as error:
        _fail(command, str(error))


def _instant(command: str, name: str, text: str) -> datetime:
    try:
        return parse_instant(text)
    except ValidationError:
        _fail(command, f"{name} must be an RFC 3339 timestamp with Z or an offset: {text!r}")


def _emit_json(profile: LocationProfile, direction: str, data: list[dict[str, Any]]) -> None:
    document = {
        "location_id": profile.location_id,
        "location_timezone": profile.timezone,
        "currency_code": profile.currency_code,
        "direction": direction,
        "data": data,
    }
    sys.stdout.buffer.write(dumps(document) + b"\n")  # exact decimals as JSON numbers
    sys.stdout.flush()


def _shown(instant_us: int, zone: tzinfo | None) -> str:
    """A table cell: `2024-12-02 16:00+00:00`, with seconds only when there are some."""
    instant = from_us(instant_us, zone)
    whole = instant.second == 0 and instant.microsecond == 0
    return instant.isoformat(sep=" ", timespec="minutes" if whole else "seconds")


def _table(title: str, columns: list[str], rows: list[list[str]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for column in columns:
        table.add_column(column, justify="right" if column != "from" else "left")
    for row in rows:
        table.add_row(*row)
    Console().print(table)


_COMMON = [
    click.argument("location_file", type=click.Path(path_type=Path, dir_okay=False)),
    click.option("--from", "start", required=True, help="RFC 3339 start of the window."),
    click.option("--to", "end", required=True, help="RFC 3339 end (31 days after --from at most)."),
    click.option(
        "--direction", type=click.Choice(["IMPORT", "EXPORT"]), default="IMPORT", show_default=True
    ),
    click.option(
        "--market-prices",
        "market_path",
        type=click.Path(path_type=Path, dir_okay=False, exists=True),
        default=None,
        help="JSON Lines of MarketPrices documents, for DYNAMIC tariffs with a series_id.",
    ),
    click.option("--json", "as_json", is_flag=True, help="JSON instead of a table."),
]


def _with_common(command: Callable[..., None]) -> Callable[..., None]:
    for option in reversed(_COMMON):
        command = option(command)
    return command


def _window(command: str, start: str, end: str) -> tuple[datetime, datetime]:
    return _instant(command, "--from", start), _instant(command, "--to", end)


def _quoted(command: str, quote: Callable[[], T]) -> T:
    """`quote()`'s answer; a request no quote can answer exits 2, no tariff in force exits 1."""
    try:
        return quote()
    except quotes.QuoteError as error:
        _fail(command, f"{error.code}: {error.message}")
    except PricingError as error:
        _fail(command, f"{error.code.value}: {error.message}", 1)


@click.command()
@_with_common
def rates(
    location_file: Path,
    start: str,
    end: str,
    direction: str,
    market_path: Path | None,
    as_json: bool,
) -> None:
    """The rate in force over a window: one row per period of constant rates (energy and each
    component), as `GET /tariffs/rates` answers."""
    profile, market = _inputs("rates", location_file, market_path)
    begin, finish = _window("rates", start, end)
    periods = _quoted(
        "rates",
        lambda: quotes.rates(
            profile, TariffDirection(direction), to_us(begin), to_us(finish), market
        ),
    )
    zone = finish.tzinfo
    items = [
        {
            "valid_from": from_us(p.start, zone).isoformat(),
            "valid_to": from_us(p.end, zone).isoformat(),
            "tariff": {"rate": (p.rate), "confidence": (quotes.CONFIDENCE)},
            "components": [
                {"name": name, "rate": (rate)} for name, rate in zip(p.names, p.rates, strict=True)
            ],
        }
        for p in periods
    ]
    if as_json:
        _emit_json(profile, direction, items)
        return
    names = list(dict.fromkeys(name for p in periods for name in p.names))
    rows = []
    for p in periods:
        by_name = dict(zip(p.names, p.rates, strict=True))
        rows.append(
            [
                _shown(p.start, zone),
                _shown(p.end, zone),
                str(p.rate),
                *(str(by_name[n]) if n in by_name else "" for n in names),
            ]
        )
    title = f"{profile.location_id} {direction} rates ({profile.currency_code}/kWh)"
    _table(title, ["from", "to", "rate", *names], rows)


@click.command()
@_with_common
@click.option("--duration", type=int, required=True, help="Minutes wanted (whole minutes).")
@click.option("--segment", type=click.Choice(["LOW", "HIGH"]), default="LOW", show_default=True)
@click.option("--contiguous", is_flag=True, help="The single best window, not any minutes.")
def slots(
    location_file: Path,
    start: str,
    end: str,
    direction: str,
    market_path: Path | None,
    as_json: bool,
    duration: int,
    segment: str,
    contiguous: bool,
) -> None:
    """The cheapest (LOW) or dearest (HIGH) `--duration` whole minutes of a window, as
    `GET /slots/time` answers; ties go to the earliest."""
    profile, market = _inputs("slots", location_file, market_path)
    begin, finish = _window("slots", start, end)
    found = _quoted(
        "slots",
        lambda: quotes.slots(
            profile,
            TariffDirection(direction),
            to_us(begin),
            to_us(finish),
            market,
            duration_minutes=duration,
            segment=quotes.Segment(segment),
            contiguous=contiguous,
        ),
    )
    zone = finish.tzinfo
    items = [
        {
            "start_time": from_us(s.start, zone).isoformat(),
            "end_time": from_us(s.end, zone).isoformat(),
            "tariff": {"rate_avg": (s.rate_avg), "confidence": (quotes.CONFIDENCE)},
        }
        for s in found
    ]
    if as_json:
        _emit_json(profile, direction, items)
        return
    rows = [
        [
            _shown(s.start, zone),
            _shown(s.end, zone),
            str((s.end - s.start) // US_PER_MINUTE),
            str(s.rate_avg),
        ]
        for s in found
    ]
    title = f"{profile.location_id} {segment} {duration} min ({profile.currency_code}/kWh)"
    _table(title, ["from", "to", "minutes", "rate_avg"], rows)
