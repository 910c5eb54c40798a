//! Watching over time (issue 21 items 1–4, DESIGN §16): schedules that start each due
//! tick's run exactly once whatever the number of `serve` processes (across a restart and
//! a database outage), missed ticks collapsing into one, a tick skipped while the
//! previous run is unfinished, changes exactly as the runs imply, history, the runs
//! export, the changes page, API and Atom feed, and hostile input storing nothing.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::routing::get;
use serde_json::{Value, json};
use sqlx::Row;

use crate::helpers::{TestApp, TestDb, eventually, serve_args};

/// Local pages whose count of "python" is the number of times that page was fetched
/// (`/grow/{name}`), or fixed (`/fixed/{n}`), or that answer only after a long wait
/// (`/hang`). Counts every fetch per path.
struct Pages {
    addr: SocketAddr,
    hits: Arc<Mutex<HashMap<String, u64>>>,
    task: tokio::task::JoinHandle<()>,
}

type Hits = Arc<Mutex<HashMap<String, u64>>>;

fn bump(hits: &Hits, path: String) -> u64 {
    let mut h = hits.lock().expect("hits");
    let n = h.entry(path).or_default();
    *n += 1;
    *n
}

async fn grow(State(hits): State<Hits>, Path(name): Path<String>) -> axum::response::Html<String> {
    let n = bump(&hits, format!("/grow/{name}"));
    axum::response::Html(format!(
        "<html><body>{}</body></html>",
        "python ".repeat(n as usize)
    ))
}

async fn fixed(State(hits): State<Hits>, Path(n): Path<usize>) -> axum::response::Html<String> {
    bump(&hits, format!("/fixed/{n}"));
    axum::response::Html(format!("<html><body>{}</body></html>", "python ".repeat(n)))
}

async fn hang(State(hits): State<Hits>) -> axum::response::Html<String> {
    bump(&hits, "/hang".into());
    tokio::time::sleep(Duration::from_secs(60)).await;
    axum::response::Html("python".into())
}

