-- Address search at 1M tasks on SQLite (issue 11 item 5; src/store/search.rs), the
-- counterpart of migrations/postgres/0008: a trigram index over the addresses, so that a
-- search reads the candidates of a rare part of the term instead of scanning every task
-- (473 ms for a term found once at 1M tasks, where the plain LIKE has nothing to stop it).
--
-- An FTS5 table with the `trigram` tokenizer (SQLite >= 3.34; the bundled libsqlite3-sys
-- builds with FTS5), folding case as the search does. It is an external-content table over
-- `task`: it stores only the index, the addresses stay in `task` (rowid = task id). A
-- phrase query `"e42."` returns the tasks whose address contains that text in any case;
-- search re-checks the whole term with the plain predicate, so its results are the plain
-- query's whatever the index hands back.
--
-- Triggers keep it in step with `task`: an address is written with its task, never changed
-- (the UPDATE trigger is for safety, it fires only when `address` itself is set), and
-- forgotten when the task is deleted (batch deletion, retention, ON DELETE CASCADE).
CREATE VIRTUAL TABLE task_fts USING fts5(
    address,
    content = 'task',
    content_rowid = 'id',
    tokenize = 'trigram case_sensitive 0'
);
INSERT INTO task_fts (task_fts) VALUES ('rebuild');

CREATE TRIGGER task_fts_add AFTER INSERT ON task BEGIN
    INSERT INTO task_fts (rowid, address) VALUES (new.id, new.address);
END;
CREATE TRIGGER task_fts_forget AFTER DELETE ON task BEGIN
    INSERT INTO task_fts (task_fts, rowid, address) VALUES ('delete', old.id, old.address);
END;
CREATE TRIGGER task_fts_change AFTER UPDATE OF address ON task BEGIN
    INSERT INTO task_fts (task_fts, rowid, address) VALUES ('delete', old.id, old.address);
    INSERT INTO task_fts (rowid, address) VALUES (new.id, new.address);
END;
