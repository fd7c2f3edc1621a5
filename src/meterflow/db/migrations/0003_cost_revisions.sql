-- meterflow schema, version 3 (design §8): duplicates and corrections of one result id.
--
-- A result id (`ecs_…`) now names a meter record by its reference (§8.1), so the same id can
-- arrive again: with the same content (a duplicate: nothing changes) or with other content (a
-- correction: the later one in partition order replaces the stored row and its breakdown).
-- The sink (sink/writer.py, docs/sink.md "Duplicates and corrections") decides and writes both
-- in the batch's one transaction.

-- 1 for the first stored version, +1 for every correction applied. A constant default: adding
-- the column only changes the catalog (no table rewrite), and the sink's fast path (a COPY that
-- does not name the column) stores 1.
ALTER TABLE energy_costs ADD COLUMN revision int NOT NULL DEFAULT 1;

-- "Later in partition order" is decided against the stored version's own source, which a
-- correction now replaces too (no new column needed; the comment in 0001 said "first delivery").
COMMENT ON COLUMN energy_costs.source_offset IS
    'where the sink read the stored version (topic, partition, offset): its first delivery, '
    'moved by every correction; a version read earlier in the same partition never replaces it';

-- Every replaced version, as it was stored: its row, its revision, its breakdown (a jsonb
-- array of {seq, start_time, end_time, rate, energy_kwh, cost}, in seq order), when it was
-- stored and when it was replaced. (id, revision) is unique: a version is archived once.
CREATE TABLE energy_cost_history (
    id                      text NOT NULL,
    revision                int NOT NULL,
    account_id              text NOT NULL,
    live_mode               boolean NOT NULL,
    object_id               text NOT NULL,
    location_id             text NOT NULL,
    device_id               text,
    meter_record_id         text NOT NULL,
    session_reference_id    text,
    record_reference_id     text,
    energy_flow_direction   text NOT NULL,
    tariff_direction        text NOT NULL,
    currency_code           text NOT NULL,
    location_timezone       text NOT NULL,
    start_time              timestamptz NOT NULL,
    end_time                timestamptz NOT NULL,
    energy_kwh              numeric NOT NULL,
    cost                    numeric NOT NULL,
    confidence              numeric NOT NULL,
    request                 jsonb NOT NULL,
    time_created            timestamptz NOT NULL,
    source_topic            text,
    source_partition        int,
    source_offset           bigint,
    inserted_at             timestamptz NOT NULL,
    breakdown               jsonb NOT NULL,
    replaced_at             timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (id, revision)
);

CREATE INDEX energy_cost_history_account_replaced
    ON energy_cost_history (account_id, live_mode, replaced_at);
