"""Identifiers: deterministic where a replay or a re-sent record must reproduce them (design §4,
§8.1), random where an answer is new each time (an HTTP-accepted record without a reference, a
batch receipt, a report). Every id prefix the project mints is here; none takes a clock."""

from __future__ import annotations

import hashlib
import secrets

_ID_BYTES = 12
_new_hasher = hashlib.blake2b(digest_size=_ID_BYTES).copy  # the empty hasher is only copied


def _digest(parts: str) -> str:
    """The hex digest of `parts`: an id's kind and its parts, joined by U+001F by the caller
    (one f-string: a join of varargs cost 0.2 µs more, twice a record).

    Copying a hasher costs 0.2 µs less than making one with a keyword argument."""
    hasher = _new_hasher()
    hasher.update(parts.encode())
    return hasher.hexdigest()


def meter_record_id_for_offset(topic: str, partition: int, offset: int) -> str:
    """The id of a Kafka record that arrived without one: its position identifies it."""
    return "mre_" + _digest(f"offset\x1f{topic}\x1f{partition}\x1f{offset}")


def meter_record_id_for_reference(
    account_id: str, live_mode: bool, object_id: str, record_reference_id: str
) -> str:
    """The id of a record that names itself (design §8.1): its identity alone, never its
    transport or position, so a retried or re-sent record gets the same `mre_…` (and so the same
    `ecs_…`) and the sink and every consumer see a duplicate or a correction, not a new record.

    Each free-text part is length-prefixed, not joined with a separator: an account, location
    or device id may hold any character, and no separator could keep two identities apart.
    (A JSON array would do too, at 4x the cost: 5.8 µs a record against 1.4 µs.)"""
    mode = "live" if live_mode else "test"
    return "mre_" + _digest(
        f"reference\x1f{len(account_id)}:{account_id}{mode}{len(object_id)}:{object_id}"
        f"{record_reference_id}"
    )


def reading_interval_reference(object_id: str, direction: str, start: str, end: str) -> str:
    """The `record_reference_id` of the interval between two register readings of one meter
    (object + direction) that carry no reference of their own (design §10): `rdg_…`, from the
    meter and the two instants alone (UTC text), so deriving the interval again after a crash
    or a replay gives the same reference, hence the same `mre_…` and `ecs_…` (§8.1)."""
    identity = f"{len(object_id)}:{object_id}{len(direction)}:{direction}{start}/{end}"
    return "rdg_" + _digest(f"reading\x1f{identity}")


def new_meter_record_id() -> str:
    """A fresh id for a record accepted over HTTP without a `record_reference_id`; it travels
    with the record from then on."""
    return f"mre_{secrets.token_hex(_ID_BYTES)}"


def new_batch_id() -> str:
    """The receipt id of one `PUT /meters/interval` call (`meter_batch`)."""
    return f"bat_{secrets.token_hex(_ID_BYTES)}"


def new_key_id() -> str:
    """The id of an API key (`key_…`), shown and stored; the secret itself is
    `api.credentials.new_api_key`'s."""
    return f"key_{secrets.token_hex(_ID_BYTES)}"


def new_report_id() -> str:
    """The id of a computed cost report (interval or session): an answer, never stored, so
    random; `ecs_` as Flatpeak's reports have it."""
    return f"ecs_{secrets.token_hex(_ID_BYTES)}"


def energy_cost_id(meter_record_id: str) -> str:
    """The result id: one per meter record, so the sink's ON CONFLICT (id) drops duplicates."""
    return "ecs_" + _digest(f"cost\x1f{meter_record_id}")
