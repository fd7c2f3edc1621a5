"""What a message on `locations` / `market-prices` does to its table: store, delete, or reject.

Kept apart from the agents so the rules (a tombstone deletes; the key must match the document;
an invalid document is never stored) are testable without a broker.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import ValidationError

from meterflow.models import LocationProfile, MarketPrices, loads
from meterflow.tariffs import validate_profile


@dataclass(frozen=True, slots=True)
class StoreProfile:
    key: bytes
    raw: bytes


@dataclass(frozen=True, slots=True)
class DeleteProfile:
    key: bytes


@dataclass(frozen=True, slots=True)
class RejectProfile:
    message: str


ProfileChange = StoreProfile | DeleteProfile | RejectProfile
"""One change to a document table (the names say profile; market prices use them too)."""


def parse_profile(raw: bytes) -> LocationProfile:
    """A fully validated profile (shape and whole-profile rules); raises ValueError naming why."""
    profile = LocationProfile.model_validate(loads(raw))
    validate_profile(profile)
    return profile


def profile_change(key: bytes | None, raw: bytes | None) -> ProfileChange:
    if key is None:
        return RejectProfile("a message on `locations` must be keyed by its location_id")
    if raw is None:
        return DeleteProfile(key)
    try:
        profile = parse_profile(raw)
    except ValidationError as exc:
        return RejectProfile(f"invalid location profile: {_first_errors(exc)}")
    except ValueError as exc:
        return RejectProfile(f"invalid location profile: {exc}")
    if profile.location_id.encode() != key:
        return RejectProfile(
            f"key {key.decode(errors='replace')!r} is not the profile's location_id "
            f"{profile.location_id!r}"
        )
    return StoreProfile(key, raw)


def _first_errors(exc: ValidationError, limit: int = 3) -> str:
    parts = [
        f"{'.'.join(str(p) for p in err['loc']) or '(document)'}: {err['msg']}"
        for err in exc.errors()[:limit]
    ]
    return "; ".join(parts)


def market_prices_change(key: bytes | None, raw: bytes | None) -> ProfileChange:
    """Same rules for `market-prices`: key `{series_id}/{YYYY-MM-DD}` must match the body."""
    if key is None:
        return RejectProfile("a message on `market-prices` must be keyed by {series_id}/{day}")
    if raw is None:
        return DeleteProfile(key)
    try:
        prices = MarketPrices.model_validate(loads(raw))
    except ValidationError as exc:
        return RejectProfile(f"invalid market prices: {_first_errors(exc)}")
    except ValueError as exc:
        return RejectProfile(f"invalid market prices: {exc}")
    if prices.key.encode() != key:
        return RejectProfile(
            f"key {key.decode(errors='replace')!r} is not the document's {prices.key!r}"
        )
    return StoreProfile(key, raw)
