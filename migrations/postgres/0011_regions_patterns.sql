-- Regions and patterns (DESIGN §17, issue 20).
-- What a task (and its batch) counts besides its words: a JSON object
-- {"within": [CSS…], "outside": [CSS…], "patterns": [RE…]} (empty lists left out;
-- NULL = none of them). One column: the three are always written and read together.
ALTER TABLE task ADD COLUMN regions_patterns TEXT;
ALTER TABLE batch ADD COLUMN regions_patterns TEXT;

-- The "contains" / "absent" filters: one row per word or pattern of each task's current
-- result (its count), written in the same transaction as the result and removed when a
-- new run starts, so the filter reads an index range of the rows it shows instead of
-- scanning the task table (DESIGN §9). `positive` is `count > 0`, kept as a column so the
-- index answers both filters in id order; `batch_id` serves the batch pages' lists.
CREATE TABLE task_count (
    task_id  BIGINT  NOT NULL REFERENCES task (id) ON DELETE CASCADE,
    batch_id BIGINT,
    word     TEXT    NOT NULL,
    count    BIGINT  NOT NULL,
    positive BOOLEAN NOT NULL,
    PRIMARY KEY (task_id, word)
);
CREATE INDEX task_count_word ON task_count (word, positive, task_id DESC);
CREATE INDEX task_count_batch_word ON task_count (batch_id, word, positive, task_id DESC);