impl Pages {
    async fn start() -> Pages {
        let hits: Hits = Arc::default();
        let app = Router::new()
            .route("/grow/{name}", get(grow))
            .route("/fixed/{n}", get(fixed))
            .route("/hang", get(hang))
            .with_state(hits.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind page server");
        let addr = listener.local_addr().expect("addr");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Pages { addr, hits, task }
    }
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
    fn hits(&self, path: &str) -> u64 {
        self.hits
            .lock()
            .expect("hits")
            .get(path)
            .copied()
            .unwrap_or(0)
    }
}

impl Drop for Pages {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `serve` with a fast tick and a short minimum interval (tests only).
fn watch_args(url: &str, workers: usize) -> wordtally::config::ServeArgs {
    let mut a = serve_args(url, workers);
    a.schedule_tick_ms = 100;
    a.schedule_min_interval_ms = 1_000;
    a.sweep_interval_secs = 1;
    a.requeue_not_started_secs = 2;
    a
}

async fn json_req(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut rb = app.client.request(method, app.url(path));
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    let res = rb.send().await.expect("request");
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

async fn submit_batch(app: &TestApp, addresses: &[String]) -> i64 {
    let (status, body) = app
        .submit(json!({ "addresses": addresses, "word": "python" }))
        .await;
    assert_eq!(status, 201, "{body}");
    body["batch_id"].as_i64().expect("batch_id")
}

async fn batch(app: &TestApp, id: i64) -> Value {
    json_req(
        app,
        reqwest::Method::GET,
        &format!("/api/batches/{id}"),
        None,
    )
    .await
    .1
}

/// The batch's current run.
async fn last_run(app: &TestApp, id: i64) -> i64 {
    let runs = app.running.store.batch_runs(id, 1000).await.expect("runs");
    runs.last().map(|r| i64::from(r.run)).unwrap_or(0)
}

/// Waits until batch `id`'s run `run` has finished.
async fn wait_run_finished(app: &TestApp, id: i64, run: i64, timeout: Duration) {
    eventually(
        &format!("batch {id} run {run} finished"),
        timeout,
        || async move {
            let (_, v) = json_req(
                app,
                reqwest::Method::GET,
                &format!("/api/batches/{id}/runs"),
                None,
            )
            .await;
            v["runs"]
                .as_array()?
                .iter()
                .any(|r| r["run"].as_i64() == Some(run) && r["finished_at"].is_i64())
                .then_some(())
        },
    )
    .await;
}

/// Checks by construction what "exactly once" means in the database: the batch's runs are
/// 1..=n with no gap or duplicate, every task has exactly one result per run 1..=n and
/// was handed each new run once.
async fn assert_each_run_once(
    pool: &sqlx::PgPool,
    pages: &Pages,
    batch: i64,
    names: &[String],
) -> i64 {
    let runs: Vec<i32> =
        sqlx::query_scalar("SELECT run FROM batch_run WHERE batch_id = $1 ORDER BY run")
            .bind(batch)
            .fetch_all(pool)
            .await
            .expect("runs");
    let n = runs.len() as i64;
    assert_eq!(
        runs,
        (1..=n as i32).collect::<Vec<_>>(),
        "runs without gaps"
    );
    let rows = sqlx::query(
        "SELECT t.id, COUNT(r.id) AS n, MAX(r.run) AS max_run, MIN(r.run) AS min_run, t.run \
         FROM task t LEFT JOIN result r ON r.task_id = t.id WHERE t.batch_id = $1 \
         GROUP BY t.id, t.run",
    )
    .bind(batch)
    .fetch_all(pool)
    .await
    .expect("results");
    for r in &rows {
        let results: i64 = r.get("n");
        let task_run: i32 = r.get("run");
        assert_eq!(i64::from(task_run), n, "every task is at the batch's run");
        assert_eq!(results, n, "one result per run");
        assert_eq!(r.get::<Option<i32>, _>("min_run"), Some(1));
    }
    // Each task was handed a new run once per scheduled tick (the audit log of retries).
    let retries: Vec<i64> = sqlx::query_scalar(
        "SELECT COUNT(*) FROM audit WHERE batch_id = $1 AND action = 'retry' AND who = 'schedule' \
         GROUP BY task_id",
    )
    .bind(batch)
    .fetch_all(pool)
    .await
    .expect("audit");
    assert_eq!(
        retries,
        vec![n - 1; names.len()],
        "one new run per task per tick"
    );
    // Fetches are at-least-once (a job whose result was lost in the outage is fetched
    // again, its second result a duplicate), so a page is fetched at least once per run.
    for name in names {
        assert!(
            pages.hits(&format!("/grow/{name}")) >= n as u64,
            "{name} fetched every run"
        );
    }
    n
}

/// Three `serve` processes on one Postgres database, each with its own tick loop: every
/// due tick starts exactly one run — also across a restart of one of them and while the
/// database drops every connection.
#[tokio::test]
async fn watch_three_serves_run_every_tick_exactly_once() {
    let db = TestDb::postgres().await;
    let pages = Pages::start().await;
    let mut apps = Vec::new();
    for _ in 0..3 {
        apps.push(TestApp::start(watch_args(&db.url, 2)).await);
    }
    let names: Vec<String> = (0..4).map(|i| format!("p{i}")).collect();
    let addresses: Vec<String> = names
        .iter()
        .map(|n| pages.url(&format!("/grow/{n}")))
        .collect();
    let id = submit_batch(&apps[0], &addresses).await;
    wait_run_finished(&apps[0], id, 1, Duration::from_secs(30)).await;

    let (status, s) = json_req(
        &apps[1],
        reqwest::Method::PUT,
        &format!("/api/batches/{id}/schedule"),
        Some(json!({"every": "1s"})),
    )
    .await;
    assert_eq!(status, 200, "{s}");
    assert_eq!(s["every"], "1s");
    assert_eq!(s["paused"], false);
    let b = batch(&apps[2], id).await;
    assert_eq!(b["schedule"]["every"], "1s", "{b}");
    assert!(b["schedule"]["next_run_at"].is_i64());

    wait_run_finished(&apps[0], id, 4, Duration::from_secs(40)).await;
    let pool = db.pool().await;

    // Restart one process, and cut every connection to the database while ticks are due.
    let old = apps.remove(1);
    old.stop().await;
    apps.push(TestApp::start(watch_args(&db.url, 2)).await);
    let killed: i64 = sqlx::query_scalar(
        "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .fetch_one(&pool)
    .await
    .expect("terminate");
    assert!(killed > 0, "the apps had connections to drop");
    wait_run_finished(&apps[0], id, 7, Duration::from_secs(60)).await;

    // Pause so the count is stable, let the last run finish, then check.
    let (status, s) = json_req(
        &apps[0],
        reqwest::Method::PUT,
        &format!("/api/batches/{id}/schedule"),
        Some(json!({"paused": true})),
    )
    .await;
    assert_eq!(status, 200, "{s}");
    assert_eq!(s["paused"], true);
    assert_eq!(s["every"], "1s", "pausing keeps the cadence");
    let last: i32 = sqlx::query_scalar("SELECT run FROM batch WHERE id = $1")
        .bind(id)
        .fetch_one(&pool)
        .await
        .expect("run");
    wait_run_finished(&apps[0], id, i64::from(last), Duration::from_secs(30)).await;
    let n = assert_each_run_once(&pool, &pages, id, &names).await;
    let started: i64 = sqlx::query_scalar("SELECT runs_started FROM schedule WHERE batch_id = $1")
        .bind(id)
        .fetch_one(&pool)
        .await
        .expect("runs_started");
    assert_eq!(
        started,
        n - 1,
        "the schedule started every run after the first"
    );
    let triggers: Vec<String> =
        sqlx::query_scalar("SELECT trigger FROM batch_run WHERE batch_id = $1 ORDER BY run")
            .bind(id)
            .fetch_all(&pool)
            .await
            .expect("triggers");
    assert_eq!(triggers[0], "submit");
    assert!(
        triggers[1..].iter().all(|t| t == "schedule"),
        "{triggers:?}"
    );
    // Changes are exactly what the stored runs imply: one row per task and run whose
    // count differs from the run before, with both counts (the pages count one more
    // "python" per fetch, so every run differs).
    let implied: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM result r JOIN result p ON p.task_id = r.task_id AND p.run = r.run - 1 \
         JOIN task t ON t.id = r.task_id WHERE t.batch_id = $1 AND r.words_count <> p.words_count",
    )
    .bind(id)
    .fetch_one(&pool)
    .await
    .expect("implied");
    assert_eq!(implied, (n - 1) * names.len() as i64);
    let (changes, matching): (i64, i64) = {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n, COUNT(r.id) AS m FROM change c \
             LEFT JOIN result r ON r.task_id = c.task_id AND r.run = c.run AND r.words_count = c.after \
             AND EXISTS (SELECT 1 FROM result p WHERE p.task_id = c.task_id AND p.run = c.run - 1 \
                         AND p.words_count = c.before) \
             WHERE c.batch_id = $1",
        )
        .bind(id)
        .fetch_one(&pool)
        .await
        .expect("changes");
        (row.get("n"), row.get("m"))
    };
    assert_eq!(changes, implied, "one change per differing (task, run)");
    assert_eq!(
        matching, changes,
        "each change holds run N-1's and run N's counts"
    );
    // The batch total per run is the sum of that run's counts.
    let (_, runs) = json_req(
        &apps[0],
        reqwest::Method::GET,
        &format!("/api/batches/{id}/runs"),
        None,
    )
    .await;
    for r in runs["runs"].as_array().expect("runs") {
        let sum: i64 = sqlx::query_scalar(
            "SELECT CAST(SUM(r.words_count) AS BIGINT) FROM result r JOIN task t ON t.id = r.task_id \
             WHERE t.batch_id = $1 AND r.run = $2",
        )
        .bind(id)
        .bind(r["run"].as_i64().unwrap_or(0) as i32)
        .fetch_one(&pool)
        .await
        .expect("sum");
        assert_eq!(r["words_total"].as_i64(), Some(sum), "{r}");
    }
    pool.close().await;
    for a in apps {
        a.stop().await;
    }
    db.cleanup().await;
}

/// Ticks missed while every process was down start one run, not one per missed tick; a
/// second claim right after finds nothing due. (Store level, both databases.)
#[tokio::test]
async fn watch_missed_ticks_collapse_into_one_run() {
    for db in [TestDb::sqlite(), TestDb::postgres().await] {
        let pages = Pages::start().await;
        let app = TestApp::start({
            let mut a = watch_args(&db.url, 2);
            // No tick loop in the way: the test claims by hand.
            a.schedule_tick_ms = 3_600_000;
            a
        })
        .await;
        let id = submit_batch(&app, &[pages.url("/fixed/3")]).await;
        wait_run_finished(&app, id, 1, Duration::from_secs(30)).await;
        let store = app.running.store.clone();
        let cadence = wordtally::schedule::Cadence::Every(60_000);
        let now = wordtally::model::now_ms();
        // Due an hour ago: sixty ticks were missed.
        store
            .put_schedule(id, &cadence, false, now - 3_600_000)
            .await
            .expect("put")
            .expect("batch exists");
        let first = store.claim_due_ticks(now).await.expect("claim");
        assert_eq!(first.claimed, 1);
        assert_eq!(first.started, vec![(id, 2)]);
        let again = store.claim_due_ticks(now + 1).await.expect("claim again");
        assert_eq!(again.claimed, 0, "nothing due after the collapse");
        let s = store
            .get_schedule(id)
            .await
            .expect("get")
            .expect("schedule");
        assert_eq!(s.next_run_at, now + 60_000, "next tick computed from now");
        assert_eq!(s.runs_started, 1);
        assert_eq!(s.last_tick_note.as_deref(), Some("started run 2"));
        app.stop().await;
        db.cleanup().await;
    }
}

/// A tick that finds the previous run unfinished is skipped, says so, and starts nothing.
#[tokio::test]
async fn watch_tick_skips_an_unfinished_run_and_says_so() {
    let db = TestDb::sqlite();
    let pages = Pages::start().await;
    let app = TestApp::start(watch_args(&db.url, 2)).await;
    let id = submit_batch(&app, &[pages.url("/hang"), pages.url("/fixed/1")]).await;
    let (status, s) = json_req(
        &app,
        reqwest::Method::PUT,
        &format!("/api/batches/{id}/schedule"),
        Some(json!({"every": "1s"})),
    )
    .await;
    assert_eq!(status, 200, "{s}");
    let note = eventually("a skipped tick", Duration::from_secs(20), || async {
        let b = batch(&app, id).await;
        let note = b["schedule"]["last_tick_note"].as_str()?.to_string();
        note.starts_with("skipped").then_some(note)
    })
    .await;
    assert_eq!(note, "skipped: the previous run is still unfinished");
    let page = app
        .client
        .get(app.url(&format!("/batches/{id}")))
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("html");
    assert!(
        page.contains("skipped: the previous run is still unfinished"),
        "the batch page says so"
    );
    let store = app.running.store.clone();
    let runs = store.batch_runs(id, 10).await.expect("runs");
    assert!(runs.iter().all(|r| r.run == 1), "no run started: {runs:?}");
    assert_eq!(
        store
            .get_schedule(id)
            .await
            .expect("get")
            .expect("s")
            .runs_started,
        0
    );
    assert_eq!(
        pages.hits("/fixed/1"),
        1,
        "the finished page was not fetched again"
    );
    app.stop().await;
    db.cleanup().await;
}

/// Changes are exactly what the runs imply: a difference per word per run without rules;
/// with rules only the crossings. Listed by the API (newest first, paged), the page and
/// the Atom feed; history and the runs export show every run.
#[tokio::test]
async fn watch_changes_history_export_and_feed() {
    let db = TestDb::sqlite();
    let pages = Pages::start().await;
    let app = TestApp::start(watch_args(&db.url, 2)).await;
    let id = submit_batch(&app, &[pages.url("/grow/a"), pages.url("/fixed/5")]).await;
    wait_run_finished(&app, id, 1, Duration::from_secs(30)).await;
    let tasks: Vec<i64> = app
        .running
        .store
        .clone()
        .batch_run_rows(id, (0, 0), 10)
        .await
        .expect("rows")
        .iter()
        .map(|r| r.task_id)
        .collect();
    let grow_task = tasks[0];
    let (status, _) = json_req(
        &app,
        reqwest::Method::PUT,
        &format!("/api/batches/{id}/schedule"),
        Some(json!({"every": "1s"})),
    )
    .await;
    assert_eq!(status, 200);
    wait_run_finished(&app, id, 3, Duration::from_secs(30)).await;
    // Pause, let the run in progress finish: m runs so far, the growing page counted m.
    let (status, _) = json_req(
        &app,
        reqwest::Method::PUT,
        &format!("/api/batches/{id}/schedule"),
        Some(json!({"paused": true})),
    )
    .await;
    assert_eq!(status, 200);
    let m = last_run(&app, id).await;
    wait_run_finished(&app, id, m, Duration::from_secs(30)).await;
    // Rules from now on: only a crossing of "> m+1" is a change (run m+2: m+1 → m+2).
    let (status, r) = json_req(
        &app,
        reqwest::Method::PUT,
        &format!("/api/batches/{id}/rules"),
        Some(json!({"rules": [format!(">{}", m + 1), "becomes 0"]})),
    )
    .await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["rules"], json!([format!("> {}", m + 1), "becomes 0"]));
    let (status, _) = json_req(
        &app,
        reqwest::Method::PUT,
        &format!("/api/batches/{id}/schedule"),
        Some(json!({"paused": false})),
    )
    .await;
    assert_eq!(status, 200);
    wait_run_finished(&app, id, m + 3, Duration::from_secs(30)).await;
    let (status, _) = json_req(
        &app,
        reqwest::Method::DELETE,
        &format!("/api/batches/{id}/schedule"),
        None,
    )
    .await;
    assert_eq!(status, 204);
    assert!(batch(&app, id).await["schedule"].is_null());
    let last = last_run(&app, id).await;
    wait_run_finished(&app, id, last, Duration::from_secs(30)).await;

