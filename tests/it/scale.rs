//! Address search at any size (issue 11 item 5, src/store/search.rs): every strategy —
//! the bounded walk of any length, the trigram index asked for the rarest part of the
//! term, for the whole term, or not at all — returns exactly the ids of the plain
//! `LOWER(address) LIKE` query, on both databases, for hostile terms, every filter, both
//! directions, and hits that straddle the walk's edge. Speed is in BENCHMARKS.md.

use wordtally::model::TaskStatus;
use wordtally::outcome::Outcome;
use wordtally::store::{NewTask, SearchIndex, SearchTuning, Store, TaskFilter};

use crate::helpers::*;

/// Addresses with hosts of very different frequencies (so hits are dense in some id
/// ranges and sparse in others) and the characters a LIKE pattern treats specially.
fn addresses() -> Vec<String> {
    let odd = [
        "http://100%.example/a_b",
        "http://under_score.example/x%y",
        "http://back\\slash.example/\\_%",
        "http://ÉCOLE.example/été",
        "http://straße.example/ß",
        "http://日本語.example/テスト",
        "http://quote.example/'\"",
        "http://MiXeD.Example/CaSe",
    ];
    let mut out = Vec::new();
    for i in 0..420 {
        let a = match i % 7 {
            0..=2 => format!("http://site{}.example/page/{i}", i % 13),
            3 => format!("http://common.example/{i}"),
            4 => odd[(i / 7) % odd.len()].to_string(),
            5 if i % 5 == 0 => format!("http://rare{i}.test/{}", "long".repeat(60)),
            5 => format!("http://e42.example/{i}?q=e42.e42"),
            _ => format!("http://site4{}.example/p{}", i % 3, i / 3),
        };
        out.push(a);
    }
    out
}

const TERMS: &[&str] = &[
    "site4",
    "site42.example",
    "site1",
    "example",
    "common",
    "e42.",
    ".e42",
    "rare35",
    "longlonglong",
    "page/41",
    "/p1",
    "%",
    "_",
    "\\",
    "a_b",
    "100%",
    "x%y",
    "\\_%",
    "é",
    "École",
    "ÉCOLE.EXAMPLE",
    "ß",
    "straße",
    "日本",
    "テスト",
    "'\"",
    "mixed.example/case",
    "no-such-thing",
    "ht",
    "://",
    "e",
];

/// Every strategy against the plain query on `store`.
async fn differential(store: &Store) {
    let mut batches = Vec::new();
    let all = addresses();
    for chunk in all.chunks(140) {
        let new: Vec<NewTask> = chunk
            .iter()
            .map(|a| NewTask {
                address: a.clone(),
                options: Default::default(),
            })
            .collect();
        let (b, tasks) = store.insert_batch(None, &new).await.expect("insert");
        batches.push((b.expect("batch"), tasks));
    }
    // Some pending, some finished (cancelled), the rest waiting.
    let ids: Vec<i64> = batches
        .iter()
        .flat_map(|(_, t)| t.iter().map(|t| t.id))
        .collect();
    store.mark_queued(&ids[..300]).await.expect("queued");
    let cancel: Vec<i64> = ids.iter().copied().filter(|i| i % 3 == 0).collect();
    store.cancel_tasks(&cancel).await.expect("cancel");
    if let Store::Postgres(pool) = store {
        // Trigram statistics, so the default strategy picks windows as in production.
        sqlx::query("ANALYZE task_search")
            .execute(pool)
            .await
            .expect("analyze");
    }
    let mid = ids[ids.len() / 2];
    let filters = [
        TaskFilter::default(),
        TaskFilter {
            status: Some(TaskStatus::Pending),
            ..Default::default()
        },
        TaskFilter {
            outcome: Some(Outcome::Cancelled),
            ..Default::default()
        },
        TaskFilter {
            batch: Some(batches[1].0),
            ..Default::default()
        },
        TaskFilter {
            before: Some(mid),
            ..Default::default()
        },
        TaskFilter {
            after: Some(mid),
            status: Some(TaskStatus::Finished),
            ..Default::default()
        },
    ];
    let mut tunings = vec![SearchTuning::default()];
    // A second walk of up to 60 rows follows a first one of 5 or 37 that found hits.
    for walk in [0, 1, 5, 37] {
        for more_walk in [0, 60] {
            for index in [SearchIndex::Auto, SearchIndex::WholeTerm, SearchIndex::Scan] {
                tunings.push(SearchTuning {
                    walk,
                    more_walk,
                    index,
                });
            }
        }
    }
    let mut checked = 0;
    let mut nonempty = 0;
    for term in TERMS {
        for base in &filters {
            let f = TaskFilter {
                search: Some(term.to_string()),
                ..base.clone()
            };
            for ascending in [false, true] {
                for limit in [7, 1000] {
                    let want = store
                        .search_ids_plain(&f, ascending, limit)
                        .await
                        .expect("plain");
                    nonempty += usize::from(!want.is_empty());
                    for t in &tunings {
                        let got = store
                            .search_ids_tuned(&f, ascending, limit, *t)
                            .await
                            .expect("tuned");
                        assert_eq!(
                            got, want,
                            "term {term:?}, filter {f:?}, ascending {ascending}, limit {limit}, {t:?}"
                        );
                        checked += 1;
                    }
                }
            }
            // The pages the application reads go the same way.
            let page = store
                .list_tasks(&TaskFilter {
                    limit: 50,
                    ..f.clone()
                })
                .await
                .expect("page");
            let want = store
                .search_ids_plain(&f, f.after.is_some() && f.before.is_none(), 50)
                .await
                .expect("plain");
            let mut want = want;
            if f.after.is_some() && f.before.is_none() {
                want.reverse();
            }
            assert_eq!(
                page.iter().map(|v| v.task.id).collect::<Vec<_>>(),
                want,
                "page of {f:?}"
            );
        }
    }
    assert!(checked > 18_000, "{checked}");
    // Most combinations find something: the comparison is not of empty lists.
    assert!(nonempty > 400, "{nonempty}");
}

