"""The `locations` topic: the one decision on a message, shared by every reader and writer.

Readers: the stream's profiles table, the API's pricing view, the sink's PostgreSQL mirror.
Writers: the API's PUT and `meterflow profiles put` check a profile with `profile_from` /
`parse_profile`, the same rules the readers apply, so what a writer accepts every reader applies.
"""

from __future__ import annotations

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
    location). The same result as `profile_from`, checked by
    tests/unit/test_contract_locations_cache.py.
    """
    document = loads(raw)
    texts = _tariff_texts(raw) if isinstance(document, dict) else None
    if texts is None:
        return profile_from(document)
    tariffs = dict(document["tariffs"])  # the same keys as `texts`: the same decoder read both
    new: set[str] = set()
    for direction, text in texts.items():
        versions = _VALID_VERSIONS.pop((direction, text), None)
        if versions is None:
            new.add(direction)
        else:  # validated instances pass as they are; put back last: the oldest goes first
            tariffs[direction] = _VALID_VERSIONS[direction, text] = versions
    profile = LocationProfile.model_validate({**document, "tariffs": tariffs})
    # a TariffDirection (a StrEnum) equals and hashes as its text: no conversion needed
    fresh = {d: versions for d, versions in profile.tariffs.items() if d in new}
    validate_tariffs(fresh)
    for direction, versions in fresh.items():
        if len(_VALID_VERSIONS) >= TARIFFS_CACHED:
            del _VALID_VERSIONS[next(iter(_VALID_VERSIONS))]
        _VALID_VERSIONS[direction, texts[direction]] = versions
    return profile


class _TariffsTexts(msgspec.Struct):
    tariffs: dict[str, msgspec.Raw]


_TARIFFS_DECODER = msgspec.json.Decoder(_TariffsTexts)
_VALID_VERSIONS: dict[tuple[str, bytes], Any] = {}


def _tariff_texts(raw: bytes) -> dict[str, bytes] | None:
    """Each direction's versions text in the document's `tariffs`, when they are certainly the
    ones `loads` decoded: `"tariffs"` written once and no `\\u` escape anywhere (a second key
    spelled `"\\u0074ariffs"` would be the one a JSON decoder keeps), else None."""
    if raw.count(b'"tariffs"') != 1 or b"\\u" in raw:
        return None
    try:
        texts = _TARIFFS_DECODER.decode(raw).tariffs
    except (msgspec.DecodeError, ValueError):
        return None
    return {direction: bytes(text) for direction, text in texts.items()}


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
