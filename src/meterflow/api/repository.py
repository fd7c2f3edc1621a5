"""The API's SQL: API keys, the locations mirror and the cost reports (asyncpg, parameterised).

Every query is scoped by the caller's `account_id` and `live_mode`, so isolation between
accounts and between test and live mode is a property of the SQL, not of the handlers.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, NamedTuple

import asyncpg
from asyncpg.pool import PoolConnectionProxy
from pydantic import ValidationError

from meterflow import ids
from meterflow.api.credentials import (
    Principal,
    display_prefix,
    hash_api_key,
    new_api_key,
)
from meterflow.api.errors import ApiError
from meterflow.contract.columns import DEVICES_LOCK_NAMESPACE, LOCATION_COLUMNS, location_row
from meterflow.models import LocationProfile, validation_summary

Connection = asyncpg.Connection | PoolConnectionProxy
_LOCATION_LIST = ", ".join(LOCATION_COLUMNS)


@dataclass(frozen=True)
class StoredLocation:
    profile: LocationProfile
    updated_at: datetime


async def principal_for_key_hash(pool: asyncpg.Pool, key_hash: str) -> Principal | None:
    """Whose active key hashes to `key_hash` (a bearer key): None when revoked or unknown."""
    return await _active_key(pool, "key_hash", key_hash)


async def principal_for_key_id(pool: asyncpg.Pool, key_id: str) -> Principal | None:
    """Whose active key `key_id` is (a token's key): None when revoked or unknown."""
    return await _active_key(pool, "id", key_id)


async def _active_key(pool: asyncpg.Pool, column: str, value: str) -> Principal | None:
    assert column in ("key_hash", "id")  # a constant of the two callers, never input
    row = await pool.fetchrow(
        "SELECT id, account_id, live_mode FROM api_keys"
        f" WHERE {column} = $1 AND revoked_at IS NULL",
        value,
    )
    if row is None:
        return None
    return Principal(account_id=row["account_id"], live_mode=row["live_mode"], key_id=row["id"])


async def claim_location(conn: Connection, profile: LocationProfile) -> datetime | None:
    """Upsert the mirror row unless another account or mode owns this id; None = not yours.

    A deleted id stays its owner's (only that account and mode may PUT it again): records and
    readings sent for it before the delete may still be on their way, and a location, its
    meters' register state and its costs must never change hands through a re-used id.

    Called inside the transaction that also publishes the profile, so a failed publish rolls
    the mirror back. The row is the sink's (`contract.columns.location_row`): the profile is the
    JSON text published, cast to jsonb (passing it as text skips the pool's jsonb codec, which
    would store the text as one JSON string).
    """
    updated_at: datetime | None = await conn.fetchval(
        f"""
        INSERT INTO locations AS l ({_LOCATION_LIST}, deleted, updated_at)
        VALUES ($1, $2, $3, $4, $5, $6, $7::text::jsonb, false, now())
        ON CONFLICT (location_id) DO UPDATE SET
            account_id = EXCLUDED.account_id, live_mode = EXCLUDED.live_mode,
            timezone = EXCLUDED.timezone, currency_code = EXCLUDED.currency_code,
            devices = EXCLUDED.devices, profile = EXCLUDED.profile,
            deleted = false, updated_at = now()
        WHERE l.account_id = EXCLUDED.account_id AND l.live_mode = EXCLUDED.live_mode
        RETURNING updated_at
        """,
        *location_row(profile),
    )
    return updated_at


class MeterConflict(NamedTuple):
    """A meter id `profile` would share with another live location of its account and mode."""

    meter: str
    """A device of the profile, or the profile's own location id (its own meter's)."""
    location_id: str
    """The other location."""
    listed: bool
    """Whether the other location lists `meter` as a device (else it is its id)."""


async def meter_elsewhere(conn: Connection, profile: LocationProfile) -> MeterConflict | None:
    """A meter id of `profile` that another live location of its account and mode also has; None
    when each is the profile's alone. A meter's id is its device's, or its location's when it
    has none (design §8.1): a device listed by two locations, or named as another location, is
    one identity for two meters, whose records and readings replace each other's (design §8,
    §10), and a report of it adds both locations' money. Takes the account's lock until the
    transaction ends (`DEVICES_LOCK_NAMESPACE`), so two PUTs at once cannot both claim one id."""
    await conn.execute(
        "SELECT pg_advisory_xact_lock($1, hashtext($2))", DEVICES_LOCK_NAMESPACE, profile.account_id
    )
    row = await conn.fetchrow(
        """
        SELECT meter, location_id, listed FROM (
            SELECT d.device AS meter, l.location_id, true AS listed
            FROM locations l, unnest(l.devices) AS d(device)
            WHERE l.account_id = $1 AND l.live_mode = $2 AND NOT l.deleted
              AND l.location_id <> $3 AND (d.device = ANY ($4::text[]) OR d.device = $3)
            UNION ALL
            SELECT l.location_id, l.location_id, false
            FROM locations l
            WHERE l.account_id = $1 AND l.live_mode = $2 AND NOT l.deleted
              AND l.location_id <> $3 AND l.location_id = ANY ($4::text[])
        ) AS conflicts
        ORDER BY meter, location_id
        LIMIT 1
        """,
        profile.account_id,
        profile.live_mode,
        profile.location_id,
        profile.devices,
    )
    return None if row is None else MeterConflict(row["meter"], row["location_id"], row["listed"])


async def mark_location_deleted(conn: Connection, principal: Principal, location_id: str) -> bool:
    status: str = await conn.execute(
        """
        UPDATE locations SET deleted = true, updated_at = now()
        WHERE location_id = $1 AND account_id = $2 AND live_mode = $3 AND NOT deleted
        """,
        location_id,
        principal.account_id,
        principal.live_mode,
    )
    return status.endswith(" 1")


def _stored(row: asyncpg.Record) -> StoredLocation:
    return StoredLocation(_profile(row["profile"]), row["updated_at"])


def _profile(stored: dict[str, Any]) -> LocationProfile:
    """A mirrored profile, read with this release's rules. One stored before a rule it breaks
    was added (more digits than a number may have, a longer device id) is answered 409, naming
    it, instead of failing every listing of the account with a 500: the topic's readers
    refuse it alike, and a PUT (or a DELETE) of that location settles it."""
    try:
        return LocationProfile.model_validate(stored)
    except ValidationError as exc:
        reason = validation_summary(exc, whole="profile", limit=2)
        raise ApiError(
            409,
            "stale_profile",
            f"location {stored.get('location_id')!r} was stored under older rules and breaks "
            f"one now ({reason}): PUT it again or DELETE it",
        ) from None


async def get_location(
    pool: asyncpg.Pool, principal: Principal, location_id: str
) -> StoredLocation | None:
    row = await pool.fetchrow(
        """
        SELECT profile, updated_at FROM locations
        WHERE location_id = $1 AND account_id = $2 AND live_mode = $3 AND NOT deleted
        """,
        location_id,
        principal.account_id,
        principal.live_mode,
    )
    return None if row is None else _stored(row)


async def list_locations(
    pool: asyncpg.Pool, principal: Principal, *, limit: int, starting_after: str | None
) -> tuple[list[StoredLocation], bool]:
    """One page, ordered by id descending (ids are the cursor); returns (page, has_more)."""
    rows = await pool.fetch(
        """
        SELECT profile, updated_at FROM locations
        WHERE account_id = $1 AND live_mode = $2 AND NOT deleted
          AND ($3::text IS NULL OR location_id < $3)
        ORDER BY location_id DESC
        LIMIT $4
        """,
        principal.account_id,
        principal.live_mode,
        starting_after,
        limit + 1,
    )
    return [_stored(row) for row in rows[:limit]], len(rows) > limit


@dataclass(frozen=True)
class ReportSubject:
    """What a report is about: the zone its days and months are cut in, and its currency.

    `profile`: the mirror's profile when the id is the location's own (deleted since or not),
    whose versions say which standing charge was in force on each day; None for a device (a
    standing charge is the location's, not each device's) or a location known only by costs.
    """

    timezone: str
    currency_code: str
    profile: LocationProfile | None = None


async def report_subject(
    pool: asyncpg.Pool, principal: Principal, object_id: str
) -> ReportSubject | None:
    """The caller's location with this id, or the location holding this device id, or (for a
    location deleted since) the newest stored cost of this object; None = not the caller's."""
    row = await pool.fetchrow(
        """
        SELECT timezone, currency_code, CASE WHEN location_id = $3 THEN profile END AS profile
        FROM locations
        WHERE account_id = $1 AND live_mode = $2 AND (location_id = $3 OR $3 = ANY (devices))
        ORDER BY deleted, (location_id = $3) DESC
        LIMIT 1
        """,
        principal.account_id,
        principal.live_mode,
        object_id,
    )
    if row is not None and row["profile"] is not None:
        profile = _profile(row["profile"])
        return ReportSubject(row["timezone"], row["currency_code"], profile)
    if row is None:
        row = await pool.fetchrow(
            """
            SELECT location_timezone AS timezone, currency_code FROM energy_costs
            WHERE account_id = $1 AND live_mode = $2 AND (location_id = $3 OR device_id = $3)
            ORDER BY start_time DESC
            LIMIT 1
            """,
            principal.account_id,
            principal.live_mode,
            object_id,
        )
    return None if row is None else ReportSubject(row["timezone"], row["currency_code"])


_SCOPE = "account_id = $1 AND live_mode = $2 AND tariff_direction = $3"
_BILL_SUMS = "sum(tax) AS tax, sum(coalesce(total, cost)) AS total, count(tax) AS taxed"
"""A summed row's bill fields (migration 0005): exact NUMERIC sums of the stored, rounded
fields; a record stored without tax counts its cost in `total`."""
_CURRENCIES = "array_agg(DISTINCT currency_code) AS currencies"
"""The currencies of a summed row's records: a sum is only money in one of them."""


async def cost_rows(
    pool: asyncpg.Pool,
    principal: Principal,
    *,
    object_id: str,
    tariff_direction: str,
    start: datetime,
    end: datetime,
    limit: int,
) -> list[asyncpg.Record]:
    """Per record: the stored costs of the object whose interval starts in [start, end), at
    most `limit` of them (the first by time), each with its currency; one row per result id,
    its latest version (a correction replaces the row, design §8.3)."""
    return await pool.fetch(
        f"""
        SELECT start_time, end_time, session_reference_id, record_reference_id,
               energy_kwh, cost, confidence, 1 AS records, revision, tax, total, currency_code
        FROM energy_costs
        WHERE {_SCOPE} AND (location_id = $4 OR device_id = $4)
          AND start_time >= $5 AND start_time < $6
        ORDER BY start_time, id
        LIMIT $7
        """,
        principal.account_id,
        principal.live_mode,
        tariff_direction,
        object_id,
        start,
        end,
        limit,
    )


async def cost_buckets(
    pool: asyncpg.Pool,
    principal: Principal,
    *,
    object_id: str,
    tariff_direction: str,
    start: datetime,
    end: datetime,
    unit: str,
    timezone: str,
) -> list[asyncpg.Record]:
    """Sums per local day or month: `AT TIME ZONE` cuts at local midnight, so a DST day holds
    its 23 or 25 hours. `local_start` is the bucket's local wall-clock start (naive).
    `tax`: NULL when no record of the bucket has one; `total`: a record without one counts
    its cost; `taxed`: how many records carry tax (design §11); `currencies`: theirs."""
    assert unit in ("day", "month")
    return await pool.fetch(
        f"""
        SELECT date_trunc('{unit}', start_time AT TIME ZONE $7) AS local_start,
               sum(energy_kwh) AS energy_kwh, sum(cost) AS cost,
               min(confidence) AS confidence, count(*) AS records,
               {_BILL_SUMS}, {_CURRENCIES}
        FROM energy_costs
        WHERE {_SCOPE} AND (location_id = $4 OR device_id = $4)
          AND start_time >= $5 AND start_time < $6
        GROUP BY 1
        ORDER BY 1
        """,
        principal.account_id,
        principal.live_mode,
        tariff_direction,
        object_id,
        start,
        end,
        timezone,
    )


async def session_summary(
    pool: asyncpg.Pool, principal: Principal, *, session_reference_id: str, tariff_direction: str
) -> dict[str, Any] | None:
    """Totals of one session in one direction; None when the caller has no record of it."""
    known = await pool.fetchrow(
        """
        SELECT object_id, location_timezone, currency_code FROM energy_costs
        WHERE account_id = $1 AND live_mode = $2 AND session_reference_id = $3
        ORDER BY start_time
        LIMIT 1
        """,
        principal.account_id,
        principal.live_mode,
        session_reference_id,
    )
    if known is None:
        return None
    totals = await pool.fetchrow(
        f"""
        SELECT min(start_time) AS start_time, max(end_time) AS end_time,
               sum(energy_kwh) AS energy_kwh, sum(cost) AS cost,
               min(confidence) AS confidence, count(*) AS records,
               {_BILL_SUMS}, {_CURRENCIES}
        FROM energy_costs
        WHERE {_SCOPE} AND session_reference_id = $4
        """,
        principal.account_id,
        principal.live_mode,
        tariff_direction,
        session_reference_id,
    )
    assert totals is not None
    result: dict[str, Any] = dict(known) | dict(totals)
    for name in ("energy_kwh", "cost", "confidence", "tax", "total"):
        if result[name] is not None:
            result[name] = Decimal(result[name])
    return result


Loader = Callable[[], Awaitable[Principal | None]]


@dataclass(frozen=True)
class ApiKeyInfo:
    id: str
    account_id: str
    live_mode: bool
    key_prefix: str
    created_at: datetime
    revoked_at: datetime | None


async def create_api_key(
    conn: Connection, *, account_id: str, live_mode: bool
) -> tuple[ApiKeyInfo, str]:
    """Store a new key (hashed) and return it with the clear key, which is never stored."""
    key = new_api_key(live_mode)
    row = await conn.fetchrow(
        """
        INSERT INTO api_keys (id, account_id, live_mode, key_hash, key_prefix)
        VALUES ($1, $2, $3, $4, $5)
        RETURNING id, account_id, live_mode, key_prefix, created_at, revoked_at
        """,
        ids.new_key_id(),
        account_id,
        live_mode,
        hash_api_key(key),
        display_prefix(key),
    )
    assert row is not None
    return ApiKeyInfo(**dict(row)), key


async def revoke_api_key(conn: Connection, key_id: str) -> bool:
    status: str = await conn.execute(
        "UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL", key_id
    )
    return status.endswith(" 1")


async def list_api_keys(conn: Connection, account_id: str | None) -> list[ApiKeyInfo]:
    rows = await conn.fetch(
        """
        SELECT id, account_id, live_mode, key_prefix, created_at, revoked_at FROM api_keys
        WHERE $1::text IS NULL OR account_id = $1
        ORDER BY account_id, created_at
        """,
        account_id,
    )
    return [ApiKeyInfo(**dict(row)) for row in rows]