#[tokio::test]
async fn every_search_strategy_matches_the_plain_query_on_postgres() {
    let db = TestDb::postgres().await;
    let store = Store::connect(&db.url).await.expect("store");
    differential(&store).await;
    db.cleanup().await;
}

#[tokio::test]
async fn every_search_strategy_matches_the_plain_query_on_sqlite() {
    let db = TestDb::sqlite();
    let store = Store::connect(&db.url).await.expect("store");
    differential(&store).await;
    db.cleanup().await;
}

/// The search table follows every insert and delete of tasks (triggers), including
/// deletion of a whole batch through ON DELETE CASCADE.
#[tokio::test]
async fn search_table_follows_inserts_and_batch_deletion_on_postgres() {
    let db = TestDb::postgres().await;
    let store = Store::connect(&db.url).await.expect("store");
    let pool = db.pool().await;
    let new = |host: &str| -> Vec<NewTask> {
        (0..30)
            .map(|i| NewTask {
                address: format!("http://{host}.example/{i}"),
                options: Default::default(),
            })
            .collect()
    };
    let (keep, _) = store.insert_batch(None, &new("Keep")).await.unwrap();
    let (gone, _) = store.insert_batch(None, &new("Gone")).await.unwrap();
    let rows: Vec<(i64, String)> =
        sqlx::query_as("SELECT id, address_lower FROM task_search ORDER BY id")
            .fetch_all(&pool)
            .await
            .unwrap();
    let tasks: Vec<(i64, String)> =
        sqlx::query_as("SELECT id, LOWER(address) FROM task ORDER BY id")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(rows, tasks);
    assert!(store.delete_batch(gone.unwrap()).await.unwrap());
    let left: Vec<i64> = sqlx::query_scalar("SELECT id FROM task_search ORDER BY id")
        .fetch_all(&pool)
        .await
        .unwrap();
    let tasks: Vec<i64> = sqlx::query_scalar("SELECT id FROM task ORDER BY id")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(left, tasks);
    assert_eq!(left.len(), 30);
    let f = TaskFilter {
        search: Some("gone.example".into()),
        limit: 50,
        ..Default::default()
    };
    assert!(store.list_tasks(&f).await.unwrap().is_empty());
    let f = TaskFilter {
        search: Some("keep.EXAMPLE/2".into()),
        batch: keep,
        limit: 50,
        ..Default::default()
    };
    assert_eq!(store.list_tasks(&f).await.unwrap().len(), 11);
    pool.close().await;
    db.cleanup().await;
}

