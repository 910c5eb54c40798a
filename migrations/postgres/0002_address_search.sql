-- Address search (`LOWER(address) LIKE '%…%'`) with a trigram index, so searching a
-- million tasks does not scan them. pg_trgm ships with PostgreSQL and is a trusted
-- extension (a database owner may create it); where it is not available the search still
-- works, by scanning, and start-up is not blocked.
DO $$
BEGIN
    CREATE EXTENSION IF NOT EXISTS pg_trgm;
    CREATE INDEX IF NOT EXISTS task_address_trgm ON task USING gin (LOWER(address) gin_trgm_ops);
EXCEPTION WHEN OTHERS THEN
    RAISE NOTICE 'pg_trgm unavailable (%); address search will scan', SQLERRM;
END
$$;
