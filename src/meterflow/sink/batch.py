"""The in-flight batch (pure): rows to write, dead letters to send, offsets to commit."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

from meterflow.models import DeadLetter
from meterflow.sink.batch_failures import BatchFailure, Identity, newer
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
    later: list[Persist] = field(default_factory=list)
    locations: dict[str, LocationChange] = field(default_factory=dict)
    dead_letters: list[tuple[bytes | None, DeadLetter]] = field(default_factory=list)
    # dead letters of batch records, to store (one per record: the newer), design §9
    batch_failures: dict[tuple[str, int, Identity], BatchFailure] = field(default_factory=dict)
    next_offsets: dict[TopicPartitionKey, int] = field(default_factory=dict)
    records: int = 0
    simulated: int = 0
    ignored: int = 0
    started_at: float | None = None

    def __len__(self) -> int:
        return self.records

    @property
    def duplicates(self) -> int:
        """Reads of an id already read in this batch (`later`): duplicates or corrections,
        which the writer tells apart against the stored version."""
        return len(self.later)

    @property
    def results(self) -> int:
        """Every result read to be stored, each version counted."""
        return len(self.costs) + len(self.later)

    def rounds(self) -> list[dict[str, Persist]]:
        """The results in write order: round 0 is the first read of every id (`costs`), round
        k the (k+1)-th read of each id read that often. Writing the rounds one after the other
        applies the versions of one id in the order they were read (docs/sink.md)."""
        rounds = [self.costs]
        seen: dict[str, int] = {}
        for persist in self.later:
            k = seen[persist.id] = seen.get(persist.id, 0) + 1
            if k == len(rounds):
                rounds.append({})
            rounds[k][persist.id] = persist
        return rounds

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
                self.later.append(outcome)  # a duplicate or a correction: the writer decides
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

    def add_batch_failure(
        self, failure: BatchFailure | None, topic: str, partition: int, offset: int, now: float
    ) -> None:
        """A `dead-letters` record: stored when it is a batch record's (else only read past)."""
        self._read(topic, partition, offset, now)
        if failure is not None:
            self.batch_failures[failure.key] = newer(self.batch_failures.get(failure.key), failure)

    def then(self, later: Batch) -> Batch:
        """This batch followed by `later` (read after it): one batch with both their effects."""
        # Per id, the reads stay in order: ours, then ours again, then `later`'s.
        again = [p for p in later.costs.values() if p.id in self.costs]
        merged = Batch(
            costs={**later.costs, **self.costs},
            later=self.later + again + later.later,
            locations=dict(self.locations),
            dead_letters=self.dead_letters + later.dead_letters,
            batch_failures=self.batch_failures
            | {
                key: newer(self.batch_failures.get(key), failure)
                for key, failure in later.batch_failures.items()
            },
            next_offsets={**self.next_offsets, **later.next_offsets},
            records=self.records + later.records,
            simulated=self.simulated + later.simulated,
            ignored=self.ignored + later.ignored,
            started_at=self.started_at if self.started_at is not None else later.started_at,
        )
        for location_id, change in later.locations.items():
            earlier = merged.locations.get(location_id)
            if change.row is None and earlier is not None:
                change = LocationChange(earlier.row, change.deleted)
            merged.locations[location_id] = change
        return merged

    def age(self, now: float) -> float:
        return 0.0 if self.started_at is None else now - self.started_at

    def cost_rows(self, results: dict[str, Persist] | None = None) -> list[tuple[Any, ...]]:
        """`energy_costs` rows as Python values (binary COPY): results the text path deferred.
        `results`: one of `rounds()` (default: the first, `costs`)."""
        chosen = self.costs if results is None else results
        return [p.rows.cost for p in chosen.values() if isinstance(p.rows, CostRows)]

    def breakdown_rows(self, results: dict[str, Persist] | None = None) -> list[tuple[Any, ...]]:
        chosen = self.costs if results is None else results
        return [
            item
            for persist in chosen.values()
            if isinstance(persist.rows, CostRows)
            for item in persist.rows.breakdown
        ]

    def cost_text(self, results: dict[str, Persist] | None = None) -> str:
        """`energy_costs` rows in COPY text format: results of the text path."""
        chosen = self.costs if results is None else results
        return "".join([p.rows.cost for p in chosen.values() if isinstance(p.rows, TextRows)])

    def breakdown_text(self, results: dict[str, Persist] | None = None) -> str:
        chosen = self.costs if results is None else results
        return "".join([p.rows.breakdown for p in chosen.values() if isinstance(p.rows, TextRows)])

    def versions(self) -> dict[str, Persist]:
        """Every result to store by its `version_key`, the key `reject` takes."""
        return {version_key(p, first=True): p for p in self.costs.values()} | {
            version_key(p, first=False): p for p in self.later
        }

    def reject(self, costs: dict[str, str], locations: dict[str, str], now: datetime) -> None:
        """Take out what PostgreSQL refuses: results become dead letters, profiles are skipped
        (the cost agent reports invalid profiles); `costs` maps a `version_key` -> reason,
        `locations` an id -> reason. Other versions of a refused result stay."""
        for key, reason in costs.items():
            persist = self._take(key)
            message = f"could not be stored: {reason}"
            letter = invalid_record(persist.value, message, persist.source, now)
            self.dead_letters.append((persist.key, letter))
        for location_id in locations:
            self.locations.pop(location_id, None)
            self.ignored += 1

    def _take(self, key: str) -> Persist:
        """Remove one version; when it is a first read, the id's next read takes its place."""
        if key in self.costs:
            persist = self.costs.pop(key)
            following = next((p for p in self.later if p.id == key), None)
            if following is not None:
                self.later.remove(following)
                self.costs[key] = following
            return persist
        persist = next(p for p in self.later if version_key(p, first=False) == key)
        self.later.remove(persist)
        return persist


def version_key(persist: Persist, *, first: bool) -> str:
    """A first read is known by its id; a later read of the same id by id@partition:offset."""
    if first:
        return persist.id
    return f"{persist.id}@{persist.source.partition}:{persist.source.offset}"