/// SQLite's FTS5 index follows every insert and delete of tasks (triggers), including
/// deletion of a whole batch through ON DELETE CASCADE: FTS5's own check compares the index
/// with the addresses in `task`, and searches find the kept tasks and none of the deleted.
#[tokio::test]
async fn fts_index_follows_inserts_and_batch_deletion_on_sqlite() {
    let db = TestDb::sqlite();
    let store = Store::connect(&db.url).await.expect("store");
    let Store::Sqlite(pool) = &store else {
        unreachable!()
    };
    let new = |host: &str| -> Vec<NewTask> {
        (0..30)
            .map(|i| NewTask {
                address: format!("http://{host}.example/{i}"),
                options: Default::default(),
            })
            .collect()
    };
    let (keep, _) = store.insert_batch(None, &new("Keep")).await.unwrap();
    let (gone, _) = store.insert_batch(None, &new("Gone")).await.unwrap();
    let fts_ids = |phrase: &'static str| {
        sqlx::query_scalar::<_, i64>("SELECT rowid FROM task_fts(?) ORDER BY rowid")
            .bind(phrase)
            .fetch_all(pool)
    };
    assert_eq!(fts_ids("\"gone.example\"").await.unwrap().len(), 30);
    assert!(store.delete_batch(gone.unwrap()).await.unwrap());
    // Fails (SQL error) when the index and `task` disagree.
    sqlx::query("INSERT INTO task_fts (task_fts, rank) VALUES ('integrity-check', 1)")
        .execute(pool)
        .await
        .expect("FTS5 index matches task");
    assert!(fts_ids("\"gone.example\"").await.unwrap().is_empty());
    let kept: Vec<i64> = sqlx::query_scalar("SELECT id FROM task ORDER BY id")
        .fetch_all(pool)
        .await
        .unwrap();
    assert_eq!(fts_ids("\"KEEP.example\"").await.unwrap(), kept);
    let f = TaskFilter {
        search: Some("gone.example".into()),
        limit: 50,
        ..Default::default()
    };
    assert!(store.list_tasks(&f).await.unwrap().is_empty());
    let f = TaskFilter {
        search: Some("keep.EXAMPLE/2".into()),
        batch: keep,
        limit: 50,
        ..Default::default()
    };
    assert_eq!(store.list_tasks(&f).await.unwrap().len(), 11);
    db.cleanup().await;
}

/// Migration 0009 on a database that already holds tasks (migrated up to 0008, rows
/// written by SQL as an older version would have): on SQLite the FTS5 index is built from
/// the existing rows, on Postgres the trigram statistics exist without waiting for
/// autovacuum; searches then equal the plain query, through the index.
async fn migrate_existing(db: &TestDb) {
    let rows = addresses();
    let insert = |p: &str| {
        format!(
            "INSERT INTO task (address, timestamp, task_status, word, case_sensitive, whole_word, \
             scope, updated_at) VALUES ({p}, 1, 'NOT_STARTED', 'python', FALSE, TRUE, 'text', 1)"
        )
    };
    if db.url.starts_with("sqlite:") {
        let opts: sqlx::sqlite::SqliteConnectOptions = db
            .url
            .parse::<sqlx::sqlite::SqliteConnectOptions>()
            .unwrap()
            .create_if_missing(true);
        let pool = sqlx::SqlitePool::connect_with(opts).await.unwrap();
        let mut old = sqlx::migrate!("migrations/sqlite");
        old.migrations = old
            .migrations
            .iter()
            .filter(|m| m.version < 9)
            .cloned()
            .collect::<Vec<_>>()
            .into();
        old.run(&pool).await.expect("old schema");
        for a in &rows {
            sqlx::query(&insert("?"))
                .bind(a)
                .execute(&pool)
                .await
                .unwrap();
        }
        pool.close().await;
    } else {
        let pool = db.pool().await;
        let mut old = sqlx::migrate!("migrations/postgres");
        old.migrations = old
            .migrations
            .iter()
            .filter(|m| m.version < 9)
            .cloned()
            .collect::<Vec<_>>()
            .into();
        old.run(&pool).await.expect("old schema");
        for a in &rows {
            sqlx::query(&insert("$1"))
                .bind(a)
                .execute(&pool)
                .await
                .unwrap();
        }
        pool.close().await;
    }
    let store = Store::connect(&db.url)
        .await
        .expect("migrate to the new schema");
    match &store {
        Store::Sqlite(pool) => {
            sqlx::query("INSERT INTO task_fts (task_fts, rank) VALUES ('integrity-check', 1)")
                .execute(pool)
                .await
                .expect("FTS5 index built from the existing rows");
        }
        Store::Postgres(pool) => {
            let stats: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM pg_stats_ext_exprs WHERE statistics_name = 'task_search_trgm_freq' \
                 AND most_common_elems IS NOT NULL",
            )
            .fetch_one(pool)
            .await
            .unwrap();
            assert_eq!(stats, 1, "trigram statistics right after the migration");
        }
    }
    let mut nonempty = 0;
    for term in TERMS {
        let f = TaskFilter {
            search: Some(term.to_string()),
            ..Default::default()
        };
        let want = store.search_ids_plain(&f, false, 1000).await.unwrap();
        nonempty += usize::from(!want.is_empty());
        for index in [SearchIndex::Auto, SearchIndex::WholeTerm] {
            let t = SearchTuning {
                walk: 0,
                more_walk: 0,
                index,
            };
            let got = store.search_ids_tuned(&f, false, 1000, t).await.unwrap();
            assert_eq!(got, want, "term {term:?}, {t:?}");
        }
    }
    assert!(nonempty > 20, "{nonempty}");
}

