//! Conditional requests (DESIGN §16, issue 21 item 6): a new run of a task sends the
//! previous run's `ETag` / `Last-Modified`; a `304` keeps the previous counts, says
//! `"not_modified": true` and moves no body bytes. A crawl's re-runs (a retry of every page,
//! a scheduled run) ask the same way, page by page. Over the embedded default and the
//! production shape (Postgres, Redis, NSQ).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};
use wordtally::model::{JobResult, ResultRecord};

use crate::helpers::*;
use crate::pages::page_with;

/// A page server that honours validators like nginx: `/etag` sends an `ETag` only,
/// `/lm` a `Last-Modified` only; each answers `304` to a matching conditional request.
#[derive(Clone, Default)]
struct Origin {
    /// Pythons on `/etag` (its `ETag` is `"v<n>"`).
    etag_count: Arc<AtomicUsize>,
    /// Body bytes sent (200s only) and 304s answered.
    body_bytes: Arc<AtomicU64>,
    not_modified: Arc<AtomicUsize>,
    /// The conditional headers seen, in order: (path, If-None-Match, If-Modified-Since).
    seen: Arc<Mutex<Vec<Conditional>>>,
}

/// (path, If-None-Match, If-Modified-Since) of one request.
type Conditional = (String, Option<String>, Option<String>);

const LAST_MODIFIED: &str = "Wed, 21 Oct 2026 07:28:00 GMT";

impl Origin {
    fn note(&self, path: &str, h: &HeaderMap) {
        let get = |n: &str| h.get(n).and_then(|v| v.to_str().ok()).map(str::to_owned);
        if let Ok(mut g) = self.seen.lock() {
            g.push((
                path.to_owned(),
                get("if-none-match"),
                get("if-modified-since"),
            ));
        }
    }

    fn body(&self, n: usize) -> String {
        let b = page_with(n);
        self.body_bytes.fetch_add(b.len() as u64, Ordering::SeqCst);
        b
    }
}

async fn etag_page(State(o): State<Origin>, h: HeaderMap) -> Response {
    o.note("/etag", &h);
    let n = o.etag_count.load(Ordering::SeqCst);
    let tag = format!("\"v{n}\"");
    if h.get("if-none-match").and_then(|v| v.to_str().ok()) == Some(tag.as_str()) {
        o.not_modified.fetch_add(1, Ordering::SeqCst);
        return (StatusCode::NOT_MODIFIED, [("etag", tag)]).into_response();
    }
    (
        [
            ("content-type", "text/html; charset=utf-8".to_owned()),
            ("etag", tag),
        ],
        o.body(n),
    )
        .into_response()
}

async fn lm_page(State(o): State<Origin>, h: HeaderMap) -> Response {
    o.note("/lm", &h);
    if h.get("if-modified-since").and_then(|v| v.to_str().ok()) == Some(LAST_MODIFIED) {
        o.not_modified.fetch_add(1, Ordering::SeqCst);
        // nginx repeats no validator on a 304 for If-Modified-Since: the sent one stands.
        return StatusCode::NOT_MODIFIED.into_response();
    }
    (
        [
            ("content-type", "text/html; charset=utf-8"),
            ("last-modified", LAST_MODIFIED),
        ],
        o.body(5),
    )
        .into_response()
}

/// A server that answers 304 to everything (never sent validators): misbehaving.
async fn always_304() -> Response {
    StatusCode::NOT_MODIFIED.into_response()
}

