-- Crawls (DESIGN §15; src/crawl, src/store/crawls.rs); kept parallel to
-- migrations/sqlite/0010.
--
-- A crawl is a batch of kind 'crawl' whose rules are stored with it (JSON, as submitted and
-- normalised) and whose tasks grow as pages are fetched: the DB writer inserts every unseen
-- link of a stored result as a new task of the batch, in the same transaction as the
-- result. The frontier is therefore the unique index (batch_id, url_key): an insert of a
-- URL the crawl already has does nothing, whatever the size of the crawl (one index probe),
-- and a redelivered result cannot add a page twice. List tasks keep url_key NULL (NULLs
-- never collide in a unique index).
ALTER TABLE batch ADD COLUMN kind TEXT NOT NULL DEFAULT 'list' CHECK (kind IN ('list', 'crawl'));
ALTER TABLE batch ADD COLUMN crawl_rules TEXT;
-- Links left out because they were out of the crawl's scope (summed per page) or over one
-- of its limits (max_pages, max_depth); the deepest depth stored; pages per depth (JSON
-- object {"0": n, "1": n, ...}), all kept in the same transactions as the tasks.
ALTER TABLE batch ADD COLUMN out_of_scope BIGINT NOT NULL DEFAULT 0;
ALTER TABLE batch ADD COLUMN over_limit BIGINT NOT NULL DEFAULT 0;
ALTER TABLE batch ADD COLUMN max_depth_seen INTEGER NOT NULL DEFAULT 0;
ALTER TABLE batch ADD COLUMN depth_counts TEXT;
ALTER TABLE batch ADD COLUMN skipped BIGINT NOT NULL DEFAULT 0;

ALTER TABLE task ADD COLUMN depth INTEGER;
ALTER TABLE task ADD COLUMN found_on BIGINT;
ALTER TABLE task ADD COLUMN url_key TEXT;
-- 'page' (NULL), 'sitemap' (a sitemap or sitemap index whose <loc>s become seeds) or
-- 'robots' (an origin's robots.txt read for its Sitemap: lines, `sitemaps: "auto"`).
ALTER TABLE task ADD COLUMN role TEXT CHECK (role IN ('sitemap', 'robots'));
CREATE UNIQUE INDEX task_crawl_url ON task (batch_id, url_key);

-- The new outcome: a page the crawl found but did not fetch (robots.txt disallows it).
ALTER TABLE task DROP CONSTRAINT task_outcome_check;
ALTER TABLE task ADD CONSTRAINT task_outcome_check
    CHECK (outcome IN ('ok', 'http_error', 'failed', 'truncated', 'cancelled', 'skipped'));
ALTER TABLE task_stats ADD COLUMN skipped BIGINT NOT NULL DEFAULT 0;
ALTER TABLE rollup_minute ADD COLUMN skipped BIGINT NOT NULL DEFAULT 0;
