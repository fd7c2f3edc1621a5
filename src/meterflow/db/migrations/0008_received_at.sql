-- meterflow schema, version 8 (design §8.3): when each stored version reached meterflow.
--
-- `received_at` is the Kafka timestamp of the `energy-costs` event, which the worker sets to
-- its input record's timestamp and the API to the moment it priced the record. A correction
-- replaces the stored version when it was received later; the partition order decides only
-- between versions received in the same millisecond (docs/sink.md, "Duplicates and
-- corrections"). Without it, a record sent to `meter-records` and corrected through
-- `POST /costs/instant` a moment later was overwritten by its older version whenever the
-- worker emitted that version after the API had emitted the correction.
--
-- Nullable, no default: only the catalog changes. Rows stored before this version keep NULL,
-- and a NULL on either side leaves the decision to the partition order, as before.

ALTER TABLE energy_costs ADD COLUMN received_at timestamptz;

-- The twin of every column of a stored version (0003, 0005).
ALTER TABLE energy_cost_history ADD COLUMN received_at timestamptz;
