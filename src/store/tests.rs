//! Store tests on an in-memory SQLite database (the integration tests run the same paths
//! on Postgres).

use super::search::{like_trigrams, rarest_window};
use super::*;
use crate::count::CountOptions;
use crate::model::{AttemptRecord, JobResult, ResultRecord, now_ms};

#[test]
fn like_pattern_escapes_wildcards() {
    assert_eq!(like_pattern("A_b%c"), "%a\\_b\\%c%");
}

fn result_for(task_id: i64, n: i64) -> JobResult {
    JobResult {
        task_id,
        run: 1,
        result: ResultRecord {
            words_count: Some(n),
            http_status_code: Some(200),
            error: None,
            timestamp: now_ms(),
            final_url: None,
            content_type: Some("text/html".into()),
            charset: Some("UTF-8".into()),
            bytes_read: 10,
            truncated: false,
            duration_ms: 1,
            attempts: 1,
            charset_source: Some("header".into()),
            attempt_log: vec![AttemptRecord {
                status: Some(200),
                error: None,
            }],
            counts: None,
            redirects: Vec::new(),
            not_modified: false,
            etag: None,
            last_modified: None,
            skipped: false,
            crawl: None,
        },
        worker: "test".into(),
    }
}

async fn memory_store() -> Store {
    Store::connect("sqlite::memory:").await.unwrap()
}

#[tokio::test]
async fn lifecycle_moves_forward_and_counts() {
    let store = memory_store().await;
    let new: Vec<NewTask> = (0..3)
        .map(|i| NewTask {
            address: format!("http://example.com/{i}"),
            options: CountOptions::default(),
        })
        .collect();
    let tasks = store.insert_tasks(&new).await.unwrap();
    assert_eq!(tasks.len(), 3);
    assert!(tasks.iter().all(|t| t.status == TaskStatus::NotStarted));
    let s = store.stats().await.unwrap();
    assert_eq!((s.not_started, s.pending, s.finished), (3, 0, 0));

    // Result arrives before mark_queued (fast worker): status must not go back.
    let out = store
        .store_results(&[result_for(tasks[0].id, 5)])
        .await
        .unwrap();
    assert_eq!(out, vec![StoreOutcome::Stored]);
    store
        .mark_queued(&tasks.iter().map(|t| t.id).collect::<Vec<_>>())
        .await
        .unwrap();
    let t0 = store.get_task(tasks[0].id).await.unwrap().unwrap();
    assert_eq!(t0.task.status, TaskStatus::Finished);
    assert_eq!(t0.result.unwrap().words_count, Some(5));
    let t1 = store.get_task(tasks[1].id).await.unwrap().unwrap();
    assert_eq!(t1.task.status, TaskStatus::Pending);
    assert_eq!(t1.task.attempts, 1);
    let s = store.stats().await.unwrap();
    assert_eq!((s.not_started, s.pending, s.finished), (0, 2, 1));

    // Duplicate and unknown are harmless.
    let out = store
        .store_results(&[result_for(tasks[0].id, 99), result_for(999_999, 1)])
        .await
        .unwrap();
    assert_eq!(
        out,
        vec![StoreOutcome::Duplicate, StoreOutcome::UnknownTask]
    );
    let t0 = store.get_task(tasks[0].id).await.unwrap().unwrap();
    assert_eq!(t0.result.unwrap().words_count, Some(5));
    let s2 = store.stats().await.unwrap();
    assert_eq!((s2.not_started, s2.pending, s2.finished), (0, 2, 1));
    assert!(s2.version > s.version);
}

