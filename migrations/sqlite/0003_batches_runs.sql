-- Batches, runs and outcomes (DESIGN §11); kept parallel to migrations/postgres/0003.

-- Every submission is a batch. Its totals change in the same transactions as its tasks
-- (like task_stats), so the batch list and a batch's progress never count rows.
CREATE TABLE batch (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    label           TEXT,
    created_at      BIGINT  NOT NULL,
    word            TEXT    NOT NULL,
    case_sensitive  BOOLEAN NOT NULL,
    whole_word      BOOLEAN NOT NULL,
    scope           TEXT    NOT NULL,
    total           BIGINT  NOT NULL DEFAULT 0,
    not_started     BIGINT  NOT NULL DEFAULT 0,
    pending         BIGINT  NOT NULL DEFAULT 0,
    finished        BIGINT  NOT NULL DEFAULT 0,
    ok              BIGINT  NOT NULL DEFAULT 0,
    http_error      BIGINT  NOT NULL DEFAULT 0,
    failed          BIGINT  NOT NULL DEFAULT 0,
    truncated       BIGINT  NOT NULL DEFAULT 0,
    cancelled       BIGINT  NOT NULL DEFAULT 0,
    -- Sum of the current runs' counts (of the first word).
    words_total     BIGINT  NOT NULL DEFAULT 0,
    -- Change counter: the batch's polled partials answer 204 while it is unchanged.
    version         BIGINT  NOT NULL DEFAULT 0,
    updated_at      BIGINT  NOT NULL,
    -- When the last unfinished task finished (NULL while any is unfinished): retention.
    finished_at     BIGINT
);
CREATE INDEX batch_finished_at ON batch (finished_at);

-- Tasks submitted before batches existed keep batch_id NULL.
ALTER TABLE task ADD COLUMN batch_id BIGINT REFERENCES batch (id) ON DELETE CASCADE;
-- The current run: 1 at submission, +1 per retry. Jobs and results carry it.
ALTER TABLE task ADD COLUMN run INTEGER NOT NULL DEFAULT 1;
-- Set when the current run finished; NULL while it has not.
ALTER TABLE task ADD COLUMN outcome TEXT
    CHECK (outcome IN ('ok', 'http_error', 'failed', 'truncated', 'cancelled'));
CREATE INDEX task_batch_id ON task (batch_id, id);
CREATE INDEX task_outcome_id ON task (outcome, id);

-- One result per (task, run): earlier runs stay as history. SQLite cannot drop the old
-- UNIQUE (task_id), so the table is rebuilt.
CREATE TABLE result_v3 (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id          BIGINT  NOT NULL REFERENCES task (id) ON DELETE CASCADE,
    run              INTEGER NOT NULL DEFAULT 1,
    words_count      BIGINT,
    http_status_code INTEGER,
    error            TEXT,
    timestamp        BIGINT  NOT NULL,
    final_url        TEXT,
    content_type     TEXT,
    charset          TEXT,
    bytes_read       BIGINT  NOT NULL DEFAULT 0,
    truncated        BOOLEAN NOT NULL DEFAULT FALSE,
    duration_ms      BIGINT  NOT NULL DEFAULT 0,
    attempts         INTEGER NOT NULL DEFAULT 0,
    outcome          TEXT,
    charset_source   TEXT,
    -- JSON array of the fetch attempts: [{"status": 503} | {"error": "..."}], oldest first.
    attempt_log      TEXT
);
INSERT INTO result_v3 (id, task_id, run, words_count, http_status_code, error, timestamp,
    final_url, content_type, charset, bytes_read, truncated, duration_ms, attempts, outcome)
SELECT id, task_id, 1, words_count, http_status_code, error, timestamp, final_url,
    content_type, charset, bytes_read, truncated, duration_ms, attempts,
    CASE WHEN http_status_code >= 400 THEN 'http_error'
         WHEN error IS NOT NULL OR words_count IS NULL THEN 'failed'
         WHEN truncated THEN 'truncated'
         ELSE 'ok' END
FROM result;
DROP TABLE result;
ALTER TABLE result_v3 RENAME TO result;
CREATE UNIQUE INDEX result_task_run ON result (task_id, run);

UPDATE task SET outcome = (SELECT r.outcome FROM result r WHERE r.task_id = task.id)
    WHERE task_status = 'FINISHED';

ALTER TABLE task_stats ADD COLUMN ok BIGINT NOT NULL DEFAULT 0;
ALTER TABLE task_stats ADD COLUMN http_error BIGINT NOT NULL DEFAULT 0;
ALTER TABLE task_stats ADD COLUMN failed BIGINT NOT NULL DEFAULT 0;
ALTER TABLE task_stats ADD COLUMN truncated BIGINT NOT NULL DEFAULT 0;
ALTER TABLE task_stats ADD COLUMN cancelled BIGINT NOT NULL DEFAULT 0;
-- The one scan of the task table, at migration time only.
UPDATE task_stats SET
    ok = (SELECT COUNT(*) FROM task WHERE outcome = 'ok'),
    http_error = (SELECT COUNT(*) FROM task WHERE outcome = 'http_error'),
    failed = (SELECT COUNT(*) FROM task WHERE outcome = 'failed'),
    truncated = (SELECT COUNT(*) FROM task WHERE outcome = 'truncated'),
    version = version + 1
WHERE id = 1;
