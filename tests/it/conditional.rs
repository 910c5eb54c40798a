//! Conditional requests (DESIGN §16, issue 21 item 6): a new run of a task sends the
//! previous run's `ETag` / `Last-Modified`; a `304` keeps the previous counts, says
//! `"not_modified": true` and moves no body bytes. Over the embedded default and the
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
