-- Conditional requests (DESIGN §16, issue 21 item 6): each result keeps the validators the
-- server sent (`ETag`, `Last-Modified`) and says whether it was a `304 Not Modified` whose
-- counts were carried over from the run before. The task keeps the validators of its
-- latest `ok` result, so every job built from the task (retry, scheduled run, reconciler)
-- carries them without reading the results table.
ALTER TABLE result ADD COLUMN etag TEXT;
ALTER TABLE result ADD COLUMN last_modified TEXT;
ALTER TABLE result ADD COLUMN not_modified BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE task ADD COLUMN etag TEXT;
ALTER TABLE task ADD COLUMN last_modified TEXT;

-- Webhooks (issue 21 item 5): a batch's subscriptions. `secret` is stored as it is: HMAC
-- signing needs the plain secret (see src/notify/sign.rs); it is shown once, never logged.
CREATE TABLE webhook (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    batch_id    BIGINT NOT NULL REFERENCES batch (id) ON DELETE CASCADE,
    url         TEXT   NOT NULL,
    -- Comma-separated event names (`batch.finished`, `task.changed`).
    events      TEXT   NOT NULL,
    secret      TEXT   NOT NULL,
    created_at  BIGINT NOT NULL,
    created_by  TEXT
);
CREATE INDEX webhook_batch_id ON webhook (batch_id);

-- The outbox: one row per event and subscribed webhook, written in the transaction that
-- makes the event. `event_id` is the idempotency key (the same on every retry). A row is
-- claimed by moving `next_attempt_at` past a lease (conditional update / SKIP LOCKED), so
-- any number of `serve` processes deliver each attempt once; it survives restarts.
CREATE TABLE delivery (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    webhook_id      BIGINT NOT NULL REFERENCES webhook (id) ON DELETE CASCADE,
    event           TEXT   NOT NULL,
    event_id        TEXT   NOT NULL,
    body            TEXT   NOT NULL,
    -- `pending` (waiting or being tried), `delivered`, `failed` (gave up after the schedule).
    state           TEXT   NOT NULL DEFAULT 'pending',
    attempts        INTEGER NOT NULL DEFAULT 0,
    created_at      BIGINT NOT NULL,
    next_attempt_at BIGINT,
    last_attempt_at BIGINT,
    last_status     INTEGER,
    last_error      TEXT,
    delivered_at    BIGINT,
    CONSTRAINT delivery_state CHECK (state IN ('pending', 'delivered', 'failed')),
    CONSTRAINT delivery_once UNIQUE (webhook_id, event_id)
);
CREATE INDEX delivery_due ON delivery (next_attempt_at) WHERE state = 'pending';
CREATE INDEX delivery_webhook ON delivery (webhook_id, id);
