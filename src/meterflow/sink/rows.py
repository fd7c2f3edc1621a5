"""EnergyCost -> database rows (pure), in the column order of `contract.columns`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from meterflow.models import EnergyCost, dumps

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Source(NamedTuple):
    """Where the sink read an event, and the event's Kafka timestamp (ms; None or negative:
    none given)."""

    topic: str
    partition: int
    offset: int
    timestamp: int | None = None

    @property
    def received_at(self) -> datetime | None:
        """The timestamp as the `received_at` column holds it."""
        stamp = self.timestamp
        if stamp is None or stamp < 0:
            return None
        return _EPOCH + timedelta(milliseconds=stamp)


class CostRows(NamedTuple):
    """One result as rows: its `energy_costs` row and its `energy_cost_breakdown` rows."""

    cost: tuple[Any, ...]
    breakdown: list[tuple[Any, ...]]


def _utc_if_naive(value: datetime) -> datetime:
    # `time_created` is the producer's clock; a timestamp without an offset is read as UTC.
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def cost_rows(cost: EnergyCost, source: Source) -> CostRows:
    """The rows for one result; Decimals go to NUMERIC as they are (never via float)."""
    data = cost.data
    row = (
        cost.id,
        cost.account_id,
        cost.live_mode,
        cost.object_id,
        cost.location_id,
        cost.device_id,
        cost.meter_record_id,
        data.session_reference_id,
        data.record_reference_id,
        cost.energy_flow_direction.value,
        cost.tariff_direction.value,
        cost.currency_code,
        cost.location_timezone,
        data.start_time,
        data.end_time,
        data.energy.value,
        data.cost.value,
        data.cost.confidence,
        dumps(cost.request).decode(),
        _utc_if_naive(cost.time_created),
        source.topic,
        source.partition,
        source.offset,
        data.cost.tax,
        data.cost.total,
        source.received_at,
    )
    breakdown = [
        (
            cost.id,
            seq,
            item.start_time,
            item.end_time,
            item.rate,
            item.energy,
            item.cost,
            item.component,
        )
        for seq, item in enumerate(data.breakdown)
    ]
    return CostRows(row, breakdown)
