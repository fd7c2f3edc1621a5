"""The `locations` topic: the one decision on a message, shared by every reader and writer.

Readers: the stream's profiles table, the API's pricing view, the sink's PostgreSQL mirror.
Writers: the API's PUT and `meterflow profiles put` check a profile with `profile_from` /
`parse_profile`, the same rules the readers apply, so what a writer accepts every reader applies.
"""

from __future__ import annotations

from typing import Any

from meterflow.contract.decisions import Apply, Delete, Reject, decide
from meterflow.contract.topics import LOCATIONS
from meterflow.models import LocationProfile, loads
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
    """A null value deletes the key; a value applies when it is a valid profile (whole-profile
    rules included) whose `location_id` is the key; anything else is rejected with the reason."""
    return decide(
        key,
        value,
        parse=parse_profile,
        key_of=_location_id,
        topic=LOCATIONS,
        keyed_by="its location_id",
        document="location profile",
    )


def _location_id(profile: LocationProfile) -> str:
    return profile.location_id
