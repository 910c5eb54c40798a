-- Who did what (DESIGN §13): the account or token that created a batch, and every
-- retry, cancel and delete with who and when. `audit` has no foreign keys on purpose:
-- the record of a deletion outlives what it deleted.
ALTER TABLE batch ADD COLUMN created_by TEXT;
CREATE TABLE audit (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    at         BIGINT NOT NULL,
    who        TEXT   NOT NULL,
    -- 'retry', 'cancel', 'delete'
    action     TEXT   NOT NULL,
    batch_id   BIGINT,
    task_id    BIGINT,
    -- The run the action started (retry) or ended (cancel).
    run        INTEGER
);
CREATE INDEX audit_task ON audit (task_id, id);
CREATE INDEX audit_batch ON audit (batch_id, id);
