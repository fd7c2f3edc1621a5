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
    "tax",
    "total",
    "received_at",
)
"""`tax` and `total` (design §11, migration 0005) are NULL for a result without them.
`received_at` (migration 0008) is the event's Kafka timestamp: when its record reached
meterflow (docs/sink.md, "Duplicates and corrections"); NULL where Kafka gave none."""

BREAKDOWN_COLUMNS = (
    "cost_id",
    "seq",
    "start_time",
    "end_time",
    "rate",
    "energy_kwh",
    "cost",
    "component",
)
"""`component` is NULL for an item of a version without components (design §11)."""

CONTENT_COLUMNS = (
    "start_time",
    "end_time",
    "energy_kwh",
    "energy_flow_direction",
    "tariff_direction",
    "confidence",
    "location_id",
    "session_reference_id",
)
"""What makes a second result with a stored id a correction rather than a duplicate (design
§8.2): the record's instants, energy, direction and tariff direction, plus its confidence (an
estimate replaced by an actual read may keep the energy), its location and its session (both
change what reports sum). Numbers compare as numbers (1.5 = 1.50). Not compared: the price and
breakdown (the same record priced again later is a duplicate: the first price stays), ids,
`request`, `time_created` and where it was read."""

LOCATION_COLUMNS = (
    "location_id",
    "account_id",
    "live_mode",
    "timezone",
    "currency_code",
    "devices",
    "profile",
)

BATCH_LOCK_NAMESPACE = 0x6D66_6274  # "mfbt"
"""The first key of `pg_advisory_xact_lock(BATCH_LOCK_NAMESPACE, hashtext(batch_id))`: the API
holds it exclusively from storing a batch until it commits (the records are published in
between), the sink takes it shared before storing a batch record's dead letter, so the letter
finds its batch's rows and their account (migration 0007). A hash collision only makes the sink
wait for another batch's commit."""

DEVICES_LOCK_NAMESPACE = 0x6D66_6476  # "mfdv"
"""`pg_advisory_xact_lock(DEVICES_LOCK_NAMESPACE, hashtext(account_id))`: held by every
location PUT while it checks that none of its meter ids (its devices, its own id) is another
live location's and writes it, so two PUTs at once cannot both claim one meter id
(`repository.meter_elsewhere`)."""


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
