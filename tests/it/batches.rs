//! Batches, runs, retry, cancel, export, deletion and the command-line client (DESIGN §11),
//! over the embedded default (SQLite, in-process queue and bus) and the production shape
//! (Postgres, Redis, NSQ broker).

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{Value, json};
use wordtally::model::{TaskStatus, now_ms};
use wordtally::outcome::Outcome;
use wordtally::store::{NewTask, Store, StoreOutcome, TaskFilter};

use crate::helpers::*;
use crate::pages::PageServer;

async fn get_json(app: &TestApp, path: &str) -> (u16, Value) {
    let res = app.client.get(app.url(path)).send().await.expect("GET");
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

async fn post_json(app: &TestApp, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut req = app.client.post(app.url(path));
    if let Some(b) = body {
        req = req.json(&b);
    }
    let res = req.send().await.expect("POST");
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

async fn wait_batch_finished(app: &TestApp, batch: i64) -> Value {
    eventually(
        &format!("batch {batch} finished"),
        Duration::from_secs(60),
        || async move {
            let (_, b) = get_json(app, &format!("/api/batches/{batch}")).await;
            (b["finished"] == b["total"] && b["total"].as_i64() > Some(0)).then_some(b)
        },
    )
    .await
}

/// A counter's value from `GET /metrics` (0 when absent).
async fn metric(app: &TestApp, series: &str) -> f64 {
    let text = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| {
            l.strip_prefix(series)
                .map(|v| v.trim().parse().unwrap_or(0.0))
        })
        .unwrap_or(0.0)
}

/// The batch's totals recounted from its rows, as the API lists them.
async fn recount(app: &TestApp, batch: i64) -> HashMap<&'static str, i64> {
    let mut n: HashMap<&'static str, i64> = HashMap::new();
    let (_, page) = get_json(app, &format!("/api/tasks?batch={batch}&limit=500")).await;
    for t in page["tasks"].as_array().expect("tasks") {
        *n.entry("total").or_default() += 1;
        let status = match t["status"].as_str() {
            Some("NOT_STARTED") => "not_started",
            Some("PENDING") => "pending",
            _ => "finished",
        };
        *n.entry(status).or_default() += 1;
        for o in Outcome::ALL {
            if t["outcome"] == o.as_str() {
                *n.entry(o.as_str()).or_default() += 1;
            }
        }
        *n.entry("words_total").or_default() += t["result"]["words_count"].as_i64().unwrap_or(0);
    }
    n
}

fn assert_totals_match(batch: &Value, counted: &HashMap<&'static str, i64>) {
    for k in [
        "total",
        "not_started",
        "pending",
        "finished",
        "ok",
        "http_error",
        "failed",
        "truncated",
        "cancelled",
        "words_total",
    ] {
        assert_eq!(
            batch[k].as_i64().unwrap_or(-1),
            counted.get(k).copied().unwrap_or(0),
            "batch total {k} differs from a recount of its rows: {batch}"
        );
    }
}

