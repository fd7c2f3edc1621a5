-- meterflow schema, version 1 (design §6): energy costs and their breakdown, the location mirror,
-- API keys. Every row carries account_id and live_mode. Money, energy and rates are NUMERIC,
-- written from Decimal exactly.

CREATE TABLE energy_costs (
    id                      text PRIMARY KEY,
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
    -- where the sink read the event (first delivery that landed)
    source_topic            text,
    source_partition        int,
    source_offset           bigint,
    inserted_at             timestamptz NOT NULL DEFAULT now()
);

-- Report queries: interval costs by location or device over time, and per charging session.
CREATE INDEX energy_costs_account_location_time
    ON energy_costs (account_id, location_id, start_time);
CREATE INDEX energy_costs_account_device_time
    ON energy_costs (account_id, device_id, start_time);
CREATE INDEX energy_costs_account_session
    ON energy_costs (account_id, session_reference_id);

CREATE TABLE energy_cost_breakdown (
    cost_id     text NOT NULL REFERENCES energy_costs (id) ON DELETE CASCADE,
    seq         int NOT NULL,
    start_time  timestamptz NOT NULL,
    end_time    timestamptz NOT NULL,
    rate        numeric NOT NULL,
    energy_kwh  numeric NOT NULL,
    cost        numeric NOT NULL,
    PRIMARY KEY (cost_id, seq)
);

-- Mirror of the compacted `locations` topic; a tombstone marks the row deleted.
CREATE TABLE locations (
    location_id     text PRIMARY KEY,
    account_id      text NOT NULL,
    live_mode       boolean NOT NULL,
    timezone        text NOT NULL,
    currency_code   text NOT NULL,
    devices         text[] NOT NULL DEFAULT '{}',
    profile         jsonb NOT NULL,
    deleted         boolean NOT NULL DEFAULT false,
    updated_at      timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX locations_account ON locations (account_id, live_mode);

-- API keys are stored hashed; the clear key is shown once, at creation.
CREATE TABLE api_keys (
    id          text PRIMARY KEY,
    account_id  text NOT NULL,
    live_mode   boolean NOT NULL,
    key_hash    text NOT NULL UNIQUE,
    key_prefix  text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);

CREATE INDEX api_keys_account ON api_keys (account_id, live_mode);
