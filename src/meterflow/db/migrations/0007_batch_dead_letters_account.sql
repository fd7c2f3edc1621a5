-- meterflow schema, version 7 (design §6, §9): a batch dead letter carries its account and mode.
--
-- Every row carries `account_id` and `live_mode` (§6); 0004 left them off `batch_dead_letters`
-- because a dead letter's record does not carry them. Its batch's row does: the sink now takes
-- them from `meter_batch_records` (same batch_id, record_index = batch_index) in the statement
-- that stores the letter (sink/batch_failures.py), and stores only letters whose batch row
-- exists. The batch row is always there by then: the API takes a transaction-scoped advisory
-- lock on the batch id (`contract.columns.BATCH_LOCK_NAMESPACE`) before storing the batch and
-- holds it while it publishes the records, until it commits; the sink takes the same lock,
-- shared, before its insert, so a letter read before the batch committed waits for it. A
-- letter without a batch row (its batch's commit failed after the publish, or a producer wrote
-- a `batch_id` on `meter-records` itself) was never readable: status reads letters only
-- through their batch's rows. So every path fills both columns: NOT NULL.
--
-- Existing rows are backfilled the same way; those without a batch row are deleted (unreadable,
-- as above). The status query (api/batch_store.py) also matches the letter's account and mode.

ALTER TABLE batch_dead_letters ADD COLUMN account_id text, ADD COLUMN live_mode boolean;

UPDATE batch_dead_letters d
SET account_id = r.account_id, live_mode = r.live_mode
FROM meter_batch_records r
WHERE r.batch_id = d.batch_id AND r.record_index = d.batch_index;

DELETE FROM batch_dead_letters WHERE account_id IS NULL;

ALTER TABLE batch_dead_letters
    ALTER COLUMN account_id SET NOT NULL,
    ALTER COLUMN live_mode SET NOT NULL;
