-- Address search on a narrow table of its own (issue 11 item 5; src/store/search.rs).
--
-- The trigram index used to sit on `task`, whose rows get a new version on every status
-- change (queued, finished, retried, cancelled: `task_status` is indexed, so no update is
-- HOT), and every new row version wrote its ~40 trigrams into the GIN index again. Here
-- each task has one row, written once at insertion and never updated, so a task's
-- trigrams are written once in its life.
--
-- Triggers keep it complete whatever inserts or deletes tasks (the bulk INSERT, batch
-- deletion and retention through ON DELETE CASCADE, a bench filling by SQL): both are
-- statement-level with transition tables, one INSERT or DELETE per statement, not per row.
CREATE TABLE task_search (
    id            BIGINT PRIMARY KEY,
    -- LOWER(task.address), computed by the database as the search predicate always was.
    address_lower TEXT NOT NULL
);
INSERT INTO task_search (id, address_lower) SELECT id, LOWER(address) FROM task;

CREATE FUNCTION task_search_add() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO task_search (id, address_lower) SELECT id, LOWER(address) FROM added;
    RETURN NULL;
END
$$;
CREATE TRIGGER task_search_add AFTER INSERT ON task
    REFERENCING NEW TABLE AS added FOR EACH STATEMENT EXECUTE FUNCTION task_search_add();

CREATE FUNCTION task_search_forget() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM task_search s USING gone g WHERE s.id = g.id;
    RETURN NULL;
END
$$;
CREATE TRIGGER task_search_forget AFTER DELETE ON task
    REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION task_search_forget();

-- The trigram index moves here, with statistics of the trigrams themselves: ANALYZE (and
-- autovacuum) keeps the frequency of the commonest ~10,000, from which a search picks
-- the rarest part of the term for the index (a GIN scan costs the size of every posting
-- list it reads: `example` is in every address, `e42.` in a few hundred). Without pg_trgm
-- both are skipped, as in 0002, and search scans.
DO $$
BEGIN
    DROP INDEX IF EXISTS task_address_trgm;
    CREATE INDEX task_search_trgm ON task_search USING gin (address_lower gin_trgm_ops);
    CREATE STATISTICS task_search_trgm_freq ON (show_trgm(address_lower)) FROM task_search;
    ALTER STATISTICS task_search_trgm_freq SET STATISTICS 1000;
EXCEPTION WHEN OTHERS THEN
    RAISE NOTICE 'pg_trgm unavailable (%); address search will scan', SQLERRM;
END
$$;
