-- Several words at once (DESIGN §14): the list a task counts (JSON array; NULL = just
-- `word`), each result's count per word (JSON object), and a batch's per-word sums (JSON
-- object, kept in the same transactions as its results, like its other totals).
ALTER TABLE task ADD COLUMN words TEXT;
ALTER TABLE batch ADD COLUMN words TEXT;
ALTER TABLE batch ADD COLUMN word_totals TEXT;
ALTER TABLE result ADD COLUMN counts TEXT;
-- The redirects a result's fetch followed (JSON array; NULL = none).
ALTER TABLE result ADD COLUMN redirects TEXT;
