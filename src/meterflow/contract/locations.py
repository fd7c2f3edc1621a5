"""The `locations` topic: the one decision on a message, shared by every reader and writer.

Readers: the stream's profiles table, the API's pricing view, the sink's PostgreSQL mirror.
Writers: the API's PUT and `meterflow profiles put` check a profile with `profile_from` /
`parse_profile`, the same rules the readers apply, so what a writer accepts every reader applies.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from meterflow.contract.decisions import Apply, Delete, Reject
from meterflow.contract.keys import key_text
from meterflow.models import LocationProfile, loads, validation_summary
from meterflow.tariffs import validate_profile

LocationDecision = Apply[LocationProfile] | Delete | Reject


def profile_from(document: Any) -> LocationProfile:
    """A fully validated profile: its shape, then the rules spanning the whole profile (TOU
    coverage, overlaps). Raises ValidationError or `tariffs.ProfileError` (both ValueErrors)."""
    profile = LocationProfile.model_validate(document)
    validate_profile(profile)
    return profile


def parse_profile(raw: bytes) -> LocationProfile:
    """`profile_from` on JSON bytes; raises ValueError (JSON, shape or profile rules)."""
    return profile_from(loads(raw))


def decide_location(key: bytes | None, value: bytes | None) -> LocationDecision:
    """A null value deletes the key; a value applies when it is a valid profile whose
    `location_id` is the key; anything else is rejected with the reason."""
    location_id = key_text(key)
    if location_id is None:
        return Reject("a message on `locations` must be keyed by its location_id (UTF-8)")
    if value is None:
        return Delete(location_id)
    try:
        profile = parse_profile(value)
    except ValidationError as exc:
        return Reject(f"invalid location profile: {validation_summary(exc, limit=3)}")
    except (ValueError, RecursionError) as exc:  # JSON, UTF-8, profile rules, absurd nesting
        return Reject(f"invalid location profile: {str(exc)[:500]}")
    if profile.location_id != location_id:
        return Reject(
            f"key {location_id!r} is not the profile's location_id {profile.location_id!r}"
        )
    return Apply(location_id, profile, value)
