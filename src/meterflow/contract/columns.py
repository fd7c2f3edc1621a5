"""The PostgreSQL columns the results and the locations mirror are written to (design §6).

Every sink path (COPY text lines, binary COPY rows, the per-row probe) writes `energy_costs` and
`energy_cost_breakdown` in exactly these column orders, and both writers of the `locations`
mirror (the sink and the API's PUT) write `location_row`, so the stored profile is the same
document whoever wrote it: the exact JSON published on `locations`, numbers as JSON numbers.
"""

from __future__ import annotations

from typing import Any

from meterflow.models import LocationProfile, dumps

COST_COLUMNS = (
    "id",
    "account_id",
    "live_mode",
    "object_id",
    "location_id",
    "device_id",
    "meter_record_id",
    "session_reference_id",
    "record_reference_id",
    "energy_flow_direction",
    "tariff_direction",
    "currency_code",
    "location_timezone",
    "start_time",
    "end_time",
    "energy_kwh",
    "cost",
    "confidence",
    "request",
    "time_created",
    "source_topic",
    "source_partition",
    "source_offset",
)

BREAKDOWN_COLUMNS = ("cost_id", "seq", "start_time", "end_time", "rate", "energy_kwh", "cost")

LOCATION_COLUMNS = (
    "location_id",
    "account_id",
    "live_mode",
    "timezone",
    "currency_code",
    "devices",
    "profile",
)


def profile_json(profile: LocationProfile) -> str:
    """The `profile` jsonb value as text: the document as published, Decimals as numbers."""
    return dumps(profile).decode()


def location_row(profile: LocationProfile) -> tuple[Any, ...]:
    """The mirror row of one profile, in `LOCATION_COLUMNS` order."""
    return (
        profile.location_id,
        profile.account_id,
        profile.live_mode,
        profile.timezone,
        profile.currency_code,
        list(profile.devices),
        profile_json(profile),
    )
