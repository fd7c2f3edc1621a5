"""The in-flight batch (pure): rows to write, dead letters to send, offsets to commit."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

from meterflow.models import DeadLetter
from meterflow.sink.decode import (
    CostOutcome,
    Ignored,
    LocationOutcome,
    LocationUpsert,
    Persist,
    Poison,
    Simulated,
    invalid_record,
)
from meterflow.sink.rows import CostRows
from meterflow.sink.text_rows import TextRows

TopicPartitionKey = tuple[str, int]


class LocationChange(NamedTuple):
    """The net change of one location in a batch: its latest profile row (if read), deleted?"""

    row: tuple[Any, ...] | None
    deleted: bool


@dataclass
class Batch:
    """Everything read since the last checkpoint.

    `next_offsets` holds, per partition, the offset after the last record read: committing it
    is only correct once every effect of the records before it (rows, dead letters) is durable.
    """

    costs: dict[str, Persist] = field(default_factory=dict)
    locations: dict[str, LocationChange] = field(default_factory=dict)
    dead_letters: list[tuple[bytes | None, DeadLetter]] = field(default_factory=list)
    next_offsets: dict[TopicPartitionKey, int] = field(default_factory=dict)
    records: int = 0
    simulated: int = 0
    duplicates: int = 0
    ignored: int = 0
    started_at: float | None = None

    def __len__(self) -> int:
        return self.records

    def _read(self, topic: str, partition: int, offset: int, now: float) -> None:
        self.records += 1
        self.next_offsets[(topic, partition)] = offset + 1
        if self.started_at is None:
            self.started_at = now

    def add_cost(
        self, outcome: CostOutcome, topic: str, partition: int, offset: int, now: float
    ) -> None:
        self._read(topic, partition, offset, now)
        if isinstance(outcome, Persist):
            if outcome.id in self.costs:
                self.duplicates += 1  # same result twice in one batch: the first read wins
            else:
                self.costs[outcome.id] = outcome
        elif isinstance(outcome, Simulated):
            self.simulated += 1
        elif isinstance(outcome, Poison):
            self.dead_letters.append((outcome.key, outcome.dead_letter))

    def add_location(
        self, outcome: LocationOutcome, topic: str, partition: int, offset: int, now: float
    ) -> None:
        self._read(topic, partition, offset, now)
        if isinstance(outcome, Ignored):
            self.ignored += 1
        elif isinstance(outcome, LocationUpsert):
            # One key lives on one partition, read in order: the last profile wins.
            self.locations[outcome.location_id] = LocationChange(outcome.row, deleted=False)
        else:
            # Keep the profile read earlier in this batch, so the mirror shows it as deleted.
            earlier = self.locations.get(outcome.location_id)
            row = earlier.row if earlier is not None else None
            self.locations[outcome.location_id] = LocationChange(row, deleted=True)

    def then(self, later: Batch) -> Batch:
        """This batch followed by `later` (read after it): one batch with both their effects."""
        merged = Batch(
            costs={**later.costs, **self.costs},  # the first read of a result wins
            locations=dict(self.locations),
            dead_letters=self.dead_letters + later.dead_letters,
            next_offsets={**self.next_offsets, **later.next_offsets},
            records=self.records + later.records,
            simulated=self.simulated + later.simulated,
            duplicates=self.duplicates + later.duplicates,
            ignored=self.ignored + later.ignored,
            started_at=self.started_at if self.started_at is not None else later.started_at,
        )
        merged.duplicates += len(self.costs) + len(later.costs) - len(merged.costs)
        for location_id, change in later.locations.items():
            earlier = merged.locations.get(location_id)
            if change.row is None and earlier is not None:
                change = LocationChange(earlier.row, change.deleted)
            merged.locations[location_id] = change
        return merged

    def age(self, now: float) -> float:
        return 0.0 if self.started_at is None else now - self.started_at

    def cost_rows(self) -> list[tuple[Any, ...]]:
        """`energy_costs` rows as Python values (binary COPY): results the text path deferred."""
        return [p.rows.cost for p in self.costs.values() if isinstance(p.rows, CostRows)]

    def breakdown_rows(self) -> list[tuple[Any, ...]]:
        return [
            item
            for persist in self.costs.values()
            if isinstance(persist.rows, CostRows)
            for item in persist.rows.breakdown
        ]

    def cost_text(self) -> str:
        """`energy_costs` rows in COPY text format: results of the text path."""
        return "".join([p.rows.cost for p in self.costs.values() if isinstance(p.rows, TextRows)])

    def breakdown_text(self) -> str:
        return "".join(
            [p.rows.breakdown for p in self.costs.values() if isinstance(p.rows, TextRows)]
        )

    def reject(self, costs: dict[str, str], locations: dict[str, str], now: datetime) -> None:
        """Take out what PostgreSQL refuses: results become dead letters, profiles are skipped
        (the cost agent reports invalid profiles); `costs`/`locations` map id -> reason."""
        for cost_id, reason in costs.items():
            persist = self.costs.pop(cost_id)
            message = f"could not be stored: {reason}"
            letter = invalid_record(persist.value, message, persist.source, now)
            self.dead_letters.append((persist.key, letter))
        for location_id in locations:
            self.locations.pop(location_id, None)
            self.ignored += 1