#[tokio::test]
async fn migration_0009_applies_to_an_existing_database_on_postgres() {
    let db = TestDb::postgres().await;
    migrate_existing(&db).await;
    db.cleanup().await;
}

#[tokio::test]
async fn migration_0009_applies_to_an_existing_database_on_sqlite() {
    let db = TestDb::sqlite();
    migrate_existing(&db).await;
    db.cleanup().await;
}

/// `GET /api/tasks?q=` (what the API list adds around the search: the totals, its own
/// limit, JSON) returns the plain query's tasks, alone and with a status filter.
async fn api_search_matches_plain(db: &TestDb) {
    let store = Store::connect(&db.url).await.expect("store");
    let mut ids = Vec::new();
    for chunk in addresses().chunks(140) {
        let new: Vec<NewTask> = chunk
            .iter()
            .map(|a| NewTask {
                address: a.clone(),
                options: Default::default(),
            })
            .collect();
        let (_, tasks) = store.insert_batch(None, &new).await.expect("insert");
        ids.extend(tasks.iter().map(|t| t.id));
    }
    store.mark_queued(&ids[..250]).await.expect("queued");
    let app = TestApp::start(serve_args(&db.url, 0)).await;
    let mut nonempty = 0;
    for term in ["site4", "e42.", "example", "'\"", "100%", "École", "ht"] {
        for status in [None, Some(TaskStatus::Pending)] {
            let f = TaskFilter {
                search: Some(term.to_string()),
                status,
                ..Default::default()
            };
            let want = store.search_ids_plain(&f, false, 20).await.unwrap();
            nonempty += usize::from(!want.is_empty());
            let mut url = url::Url::parse(&app.url("/api/tasks")).unwrap();
            url.query_pairs_mut()
                .append_pair("q", term)
                .append_pair("limit", "20");
            if let Some(s) = status {
                url.query_pairs_mut().append_pair("status", s.as_str());
            }
            let body: serde_json::Value = app
                .client
                .get(url)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let got: Vec<i64> = body["tasks"]
                .as_array()
                .unwrap_or_else(|| panic!("{body}"))
                .iter()
                .map(|t| t["id"].as_i64().unwrap())
                .collect();
            assert_eq!(got, want, "term {term:?}, status {status:?}");
        }
    }
    assert!(nonempty > 8, "{nonempty}");
    app.stop().await;
}

#[tokio::test]
async fn api_search_matches_the_plain_query_on_postgres() {
    let db = TestDb::postgres().await;
    api_search_matches_plain(&db).await;
    db.cleanup().await;
}

#[tokio::test]
async fn api_search_matches_the_plain_query_on_sqlite() {
    let db = TestDb::sqlite();
    api_search_matches_plain(&db).await;
    db.cleanup().await;
}
