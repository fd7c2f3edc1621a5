"""The `locations` topic: the one decision on a message, shared by every reader and writer.

Readers: the stream's profiles table, the API's pricing view, the sink's PostgreSQL mirror.
Writers: the API's PUT and `meterflow profiles put` check a profile with `profile_from` /
`parse_profile`, the same rules the readers apply, so what a writer accepts every reader applies.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import msgspec

from meterflow.contract.decisions import Apply, Delete, Reject, decide
from meterflow.contract.topics import LOCATIONS
from meterflow.models import LocationProfile, loads
from meterflow.tariffs import validate_profile, validate_tariffs

LocationDecision = Apply[LocationProfile] | Delete | Reject
TARIFFS_CACHED = 1024  # versions texts remembered (the least recently used is forgotten first)


def profile_from(document: Any) -> LocationProfile:
    """A fully validated profile: its shape, then the rules spanning the whole profile (TOU
    coverage, overlaps). Raises ValidationError or `tariffs.ProfileError` (both ValueErrors)."""
    profile = LocationProfile.model_validate(document)
    validate_profile(profile)
    return profile


def parse_profile(raw: bytes) -> LocationProfile:
    """`profile_from` on JSON bytes; raises ValueError (JSON, shape or profile rules).

    Locations share tariff products, and most of a profile's validation is its tariffs' (the
    pydantic models and `validate_profile`'s rules, which look at one direction's versions at a
    time): a direction whose versions text was already found valid, byte for byte, gives its
    validated versions again, and only the rest of the document is validated (a fleet on one
    import product, each location with its own export rate, validates one small version per
    location). The document is read once, member by member (`_members`): each member as
    `loads` reads it, and each direction's text kept for the cache. The same result as
    `profile_from(loads(raw))`, checked by tests/unit/test_contract_locations_cache.py.
    """
    members = _members(raw)
    texts = _members(members["tariffs"]) if members is not None and "tariffs" in members else {}
    if members is None or texts is None:  # not an object: the general path says what is wrong
        return profile_from(loads(raw))
    document = {name: loads(text) for name, text in members.items() if name != "tariffs"}
    tariffs: dict[str, Any] = {}
    new: set[str] = set()
    for direction, text in texts.items():
        versions = _VALID_VERSIONS.get((direction, text))
        if versions is None:
            new.add(direction)
            tariffs[direction] = loads(text)
        else:  # validated instances pass as they are; the least recently used goes first
            _VALID_VERSIONS.move_to_end((direction, text))
            tariffs[direction] = versions
    if "tariffs" in members:
        document["tariffs"] = tariffs
    profile = LocationProfile.model_validate(document)
    # a TariffDirection (a StrEnum) equals and hashes as its text: no conversion needed
    fresh = {d: versions for d, versions in profile.tariffs.items() if d in new}
    validate_tariffs(fresh)
    for direction, versions in fresh.items():
        _VALID_VERSIONS[direction, texts[direction]] = versions
        if len(_VALID_VERSIONS) > TARIFFS_CACHED:
            # an OrderedDict: a plain dict's first key is found by skipping the slots its
            # deleted keys left, which grew to ~10 µs a profile with a new text each
            _VALID_VERSIONS.popitem(last=False)
    return profile


_OBJECT = msgspec.json.Decoder(dict[str, msgspec.Raw])
_VALID_VERSIONS: OrderedDict[tuple[str, bytes], Any] = OrderedDict()


def _members(text: bytes) -> dict[str, bytes] | None:
    """A JSON object's members, name -> value text; None when `text` is not an object (or one
    msgspec refuses, such as a key with a lone surrogate escape: `loads` reads those).

    The names are decoded as `loads` decodes them (escapes included), and a name written twice
    keeps its last value, as with `loads`, so each value text is what `loads` read for it."""
    try:
        return {name: bytes(value) for name, value in _OBJECT.decode(text).items()}
    except (msgspec.DecodeError, ValueError):
        return None


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
