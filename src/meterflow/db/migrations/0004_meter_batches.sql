-- meterflow schema, version 4 (design §9): batch status, `GET /meters/batch?batch_id=bat_…`.
--
-- `meter_batches` and `meter_batch_records` are written by the API at `PUT /meters/interval`,
-- in one transaction around publishing the batch's records, before it answers: a batch whose
-- records could not be published is not stored, and a batch id a client holds is always found.
-- One `meter_batch_records` row per submitted record: refused at acceptance (`error_code` set,
-- no `meter_record_id`) or accepted (`meter_record_id` and the `energy_cost_id` its result will
-- have). A record's later status is read, never stored: PRICED from `energy_costs` (by its
-- primary key, `energy_cost_id`), FAILED from `batch_dead_letters` (docs/api.md, Batch status).
--
-- `batch_dead_letters` is written by the sink from the `dead-letters` topic: one row per
-- (batch_id, batch_index) that the worker (or the sink) could not price or store. A later
-- letter for the same record replaces the row only when it is newer, so a replay of the topic
-- changes nothing. The sink cannot know a letter's account (a meter record does not carry it),
-- so these rows carry none: they are only ever read through their batch's rows, which do.
-- (Version 3 is the record-identity migration; versions are applied in order, each once.)

CREATE TABLE meter_batches (
    id                  text PRIMARY KEY,
    account_id          text NOT NULL,
    live_mode           boolean NOT NULL,
    records_submitted   int NOT NULL,
    records_accepted    int NOT NULL,
    time_created        timestamptz NOT NULL
);

CREATE TABLE meter_batch_records (
    batch_id            text NOT NULL,
    record_index        int NOT NULL,
    account_id          text NOT NULL,
    live_mode           boolean NOT NULL,
    meter_record_id     text,
    energy_cost_id      text,
    record_reference_id text,
    error_code          text,
    error_message       text,
    PRIMARY KEY (batch_id, record_index)
);

CREATE TABLE batch_dead_letters (
    batch_id            text NOT NULL,
    batch_index         int NOT NULL,
    error_code          text NOT NULL,
    error_message       text NOT NULL,
    time_created        timestamptz NOT NULL,  -- the dead letter's: compared with the cost's
    source_topic        text NOT NULL,         -- where the sink read the letter
    source_partition    int NOT NULL,
    source_offset       bigint NOT NULL,
    inserted_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (batch_id, batch_index)
);
