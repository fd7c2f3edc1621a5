-- meterflow schema, version 5 (design §11): what a bill needs from each stored result.
--
-- A result priced for a location with `tax_percentage` carries `cost.tax` and `cost.total`
-- (each rounded once by the engine: total may differ from cost + tax by 0.000001, so both are
-- stored, never recomputed); a result priced by a version with components has one breakdown
-- item per (period, component), named by `component` ("energy" or the component's name).
-- All three are NULL where the result has no such field (results without tax, breakdowns of
-- versions without components, and every row stored before this version).
--
-- Nullable columns without a default: adding them only changes the catalog (no table
-- rewrite). The sink writes them on every path (contract.columns, sink/rows.py,
-- sink/text_rows.py); the reports sum them (docs/api.md, "Bills in reports").

ALTER TABLE energy_costs ADD COLUMN tax numeric, ADD COLUMN total numeric;

-- Every column of a stored version is kept when a correction replaces it (0003): the twins.
-- The replaced breakdown is kept as jsonb there; its items gain a `component` key
-- (sink/writer.py builds it).
ALTER TABLE energy_cost_history ADD COLUMN tax numeric, ADD COLUMN total numeric;

ALTER TABLE energy_cost_breakdown ADD COLUMN component text;