async fn start_origin() -> (Origin, SocketAddr) {
    let origin = Origin::default();
    origin.etag_count.store(3, Ordering::SeqCst);
    let app = Router::new()
        .route("/etag", get(etag_page))
        .route("/lm", get(lm_page))
        .route("/always304", get(always_304))
        .with_state(origin.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind origin");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (origin, addr)
}

async fn get_json(app: &TestApp, path: &str) -> Value {
    app.client
        .get(app.url(path))
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .unwrap_or(Value::Null)
}

/// Retries every finished task of the batch and waits for the new run to finish.
async fn rerun(app: &TestApp, batch: i64, tasks: &[i64], run: i64) {
    let res = app
        .client
        .post(app.url(&format!("/api/batches/{batch}/retry")))
        .json(&json!({"outcomes": ["ok", "failed", "http_error"]}))
        .send()
        .await
        .expect("retry");
    assert_eq!(res.status(), 200);
    for id in tasks {
        eventually(
            &format!("task {id} run {run} finished"),
            Duration::from_secs(60),
            || async move {
                let t = app.task(*id).await;
                (t["run"] == run && t["status"] == "FINISHED").then_some(())
            },
        )
        .await;
    }
}

async fn conditional_story(app: &TestApp) {
    let (origin, addr) = start_origin().await;
    let etag_url = format!("http://{addr}/etag");
    let lm_url = format!("http://{addr}/lm");
    let (status, body) = app
        .submit(json!({"addresses": [etag_url, lm_url], "words": ["python", "great"]}))
        .await;
    assert_eq!(status, 201, "{body}");
    let batch = body["batch_id"].as_i64().expect("batch id");
    let ids: Vec<i64> = body["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .map(|t| t["id"].as_i64().expect("id"))
        .collect();
    let (etag_task, lm_task) = (ids[0], ids[1]);
    for id in &ids {
        eventually(
            "first run finished",
            Duration::from_secs(60),
            || async move { (app.task(*id).await["status"] == "FINISHED").then_some(()) },
        )
        .await;
    }
    let first = app.task(etag_task).await;
    assert_eq!(first["result"]["words_count"], 3, "{first}");
    assert_eq!(first["result"]["not_modified"], false);
    assert_eq!(first["result"]["etag"], "\"v3\"");
    let first_bytes = first["result"]["bytes_read"].as_i64().expect("bytes")
        + app.task(lm_task).await["result"]["bytes_read"]
            .as_i64()
            .expect("bytes");
    assert!(
        first_bytes > 400,
        "the first run reads the pages: {first_bytes}"
    );
    let served_first = origin.body_bytes.load(Ordering::SeqCst);
    let totals = get_json(app, &format!("/api/batches/{batch}")).await;
    assert_eq!(totals["words_total"], 8, "{totals}");

    // Run 2: nothing changed. Both answer 304; the counts carry over, no body moves.
    rerun(app, batch, &ids, 2).await;
    assert_eq!(origin.not_modified.load(Ordering::SeqCst), 2);
    assert_eq!(
        origin.body_bytes.load(Ordering::SeqCst),
        served_first,
        "an unchanged re-run moves no body bytes"
    );
    {
        let seen = origin.seen.lock().expect("seen").clone();
        let etag_reqs: Vec<_> = seen.iter().filter(|s| s.0 == "/etag").collect();
        assert_eq!(etag_reqs[0].1, None, "the first run is a plain request");
        assert_eq!(etag_reqs[1].1.as_deref(), Some("\"v3\""));
        let lm_reqs: Vec<_> = seen.iter().filter(|s| s.0 == "/lm").collect();
        assert_eq!(lm_reqs[1].2.as_deref(), Some(LAST_MODIFIED));
    }
    for (id, n) in [(etag_task, 3), (lm_task, 5)] {
        let t = app.task(id).await;
        let r = &t["result"];
        assert_eq!(t["outcome"], "ok", "{t}");
        assert_eq!(r["not_modified"], true, "{t}");
        assert_eq!(r["words_count"], n, "{t}");
        assert_eq!(r["counts"]["python"], n, "{t}");
        assert_eq!(r["http_status_code"], 304, "{t}");
        assert_eq!(r["bytes_read"], 0, "bytes_read stays honest: {t}");
        assert_eq!(t["history"][0]["result"]["not_modified"], false, "{t}");
    }
    let history = get_json(app, &format!("/api/tasks/{etag_task}/history")).await;
    let flags: Vec<&Value> = history["runs"]
        .as_array()
        .expect("runs")
        .iter()
        .map(|r| &r["not_modified"])
        .collect();
    assert_eq!(flags, [&json!(false), &json!(true)], "{history}");
    let totals = get_json(app, &format!("/api/batches/{batch}")).await;
    assert_eq!(totals["words_total"], 8, "carried counts count: {totals}");
    assert_eq!(totals["word_totals"]["python"], 8, "{totals}");
    assert_eq!(totals["ok"], 2, "{totals}");

    // Run 3: the ETag page changed; the other did not (its 304 chains on run 2's copy).
    origin.etag_count.store(7, Ordering::SeqCst);
    rerun(app, batch, &ids, 3).await;
    let t = app.task(etag_task).await;
    assert_eq!(t["result"]["not_modified"], false, "{t}");
    assert_eq!(t["result"]["words_count"], 7, "{t}");
    assert_eq!(t["result"]["etag"], "\"v7\"");
    let t = app.task(lm_task).await;
    assert_eq!(t["result"]["not_modified"], true, "{t}");
    assert_eq!(t["result"]["words_count"], 5, "{t}");
    let totals = get_json(app, &format!("/api/batches/{batch}")).await;
    assert_eq!(totals["words_total"], 12, "{totals}");

    // Run 4 sends the new ETag.
    rerun(app, batch, &ids, 4).await;
    let t = app.task(etag_task).await;
    assert_eq!(t["result"]["not_modified"], true, "{t}");
    assert_eq!(t["result"]["words_count"], 7, "{t}");
    let seen = origin.seen.lock().expect("seen").clone();
    let last = seen.iter().rev().find(|s| s.0 == "/etag").expect("seen");
    assert_eq!(last.1.as_deref(), Some("\"v7\""));

    // A 304 nobody asked for is not a page: the fetch fails, nothing is carried over.
    let ids = app
        .submit_addresses(&[format!("http://{addr}/always304")])
        .await;
    let t = eventually("304 task finished", Duration::from_secs(60), || async {
        let t = app.task(ids[0]).await;
        (t["status"] == "FINISHED").then_some(t)
    })
    .await;
    assert_eq!(t["outcome"], "failed", "{t}");
    assert_eq!(t["result"]["not_modified"], false, "{t}");
}

#[tokio::test]
async fn not_modified_pages_keep_their_counts_embedded() {
    let db = TestDb::sqlite();
    let app = TestApp::start(serve_args(&db.url, 2)).await;
    conditional_story(&app).await;
    app.stop().await;
    db.cleanup().await;
}

#[tokio::test]
async fn not_modified_pages_keep_their_counts_postgres_redis_nsq() {
    let stack = Stack::new().await;
    let app = TestApp::start(stack.serve_args(2)).await;
    conditional_story(&app).await;
    app.stop().await;
    stack.cleanup().await;
}

/// A 304 result for a run with no earlier count (a forged or confused message) is stored
/// as a failure with a reason, never as a count of nothing.
#[tokio::test]
async fn not_modified_without_an_earlier_count_is_a_failure() {
    let db = TestDb::sqlite();
    let app = TestApp::start(serve_args(&db.url, 0)).await;
    let ids = app
        .submit_addresses(&["http://127.0.0.1:9/x".to_owned()])
        .await;
    let bus = app.running.memory_bus.clone().expect("memory bus");
    let mut r = ResultRecord::error_only(String::new(), 1);
    r.error = None;
    r.http_status_code = Some(304);
    r.not_modified = true;
    use wordtally::bus::ResultPublisher;
    bus.publish(&JobResult {
        task_id: ids[0],
        run: 1,
        result: r,
        worker: "test".into(),
    })
    .await
    .expect("publish");
    let t = eventually("forged 304 stored", Duration::from_secs(30), || async {
        let t = app.task(ids[0]).await;
        (t["status"] == "FINISHED").then_some(t)
    })
    .await;
    assert_eq!(t["outcome"], "failed", "{t}");
    assert!(
        t["result"]["error"]
            .as_str()
            .unwrap_or("")
            .contains("304 Not Modified"),
        "{t}"
    );
    app.stop().await;
    db.cleanup().await;
}

/// A small site of linked pages that honours validators like nginx (both `ETag` and
/// `Last-Modified`; a `304` when either matches): `/site/{n}` for n in 0..SITE_PAGES,
/// each linking the next two. Page 3's content (and `ETag`) can be changed.
#[derive(Clone, Default)]
struct LinkedSite {
    /// Page 3's version: its `ETag` is `"p3-v<n>"`, and it has n pythons.
    page3: Arc<AtomicUsize>,
    /// Every request, in order.
    seen: Arc<Mutex<Vec<SiteRequest>>>,
}

const SITE_PAGES: usize = 6;

/// One request the linked site answered: (path, If-None-Match, If-Modified-Since, status).
type SiteRequest = (String, Option<String>, Option<String>, u16);

async fn linked_page(
    State(s): State<LinkedSite>,
    axum::extract::Path(n): axum::extract::Path<usize>,
    h: HeaderMap,
) -> Response {
    let get = |k: &str| h.get(k).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let (inm, ims) = (get("if-none-match"), get("if-modified-since"));
    let version = if n == 3 {
        s.page3.load(Ordering::SeqCst)
    } else {
        1
    };
    let tag = format!("\"p{n}-v{version}\"");
    let status = if n >= SITE_PAGES {
        StatusCode::NOT_FOUND
    } else if inm.as_deref() == Some(tag.as_str())
        || (inm.is_none() && ims.as_deref() == Some(LAST_MODIFIED))
    {
        StatusCode::NOT_MODIFIED
    } else {
        StatusCode::OK
    };
    if let Ok(mut g) = s.seen.lock() {
        g.push((format!("/site/{n}"), inm, ims, status.as_u16()));
    }
    match status {
        StatusCode::OK => {
            let links: String = (n + 1..=n + 2)
                .filter(|m| *m < SITE_PAGES)
                .map(|m| format!("<a href=\"/site/{m}\">page {m}</a> "))
                .collect();
            let pythons = "python ".repeat(if n == 3 { version } else { 1 });
            (
                [
                    ("content-type", "text/html; charset=utf-8".to_owned()),
                    ("etag", tag),
                    ("last-modified", LAST_MODIFIED.to_owned()),
                ],
                format!("<!doctype html><title>p{n}</title><p>{pythons}</p><p>{links}</p>"),
            )
                .into_response()
        }
        StatusCode::NOT_MODIFIED => (
            StatusCode::NOT_MODIFIED,
            [("etag", tag), ("last-modified", LAST_MODIFIED.to_owned())],
        )
            .into_response(),
        other => other.into_response(),
    }
}

impl LinkedSite {
    async fn start() -> (LinkedSite, SocketAddr) {
        let site = LinkedSite::default();
        site.page3.store(1, Ordering::SeqCst);
        let app = Router::new()
            .route("/site/{n}", get(linked_page))
            .with_state(site.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind site");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        (site, addr)
    }

    /// The requests seen from index `from` on.
    fn since(&self, from: usize) -> Vec<SiteRequest> {
        self.seen
            .lock()
            .map(|g| g[from.min(g.len())..].to_vec())
            .unwrap_or_default()
    }

    fn count(&self) -> usize {
        self.seen.lock().map(|g| g.len()).unwrap_or(0)
    }
}

/// Waits until run `run` of the batch has finished.
async fn wait_batch_run(app: &TestApp, batch: i64, run: i64) {
    eventually(
        &format!("run {run} of batch {batch} finished"),
        Duration::from_secs(60),
        || async move {
            let runs = get_json(app, &format!("/api/batches/{batch}/runs")).await;
            runs["runs"]
                .as_array()?
                .iter()
                .any(|r| r["run"] == run && r["finished_at"].is_i64())
                .then_some(())
        },
    )
    .await;
}

/// Every page request of a re-run carried the page's validators and was answered 304.
fn assert_all_conditional(reqs: &[SiteRequest], what: &str) {
    assert_eq!(
        reqs.len(),
        SITE_PAGES,
        "{what}: one request per page: {reqs:?}"
    );
    for (path, inm, ims, status) in reqs {
        let n = path.trim_start_matches("/site/");
        assert!(
            inm.as_deref()
                .is_some_and(|t| t.starts_with(&format!("\"p{n}-v"))),
            "{what}: {path} without its ETag: {reqs:?}"
        );
        assert_eq!(ims.as_deref(), Some(LAST_MODIFIED), "{what}: {path}");
        assert_eq!(*status, 304, "{what}: {path}");
    }
}

/// A crawl's re-runs are conditional too (DESIGN §15 + §16): a retry of every page and a
/// scheduled run of the crawl send each page's `ETag` and `Last-Modified`, an unchanged
/// page answers 304 and keeps its count and its links (no page is lost or added), and a
/// changed page is read again.
async fn crawl_rerun_story(app: &TestApp) {
    let (site, addr) = LinkedSite::start().await;
    let (status, body) = app
        .client
        .post(app.url("/api/crawls"))
        .json(&json!({"start": [format!("http://{addr}/site/0")], "obey_robots": false}))
        .send()
        .await
        .map(|r| (r.status().as_u16(), r))
        .expect("POST /api/crawls");
    let body: Value = body.json().await.expect("JSON");
    assert_eq!(status, 201, "{body}");
    let batch = body["batch_id"].as_i64().expect("batch");
    wait_batch_run(app, batch, 1).await;
    let first = site.since(0);
    assert_eq!(first.len(), SITE_PAGES, "{first:?}");
    assert!(
        first.iter().all(|r| r.1.is_none() && r.3 == 200),
        "{first:?}"
    );
    let totals = get_json(app, &format!("/api/batches/{batch}")).await;
    assert_eq!(
        (totals["total"].as_i64(), totals["words_total"].as_i64()),
        (Some(SITE_PAGES as i64), Some(SITE_PAGES as i64)),
        "{totals}"
    );

    // Run 2: the batch page's Retry with `ok` ticked.
    let mark = site.count();
    let res = app
        .client
        .post(app.url(&format!("/api/batches/{batch}/retry")))
        .json(&json!({"outcomes": ["ok"]}))
        .send()
        .await
        .expect("retry");
    assert_eq!(res.status(), 200);
    wait_batch_run(app, batch, 2).await;
    assert_all_conditional(&site.since(mark), "retry");

    // Run 3: the schedule starts it, after page 3 changed.
    site.page3.store(4, Ordering::SeqCst);
    let mark = site.count();
    let path = format!("/api/batches/{batch}/schedule");
    let res = app
        .client
        .put(app.url(&path))
        .json(&json!({"every": "1s"}))
        .send()
        .await
        .expect("schedule");
    assert_eq!(res.status(), 200);
    eventually("run 3 started", Duration::from_secs(30), || async {
        let runs = get_json(app, &format!("/api/batches/{batch}/runs")).await;
        runs["runs"]
            .as_array()?
            .iter()
            .any(|r| r["run"] == 3)
            .then_some(())
    })
    .await;
    let res = app
        .client
        .delete(app.url(&path))
        .send()
        .await
        .expect("unschedule");
    assert_eq!(res.status(), 204);
    wait_batch_run(app, batch, 3).await;
    let run3 = site.since(mark);
    let (changed, same): (Vec<_>, Vec<_>) = run3.into_iter().partition(|r| r.0 == "/site/3");
    assert_eq!(changed.len(), 1, "{changed:?}");
    assert_eq!(
        (changed[0].1.as_deref(), changed[0].3),
        (Some("\"p3-v1\""), 200),
        "the changed page is asked with its old ETag and read again"
    );
    assert_eq!(same.len(), SITE_PAGES - 1, "{same:?}");
    assert!(
        same.iter()
            .all(|r| r.1.is_some() && r.2.as_deref() == Some(LAST_MODIFIED) && r.3 == 304),
        "{same:?}"
    );
    let totals = get_json(app, &format!("/api/batches/{batch}")).await;
    assert_eq!(
        totals["total"].as_i64(),
        Some(SITE_PAGES as i64),
        "{totals}"
    );
    assert_eq!(
        totals["words_total"].as_i64(),
        Some(SITE_PAGES as i64 + 3),
        "unchanged pages keep their counts, page 3 has 4: {totals}"
    );
    assert_eq!(totals["ok"].as_i64(), Some(SITE_PAGES as i64), "{totals}");
}

#[tokio::test]
async fn crawl_reruns_are_conditional_embedded() {
    let db = TestDb::sqlite();
    let mut a = serve_args(&db.url, 2);
    a.schedule_tick_ms = 100;
    a.schedule_min_interval_ms = 1_000;
    let app = TestApp::start(a).await;
    crawl_rerun_story(&app).await;
    app.stop().await;
    db.cleanup().await;
}

#[tokio::test]
async fn crawl_reruns_are_conditional_postgres_redis_nsq() {
    let stack = Stack::new().await;
    let mut a = stack.serve_args(2);
    a.schedule_tick_ms = 100;
    a.schedule_min_interval_ms = 1_000;
    let app = TestApp::start(a).await;
    crawl_rerun_story(&app).await;
    app.stop().await;
    stack.cleanup().await;
}
