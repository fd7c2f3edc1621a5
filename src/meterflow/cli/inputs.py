"""The files the offline commands (`cost`, `rates`, `slots`) read: one reading each, and one
line of words for whatever is wrong with them (`InputError`), as `profiles put` and `prices
put` give; the command prefixes its name and exits 2."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from pathlib import Path

from meterflow.contract.locations import parse_profile
from meterflow.contract.market_prices import parse_market_prices
from meterflow.models import LocationProfile, MarketPrices, problem_text
from meterflow.tariffs import ProfileError


class InputError(Exception):
    """A bad input file, said in one line."""


def read_profile(path: Path) -> LocationProfile:
    try:
        return parse_profile(path.read_bytes())
    except OSError as error:
        raise InputError(f"cannot read profile {path}: {error.strerror}") from None
    except ValueError as error:  # JSON, ValidationError and ProfileError are ValueErrors
        kind = "profile problem" if isinstance(error, ProfileError) else "invalid profile"
        raise InputError(f"{kind} in {path}: {problem_text(error, whole='profile')}") from None


def read_market_prices(path: Path | None) -> Callable[[str, date], MarketPrices | None]:
    """A JSON Lines file of MarketPrices documents (blank lines skipped) as the engine's
    look-up; no file, no prices."""
    days: dict[tuple[str, date], MarketPrices] = {}
    for number, line in enumerate(path.read_bytes().splitlines() if path else [], start=1):
        if not line.strip():
            continue
        try:
            doc = parse_market_prices(line)
        except ValueError as error:
            text = problem_text(error, whole="prices")
            raise InputError(f"invalid market prices on line {number} of {path}: {text}") from None
        days[(doc.series_id, doc.day)] = doc
    return lambda series_id, day: days.get((series_id, day))
