-- Trigram statistics right away (issue 11 item 5; src/store/search.rs). Without them a
-- search asks the trigram index for the whole term, whose common trigrams (`exa`, `sit`)
-- have one posting per address: an existing database migrated to 0008 searched that way
-- until autovacuum's next ANALYZE of task_search. Cheap on a new or small table; on 1M
-- tasks it samples 300,000 rows (statistics target 1000): a few seconds, once (see
-- BENCHMARKS.md, "search4").
ANALYZE task_search;
