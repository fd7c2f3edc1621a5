"""Deterministic identifiers (design §4): a replay or a crash reproduces the same ids."""

from __future__ import annotations

import hashlib
import secrets

_ID_BYTES = 12


def _digest(*parts: str) -> str:
    return hashlib.blake2b("\x1f".join(parts).encode(), digest_size=_ID_BYTES).hexdigest()


def meter_record_id_for_offset(topic: str, partition: int, offset: int) -> str:
    """The id of a Kafka record that arrived without one: its position identifies it."""
    return f"mre_{_digest('offset', topic, str(partition), str(offset))}"


def new_meter_record_id() -> str:
    """A fresh id for a record accepted over HTTP; it travels with the record from then on."""
    return f"mre_{secrets.token_hex(_ID_BYTES)}"


def energy_cost_id(meter_record_id: str) -> str:
    """The result id: one per meter record, so the sink's ON CONFLICT (id) drops duplicates."""
    return f"ecs_{_digest('cost', meter_record_id)}"
