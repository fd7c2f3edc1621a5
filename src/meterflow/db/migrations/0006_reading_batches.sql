-- meterflow schema, version 6 (design §9, §10): batch status of `PUT /meters/cumulative/epoch`.
--
-- A reading's interval id is not known when the API accepts it: without a reference it is
-- derived from the meter's previous reading (`rdg_…`), which only the worker's table holds. So
-- a reading's row keeps what finds its interval instead: the meter (location, object,
-- direction) and the reading's time. Its interval is the stored cost of that meter that ends
-- at `reading_time` and starts at or after `reading_after` (a lower bound the API knows: the
-- batch's previous, earlier reading, else `reading_time` minus the longest record); the
-- lookup walks `energy_costs_account_location_time`, so it needs no new index on the sink's
-- hot table (docs/api.md, Batch status of readings). Interval records' rows leave them NULL.

ALTER TABLE meter_batch_records
    ADD COLUMN location_id           text,
    ADD COLUMN object_id             text,
    ADD COLUMN energy_flow_direction text,
    ADD COLUMN reading_time          timestamptz,
    ADD COLUMN reading_after         timestamptz;
