-- Kept in step with migrations/postgres/0002 (trigram index for address search). SQLite has
-- no trigram index; its search scans, which the embedded default's sizes allow.
SELECT 1;
