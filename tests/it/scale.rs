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
    for walk in [0, 1, 5, 37] {
        for index in [SearchIndex::Auto, SearchIndex::WholeTerm, SearchIndex::Scan] {
            tunings.push(SearchTuning { walk, index });
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
    assert!(checked > 9_000, "{checked}");
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
