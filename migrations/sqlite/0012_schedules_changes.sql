-- Watching over time (DESIGN §16, issue 21 items 1-4); kept parallel to
-- migrations/postgres/0012. Times are epoch milliseconds.

-- The batch's current run (batch-wide: 1 at submission, +1 per scheduled or whole-batch
-- run). A task's own `run` counts that task's runs and may differ after a partial retry.
ALTER TABLE batch ADD COLUMN run INTEGER NOT NULL DEFAULT 1;
-- The change rules a person set on the batch: a JSON array of strings such as
-- "> 10", "< 3", "becomes 0", "becomes non-zero" (NULL = none: every difference is a change).
ALTER TABLE batch ADD COLUMN change_rules TEXT;

-- At most one schedule per batch: an interval or a cron expression in a time zone.
-- A due tick is claimed by a conditional UPDATE of `next_run_at` (src/schedule/tick.rs),
-- so whatever the number of `serve` processes each tick starts one run.
CREATE TABLE schedule (
    batch_id        BIGINT  PRIMARY KEY REFERENCES batch (id) ON DELETE CASCADE,
    every_ms        BIGINT,
    cron            TEXT,
    timezone        TEXT    NOT NULL DEFAULT 'UTC',
    paused          BOOLEAN NOT NULL DEFAULT FALSE,
    -- When the next tick is due; computed from the time of the last claim (missed ticks
    -- collapse into one).
    next_run_at     BIGINT  NOT NULL,
    -- When a tick was last handled (a run started, or skipped) and what happened.
    last_tick_at    BIGINT,
    last_tick_note  TEXT,
    -- How many runs the schedule started.
    runs_started    BIGINT  NOT NULL DEFAULT 0,
    created_at      BIGINT  NOT NULL,
    updated_at      BIGINT  NOT NULL,
    CHECK ((every_ms IS NULL) <> (cron IS NULL)),
    CHECK (every_ms IS NULL OR every_ms > 0)
);
CREATE INDEX schedule_due ON schedule (next_run_at) WHERE NOT paused;

-- The runs of a batch: one row per batch run, with the batch total when it finished.
-- `cursor` is the last task id handed a new run while the run is being started (chunks of
-- a thousand, each in the transaction that moves it), NULL once every task has its run: a
-- process that dies half-way leaves a cursor another one continues from.
CREATE TABLE batch_run (
    batch_id        BIGINT  NOT NULL REFERENCES batch (id) ON DELETE CASCADE,
    run             INTEGER NOT NULL,
    trigger         TEXT    NOT NULL CHECK (trigger IN ('submit', 'schedule', 'retry')),
    started_at      BIGINT  NOT NULL,
    finished_at     BIGINT,
    -- The batch's words_total / word_totals (JSON) when the run finished.
    words_total     BIGINT,
    word_totals     TEXT,
    cursor          BIGINT,
    PRIMARY KEY (batch_id, run)
);
CREATE INDEX batch_run_starting ON batch_run (cursor) WHERE cursor IS NOT NULL;

-- Run 1 of every existing batch (finished ones with their totals).
INSERT INTO batch_run (batch_id, run, trigger, started_at, finished_at, words_total, word_totals)
    SELECT id, 1, 'submit', created_at, finished_at,
           CASE WHEN finished_at IS NULL THEN NULL ELSE words_total END,
           CASE WHEN finished_at IS NULL THEN NULL ELSE word_totals END
    FROM batch;

-- A stored change: a task's count of `word` in run `run` differs from run `run - 1`
-- (`before` → `after`), or crossed the batch rule `rule`. Inserted in the same transaction
-- as the result. The columns are the JSON of GET /api/changes (webhooks read them too).
CREATE TABLE change (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id         BIGINT  NOT NULL REFERENCES task (id) ON DELETE CASCADE,
    batch_id        BIGINT  REFERENCES batch (id) ON DELETE CASCADE,
    run             INTEGER NOT NULL,
    word            TEXT    NOT NULL,
    before          BIGINT,
    after           BIGINT,
    at              BIGINT  NOT NULL,
    rule            TEXT
);
CREATE INDEX change_batch_id ON change (batch_id, id);
CREATE INDEX change_task_id ON change (task_id, id);