/// The whole story of a batch: mixed outcomes, totals equal to a recount, retry of the
/// failures after the pages heal (new runs, history kept), a task still running refused a
/// retry and cancelled (its late result changes nothing), CSV export, deletion.
async fn batch_story(app: &TestApp, pages: &PageServer) {
    let mut addresses: Vec<String> = (0..6).map(|_| pages.url("/count/3")).collect();
    addresses.extend((0..3).map(|i| pages.url(&format!("/flaky/5?{i}"))));
    // Nothing listens on port 1: connection refused, an outcome of `failed`.
    addresses.push("http://127.0.0.1:1/".to_string());
    let (status, created) = app
        .submit(json!({ "addresses": addresses, "label": "mixed <b>batch</b>" }))
        .await;
    assert_eq!(status, 201, "{created}");
    let batch = created["batch_id"].as_i64().expect("batch_id");
    let b = wait_batch_finished(app, batch).await;
    assert_eq!(b["label"], "mixed <b>batch</b>");
    assert_eq!(
        (
            b["ok"].as_i64(),
            b["http_error"].as_i64(),
            b["failed"].as_i64()
        ),
        (Some(6), Some(3), Some(1)),
        "{b}"
    );
    assert_eq!(b["words_total"], 18);
    assert_totals_match(&b, &recount(app, batch).await);

    // The outcome filter, in the API and on the page.
    let (_, failed) = get_json(app, &format!("/api/tasks?batch={batch}&outcome=http_error")).await;
    assert_eq!(failed["tasks"].as_array().map(Vec::len), Some(3));
    let page = app
        .client
        .get(app.url(&format!("/batches/{batch}?outcome=http_error")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        page.matches("data-outcome=\"http_error\"").count(),
        3 + 1,
        "rows + the total"
    );
    assert!(page.contains("mixed &"), "label shown");
    if let Some(i) = page.find("mixed <b>") {
        panic!(
            "label not escaped: {}",
            &page[i.saturating_sub(200)..i + 50]
        );
    }

    // Heal the flaky pages and retry the batch's failures.
    pages.heal();
    let (status, r) = post_json(app, &format!("/api/batches/{batch}/retry"), None).await;
    assert_eq!((status, r["retried"].as_i64()), (200, Some(4)), "{r}");
    let b = wait_batch_finished(app, batch).await;
    assert_eq!(
        (
            b["ok"].as_i64(),
            b["http_error"].as_i64(),
            b["failed"].as_i64()
        ),
        (Some(9), Some(0), Some(1)),
        "{b}"
    );
    assert_eq!(b["words_total"], 33);
    assert_totals_match(&b, &recount(app, batch).await);
    let flaky_id = created["tasks"][6]["id"].as_i64().unwrap();
    let t = app.task(flaky_id).await;
    assert_eq!(
        (t["run"].as_i64(), t["outcome"].as_str()),
        (Some(2), Some("ok"))
    );
    assert_eq!(t["result"]["words_count"], 5);
    assert_eq!(t["history"][0]["run"], 1);
    assert_eq!(t["history"][0]["result"]["http_status_code"], 404);
    let task_page = app
        .client
        .get(app.url(&format!("/tasks/{flaky_id}")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(task_page.contains("Run 1:"), "history on the task page");
    assert!(task_page.contains("attempt 1: HTTP 200"), "{task_page}");
    assert!(task_page.contains("submitted by anonymous"), "{task_page}");
    assert!(task_page.contains("retried by anonymous"), "who retried it");

    // A task that is still running: retry is refused with a reason; cancel wins; its
    // result, arriving later, changes nothing.
    let duplicates_before = metric(app, "wordtally_results_total{outcome=\"duplicate\"}").await;
    let (_, slow) = app
        .submit(json!({ "addresses": [pages.url("/slow/1500")] }))
        .await;
    let slow_id = slow["tasks"][0]["id"].as_i64().unwrap();
    let slow_batch = slow["batch_id"].as_i64().unwrap();
    let (status, r) = post_json(app, &format!("/api/tasks/{slow_id}/retry"), None).await;
    assert_eq!(status, 409, "{r}");
    assert!(
        r["error"]
            .as_str()
            .unwrap()
            .contains("only a finished task"),
        "{r}"
    );
    let (status, r) = post_json(app, &format!("/api/tasks/{slow_id}/cancel"), None).await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(
        (r["status"].as_str(), r["outcome"].as_str()),
        (Some("FINISHED"), Some("cancelled"))
    );
    let (status, _) = post_json(app, &format!("/api/tasks/{slow_id}/cancel"), None).await;
    assert_eq!(status, 409, "cancelling a finished task");
    eventually(
        "the slow page was fetched",
        Duration::from_secs(20),
        || async { (pages.hits("/slow/1500") >= 1).then_some(()) },
    )
    .await;
    // Its result travels back and is judged a duplicate of the cancelled run.
    eventually(
        "the slow task's late result",
        Duration::from_secs(20),
        || async {
            let now = metric(app, "wordtally_results_total{outcome=\"duplicate\"}").await;
            (now > duplicates_before).then_some(())
        },
    )
    .await;
    let t = app.task(slow_id).await;
    assert_eq!(
        t["outcome"], "cancelled",
        "the late result changed nothing: {t}"
    );
    assert!(t["result"].is_null());
    let (_, sb) = get_json(app, &format!("/api/batches/{slow_batch}")).await;
    assert_eq!(
        (sb["cancelled"].as_i64(), sb["finished"].as_i64()),
        (Some(1), Some(1))
    );

    // Export: CSV with the contract's header and one row per task.
    let csv = app
        .client
        .get(app.url(&format!("/api/tasks/export?format=csv&batch={batch}")))
        .send()
        .await
        .unwrap();
    assert_eq!(csv.status(), 200);
    assert!(
        csv.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let csv = csv.text().await.unwrap();
    let mut lines = csv.lines();
    assert!(
        lines
            .next()
            .unwrap()
            .starts_with("id,address,status,outcome,words_count,http_status_code,error")
    );
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), 10);
    let sum: i64 = rows.iter().map(|r| r[4].parse::<i64>().unwrap_or(0)).sum();
    assert_eq!(sum, 33);
    let jsonl = app
        .client
        .get(app.url(&format!(
            "/api/tasks/export?format=jsonl&batch={batch}&outcome=ok"
        )))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(jsonl.lines().count(), 9);
    for l in jsonl.lines() {
        let v: Value = serde_json::from_str(l).expect("a JSON object per line");
        assert_eq!(v["outcome"], "ok");
    }

    // Delete: 204, gone, the counters follow.
    let before = get_json(app, "/api/tasks?limit=1").await.1["stats"].clone();
    let res = app
        .client
        .delete(app.url(&format!("/api/batches/{batch}")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    assert_eq!(get_json(app, &format!("/api/batches/{batch}")).await.0, 404);
    assert_eq!(app.task(flaky_id).await["error"], "not found");
    let after = get_json(app, "/api/tasks?limit=1").await.1["stats"].clone();
    assert_eq!(
        before["finished"].as_i64().unwrap() - 10,
        after["finished"].as_i64().unwrap()
    );
    assert_eq!(
        before["ok"].as_i64().unwrap() - 9,
        after["ok"].as_i64().unwrap()
    );
}

#[tokio::test]
async fn batch_story_embedded() {
    let pages = PageServer::start().await;
    let db = TestDb::sqlite();
    let app = TestApp::start(serve_args(&db.url, 4)).await;
    batch_story(&app, &pages).await;
    app.stop().await;
    db.cleanup().await;
}

#[tokio::test]
async fn batch_story_postgres_redis_nsq() {
    let pages = PageServer::start().await;
    let stack = Stack::new().await;
    let app = TestApp::start(stack.serve_args(4)).await;
    batch_story(&app, &pages).await;
    app.stop().await;
    stack.cleanup().await;
}

/// Cancel and result racing for the same tasks on Postgres: forced in both orders, then
/// truly concurrent; each task ends with exactly one winner and the totals add up.
#[tokio::test]
async fn cancel_and_result_race_on_postgres() {
    let db = TestDb::postgres().await;
    let store = Store::connect(&db.url).await.expect("store");
    let new: Vec<NewTask> = (0..60)
        .map(|i| NewTask {
            address: format!("http://example.com/{i}"),
            options: Default::default(),
        })
        .collect();
    let (batch, tasks) = store.insert_batch(None, &new).await.unwrap();
    let batch = batch.unwrap();
    let ids: Vec<i64> = tasks.iter().map(|t| t.id).collect();
    store.mark_queued(&ids).await.unwrap();
    // Cancel first.
    assert_eq!(store.cancel_tasks(&ids[0..1]).await.unwrap().len(), 1);
    assert_eq!(
        store.store_results(&[result_for(ids[0], 4)]).await.unwrap(),
        vec![StoreOutcome::Duplicate]
    );
    // Result first.
    assert_eq!(
        store.store_results(&[result_for(ids[1], 4)]).await.unwrap(),
        vec![StoreOutcome::Stored]
    );
    assert!(store.cancel_tasks(&ids[1..2]).await.unwrap().is_empty());
    // Both at once, for the other 58, one pair of calls per task.
    let mut joins = Vec::new();
    for &id in &ids[2..] {
        let (s1, s2) = (store.clone(), store.clone());
        joins.push(tokio::spawn(async move {
            let (ids, results) = ([id], [result_for(id, 2)]);
            let (c, r) = tokio::join!(s1.cancel_tasks(&ids), s2.store_results(&results));
            (id, c.unwrap().len(), r.unwrap()[0])
        }));
    }
    let mut cancelled = 1;
    let mut stored = 1;
    for j in joins {
        let (id, c, r) = j.await.unwrap();
        let v = store.get_task(id).await.unwrap().unwrap();
        assert_eq!(v.task.status, TaskStatus::Finished);
        match (c, r) {
            (1, StoreOutcome::Duplicate) => {
                cancelled += 1;
                assert_eq!(v.task.outcome, Some(Outcome::Cancelled));
                assert!(v.result.is_none());
            }
            (0, StoreOutcome::Stored) => {
                stored += 1;
                assert_eq!(v.task.outcome, Some(Outcome::Ok));
                assert_eq!(v.result.unwrap().words_count, Some(2));
            }
            other => panic!("task {id}: both or neither won: {other:?}"),
        }
    }
    let b = store.get_batch(batch).await.unwrap().unwrap();
    assert_eq!(
        (b.cancelled, b.ok, b.finished, b.pending),
        (cancelled, stored, 60, 0)
    );
    assert_eq!(b.words_total, 4 + 2 * (stored - 1));
    let s = store.stats().await.unwrap();
    assert_eq!((s.cancelled, s.ok, s.finished), (cancelled, stored, 60));
    store.close().await;
    db.cleanup().await;
}

/// Current VmRSS of this process, in KiB.
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// 100,000 tasks exported as CSV through HTTP: every row arrives, and the server's memory
/// does not grow with the row count (it streams a thousand rows at a time).
#[tokio::test]
async fn export_of_100k_tasks_streams_in_constant_memory() {
    let db = TestDb::postgres().await;
    let app = TestApp::start(serve_args(&db.url, 0)).await;
    let store = app.running.store.clone();
    let new: Vec<NewTask> = (0..100_000)
        .map(|i| NewTask {
            address: format!("http://example.com/a/fairly/long/path/{i}?q=python"),
            options: Default::default(),
        })
        .collect();
    let started = std::time::Instant::now();
    let (batch, tasks) = store.insert_batch(Some("big"), &new).await.unwrap();
    let inserted = started.elapsed();
    drop(new);
    for chunk in tasks.chunks(1000) {
        let results: Vec<_> = chunk.iter().map(|t| result_for(t.id, 7)).collect();
        store.store_results(&results).await.unwrap();
    }
    drop(tasks);
    let batch = batch.unwrap();
    let rss_before = rss_kib();
    let started = std::time::Instant::now();
    let mut res = app
        .client
        .get(app.url(&format!("/api/tasks/export?format=csv&batch={batch}")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let (mut lines, mut bytes, mut peak) = (0usize, 0usize, rss_before);
    let mut sum = 0i64;
    let mut tail = String::new();
    while let Some(chunk) = res.chunk().await.unwrap() {
        bytes += chunk.len();
        tail.push_str(std::str::from_utf8(&chunk).unwrap());
        let last_nl = tail.rfind('\n').map(|i| i + 1).unwrap_or(0);
        for l in tail[..last_nl].lines() {
            lines += 1;
            if let Some(n) = l.split(',').nth(4).and_then(|n| n.parse::<i64>().ok()) {
                sum += n;
            }
        }
        tail.drain(..last_nl);
        peak = peak.max(rss_kib());
    }
    let took = started.elapsed();
    assert_eq!(lines, 100_001, "header + every row");
    assert_eq!(sum, 700_000);
    let growth_mib = peak.saturating_sub(rss_before) / 1024;
    eprintln!(
        "export: 100000 rows, {} MiB in {:.2} s ({:.0} rows/s); RSS before {} MiB, peak {} MiB (+{growth_mib} MiB); insert of 100000 tasks took {:.2} s",
        bytes / 1024 / 1024,
        took.as_secs_f64(),
        100_000.0 / took.as_secs_f64(),
        rss_before / 1024,
        peak / 1024,
        inserted.as_secs_f64()
    );
    // The whole export is ~10 MiB of text and far more as rows in memory; streaming keeps
    // the growth to a few chunks.
    assert!(
        growth_mib < 40,
        "server memory grew by {growth_mib} MiB during the export"
    );
    app.stop().await;
    db.cleanup().await;
}

/// Retention: only batches finished before the cutoff go, with their tasks and results.
#[tokio::test]
async fn retention_deletes_only_old_finished_batches() {
    let db = TestDb::postgres().await;
    let store = Store::connect(&db.url).await.expect("store");
    let one = |s: &str| {
        vec![NewTask {
            address: format!("http://example.com/{s}"),
            options: Default::default(),
        }]
    };
    let (old, t_old) = store.insert_batch(None, &one("old")).await.unwrap();
    let (open, _) = store.insert_batch(None, &one("open")).await.unwrap();
    store
        .store_results(&[result_for(t_old[0].id, 1)])
        .await
        .unwrap();
    let cutoff = now_ms() + 1;
    tokio::time::sleep(Duration::from_millis(5)).await;
    let (new, t_new) = store.insert_batch(None, &one("new")).await.unwrap();
    store
        .store_results(&[result_for(t_new[0].id, 1)])
        .await
        .unwrap();
    let expired = store.batches_finished_before(cutoff, 10).await.unwrap();
    assert_eq!(expired, vec![old.unwrap()], "only the old finished batch");
    for id in expired {
        store.delete_batch(id).await.unwrap();
    }
    assert!(store.get_batch(old.unwrap()).await.unwrap().is_none());
    assert!(store.get_batch(open.unwrap()).await.unwrap().is_some());
    assert!(store.get_batch(new.unwrap()).await.unwrap().is_some());
    let left = store
        .list_tasks(&TaskFilter {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(left.len(), 2);
    let s = store.stats().await.unwrap();
    assert_eq!((s.not_started, s.finished, s.ok), (1, 1, 1));
    store.close().await;
    db.cleanup().await;
}

/// Hostile and wrong requests to every new route: a 4xx with a reason, nothing changed.
#[tokio::test]
async fn batch_routes_refuse_bad_input() {
    let db = TestDb::sqlite();
    let app = TestApp::start(serve_args(&db.url, 0)).await;
    let (_, created) = app
        .submit(json!({ "addresses": ["http://example.com/"], "label": "x" }))
        .await;
    let batch = created["batch_id"].as_i64().unwrap();
    let task = created["tasks"][0]["id"].as_i64().unwrap();
    let cases: Vec<(&str, String, Option<&str>, u16)> = vec![
        ("GET", "/api/batches/abc".into(), None, 400),
        ("GET", "/api/batches/999999".into(), None, 404),
        ("GET", "/api/batches?limit=zz".into(), None, 400),
        ("GET", "/api/batches?bogus=1".into(), None, 400),
        (
            "POST",
            format!("/api/batches/{batch}/retry"),
            Some("{\"outcomes\": [\"exploded\"]}"),
            422,
        ),
        (
            "POST",
            format!("/api/batches/{batch}/retry"),
            Some("{\"outcomes\": []}"),
            422,
        ),
        (
            "POST",
            format!("/api/batches/{batch}/retry"),
            Some("not json"),
            422,
        ),
        ("POST", "/api/batches/999999/retry".into(), None, 404),
        ("POST", "/api/batches/999999/cancel".into(), None, 404),
        ("DELETE", "/api/batches/999999".into(), None, 404),
        ("DELETE", "/api/batches/-1".into(), None, 404),
        ("POST", "/api/tasks/abc/retry".into(), None, 400),
        ("POST", "/api/tasks/999999/retry".into(), None, 404),
        ("POST", format!("/api/tasks/{task}/retry"), None, 409),
        ("POST", "/api/tasks/999999/cancel".into(), None, 404),
        ("GET", "/api/tasks?outcome=great".into(), None, 400),
        (
            "GET",
            "/api/tasks?batch=1%3B%20DROP%20TABLE%20task".into(),
            None,
            400,
        ),
        ("GET", "/api/tasks/export?format=xlsx".into(), None, 400),
        ("GET", "/api/tasks/export?before=5".into(), None, 400),
        ("GET", "/api/tasks/export?outcome=nope".into(), None, 400),
        ("GET", "/tasks/abc".into(), None, 400),
        ("GET", "/tasks/999999".into(), None, 404),
        ("GET", "/batches/999999".into(), None, 404),
        ("GET", "/batches/x".into(), None, 400),
        ("GET", "/batches?before=x".into(), None, 400),
        ("POST", "/tasks/actions".into(), Some("action=explode"), 400),
        (
            "POST",
            "/tasks/actions".into(),
            Some("action=retry&outcome=bad"),
            400,
        ),
        (
            "POST",
            "/tasks/actions".into(),
            Some("action=retry&evil=1"),
            400,
        ),
        (
            "POST",
            format!("/batches/{batch}/retry"),
            Some("outcomes=nope"),
            422,
        ),
        ("POST", "/batches/999999/delete".into(), Some(""), 404),
    ];
    for (method, path, body, want) in cases {
        let mut req = match method {
            "GET" => app.client.get(app.url(&path)),
            "DELETE" => app.client.delete(app.url(&path)),
            _ => app.client.post(app.url(&path)),
        };
        if let Some(b) = body {
            let ctype = if b.starts_with('{') || b == "not json" {
                "application/json"
            } else {
                "application/x-www-form-urlencoded"
            };
            req = req.header("content-type", ctype).body(b.to_string());
        }
        let res = req.send().await.unwrap();
        assert_eq!(res.status().as_u16(), want, "{method} {path} {body:?}");
    }
    // Long and control-character labels are refused; nothing is stored.
    let (status, r) = app
        .submit(json!({ "addresses": ["http://example.com/"], "label": "x".repeat(201) }))
        .await;
    assert_eq!(status, 422, "{r}");
    let (status, _) = app
        .submit(json!({ "addresses": ["http://example.com/"], "label": "a\u{0}b" }))
        .await;
    assert_eq!(status, 422);
    let (_, list) = get_json(&app, "/api/batches").await;
    assert_eq!(list["batches"].as_array().map(Vec::len), Some(1), "{list}");
    let (_, t) = get_json(&app, &format!("/api/tasks/{task}")).await;
    assert_eq!(t["run"], 1, "nothing was retried");
    app.stop().await;
    db.cleanup().await;
}

/// The batch page and its forms without JavaScript: every action is a form post that
/// redirects back with a notice; the list and panel polls answer 204 while unchanged.
#[tokio::test]
async fn batch_pages_work_without_javascript() {
    let pages = PageServer::start().await;
    let db = TestDb::sqlite();
    let app = TestApp::start(serve_args(&db.url, 2)).await;
    let (_, created) = app
        .submit(json!({ "addresses": [pages.url("/status/500"), pages.url("/count/2")] }))
        .await;
    let batch = created["batch_id"].as_i64().unwrap();
    wait_batch_finished(&app, batch).await;
    let list = app
        .client
        .get(app.url("/batches"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(list.contains(&format!("href=\"/batches/{batch}\"")));
    let poll = regex_like(&list, "hx-get=\"/batches/table?", "\"");
    let res = app
        .client
        .get(app.url(&format!("/batches/table?{}", poll.replace("&amp;", "&"))))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204, "nothing changed since the page");
    let page = app
        .client
        .get(app.url(&format!("/batches/{batch}")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("data-percent=\"100\""), "{page}");
    let panel = regex_like(&page, &format!("hx-get=\"/batches/{batch}/panel?"), "\"");
    let res = app
        .client
        .get(app.url(&format!("/batches/{batch}/panel?{panel}")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    // Retry through the form: a 303 back to the page with a notice.
    let res = app
        .client
        .post(app.url(&format!("/batches/{batch}/retry")))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("outcomes=http_error")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let to = res.headers()["location"].to_str().unwrap().to_string();
    assert_eq!(to, format!("/batches/{batch}?retried=1"));
    let page = app
        .client
        .get(app.url(&to))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("Retried 1 task"));
    wait_batch_finished(&app, batch).await;
    // Delete through the form.
    let res = app
        .client
        .post(app.url(&format!("/batches/{batch}/delete")))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    assert_eq!(
        res.headers()["location"],
        format!("/batches?deleted={batch}")
    );
    assert_eq!(
        get_json(&app, &format!("/api/batches/{batch}")).await.0,
        404
    );
    app.stop().await;
    db.cleanup().await;
}

/// The text between `start` and the next `end` after it.
fn regex_like(text: &str, start: &str, end: &str) -> String {
    let i = text
        .find(start)
        .unwrap_or_else(|| panic!("{start:?} not in page"))
        + start.len();
    let j = text[i..].find(end).expect("end") + i;
    text[i..j].to_string()
}

/// `wordtally submit`, the real binary, against a real server: piped (plain progress
/// lines, CSV on stdout) and in a real terminal (a progress bar), plus its failures.
#[tokio::test]
async fn command_line_client_submits_waits_and_exports() {
    let pages = PageServer::start().await;
    let db = TestDb::sqlite();
    let app = TestApp::start(serve_args(&db.url, 4)).await;
    let bin = env!("CARGO_BIN_EXE_wordtally");
    let input = format!(
        "{}\n\n{}\nftp://nope\n{}\n",
        pages.url("/count/2"),
        pages.url("/count/4"),
        pages.url("/status/404")
    );
    let mut child = tokio::process::Command::new(bin)
        .args([
            "submit",
            "--server",
            &app.base,
            "--label",
            "from the cli",
            "-",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .env_remove("WORDTALLY_TOKEN")
        .kill_on_drop(true)
        .spawn()
        .expect("spawn wordtally submit");
    {
        use tokio::io::AsyncWriteExt;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(input.as_bytes()).await.unwrap();
    }
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("submit finished")
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("rejected: ftp://nope"), "{stderr}");
    assert!(stderr.contains("3/3 finished"), "{stderr}");
    let mut lines = stdout.lines();
    assert!(
        lines
            .next()
            .unwrap()
            .starts_with("id,address,status,outcome,words_count")
    );
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), 3, "{stdout}");
    let counts: Vec<&str> = rows.iter().map(|r| r[4]).collect();
    assert_eq!(counts[..2], ["2", "4"]);
    assert_eq!(rows[2][3], "http_error");
    let (_, list) = get_json(&app, "/api/batches").await;
    assert_eq!(list["batches"][0]["label"], "from the cli");

    // In a real terminal (util-linux `script` gives it a pty): a progress bar, JSON Lines.
    let file = std::env::temp_dir()
        .join(unique("wt-cli"))
        .with_extension("txt");
    std::fs::write(&file, format!("{}\n", pages.url("/count/1"))).unwrap();
    let cmd = format!(
        "{bin} submit --server {} --format jsonl {}",
        app.base,
        file.display()
    );
    let out = tokio::process::Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .expect("run script(1): util-linux is needed for the terminal test");
    let screen = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{screen}");
    assert!(screen.contains("1/1"), "progress bar drawn: {screen}");
    assert!(screen.contains("\"words_count\":1"), "{screen}");

    // Failures: an unreachable server, and a batch with no valid line.
    std::fs::write(&file, "http://example.com/\n").unwrap();
    let out = tokio::process::Command::new(bin)
        .args([
            "submit",
            "--server",
            &format!("http://127.0.0.1:{}", free_tcp_port()),
        ])
        .arg(&file)
        .stdin(std::process::Stdio::null())
        .output();
    let out = tokio::time::timeout(Duration::from_secs(30), out)
        .await
        .unwrap()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach the server"));
    let _ = std::fs::remove_file(&file);
    let mut child = tokio::process::Command::new(bin)
        .args(["submit", "--server", &app.base, "--no-wait"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use tokio::io::AsyncWriteExt;
        let mut stdin = child.stdin.take().unwrap();
        stdin
            .write_all(b"ftp://one\njavascript:alert(1)\n")
            .await
            .unwrap();
    }
    let out = child.wait_with_output().await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("refused the batch"), "{stderr}");
    assert_eq!(stderr.matches("rejected:").count(), 2, "{stderr}");
    app.stop().await;
    db.cleanup().await;
}

/// Several words at once (DESIGN §14): one fetch, a count per word in the result, the
/// table, the batch's per-word totals and the CSV's per-word columns; bad word lists are
/// refused with a reason.
#[tokio::test]
async fn several_words_are_counted_in_one_fetch() {
    let pages = PageServer::start().await;
    let db = TestDb::sqlite();
    let app = TestApp::start(serve_args(&db.url, 2)).await;
    let page = pages.url("/count/4");
    let (status, created) = app
        .submit(json!({
            "addresses": [page.clone(), pages.url("/count/1")],
            "words": ["python", "great", "jython", "rust"],
        }))
        .await;
    assert_eq!(status, 201, "{created}");
    let batch = created["batch_id"].as_i64().unwrap();
    let b = wait_batch_finished(&app, batch).await;
    assert_eq!(pages.hits("/count/4"), 1, "one fetch for four words");
    let id = created["tasks"][0]["id"].as_i64().unwrap();
    let t = app.task(id).await;
    assert_eq!(t["word"], "python", "the first word stays `word`");
    let r = &t["result"];
    assert_eq!(r["words_count"], 4, "words_count is the first word's");
    assert_eq!(
        r["counts"],
        json!({"python": 4, "great": 2, "jython": 1, "rust": 0}),
        "{t}"
    );
    assert_eq!(
        b["word_totals"],
        json!({"python": 5, "great": 3, "jython": 2, "rust": 0}),
        "{b}"
    );
    let csv = app
        .client
        .get(app.url(&format!("/api/tasks/export?format=csv&batch={batch}")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let header = csv.lines().next().unwrap();
    assert!(
        header.ends_with(",counts,depth,found_on,count:python,count:great,count:jython,count:rust"),
        "{header}"
    );
    let first = csv.lines().nth(1).unwrap();
    assert!(first.ends_with(",4,2,1,0"), "{first}");
    let table = app
        .client
        .get(app.url(&format!("/tasks?batch={batch}")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        table.contains("python 4 · great 2 · jython 1 · rust 0"),
        "{table}"
    );
    // The form: words separated by commas.
    let res = app
        .client
        .post(app.url("/tasks"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "addresses={}&word=python%2C+great&whole_word=on",
            url::form_urlencoded::byte_serialize(page.as_bytes()).collect::<String>()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let (_, list) = get_json(&app, "/api/tasks?limit=1").await;
    let newest = list["tasks"][0]["id"].as_i64().unwrap();
    let t = eventually("the form's task finished", Duration::from_secs(30), || {
        let app = &app;
        async move {
            let t = app.task(newest).await;
            (t["status"] == "FINISHED").then_some(t)
        }
    })
    .await;
    assert_eq!(t["result"]["counts"], json!({"python": 4, "great": 2}));
    // Refused, with a reason, nothing stored.
    for (body, why) in [
        (
            json!({"addresses": [page.clone()], "words": []}),
            "at least one",
        ),
        (
            json!({"addresses": [page.clone()], "words": vec!["a"; 21]}),
            "at most 20",
        ),
        (
            json!({"addresses": [page.clone()], "words": ["ok", "bad\u{1}"]}),
            "control",
        ),
        (
            json!({"addresses": [page.clone()], "words": ["a"], "word": "b"}),
            "not both",
        ),
    ] {
        let (status, r) = app.submit(body).await;
        assert_eq!(status, 422, "{r}");
        assert!(r["error"].as_str().unwrap().contains(why), "{r}");
    }
    let (_, all) = get_json(&app, "/api/batches").await;
    assert_eq!(all["batches"].as_array().map(Vec::len), Some(2));
    app.stop().await;
    db.cleanup().await;
}
