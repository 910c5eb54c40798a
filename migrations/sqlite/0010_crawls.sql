-- Crawls (DESIGN §15; src/crawl, src/store/crawls.rs); kept parallel to
-- migrations/postgres/0010, which explains the columns.
ALTER TABLE batch ADD COLUMN kind TEXT NOT NULL DEFAULT 'list' CHECK (kind IN ('list', 'crawl'));
ALTER TABLE batch ADD COLUMN crawl_rules TEXT;
ALTER TABLE batch ADD COLUMN out_of_scope INTEGER NOT NULL DEFAULT 0;
ALTER TABLE batch ADD COLUMN over_limit INTEGER NOT NULL DEFAULT 0;
ALTER TABLE batch ADD COLUMN max_depth_seen INTEGER NOT NULL DEFAULT 0;
ALTER TABLE batch ADD COLUMN depth_counts TEXT;
ALTER TABLE batch ADD COLUMN skipped INTEGER NOT NULL DEFAULT 0;

ALTER TABLE task ADD COLUMN depth INTEGER;
ALTER TABLE task ADD COLUMN found_on INTEGER;
ALTER TABLE task ADD COLUMN url_key TEXT;
ALTER TABLE task ADD COLUMN role TEXT CHECK (role IN ('sitemap', 'robots'));
CREATE UNIQUE INDEX task_crawl_url ON task (batch_id, url_key);

-- The new outcome 'skipped'. SQLite cannot alter a column's CHECK, so the column is
-- rebuilt: copied aside, dropped (with its index), added again with the new CHECK, and
-- filled back (one pass over the task table, at migration time only).
ALTER TABLE task ADD COLUMN outcome_old TEXT;
UPDATE task SET outcome_old = outcome;
DROP INDEX task_outcome_id;
ALTER TABLE task DROP COLUMN outcome;
ALTER TABLE task ADD COLUMN outcome TEXT
    CHECK (outcome IN ('ok', 'http_error', 'failed', 'truncated', 'cancelled', 'skipped'));
UPDATE task SET outcome = outcome_old;
ALTER TABLE task DROP COLUMN outcome_old;
CREATE INDEX task_outcome_id ON task (outcome, id);

ALTER TABLE task_stats ADD COLUMN skipped INTEGER NOT NULL DEFAULT 0;
ALTER TABLE rollup_minute ADD COLUMN skipped INTEGER NOT NULL DEFAULT 0;
