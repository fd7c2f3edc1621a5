"""Location endpoints: profiles (with tariffs) published to `locations`, mirrored in Postgres.

A PUT claims the id in the mirror and publishes the profile in one database transaction that
commits only after Kafka acknowledged: a failed publish leaves no mirror row behind, and an
acknowledged profile is visible to GET, list and instant costs as soon as the PUT answers.
"""

from __future__ import annotations

import re

from aiohttp import web
from pydantic import ValidationError

from meterflow.api import repository
from meterflow.api.context import CONTEXT
from meterflow.api.errors import ApiError, not_found
from meterflow.api.http import answer, principal_of, query_value, read_json
from meterflow.api.schemas import DeletedLocation, Location, LocationBody, LocationList
from meterflow.contract.locations import profile_from
from meterflow.contract.topics import LOCATIONS
from meterflow.models import MAX_MESSAGE_BYTES, LocationProfile, dumps, validation_summary
from meterflow.tariffs import ProfileError

MAX_PAGE = 100
DEFAULT_PAGE = 30
_DIGITS = re.compile(r"[0-9]{1,3}")


def _resource(stored: repository.StoredLocation) -> Location:
    fields = stored.profile.model_dump(by_alias=True)
    return Location(**fields, id=stored.profile.location_id, time_updated=stored.updated_at)


def _location_id(request: web.Request) -> str:
    location_id = request.match_info["location_id"]
    if not 1 <= len(location_id) <= 128:
        raise ApiError(400, "invalid_request", "a location id has 1 to 128 characters")
    return location_id


def _summary(exc: ValidationError) -> str:
    return validation_summary(exc, whole="body", limit=3)


_READ_ONLY = frozenset(Location.model_fields) - frozenset(LocationProfile.model_fields)
"""The stored resource's own fields (`id`, `object`, `time_updated`): a GET's answer may be PUT
back."""


def _profile_from(
    body: object, location_id: str, account_id: str, live_mode: bool
) -> LocationProfile:
    if not isinstance(body, dict):
        raise ApiError(422, "invalid_profile", "a location profile must be a JSON object")
    try:
        given = LocationBody.model_validate(body)
    except ValidationError as exc:
        raise ApiError(422, "invalid_profile", _summary(exc)) from None
    for name in ("location_id", "id"):
        if getattr(given, name) not in (None, location_id):
            raise ApiError(422, "invalid_profile", f"`{name}` in the body differs from the path")
    if given.account_id is not None and given.account_id != account_id:
        raise ApiError(403, "forbidden", "`account_id` is set by your API key; omit it")
    if given.live_mode is not None and given.live_mode != live_mode:
        raise ApiError(403, "forbidden", "`live_mode` is set by your API key (test or live)")
    try:  # the rules every reader of `locations` applies (contract.locations.decide_location)
        profile = profile_from(
            {
                **{name: value for name, value in body.items() if name not in _READ_ONLY},
                "location_id": location_id,
                "account_id": account_id,
                "live_mode": live_mode,
            }
        )
    except ValidationError as exc:
        raise ApiError(422, "invalid_profile", _summary(exc)) from None
    except ProfileError as exc:
        raise ApiError(422, "invalid_profile", str(exc)) from None
    return profile


def _conflict_text(location_id: str, shared: repository.MeterConflict) -> str:
    meter, elsewhere = shared.meter, shared.location_id
    if not shared.listed:
        return (
            f"device {meter!r} is the id of location {elsewhere!r} (its own meter's): a meter"
            " has one id, rename the device"
        )
    if meter == location_id:
        return (
            f"location {location_id!r} is a device of location {elsewhere!r}: a meter has one"
            " id, rename the location or remove the device there first"
        )
    return (
        f"device {meter!r} is a device of location {elsewhere!r}: a device belongs to one"
        " location (remove it there first to move it)"
    )


async def put_location(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    principal = principal_of(request)
    location_id = _location_id(request)
    body = await read_json(request, code="invalid_profile")
    if b"\\u0000" in await request.read():
        raise ApiError(422, "invalid_profile", "NUL characters (\\u0000) are not allowed")
    profile = _profile_from(body, location_id, principal.account_id, principal.live_mode)
    if location_id in profile.devices:  # the location's own meter has that id (design §10)
        raise ApiError(
            422, "device_conflict", f"device {location_id!r} is the location's own id: rename it"
        )
    written = dumps(profile)
    if len(written) > MAX_MESSAGE_BYTES:
        raise ApiError(
            422,
            "invalid_profile",
            f"the profile takes {len(written):,} bytes written, more than the "
            f"{MAX_MESSAGE_BYTES:,} a message may hold: split its tariffs into fewer rules or "
            "prices (a series' market prices travel apart, on `market-prices`)",
        )
    async with ctx.db().acquire() as conn, conn.transaction():
        updated_at = await repository.claim_location(conn, profile)
        if updated_at is None:
            raise not_found(f"location {location_id!r}")
        shared = await repository.meter_elsewhere(conn, profile)  # rolls the claim back
        if shared is not None:
            raise ApiError(422, "device_conflict", _conflict_text(location_id, shared))
        position = await ctx.kafka().send(LOCATIONS, location_id, written)
    ctx.view.locations.apply(location_id, profile, position)
    return answer(_resource(repository.StoredLocation(profile, updated_at)))


async def get_location(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    location_id = _location_id(request)
    stored = await repository.get_location(ctx.db(), principal_of(request), location_id)
    if stored is None:
        raise not_found(f"location {location_id!r}")
    return answer(_resource(stored))


async def delete_location(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    location_id = _location_id(request)
    async with ctx.db().acquire() as conn, conn.transaction():
        if not await repository.mark_location_deleted(conn, principal_of(request), location_id):
            raise not_found(f"location {location_id!r}")
        position = await ctx.kafka().send(LOCATIONS, location_id, None)
    ctx.view.locations.apply(location_id, None, position)
    return answer(DeletedLocation(id=location_id))


async def list_locations(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    raw_limit = query_value(request, "limit")
    if raw_limit is None:
        raw_limit = str(DEFAULT_PAGE)
    # ASCII digits only: `str.isdigit` also passes "²" and "٣", and `int` refuses 5,000 digits
    if not _DIGITS.fullmatch(raw_limit) or not 1 <= int(raw_limit) <= MAX_PAGE:
        raise ApiError(400, "invalid_request", f"`limit` must be an integer from 1 to {MAX_PAGE}")
    starting_after = query_value(request, "starting_after") or None
    page, has_more = await repository.list_locations(
        ctx.db(), principal_of(request), limit=int(raw_limit), starting_after=starting_after
    )
    listing = LocationList(
        url="/locations", has_more=has_more, data=[_resource(item) for item in page]
    )
    return answer(listing)