    let (status, list) = json_req(
        &app,
        reqwest::Method::GET,
        &format!("/api/changes?batch={id}"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{list}");
    let changes = list["changes"].as_array().expect("changes").clone();
    // The fixed page never changes; the growing one changed r-1 → r in every run r ≤ m
    // (no rules), then only m+1 → m+2 crossed the rule.
    let mut seen: Vec<(i64, i64, i64, Option<String>)> = changes
        .iter()
        .map(|c| {
            assert_eq!(c["task_id"].as_i64(), Some(grow_task), "{c}");
            assert_eq!(c["batch_id"].as_i64(), Some(id));
            assert_eq!(c["word"], "python");
            (
                c["run"].as_i64().unwrap_or(0),
                c["before"].as_i64().unwrap_or(0),
                c["after"].as_i64().unwrap_or(0),
                c["rule"].as_str().map(String::from),
            )
        })
        .collect();
    seen.sort();
    let mut expect: Vec<(i64, i64, i64, Option<String>)> =
        (2..=m).map(|r| (r, r - 1, r, None)).collect();
    expect.push((m + 2, m + 1, m + 2, Some(format!("> {}", m + 1))));
    assert_eq!(seen, expect, "{list}");
    let ids: Vec<i64> = changes
        .iter()
        .map(|c| c["id"].as_i64().unwrap_or(0))
        .collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first");
    let total = expect.len();
    let (_, page1) = json_req(
        &app,
        reqwest::Method::GET,
        &format!("/api/changes?batch={id}&limit={}", total - 1),
        None,
    )
    .await;
    assert_eq!(page1["changes"].as_array().map(Vec::len), Some(total - 1));
    let next = page1["next_before"].as_i64().expect("next_before");
    let (_, page2) = json_req(
        &app,
        reqwest::Method::GET,
        &format!("/api/changes?batch={id}&limit={}&before={next}", total - 1),
        None,
    )
    .await;
    assert_eq!(page2["changes"].as_array().map(Vec::len), Some(1));
    assert!(page2["next_before"].is_null());
    let (_, other) = json_req(
        &app,
        reqwest::Method::GET,
        &format!("/api/changes?batch={}", id + 1000),
        None,
    )
    .await;
    assert_eq!(other["changes"], json!([]));

    // History: every run of the growing page, counting 1, 2, 3, …
    let (status, h) = json_req(
        &app,
        reqwest::Method::GET,
        &format!("/api/tasks/{grow_task}/history"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{h}");
    let runs = h["runs"].as_array().expect("runs");
    assert!(runs.len() >= 5);
    for (i, r) in runs.iter().enumerate() {
        assert_eq!(r["run"].as_i64(), Some(i as i64 + 1));
        assert_eq!(r["counts"]["python"].as_i64(), Some(i as i64 + 1), "{r}");
        assert_eq!(r["words_count"].as_i64(), Some(i as i64 + 1));
        assert_eq!(r["outcome"], "ok");
        assert_eq!(r["http_status_code"], 200);
        assert_eq!(r["not_modified"], false);
        assert!(r["finished_at"].is_i64());
    }
    // The export: one row per task and run.
    let csv = app
        .client
        .get(app.url(&format!("/api/batches/{id}/runs/export?format=csv")))
        .send()
        .await
        .expect("export")
        .text()
        .await
        .expect("csv");
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "task_id,address,run,finished_at,words_count,http_status_code,outcome,counts"
    );
    assert_eq!(lines.len() - 1, 2 * runs.len(), "{csv}");
    let jsonl = app
        .client
        .get(app.url(&format!("/api/batches/{id}/runs/export?format=jsonl")))
        .send()
        .await
        .expect("export")
        .text()
        .await
        .expect("jsonl");
    assert_eq!(jsonl.lines().count(), 2 * runs.len());
    let bad = app
        .client
        .get(app.url(&format!("/api/batches/{id}/runs/export?format=xml")))
        .send()
        .await
        .expect("export");
    assert_eq!(bad.status(), 400);

    // Pages: the changes page lists them; the task and batch pages draw the trends.
    let html = app
        .client
        .get(app.url(&format!("/changes?batch={id}")))
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("html");
    assert_eq!(html.matches("data-change-id=").count(), total, "{html}");
    assert!(
        html.contains(&format!("&gt; {}", m + 1)) || html.contains(&format!("&#62; {}", m + 1)),
        "the rule crossed is shown"
    );
    let task_page = app
        .client
        .get(app.url(&format!("/tasks/{grow_task}")))
        .send()
        .await
        .expect("task")
        .text()
        .await
        .expect("html");
    assert!(task_page.contains("id=\"task-trend\""));
    assert!(
        task_page.contains("data-run=\"3\" data-value=\"3\" data-series=\"python\""),
        "a dot per run"
    );
    let batch_page = app
        .client
        .get(app.url(&format!("/batches/{id}")))
        .send()
        .await
        .expect("batch")
        .text()
        .await
        .expect("html");
    assert!(batch_page.contains("id=\"batch-trend\""));
    assert!(
        batch_page.contains("data-run=\"2\" data-value=\"7\""),
        "run 2's total is 2 + 5"
    );

    // The Atom feed (open server: no token needed; a bad token is refused).
    let feed = app
        .client
        .get(app.url(&format!("/changes.atom?batch={id}")))
        .send()
        .await
        .expect("feed");
    assert_eq!(feed.status(), 200);
    assert!(
        feed.headers()["content-type"]
            .to_str()
            .unwrap_or("")
            .starts_with("application/atom+xml")
    );
    let xml = feed.text().await.expect("xml");
    assert_eq!(xml.matches("<entry>").count(), total, "{xml}");
    assert!(xml.contains("<feed xmlns=\"http://www.w3.org/2005/Atom\">"));
    let refused = app
        .client
        .get(app.url("/changes.atom?token=nope"))
        .send()
        .await
        .expect("feed");
    assert_eq!(refused.status(), 401);
    app.stop().await;
    db.cleanup().await;
}

/// With accounts, the feed opens with an API token as `?token=` or the bearer header, and
/// not without one; `?token=` opens nothing else.
#[tokio::test]
async fn watch_feed_reads_a_token_from_the_query() {
    let db = TestDb::sqlite();
    let store = wordtally::store::Store::connect(&db.url).await.expect("db");
    wordtally::cli::users::add(&store, "me", "correct horse battery")
        .await
        .expect("user");
    let token = wordtally::cli::tokens::create(&store, "feed", Some("me"))
        .await
        .expect("token");
    store.close().await;
    let app = TestApp::start(watch_args(&db.url, 0)).await;
    let res = app
        .client
        .get(app.url("/changes.atom"))
        .send()
        .await
        .expect("feed");
    assert_eq!(res.status(), 303, "signed out: to the sign-in page");
    let res = app
        .client
        .get(app.url(&format!("/changes.atom?token={token}")))
        .send()
        .await
        .expect("feed");
    assert_eq!(res.status(), 200);
    let res = app
        .client
        .get(app.url("/changes.atom"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("feed");
    assert_eq!(res.status(), 200);
    let res = app
        .client
        .get(app.url(&format!("/api/changes?token={token}")))
        .send()
        .await
        .expect("api");
    assert_eq!(res.status(), 401, "the query token opens the feed only");
    let res = app
        .client
        .get(app.url(&format!("/changes?token={token}")))
        .send()
        .await
        .expect("page");
    assert_eq!(res.status(), 303);
    app.stop().await;
    db.cleanup().await;
}

/// Bad intervals, cron expressions, time zones, rules and huge bodies: a 4xx with the
/// reason, and nothing stored. The one-minute minimum holds with the default settings.
#[tokio::test]
async fn watch_hostile_schedules_store_nothing() {
    let db = TestDb::sqlite();
    let app = TestApp::start(serve_args(&db.url, 0)).await;
    let id = submit_batch(&app, &["http://127.0.0.1:9/x".to_string()]).await;
    let path = format!("/api/batches/{id}/schedule");
    let cases: Vec<(Value, &str)> = vec![
        (json!({"every": "30s"}), "at least 1m"),
        (json!({"every": "1x"}), "`every` must be a duration"),
        (json!({"every": ""}), "`every` must be a duration"),
        (json!({"every": "-5m"}), "`every` must be a duration"),
        (json!({"every": "999999999d"}), "`every` must be"),
        (json!({"every": 60}), "the body must be"),
        (json!({"cron": "* * * * * *"}), "five fields"),
        (json!({"cron": "61 * * * *"}), "five fields"),
        (json!({"cron": "0 0 31 2 *"}), "never"),
        (
            json!({"cron": "0 * * * *", "timezone": "Mars/Olympus"}),
            "IANA time zone",
        ),
        (
            json!({"every": "1h", "timezone": "Europe/Berlin"}),
            "`timezone` applies to `cron` only",
        ),
        (
            json!({"every": "1h", "cron": "0 * * * *"}),
            "either `every` or `cron`",
        ),
        (json!({}), "either `every` or `cron`"),
        (json!({"every": "1h", "rules": ["== 3"]}), "a rule must be"),
        (json!({"every": "1h", "surprise": true}), "unknown field"),
    ];
    for (body, reason) in cases {
        let (status, v) = json_req(&app, reqwest::Method::PUT, &path, Some(body.clone())).await;
        assert_eq!(status, 422, "{body} → {v}");
        let err = v["error"].as_str().unwrap_or("");
        assert!(
            err.contains(reason),
            "{body}: {err:?} should say {reason:?}"
        );
    }
    // Not JSON, and too large.
    let res = app
        .client
        .put(app.url(&path))
        .body("every=1h")
        .send()
        .await
        .expect("put");
    assert_eq!(res.status(), 422);
    let huge = json!({"every": "1h", "rules": vec!["> 1"; 5000]});
    let res = app
        .client
        .put(app.url(&path))
        .json(&huge)
        .send()
        .await
        .expect("put");
    assert_eq!(res.status(), 413);
    let res = app
        .client
        .put(app.url(&format!("/api/batches/{id}/rules")))
        .json(&json!({"rules": ["> x"]}))
        .send()
        .await
        .expect("rules");
    assert_eq!(res.status(), 422);
    let res = app
        .client
        .put(app.url("/api/batches/999999/schedule"))
        .json(&json!({"every": "1h"}))
        .send()
        .await
        .expect("put");
    assert_eq!(res.status(), 404);
    let res = app
        .client
        .put(app.url("/api/batches/x/schedule"))
        .json(&json!({"every": "1h"}))
        .send()
        .await
        .expect("put");
    assert_eq!(res.status(), 400);
    let res = app
        .client
        .get(app.url("/api/tasks/x/history"))
        .send()
        .await
        .expect("history");
    assert_eq!(res.status(), 400);
    let res = app
        .client
        .get(app.url("/api/tasks/999999/history"))
        .send()
        .await
        .expect("history");
    assert_eq!(res.status(), 404);
    let res = app
        .client
        .get(app.url("/api/changes?before=abc"))
        .send()
        .await
        .expect("changes");
    assert_eq!(res.status(), 400);
    let res = app
        .client
        .get(app.url("/api/changes?surprise=1"))
        .send()
        .await
        .expect("changes");
    assert_eq!(res.status(), 400);
    // The form, too (same origin, no accounts: no CSRF token needed on an open server).
    let res = app
        .client
        .post(app.url(&format!("/batches/{id}/schedule")))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("mode=every&every=10s")
        .send()
        .await
        .expect("form");
    assert_eq!(res.status(), 422);
    // Nothing stored by any of them.
    let store = app.running.store.clone();
    assert!(store.get_schedule(id).await.expect("get").is_none());
    assert!(store.change_rules(id).await.expect("rules").is_empty());
    let (status, v) = json_req(&app, reqwest::Method::GET, &path, None).await;
    assert_eq!((status, v), (200, Value::Null));

    // And the good ones work, from the API and the form.
    let (status, s) = json_req(
        &app,
        reqwest::Method::PUT,
        &path,
        Some(json!({"cron": "0 */6 * * *", "timezone": "Europe/Berlin", "paused": true})),
    )
    .await;
    assert_eq!(status, 200, "{s}");
    assert_eq!(s["cron"], "0 */6 * * *");
    assert_eq!(s["timezone"], "Europe/Berlin");
    assert_eq!(s["paused"], true);
    assert!(s.get("every").is_none());
    let res = app
        .client
        .post(app.url(&format!("/batches/{id}/schedule")))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("mode=every&every=15m")
        .send()
        .await
        .expect("form");
    assert_eq!(res.status(), 303);
    let s = store
        .get_schedule(id)
        .await
        .expect("get")
        .expect("schedule");
    assert_eq!(s.every_ms, Some(900_000));
    assert!(!s.paused);
    let res = app
        .client
        .post(app.url(&format!("/batches/{id}/schedule/pause")))
        .send()
        .await
        .expect("pause");
    assert_eq!(res.status(), 303);
    assert!(
        store
            .get_schedule(id)
            .await
            .expect("get")
            .expect("s")
            .paused
    );
    let res = app
        .client
        .post(app.url(&format!("/batches/{id}/schedule/resume")))
        .send()
        .await
        .expect("resume");
    assert_eq!(res.status(), 303);
    assert!(
        !store
            .get_schedule(id)
            .await
            .expect("get")
            .expect("s")
            .paused
    );
    let res = app
        .client
        .post(app.url(&format!("/batches/{id}/rules")))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("rules=%3E+10%2C+becomes+0")
        .send()
        .await
        .expect("rules");
    assert_eq!(res.status(), 303);
    assert_eq!(
        store.change_rules(id).await.expect("rules"),
        vec!["> 10".to_string(), "becomes 0".to_string()]
    );
    let res = app
        .client
        .post(app.url(&format!("/batches/{id}/schedule/remove")))
        .send()
        .await
        .expect("remove");
    assert_eq!(res.status(), 303);
    assert!(store.get_schedule(id).await.expect("get").is_none());
    app.stop().await;
    db.cleanup().await;
}

/// BENCHMARKS.md: the cost of a tick round with 10,000 schedules due at once (each batch
/// one finished task): the claim (pages of 100, one transaction each) and the start of
/// the runs. `cargo test --test it watch_bench_tick -- --ignored --nocapture`.
#[tokio::test]
#[ignore]
async fn watch_bench_tick_10k_due() {
    // WATCH_BENCH_DB=sqlite|postgres runs one of the two.
    let which = std::env::var("WATCH_BENCH_DB").unwrap_or_default();
    let mut dbs = Vec::new();
    if which != "sqlite" {
        dbs.push(TestDb::postgres().await);
    }
    if which != "postgres" {
        dbs.push(TestDb::sqlite());
    }
    for db in dbs {
        let store = wordtally::store::Store::connect(&db.url).await.expect("db");
        let n: i64 = 10_000;
        let now = wordtally::model::now_ms();
        let sql_batches = format!(
            "INSERT INTO batch (id, created_at, word, case_sensitive, whole_word, scope, total, finished, ok, \
             updated_at, finished_at) SELECT g, {now}, 'python', FALSE, TRUE, 'text', 1, 1, 1, {now}, {now} FROM ({}) AS s",
            series(&db, n)
        );
        let sql_tasks = format!(
            "INSERT INTO task (id, address, timestamp, task_status, word, case_sensitive, whole_word, scope, \
             updated_at, batch_id, run, outcome) SELECT g, 'http://127.0.0.1:9/' || g, {now}, 'FINISHED', 'python', \
             FALSE, TRUE, 'text', {now}, g, 1, 'ok' FROM ({}) AS s",
            series(&db, n)
        );
        let sql_sched = format!(
            "INSERT INTO schedule (batch_id, every_ms, timezone, paused, next_run_at, created_at, updated_at) \
             SELECT g, 3600000, 'UTC', FALSE, {}, {now}, {now} FROM ({}) AS s",
            now - 1,
            series(&db, n)
        );
        exec(&db, &[&sql_batches, &sql_tasks, &sql_sched]).await;
        let t0 = std::time::Instant::now();
        let mut claimed = 0;
        loop {
            let page = store.claim_due_ticks(now).await.expect("claim");
            claimed += page.started.len();
            if page.due < wordtally::store::schedules::CLAIM_PAGE {
                break;
            }
        }
        let claim = t0.elapsed();
        assert_eq!(claimed, n as usize);
        let slot = wordtally::actors::ActorSlot::default();
        let t1 = std::time::Instant::now();
        let mut rounds = 0;
        let mut tasks = 0;
        loop {
            let r = wordtally::schedule::tick::round(&store, &slot)
                .await
                .expect("round");
            rounds += 1;
            tasks += r.tasks;
            if r.tasks == 0 {
                break;
            }
        }
        let start = t1.elapsed();
        assert_eq!(tasks, n as usize);
        println!(
            "{}: claim of {n} due schedules {:.0} ms ({:.2} ms per 100); starting their runs {:.0} ms over {} rounds ({:.2} ms per run)",
            store.kind(),
            claim.as_secs_f64() * 1e3,
            claim.as_secs_f64() * 1e3 / (n as f64 / 100.0),
            start.as_secs_f64() * 1e3,
            rounds - 1,
            start.as_secs_f64() * 1e3 / n as f64,
        );
        store.close().await;
        db.cleanup().await;
    }
}

fn series(db: &TestDb, n: i64) -> String {
    if db.url.starts_with("sqlite:") {
        format!(
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < {n}) SELECT x AS g FROM c"
        )
    } else {
        format!("SELECT generate_series(1, {n}) AS g")
    }
}

async fn exec(db: &TestDb, sql: &[&str]) {
    if db.url.starts_with("sqlite:") {
        let pool = sqlx::SqlitePool::connect(&db.url).await.expect("sqlite");
        for s in sql {
            sqlx::query(s).execute(&pool).await.expect("seed");
        }
        pool.close().await;
    } else {
        let pool = db.pool().await;
        for s in sql {
            sqlx::query(s).execute(&pool).await.expect("seed");
        }
        pool.close().await;
    }
}

/// The batch page's schedule forms posted by htmx: each answer is the schedule section as
/// it now is, which the forms swap over themselves (Pause / Resume / Remove follow the
/// schedule without a reload), with the notice for `#batch-notice` out of band and
/// `tasks-changed` for the panel; a refused form is a toast and changes nothing.
#[tokio::test]
async fn watch_schedule_forms_swap_their_section_in_place() {
    let db = TestDb::sqlite();
    let app = TestApp::start(serve_args(&db.url, 0)).await;
    let id = submit_batch(&app, &["http://127.0.0.1:9/x".to_string()]).await;
    let post = |path: String, body: &'static str| {
        let req = app
            .client
            .post(app.url(&path))
            .header("hx-request", "true")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        async move {
            let res = req.send().await.expect("form");
            let status = res.status().as_u16();
            let header = |n: &str| {
                res.headers()
                    .get(n)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_owned()
            };
            let (trigger, retarget) = (header("hx-trigger"), header("hx-retarget"));
            (status, trigger, retarget, res.text().await.expect("text"))
        }
    };
    let page = app
        .client
        .get(app.url(&format!("/batches/{id}")))
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("text");
    assert!(page.contains("id=\"schedule-forms\""), "{page}");
    assert!(!page.contains("id=\"schedule-pause\""));
    // Every form of the section swaps the section.
    let forms = page.matches("/schedule\" hx-post=").count();
    assert_eq!(forms, 2, "the every and cron forms");
    let swaps = page
        .matches("hx-target=\"#schedule-forms\" hx-swap=\"outerHTML\"")
        .count();
    assert_eq!(swaps, 3, "every, cron and rules");
    let has = |html: &str, button: &str| html.contains(&format!("id=\"{button}\""));

    let (status, trigger, _, html) =
        post(format!("/batches/{id}/schedule"), "mode=every&every=15m").await;
    assert_eq!((status, trigger.as_str()), (200, "tasks-changed"), "{html}");
    assert!(
        html.contains("<section class=\"batch-actions schedule-actions\" id=\"schedule-forms\""),
        "{html}"
    );
    assert!(
        html.contains("<div id=\"batch-notice\" hx-swap-oob=\"innerHTML\"><p class=\"ok notice\" role=\"status\">Runs every 15m; next run at "),
        "{html}"
    );
    assert!(
        has(&html, "schedule-pause") && has(&html, "schedule-remove"),
        "{html}"
    );
    assert!(!has(&html, "schedule-resume"), "{html}");
    assert!(html.contains("Change the schedule…"), "{html}");
    assert_eq!(
        html.matches("hx-target=\"#schedule-forms\" hx-swap=\"outerHTML\"")
            .count(),
        5,
        "every, cron, pause, remove and rules: the swapped section swaps again: {html}"
    );

    let (status, _, _, html) = post(format!("/batches/{id}/schedule/pause"), "").await;
    assert_eq!(status, 200, "{html}");
    assert!(
        has(&html, "schedule-resume") && !has(&html, "schedule-pause"),
        "{html}"
    );
    assert!(html.contains("Schedule every 15m is paused."), "{html}");

    let (status, _, _, html) = post(format!("/batches/{id}/schedule/resume"), "").await;
    assert_eq!(status, 200, "{html}");
    assert!(
        has(&html, "schedule-pause") && !has(&html, "schedule-resume"),
        "{html}"
    );

    let (status, _, _, html) = post(format!("/batches/{id}/rules"), "rules=%3E+10").await;
    assert_eq!(status, 200, "{html}");
    assert!(
        html.contains("crosses: &#62; 10.") || html.contains("crosses: &gt; 10."),
        "{html}"
    );
    assert!(
        has(&html, "schedule-pause"),
        "the schedule is still shown: {html}"
    );

    // Refused: a toast for #toast, and the schedule is as it was.
    let (status, _, retarget, html) =
        post(format!("/batches/{id}/schedule"), "mode=every&every=10s").await;
    assert_eq!((status, retarget.as_str()), (422, "#toast"), "{html}");
    assert!(
        html.contains("at least 1m") && !html.contains("schedule-forms"),
        "{html}"
    );
    let s = app.running.store.get_schedule(id).await.expect("get");
    assert_eq!(s.and_then(|s| s.every_ms), Some(900_000));

    let (status, _, _, html) = post(format!("/batches/{id}/schedule/remove"), "").await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("The schedule was removed"), "{html}");
    for b in ["schedule-pause", "schedule-resume", "schedule-remove"] {
        assert!(!has(&html, b), "{b}: {html}");
    }
    assert!(html.contains("<summary>Schedule…</summary>"), "{html}");
    // Pausing what is not there is a conflict with a reason.
    let (status, _, retarget, html) = post(format!("/batches/{id}/schedule/pause"), "").await;
    assert_eq!((status, retarget.as_str()), (409, "#toast"), "{html}");
    assert!(html.contains("no schedule"), "{html}");
    app.stop().await;
    db.cleanup().await;
}
