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
from meterflow.tariffs import validate_profile

LocationDecision = Apply[LocationProfile] | Delete | Reject
TARIFFS_CACHED = 1024  # distinct tariff texts remembered (the oldest is forgotten first)


def profile_from(document: Any) -> LocationProfile:
    """A fully validated profile: its shape, then the rules spanning the whole profile (TOU
    coverage, overlaps). Raises ValidationError or `tariffs.ProfileError` (both ValueErrors)."""
    profile = LocationProfile.model_validate(document)
    validate_profile(profile)
    return profile


def parse_profile(raw: bytes) -> LocationProfile:
    """`profile_from` on JSON bytes; raises ValueError (JSON, shape or profile rules).

    Locations share tariff products, and most of a profile's validation is its tariffs' (the
    pydantic models and `validate_profile`'s whole-profile rules, which read nothing else): a
    `tariffs` text already found valid, byte for byte, gives its validated versions again, and
    only the rest of the document is validated. The same result as `profile_from`, checked by
    tests/unit/test_contract_locations_cache.py.
    """
    document = loads(raw)
    text = _tariffs_text(raw) if isinstance(document, dict) else None
    if text is None:
        return profile_from(document)
    tariffs = _VALID_TARIFFS.get(text)
    if tariffs is not None:
        return LocationProfile.model_validate({**document, "tariffs": tariffs})
    profile = profile_from(document)
    if len(_VALID_TARIFFS) >= TARIFFS_CACHED:
        del _VALID_TARIFFS[next(iter(_VALID_TARIFFS))]
    _VALID_TARIFFS[text] = profile.tariffs
    return profile


class _TariffsText(msgspec.Struct):
    tariffs: msgspec.Raw = msgspec.Raw()


_TARIFFS_DECODER = msgspec.json.Decoder(_TariffsText)
_VALID_TARIFFS: dict[bytes, Any] = {}


def _tariffs_text(raw: bytes) -> bytes | None:
    """The bytes of the document's `tariffs` value when they are certainly the ones `loads`
    decoded: `"tariffs"` written once and no `\\u` escape anywhere (a second key spelled
    `"\\u0074ariffs"` would be the one a JSON decoder keeps), else None."""
    if raw.count(b'"tariffs"') != 1 or b"\\u" in raw:
        return None
    try:
        text = _TARIFFS_DECODER.decode(raw).tariffs
    except (msgspec.DecodeError, ValueError):
        return None
    return bytes(text) or None


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