#[tokio::test]
async fn paging_filters_and_search() {
    let store = memory_store().await;
    let new: Vec<NewTask> = (0..10)
        .map(|i| NewTask {
            address: format!("http://host{i}.example/100%_x"),
            options: CountOptions::default(),
        })
        .collect();
    let tasks = store.insert_tasks(&new).await.unwrap();
    let page = store
        .list_tasks(&TaskFilter {
            limit: 4,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(page.len(), 4);
    assert_eq!(page[0].task.id, tasks[9].id);
    let next = store
        .list_tasks(&TaskFilter {
            limit: 4,
            before: Some(page[3].task.id),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(next[0].task.id, tasks[5].id);
    let back = store
        .list_tasks(&TaskFilter {
            limit: 4,
            after: Some(next[0].task.id),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        back.iter().map(|v| v.task.id).collect::<Vec<_>>(),
        page.iter().map(|v| v.task.id).collect::<Vec<_>>()
    );
    let found = store
        .list_tasks(&TaskFilter {
            limit: 50,
            search: Some("HOST3".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
    // '%' and '_' in the query are literal, not wildcards.
    let none = store
        .list_tasks(&TaskFilter {
            limit: 50,
            search: Some("1%x".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(none.is_empty());
    let pending = store
        .list_tasks(&TaskFilter {
            limit: 50,
            status: Some(TaskStatus::Pending),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(pending.is_empty());
}

#[tokio::test]
async fn claim_stale_claims_once() {
    let store = memory_store().await;
    let tasks = store
        .insert_tasks(&[NewTask {
            address: "http://a.example/".into(),
            options: CountOptions::default(),
        }])
        .await
        .unwrap();
    // Not old enough yet.
    let none = store
        .claim_stale(TaskStatus::NotStarted, 60_000, 10)
        .await
        .unwrap();
    assert!(none.is_empty());
    let claimed = store
        .claim_stale(TaskStatus::NotStarted, -1, 10)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].id, tasks[0].id);
    // Claimed just now: a second reconciler with a real deadline sees nothing.
    let again = store
        .claim_stale(TaskStatus::NotStarted, 1_000, 10)
        .await
        .unwrap();
    assert!(again.is_empty());
}

fn tasks_n(n: usize) -> Vec<NewTask> {
    (0..n)
        .map(|i| NewTask {
            address: format!("http://example.com/{i}"),
            options: CountOptions::default(),
        })
        .collect()
}

fn failed_result(task_id: i64, run: i32) -> JobResult {
    let mut r = result_for(task_id, 0);
    r.run = run;
    r.result.words_count = None;
    r.result.http_status_code = None;
    r.result.error = Some("dns error".into());
    r
}

/// The totals a batch's rows imply, recounted by scanning (tests only).
async fn recount(store: &Store, batch: i64) -> Batch {
    let mut b = store.get_batch(batch).await.unwrap().unwrap();
    let views = store
        .list_tasks(&TaskFilter {
            batch: Some(batch),
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap();
    b.total = views.len() as i64;
    b.not_started = 0;
    b.pending = 0;
    b.finished = 0;
    b.ok = 0;
    b.http_error = 0;
    b.failed = 0;
    b.truncated = 0;
    b.cancelled = 0;
    b.words_total = 0;
    for v in &views {
        match v.task.status {
            TaskStatus::NotStarted => b.not_started += 1,
            TaskStatus::Pending => b.pending += 1,
            TaskStatus::Finished => b.finished += 1,
        }
        match v.task.outcome {
            Some(Outcome::Ok) => b.ok += 1,
            Some(Outcome::HttpError) => b.http_error += 1,
            Some(Outcome::Failed) => b.failed += 1,
            Some(Outcome::Truncated) => b.truncated += 1,
            Some(Outcome::Cancelled) => b.cancelled += 1,
            Some(Outcome::Skipped) => b.skipped += 1,
            None => {}
        }
        b.words_total += v.result.as_ref().and_then(|r| r.words_count).unwrap_or(0);
    }
    b
}

#[tokio::test]
async fn batch_totals_follow_every_change() {
    let store = memory_store().await;
    let (batch, tasks) = store.insert_batch(Some("mine"), &tasks_n(5)).await.unwrap();
    let batch = batch.unwrap();
    let ids: Vec<i64> = tasks.iter().map(|t| t.id).collect();
    store.mark_queued(&ids).await.unwrap();
    let mut r404 = result_for(ids[1], 2);
    r404.result.http_status_code = Some(404);
    let mut trunc = result_for(ids[2], 7);
    trunc.result.truncated = true;
    store
        .store_results(&[result_for(ids[0], 3), r404, trunc, failed_result(ids[3], 1)])
        .await
        .unwrap();
    let b = store.get_batch(batch).await.unwrap().unwrap();
    assert_eq!(b, recount(&store, batch).await);
    assert_eq!((b.ok, b.http_error, b.truncated, b.failed), (1, 1, 1, 1));
    assert_eq!((b.pending, b.finished, b.words_total), (1, 4, 12));
    assert_eq!(b.label.as_deref(), Some("mine"));
    assert!(b.finished_at.is_none());
    // Cancel the last one: the batch is finished.
    let c = store.cancel_tasks(&[ids[4]]).await.unwrap();
    assert_eq!(
        c,
        vec![CancelledRun {
            task_id: ids[4],
            run: 1
        }]
    );
    let b = store.get_batch(batch).await.unwrap().unwrap();
    assert_eq!(b, recount(&store, batch).await);
    assert_eq!((b.cancelled, b.finished, b.percent()), (1, 5, 100));
    assert!(b.finished_at.is_some());
    // Retry the failed and the 404: new runs, totals back, finished_at cleared.
    let retried = store.retry_tasks(&[ids[1], ids[3]]).await.unwrap();
    assert_eq!(
        retried.iter().map(|t| t.run).collect::<Vec<_>>(),
        vec![2, 2]
    );
    assert!(retried.iter().all(|t| t.status == TaskStatus::NotStarted));
    let b = store.get_batch(batch).await.unwrap().unwrap();
    assert_eq!(b, recount(&store, batch).await);
    assert_eq!(
        (b.not_started, b.finished, b.failed, b.words_total),
        (2, 3, 0, 10)
    );
    assert!(b.finished_at.is_none());
    let s = store.stats().await.unwrap();
    assert_eq!(
        (s.not_started, s.pending, s.finished, s.cancelled),
        (2, 0, 3, 1)
    );
    let dist = store.distribution(batch).await.unwrap();
    assert_eq!(
        (dist.min, dist.median, dist.max),
        (Some(3), Some(3), Some(7))
    );
}

#[tokio::test]
async fn retry_keeps_history_and_ignores_late_results_of_old_runs() {
    let store = memory_store().await;
    let tasks = store.insert_tasks(&tasks_n(1)).await.unwrap();
    let id = tasks[0].id;
    // Retrying an unfinished task does nothing.
    assert!(store.retry_tasks(&[id]).await.unwrap().is_empty());
    store.store_results(&[failed_result(id, 1)]).await.unwrap();
    let retried = store.retry_tasks(&[id]).await.unwrap();
    assert_eq!(retried[0].run, 2);
    let v = store.get_task(id).await.unwrap().unwrap();
    assert!(v.result.is_none(), "the new run has no result yet");
    assert_eq!(v.task.outcome, None);
    // A late duplicate of run 1 is history-only; the current run stays unfinished.
    let out = store.store_results(&[failed_result(id, 1)]).await.unwrap();
    assert_eq!(out, vec![StoreOutcome::Duplicate]);
    let v = store.get_task(id).await.unwrap().unwrap();
    assert_eq!(v.task.status, TaskStatus::NotStarted);
    // A result for a run that never was is refused.
    let mut future = result_for(id, 1);
    future.run = 3;
    assert_eq!(
        store.store_results(&[future]).await.unwrap(),
        vec![StoreOutcome::UnknownTask]
    );
    let mut ok = result_for(id, 9);
    ok.run = 2;
    ok.result.redirects = vec!["http://example.com/next".into()];
    ok.result.counts = Some([("python".to_string(), 9)].into_iter().collect());
    assert_eq!(
        store.store_results(&[ok]).await.unwrap(),
        vec![StoreOutcome::Stored]
    );
    let v = store.get_task(id).await.unwrap().unwrap();
    assert_eq!(v.result.as_ref().unwrap().words_count, Some(9));
    assert_eq!(v.task.outcome, Some(Outcome::Ok));
    let r = v.result.unwrap();
    assert_eq!(r.attempt_log.len(), 1);
    assert_eq!(r.redirects, vec!["http://example.com/next".to_string()]);
    assert_eq!(r.counts.unwrap()["python"], 9);
    let h = store.history(id, v.task.run).await.unwrap();
    assert_eq!(h.len(), 1);
    assert_eq!(h[0].run, 1);
    assert_eq!(h[0].result.error.as_deref(), Some("dns error"));
}

#[tokio::test]
async fn late_result_of_an_earlier_run_goes_to_history() {
    let store = memory_store().await;
    let id = store.insert_tasks(&tasks_n(1)).await.unwrap()[0].id;
    // Run 1 is cancelled before its result; retried; then run 1's result arrives late.
    store.cancel_tasks(&[id]).await.unwrap();
    store.retry_tasks(&[id]).await.unwrap();
    let out = store.store_results(&[result_for(id, 4)]).await.unwrap();
    assert_eq!(out, vec![StoreOutcome::History]);
    let v = store.get_task(id).await.unwrap().unwrap();
    assert_eq!((v.task.run, v.task.status), (2, TaskStatus::NotStarted));
    assert!(v.result.is_none());
    assert_eq!(
        store.history(id, 2).await.unwrap()[0].result.words_count,
        Some(4)
    );
}

#[tokio::test]
async fn cancel_and_result_whichever_commits_first_wins() {
    let store = memory_store().await;
    let ids: Vec<i64> = store
        .insert_tasks(&tasks_n(2))
        .await
        .unwrap()
        .iter()
        .map(|t| t.id)
        .collect();
    store.mark_queued(&ids).await.unwrap();
    // Order 1: the cancel commits first; the result changes nothing.
    store.cancel_tasks(&[ids[0]]).await.unwrap();
    let out = store.store_results(&[result_for(ids[0], 5)]).await.unwrap();
    assert_eq!(out, vec![StoreOutcome::Duplicate]);
    let v = store.get_task(ids[0]).await.unwrap().unwrap();
    assert_eq!(v.task.outcome, Some(Outcome::Cancelled));
    assert!(v.result.is_none());
    // Order 2: the result commits first; the cancel changes nothing.
    store.store_results(&[result_for(ids[1], 5)]).await.unwrap();
    assert!(store.cancel_tasks(&[ids[1]]).await.unwrap().is_empty());
    let v = store.get_task(ids[1]).await.unwrap().unwrap();
    assert_eq!(v.task.outcome, Some(Outcome::Ok));
    let s = store.stats().await.unwrap();
    assert_eq!((s.finished, s.ok, s.cancelled, s.pending), (2, 1, 1, 0));
}

#[tokio::test]
async fn bulk_insert_keeps_order_and_filters_by_batch_and_outcome() {
    let store = memory_store().await;
    let new = tasks_n(2500);
    let (b1, tasks) = store.insert_batch(None, &new).await.unwrap();
    assert_eq!(tasks.len(), 2500);
    for (t, n) in tasks.iter().zip(&new) {
        assert_eq!(t.address, n.address);
    }
    assert!(tasks.windows(2).all(|w| w[0].id < w[1].id));
    let (b2, other) = store.insert_batch(None, &tasks_n(3)).await.unwrap();
    store
        .store_results(&[failed_result(other[0].id, 1)])
        .await
        .unwrap();
    let page = store
        .list_tasks(&TaskFilter {
            batch: b2,
            limit: 50,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(page.len(), 3);
    let failed = store
        .list_tasks(&TaskFilter {
            outcome: Some(Outcome::Failed),
            limit: 50,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].task.id, other[0].id);
    let b = store.get_batch(b1.unwrap()).await.unwrap().unwrap();
    assert_eq!((b.total, b.not_started), (2500, 2500));
}

#[tokio::test]
async fn delete_batch_in_chunks_and_counters_follow() {
    let store = memory_store().await;
    let (b1, t1) = store.insert_batch(None, &tasks_n(2100)).await.unwrap();
    let (b2, t2) = store.insert_batch(None, &tasks_n(2)).await.unwrap();
    store
        .store_results(&[result_for(t1[0].id, 1), result_for(t2[0].id, 1)])
        .await
        .unwrap();
    assert!(store.delete_batch(b1.unwrap()).await.unwrap());
    assert!(store.get_batch(b1.unwrap()).await.unwrap().is_none());
    assert!(store.get_task(t1[5].id).await.unwrap().is_none());
    let s = store.stats().await.unwrap();
    assert_eq!((s.not_started, s.finished, s.ok), (1, 1, 1));
    assert!(!store.delete_batch(b1.unwrap()).await.unwrap());
    // Retention: only finished batches before the cutoff.
    assert!(
        store
            .batches_finished_before(now_ms() + 1000, 10)
            .await
            .unwrap()
            .is_empty()
    );
    store
        .store_results(&[result_for(t2[1].id, 1)])
        .await
        .unwrap();
    assert_eq!(
        store
            .batches_finished_before(now_ms() + 1000, 10)
            .await
            .unwrap(),
        vec![b2.unwrap()]
    );
    assert!(
        store
            .batches_finished_before(now_ms() - 60_000, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

#[test]
fn job_result_without_run_means_run_one() {
    let v = serde_json::json!({"task_id": 3, "words_count": 1, "http_status_code": 200,
        "error": null, "timestamp": 0, "final_url": null, "content_type": null,
        "charset": null, "bytes_read": 0, "truncated": false, "duration_ms": 0, "attempts": 1});
    let r: JobResult = serde_json::from_value(v).unwrap();
    assert_eq!(r.run, 1);
    assert!(r.result.attempt_log.is_empty());
}

#[tokio::test]
async fn who_did_what_is_recorded() {
    let store = memory_store().await;
    let (batch, tasks) = store
        .insert_batch_by(None, Some("account ann"), &tasks_n(2))
        .await
        .unwrap();
    let batch = batch.unwrap();
    assert_eq!(
        store
            .get_batch(batch)
            .await
            .unwrap()
            .unwrap()
            .created_by
            .as_deref(),
        Some("account ann")
    );
    let (a, b) = (tasks[0].id, tasks[1].id);
    store.cancel_tasks_by(&[a, b], "token ci").await.unwrap();
    store.retry_tasks_by(&[a], "account bob").await.unwrap();
    let log = store.task_audit(a).await.unwrap();
    assert_eq!(log.len(), 2);
    assert_eq!(
        (log[0].action.as_str(), log[0].who.as_str(), log[0].run),
        ("retry", "account bob", Some(2))
    );
    assert_eq!(
        (log[1].action.as_str(), log[1].who.as_str(), log[1].run),
        ("cancel", "token ci", Some(1))
    );
    assert_eq!(store.task_audit(b).await.unwrap().len(), 1);
    // Nothing to do records nothing.
    store.cancel_tasks_by(&[b], "token ci").await.unwrap();
    assert_eq!(store.task_audit(b).await.unwrap().len(), 1);
    assert!(store.delete_batch_by(batch, "account ann").await.unwrap());
    on_pool!(&store, |pool| {
        let (who, action): (String, String) =
            sqlx::query_as("SELECT who, action FROM audit WHERE batch_id = $1 AND task_id IS NULL")
                .bind(batch)
                .fetch_one(pool)
                .await
                .unwrap();
        assert_eq!((who.as_str(), action.as_str()), ("account ann", "delete"));
    });
}

#[tokio::test]
async fn reconciler_claims_are_not_changes_a_poll_sees() {
    let store = memory_store().await;
    store.insert_tasks(&tasks_n(2)).await.unwrap();
    let v = store.stats().await.unwrap().version;
    assert!(
        store
            .claim_stale(TaskStatus::NotStarted, 60_000, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store
            .claim_stale(TaskStatus::NotStarted, -1, 10)
            .await
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        store.stats().await.unwrap().version,
        v,
        "a sweep moves only queued_at; polls keep answering 204"
    );
}

#[test]
fn like_trigrams_follow_pg_trgm_padding() {
    // A word bounded by the pattern's `%` is not padded; one bounded by a literal non-word
    // character is (two spaces before, one after), as pg_trgm's show_trgm pads words.
    assert_eq!(like_trigrams("e42"), vec!["e42"]);
    assert_eq!(like_trigrams("e42."), vec!["e42", "42 "]);
    assert_eq!(like_trigrams(".e42"), vec!["  e", " e4", "e42"]);
    assert_eq!(like_trigrams("a.bc"), vec!["  b", " bc"]);
    assert!(like_trigrams("ab").is_empty());
    assert!(like_trigrams("//%_").is_empty());
}

#[test]
fn rarest_window_is_a_part_of_the_term_with_rare_trigrams() {
    let freq = TrigramFreq {
        freq: [
            ("sit", 1.0),
            ("ite", 1.0),
            ("te4", 0.2),
            ("e42", 0.02),
            ("42 ", 0.02),
        ]
        .into_iter()
        .chain(["exa", "xam", "amp", "mpl", "ple", "  e", " ex", "le "].map(|t| (t, 1.0)))
        .map(|(t, f)| (t.to_string(), f))
        .collect(),
        floor: 0.0001,
    };
    let w = rarest_window("site42.example", &freq).unwrap();
    assert_eq!(w, "e42.");
    // Whatever is chosen is a substring, so every row the term matches is a candidate.
    for q in [
        "site42.example",
        "100%_x\\y",
        "a.b.c.d",
        "日本語abc",
        "x".repeat(200).as_str(),
    ] {
        if let Some(w) = rarest_window(q, &freq) {
            assert!(q.contains(&w), "{w:?} in {q:?}");
            assert!(!like_trigrams(&w).is_empty());
        }
    }
    assert_eq!(rarest_window("ab", &freq), None);
    assert_eq!(rarest_window("日本語", &freq), None);
}

#[test]
fn pow2_chunks_cover_everything_in_order_in_few_shapes() {
    for n in 0..1100usize {
        let items: Vec<usize> = (0..n).collect();
        let pieces: Vec<&[usize]> = super::pow2_chunks(&items, 256).collect();
        assert_eq!(pieces.concat(), items, "n = {n}");
        for p in &pieces {
            assert!(
                p.len().is_power_of_two() && p.len() <= 256,
                "n = {n}: {}",
                p.len()
            );
        }
        // Largest first, and at most one piece of each size below the maximum.
        let small: Vec<usize> = pieces
            .iter()
            .map(|p| p.len())
            .filter(|&l| l < 256)
            .collect();
        assert!(small.windows(2).all(|w| w[0] > w[1]), "n = {n}: {small:?}");
    }
}

/// Two crawl seeds, stored NOT_STARTED and never queued (as the DB writer leaves them).
async fn crawl_seeds(store: &Store) -> (i64, Vec<i64>) {
    let crawl = super::crawls::StoredCrawl {
        start: vec!["http://a.example/".into()],
        sitemaps: Vec::new(),
        rules: crate::crawl::rules::CrawlRules::default(),
    };
    let seeds: Vec<super::crawls::Seed> = ["http://a.example/", "http://a.example/b"]
        .iter()
        .map(|u| super::crawls::Seed {
            url: (*u).into(),
            role: None,
        })
        .collect();
    let (batch, tasks) = store
        .insert_crawl(None, None, &CountOptions::default(), &crawl, &seeds)
        .await
        .unwrap();
    (batch, tasks.iter().map(|t| t.id).collect())
}

/// The two paths that queue a crawl's discovered tasks (the DB writer's message and the
/// reconciler's sweep of old NOT_STARTED tasks) in each order: exactly one claims each
/// task, and the counters follow. Then the undo for a queue that refused.
#[tokio::test]
async fn discovered_tasks_are_claimed_by_one_path_in_either_order() {
    // The sweep first (the message came late): the message claims nothing.
    let store = memory_store().await;
    let (batch, ids) = crawl_seeds(&store).await;
    let swept = store
        .claim_stale(TaskStatus::NotStarted, -1, 10)
        .await
        .unwrap();
    assert_eq!(swept.iter().map(|t| t.id).collect::<Vec<_>>(), ids);
    assert!(store.claim_and_mark_queued(&ids).await.unwrap().is_empty());
    let b = store.get_batch(batch).await.unwrap().unwrap();
    assert_eq!((b.not_started, b.pending), (2, 0));

    // The message first: both PENDING at once, one attempt; the sweep finds nothing.
    let store = memory_store().await;
    let (batch2, ids) = crawl_seeds(&store).await;
    assert_eq!(store.claim_and_mark_queued(&ids).await.unwrap(), ids);
    for id in &ids {
        let t = store.get_task(*id).await.unwrap().unwrap().task;
        assert_eq!((t.status, t.attempts), (TaskStatus::Pending, 1));
        assert!(t.queued_at.is_some());
    }
    let b = store.get_batch(batch2).await.unwrap().unwrap();
    assert_eq!((b.not_started, b.pending), (0, 2));
    assert_eq!(b, recount(&store, batch2).await);
    assert!(
        store
            .claim_stale(TaskStatus::NotStarted, -1, 10)
            .await
            .unwrap()
            .is_empty()
    );
    // A second message for the same tasks (redelivered) claims nothing.
    assert!(store.claim_and_mark_queued(&ids).await.unwrap().is_empty());

    // The queue refused: back to NOT_STARTED, the attempt still counted (the hand-off may
    // have reached the queue in part), and the sweep (not the message) queues them later.
    store.unclaim_queued(&ids).await.unwrap();
    let b = store.get_batch(batch2).await.unwrap().unwrap();
    assert_eq!((b.not_started, b.pending), (2, 0));
    assert_eq!(b, recount(&store, batch2).await);
    for id in &ids {
        let t = store.get_task(*id).await.unwrap().unwrap().task;
        assert_eq!((t.status, t.attempts), (TaskStatus::NotStarted, 1));
    }
    assert!(store.claim_and_mark_queued(&ids).await.unwrap().is_empty());
    let swept = store
        .claim_stale(TaskStatus::NotStarted, -1, 10)
        .await
        .unwrap();
    assert_eq!(swept.len(), 2);
    // A task that got its result is never moved back.
    store.store_results(&[result_for(ids[0], 3)]).await.unwrap();
    store.unclaim_queued(&ids).await.unwrap();
    let t = store.get_task(ids[0]).await.unwrap().unwrap().task;
    assert_eq!(t.status, TaskStatus::Finished);
}
