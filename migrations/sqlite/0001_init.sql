-- wordtally schema for SQLite. Times are epoch milliseconds (BIGINT) so that the same
-- queries and Rust types serve SQLite and Postgres alike (see src/store/mod.rs).

-- One row per address a person submitted. The original's columns (id, address,
-- timestamp, task_status) are kept; the rest say what to count and how often it was queued.
CREATE TABLE task (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    address         TEXT    NOT NULL,
    timestamp       BIGINT  NOT NULL,
    task_status     TEXT    NOT NULL DEFAULT 'NOT_STARTED'
                    CHECK (task_status IN ('NOT_STARTED', 'PENDING', 'FINISHED')),
    word            TEXT    NOT NULL,
    case_sensitive  BOOLEAN NOT NULL,
    whole_word      BOOLEAN NOT NULL,
    scope           TEXT    NOT NULL CHECK (scope IN ('text', 'raw')),
    -- How many times the task was handed to the queue (1 after the first enqueue).
    attempts        INTEGER NOT NULL DEFAULT 0,
    -- When it was last handed to (or claimed for) the queue; NULL = never.
    queued_at       BIGINT,
    updated_at      BIGINT  NOT NULL
);
CREATE INDEX task_status_id ON task (task_status, id);
CREATE INDEX task_status_queued ON task (task_status, queued_at);

-- At most one result per task: duplicates from at-least-once delivery are ignored.
CREATE TABLE result (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id          BIGINT  NOT NULL UNIQUE REFERENCES task (id) ON DELETE CASCADE,
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
    attempts         INTEGER NOT NULL DEFAULT 0
);

-- Totals by status and a change counter, kept in the same transactions as the rows they
-- describe, so that counters and "nothing changed" polls never scan the task table.
CREATE TABLE task_stats (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    version     BIGINT NOT NULL,
    not_started BIGINT NOT NULL,
    pending     BIGINT NOT NULL,
    finished    BIGINT NOT NULL
);
INSERT INTO task_stats (id, version, not_started, pending, finished) VALUES (1, 0, 0, 0, 0);
