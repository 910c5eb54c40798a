//! Webhooks (DESIGN §16, issue 21 item 5): a local receiver on 127.0.0.1 checks every
//! signature by recomputing the HMAC, sees the same delivery id on a retry after it
//! answered 500, is down and then up across a `serve` restart; the SSRF guard refuses
//! private targets at creation and again at delivery; hostile input stores nothing;
//! several `serve` processes on one Postgres database send each delivery once.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use serde_json::{Value, json};
use wordtally::config::ServeArgs;
use wordtally::model::now_ms;

use crate::helpers::*;
use crate::pages::PageServer;

/// One request the receiver got.
#[derive(Clone, Debug)]
struct Seen {
    event: String,
    delivery: String,
    signature: String,
    body: String,
    /// What the receiver answered.
    answered: u16,
}

/// A webhook receiver: answers 500 to the first `fail_first` requests, then 200.
#[derive(Clone, Default)]
struct Receiver {
    seen: Arc<Mutex<Vec<Seen>>>,
    fail_first: Arc<AtomicUsize>,
}

async fn receive(State(r): State<Receiver>, h: HeaderMap, body: Bytes) -> StatusCode {
    let get = |n: &str| {
        h.get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let fail = r
        .fail_first
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    let answered = if fail { 500 } else { 200 };
    if let Ok(mut g) = r.seen.lock() {
        g.push(Seen {
            event: get("x-wordtally-event"),
            delivery: get("x-wordtally-delivery"),
            signature: get("x-wordtally-signature"),
            body: String::from_utf8_lossy(&body).into_owned(),
            answered,
        });
    }
    StatusCode::from_u16(answered).unwrap_or(StatusCode::OK)
}

impl Receiver {
    /// Serves on `port` (bind it when the test wants the receiver up).
    async fn serve_on(&self, port: u16) -> tokio::task::JoinHandle<()> {
        let app = Router::new()
            .route("/hook", post(receive))
            .with_state(self.clone());
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind receiver");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        })
    }

    async fn start(&self) -> SocketAddr {
        let port = free_tcp_port();
        self.serve_on(port).await;
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().map(|g| g.clone()).unwrap_or_default()
    }
}

/// `serve` settings with a fast dispatcher and a retry schedule in milliseconds.
fn fast(mut a: ServeArgs) -> ServeArgs {
    a.webhooks.webhook_poll_ms = 40;
    a.webhooks.webhook_retry_unit_ms = 1;
    a.webhooks.webhook_timeout_ms = 2_000;
    a
}

/// The SSRF guard on, with only `allow` let through.
fn guarded(mut a: ServeArgs, allow: &[String]) -> ServeArgs {
    a.worker.allow_private_targets = false;
    a.worker.allow_targets = allow.to_vec();
    a
}

async fn send(app: &TestApp, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut req = app
        .client
        .request(method.parse().expect("method"), app.url(path));
    if let Some(b) = body {
        req = req.json(&b);
    }
    let res = req.send().await.expect("request");
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

/// Checks a received request the way a receiver should (recomputes the HMAC).
fn assert_signed(s: &Seen, secret: &str) {
    wordtally::notify::sign::verify(
        secret,
        &s.signature,
        s.body.as_bytes(),
        now_ms() / 1000,
        300,
    )
    .unwrap_or_else(|e| panic!("bad signature {:?} on {}: {e}", s.signature, s.body));
    // And by hand, as the README shows: HEX = HMAC-SHA256(secret, "t.body").
    let (t, v1) = s.signature.split_once(",v1=").expect("t=…,v1=…");
    let t: i64 = t.trim_start_matches("t=").parse().expect("timestamp");
    assert_eq!(
        v1,
        wordtally::notify::sign::signature(secret, t, s.body.as_bytes())
    );
    assert!(
        wordtally::notify::sign::verify("whsec_wrong", &s.signature, s.body.as_bytes(), t, 300)
            .is_err()
    );
}

async fn deliveries(app: &TestApp, hook: i64) -> Vec<Value> {
    let (status, log) = send(
        app,
        "GET",
        &format!("/api/webhooks/{hook}/deliveries"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{log}");
    log["deliveries"].as_array().cloned().unwrap_or_default()
}

async fn wait_delivery(
    app: &TestApp,
    hook: i64,
    what: &str,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    let pred = &pred;
    eventually(what, Duration::from_secs(60), || async move {
        deliveries(app, hook).await.into_iter().find(|d| pred(d))
    })
    .await
}

async fn submit_and_finish(app: &TestApp, pages: &PageServer, n: usize) -> i64 {
    let addresses: Vec<String> = (1..=n).map(|i| pages.url(&format!("/count/{i}"))).collect();
    let (status, body) = app.submit(json!({"addresses": addresses})).await;
    assert_eq!(status, 201, "{body}");
    let batch = body["batch_id"].as_i64().expect("batch");
    eventually("batch finished", Duration::from_secs(60), || async move {
        let (_, b) = send(app, "GET", &format!("/api/batches/{batch}"), None).await;
        b["finished_at"].as_i64().map(|_| ())
    })
    .await;
    batch
}

async fn webhook_story(app: &TestApp) {
    let pages = PageServer::start().await;
    let receiver = Receiver::default();
    let addr = receiver.start().await;
    let batch = submit_and_finish(app, &pages, 2).await;

    let (status, created) = send(
        app,
        "POST",
        &format!("/api/batches/{batch}/webhooks"),
        Some(json!({"url": format!("http://{addr}/hook"), "events": ["batch.finished", "task.changed"]})),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let hook = created["id"].as_i64().expect("id");
    let secret = created["secret"].as_str().expect("secret").to_owned();
    assert!(secret.starts_with("whsec_"));
    // The secret is shown once: no read route returns it.
    let (_, list) = send(app, "GET", &format!("/api/batches/{batch}/webhooks"), None).await;
    assert_eq!(list["webhooks"][0]["id"], hook, "{list}");
    assert!(!list.to_string().contains(&secret));
    assert!(
        !deliveries(app, hook)
            .await
            .iter()
            .any(|d| d.to_string().contains(&secret))
    );

    // A new run of the batch finishes: one batch.finished event. The receiver answers 500
    // first; the retry carries the same delivery id and body.
    receiver.fail_first.store(1, Ordering::SeqCst);
    let (status, r) = send(
        app,
        "POST",
        &format!("/api/batches/{batch}/retry"),
        Some(json!({"outcomes": ["ok"]})),
    )
    .await;
    assert_eq!((status, r["retried"].as_i64()), (200, Some(2)), "{r}");
    let d = wait_delivery(app, hook, "batch.finished delivered", |d| {
        d["event"] == "batch.finished" && d["state"] == "delivered"
    })
    .await;
    assert_eq!(d["attempts"], 2, "one 500, then the 200: {d}");
    assert_eq!(d["last_status"], 200, "{d}");
    let seen = receiver.seen();
    let finished: Vec<&Seen> = seen
        .iter()
        .filter(|s| s.event == "batch.finished")
        .collect();
    assert_eq!(finished.len(), 2, "{seen:?}");
    assert_eq!(finished[0].answered, 500);
    assert_eq!(finished[1].answered, 200);
    assert_eq!(
        finished[0].delivery, finished[1].delivery,
        "the idempotency key is stable"
    );
    assert_eq!(finished[0].body, finished[1].body, "the same event");
    assert_eq!(
        finished[0].delivery,
        d["event_id"].as_str().expect("event id")
    );
    for s in &finished {
        assert_signed(s, &secret);
    }
    let body: Value = serde_json::from_str(&finished[1].body).expect("JSON body");
    assert_eq!(body["type"], "batch.finished");
    assert_eq!(body["id"], d["event_id"]);
    assert_eq!(body["batch_id"], batch);
    assert_eq!(body["data"]["batch"]["total"], 2, "{body}");
    assert_eq!(body["data"]["batch"]["ok"], 2, "{body}");
    assert_eq!(body["data"]["batch"]["words_total"], 3, "{body}");

    // The test button's API: a webhook.test event, signed like the rest.
    let (status, t) = send(app, "POST", &format!("/api/webhooks/{hook}/test"), None).await;
    assert_eq!(status, 202, "{t}");
    let test_id = t["event_id"].as_str().expect("event id").to_owned();
    wait_delivery(app, hook, "test delivered", |d| {
        d["event_id"] == test_id.as_str() && d["state"] == "delivered"
    })
    .await;
    let seen = receiver.seen();
    let test = seen
        .iter()
        .find(|s| s.delivery == test_id)
        .expect("test received");
    assert_eq!(test.event, "webhook.test");
    assert_signed(test, &secret);

    // The batch page shows the log and the test button (page form without JavaScript).
    let page = app
        .client
        .get(app.url(&format!("/batches/{batch}/webhooks")))
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("text");
    assert!(page.contains("Send a test event"), "{page}");
    assert!(page.contains(&format!("http://{addr}/hook")));
    assert!(page.contains("batch.finished") && page.contains("delivered"));
    assert!(
        !page.contains(&secret),
        "the page never shows the secret again"
    );
    let res = app
        .client
        .post(app.url(&format!("/batches/{batch}/webhooks/{hook}/test")))
        .send()
        .await
        .expect("test form");
    assert_eq!(res.status(), 303, "a plain form post redirects back");
    eventually("page test delivered", Duration::from_secs(30), || async {
        let n = receiver
            .seen()
            .iter()
            .filter(|s| s.event == "webhook.test")
            .count();
        (n >= 2).then_some(())
    })
    .await;
    let batch_page = app
        .client
        .get(app.url(&format!("/batches/{batch}")))
        .send()
        .await
        .expect("batch page")
        .text()
        .await
        .expect("text");
    assert!(batch_page.contains(&format!("/batches/{batch}/webhooks")));

    // Delete: 204, then its log is gone and nothing more is sent.
    let (status, _) = send(app, "DELETE", &format!("/api/webhooks/{hook}"), None).await;
    assert_eq!(status, 204);
    let (status, _) = send(
        app,
        "GET",
        &format!("/api/webhooks/{hook}/deliveries"),
        None,
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = send(app, "DELETE", &format!("/api/webhooks/{hook}"), None).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn webhooks_are_signed_retried_and_logged_embedded() {
    let db = TestDb::sqlite();
    let app = TestApp::start(fast(serve_args(&db.url, 2))).await;
    webhook_story(&app).await;
    app.stop().await;
    db.cleanup().await;
}

#[tokio::test]
async fn webhooks_are_signed_retried_and_logged_postgres_redis_nsq() {
    let stack = Stack::new().await;
    let app = TestApp::start(fast(stack.serve_args(2))).await;
    webhook_story(&app).await;
    app.stop().await;
    stack.cleanup().await;
}

/// The receiver is down; attempts fail and are logged; `serve` restarts; the receiver
/// comes up; the same delivery (same id) arrives: deliveries are rows, not memory.
#[tokio::test]
async fn deliveries_survive_a_restart_while_the_receiver_is_down() {
    let db = TestDb::sqlite();
    let app = TestApp::start(fast(serve_args(&db.url, 0))).await;
    let (_, body) = app
        .submit(json!({"addresses": ["http://127.0.0.1:9/never"]}))
        .await;
    let batch = body["batch_id"].as_i64().expect("batch");
    let port = free_tcp_port();
    let (status, created) = send(
        &app,
        "POST",
        &format!("/api/batches/{batch}/webhooks"),
        Some(json!({"url": format!("http://127.0.0.1:{port}/hook"), "events": ["batch.finished"]})),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let hook = created["id"].as_i64().expect("id");
    let secret = created["secret"].as_str().expect("secret").to_owned();
    let (_, t) = send(&app, "POST", &format!("/api/webhooks/{hook}/test"), None).await;
    let event_id = t["event_id"].as_str().expect("event id").to_owned();
    let failed = wait_delivery(&app, hook, "two failed attempts", |d| {
        d["attempts"].as_i64() >= Some(2)
    })
    .await;
    assert_eq!(failed["state"], "pending", "{failed}");
    assert!(failed["last_status"].is_null(), "{failed}");
    assert!(
        failed["last_error"]
            .as_str()
            .unwrap_or("")
            .contains("connect"),
        "{failed}"
    );
    app.stop().await;

    let receiver = Receiver::default();
    let _up = receiver.serve_on(port).await;
    let app = TestApp::start(fast(serve_args(&db.url, 0))).await;
    let d = wait_delivery(&app, hook, "delivered after the restart", |d| {
        d["state"] == "delivered"
    })
    .await;
    assert!(d["attempts"].as_i64() >= Some(3), "{d}");
    let seen = receiver.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].delivery, event_id);
    assert_signed(&seen[0], &secret);
    app.stop().await;
    db.cleanup().await;
}

/// The SSRF guard on webhook URLs: private targets are refused at creation (nothing
/// stored) unless allow-listed; an allow-listed target that a later configuration no longer
/// allows is refused at delivery and given up at once, with the guard's reason shown.
#[tokio::test]
async fn webhook_targets_pass_the_ssrf_guard() {
    let db = TestDb::sqlite();
    let receiver = Receiver::default();
    let addr = receiver.start().await;
    let allowed = format!("127.0.0.1:{}", addr.port());
    let app = TestApp::start(fast(guarded(serve_args(&db.url, 0), &[allowed]))).await;
    let (_, body) = app
        .submit(json!({"addresses": ["http://127.0.0.1:9/never"]}))
        .await;
    let batch = body["batch_id"].as_i64().expect("batch");
    let path = format!("/api/batches/{batch}/webhooks");
    for url in [
        "http://127.0.0.1:9/hook".to_owned(),
        format!("http://127.0.0.1:{}/hook", addr.port() ^ 1),
        "http://localhost/hook".to_owned(),
        "http://10.0.0.1/hook".to_owned(),
        "http://169.254.169.254/latest/meta-data".to_owned(),
        "http://[::1]/hook".to_owned(),
        "http://192.168.1.1/hook".to_owned(),
    ] {
        let (status, e) = send(
            &app,
            "POST",
            &path,
            Some(json!({"url": url, "events": ["batch.finished"]})),
        )
        .await;
        assert_eq!(status, 422, "{url}: {e}");
        assert!(
            e["error"].as_str().unwrap_or("").contains("SSRF"),
            "{url}: {e}"
        );
    }
    let (_, list) = send(&app, "GET", &path, None).await;
    assert_eq!(list["webhooks"], json!([]), "nothing stored: {list}");

    let (status, created) = send(
        &app,
        "POST",
        &path,
        Some(json!({"url": format!("http://{addr}/hook"), "events": ["batch.finished"]})),
    )
    .await;
    assert_eq!(status, 201, "the allow-list lets it through: {created}");
    let hook = created["id"].as_i64().expect("id");
    app.stop().await;

    // The operator removes the allow-list entry: the delivery is refused on the way out.
    let app = TestApp::start(fast(guarded(serve_args(&db.url, 0), &[]))).await;
    send(&app, "POST", &format!("/api/webhooks/{hook}/test"), None).await;
    let d = wait_delivery(&app, hook, "refused delivery gave up", |d| {
        d["state"] == "failed"
    })
    .await;
    assert_eq!(d["attempts"], 1, "no retry of a refused target: {d}");
    assert!(
        d["last_error"].as_str().unwrap_or("").contains("SSRF"),
        "{d}"
    );
    assert!(receiver.seen().is_empty(), "nothing reached the receiver");
    let page = app
        .client
        .get(app.url(&format!("/batches/{batch}/webhooks")))
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("text");
    assert!(page.contains("gave up"), "the state is shown: {page}");
    app.stop().await;
    db.cleanup().await;
}

/// Hostile input: 4xx with a reason, nothing stored.
#[tokio::test]
async fn webhook_routes_refuse_bad_input() {
    let db = TestDb::sqlite();
    let app = TestApp::start(fast(serve_args(&db.url, 0))).await;
    let (_, body) = app
        .submit(json!({"addresses": ["http://127.0.0.1:9/never"]}))
        .await;
    let batch = body["batch_id"].as_i64().expect("batch");
    let path = format!("/api/batches/{batch}/webhooks");
    let ok_url = "http://127.0.0.1:9/hook";
    let cases: Vec<(Value, u16)> = vec![
        (json!({"url": ok_url}), 422),
        (json!({"events": ["batch.finished"]}), 422),
        (json!({"url": ok_url, "events": []}), 422),
        (json!({"url": ok_url, "events": ["batch.started"]}), 422),
        (json!({"url": ok_url, "events": "batch.finished"}), 422),
        (
            json!({"url": ok_url, "events": ["batch.finished"], "secret": "mine"}),
            422,
        ),
        (
            json!({"url": "ftp://127.0.0.1/x", "events": ["batch.finished"]}),
            422,
        ),
        (
            json!({"url": "javascript:alert(1)", "events": ["batch.finished"]}),
            422,
        ),
        (json!({"url": "http://", "events": ["batch.finished"]}), 422),
        (
            json!({"url": "http://u:p@127.0.0.1:9/", "events": ["batch.finished"]}),
            422,
        ),
        (
            json!({"url": format!("http://127.0.0.1:9/{}", "a".repeat(3000)), "events": ["batch.finished"]}),
            422,
        ),
        (json!({"url": 5, "events": ["batch.finished"]}), 422),
        (json!(["not", "an", "object"]), 422),
    ];
    for (body, want) in cases {
        let (status, e) = send(&app, "POST", &path, Some(body.clone())).await;
        assert_eq!(status, want, "{body}: {e}");
        assert!(
            e["error"].as_str().is_some_and(|s| !s.is_empty()),
            "{body}: {e}"
        );
    }
    // Not JSON, huge bodies, wrong ids.
    let res = app
        .client
        .post(app.url(&path))
        .header("content-type", "application/json")
        .body("{\"url\": ")
        .send()
        .await
        .expect("post");
    assert_eq!(res.status(), 400);
    for size in [20 * 1024, 2 * 1024 * 1024] {
        let huge = json!({"url": format!("http://127.0.0.1:9/{}", "a".repeat(size)), "events": ["batch.finished"]});
        let (status, e) = send(&app, "POST", &path, Some(huge)).await;
        assert_eq!(status, 413, "{size}: {e}");
    }
    let (status, _) = send(
        &app,
        "POST",
        "/api/batches/abc/webhooks",
        Some(json!({"url": ok_url, "events": ["batch.finished"]})),
    )
    .await;
    assert_eq!(status, 400);
    let (status, _) = send(
        &app,
        "POST",
        "/api/batches/999999/webhooks",
        Some(json!({"url": ok_url, "events": ["batch.finished"]})),
    )
    .await;
    assert_eq!(status, 404);
    for (m, p) in [
        ("GET", "/api/webhooks/999999/deliveries"),
        ("DELETE", "/api/webhooks/999999"),
        ("POST", "/api/webhooks/999999/test"),
    ] {
        let (status, _) = send(&app, m, p, None).await;
        assert_eq!(status, 404, "{m} {p}");
    }
    let (status, _) = send(&app, "GET", "/api/webhooks/x/deliveries", None).await;
    assert_eq!(status, 400);
    let (status, _) = send(&app, "GET", "/api/webhooks/1/deliveries?limit=abc", None).await;
    assert_eq!(status, 400);
    // The page form: unknown fields and a missing URL are refused too.
    let res = app
        .client
        .post(app.url(&format!("/batches/{batch}/webhooks")))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("events=batch.finished&evil=1")
        .send()
        .await
        .expect("form");
    assert_eq!(res.status(), 400);
    let (_, list) = send(&app, "GET", &path, None).await;
    assert_eq!(list["webhooks"], json!([]), "nothing stored: {list}");
    // At most ten per batch.
    for i in 0..10 {
        let (status, _) = send(
            &app,
            "POST",
            &path,
            Some(json!({"url": format!("http://127.0.0.1:9/{i}"), "events": ["batch.finished"]})),
        )
        .await;
        assert_eq!(status, 201);
    }
    let (status, e) = send(
        &app,
        "POST",
        &path,
        Some(json!({"url": ok_url, "events": ["batch.finished"]})),
    )
    .await;
    assert_eq!(status, 409, "{e}");
    app.stop().await;
    db.cleanup().await;
}

/// Three `serve` processes on one Postgres database dispatch the same outbox: every
/// delivery reaches the receiver exactly once (the claim is a database update).
#[tokio::test]
async fn several_serve_processes_send_each_delivery_once() {
    let db = TestDb::postgres().await;
    let receiver = Receiver::default();
    let addr = receiver.start().await;
    let mut apps = Vec::new();
    for _ in 0..3 {
        let mut a = fast(serve_args(&db.url, 0));
        a.webhooks.webhook_poll_ms = 10;
        apps.push(TestApp::start(a).await);
    }
    let (_, body) = apps[0]
        .submit(json!({"addresses": ["http://127.0.0.1:9/never"]}))
        .await;
    let batch = body["batch_id"].as_i64().expect("batch");
    let (status, created) = send(
        &apps[0],
        "POST",
        &format!("/api/batches/{batch}/webhooks"),
        Some(json!({"url": format!("http://{addr}/hook"), "events": ["batch.finished"]})),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let hook = created["id"].as_i64().expect("id");
    let n = 60;
    for i in 0..n {
        let (status, _) = send(
            &apps[i % 3],
            "POST",
            &format!("/api/webhooks/{hook}/test"),
            None,
        )
        .await;
        assert_eq!(status, 202);
    }
    eventually(
        "every test event delivered",
        Duration::from_secs(60),
        || async {
            let (_, log) = send(
                &apps[0],
                "GET",
                &format!("/api/webhooks/{hook}/deliveries?limit=500"),
                None,
            )
            .await;
            let d = log["deliveries"].as_array()?.clone();
            (d.len() == n && d.iter().all(|d| d["state"] == "delivered")).then_some(())
        },
    )
    .await;
    let mut per_id: HashMap<String, usize> = HashMap::new();
    for s in receiver.seen() {
        *per_id.entry(s.delivery).or_default() += 1;
    }
    assert_eq!(per_id.len(), n);
    assert!(
        per_id.values().all(|&c| c == 1),
        "each delivery once: {per_id:?}"
    );
    for app in apps {
        app.stop().await;
    }
    db.cleanup().await;
}

/// `task.changed`: a new run whose count differs from the previous run's stores a change
/// (H-sched's `change` row) and, in the same transaction, one delivery per subscribed
/// webhook; its body is the change as `GET /api/changes` lists it. A webhook subscribed to
/// `task.changed` only gets no `batch.finished`.
async fn task_changed_story(app: &TestApp) {
    let pythons = Arc::new(AtomicUsize::new(2));
    let page = {
        let n = pythons.clone();
        Router::new().route(
            "/changing",
            axum::routing::get(move || {
                let n = n.load(Ordering::SeqCst);
                async move {
                    (
                        [("content-type", "text/html; charset=utf-8")],
                        crate::pages::page_with(n),
                    )
                }
            }),
        )
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let page_addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, page).await;
    });
    let receiver = Receiver::default();
    let addr = receiver.start().await;
    let (status, body) = app
        .submit(json!({"addresses": [format!("http://{page_addr}/changing")]}))
        .await;
    assert_eq!(status, 201, "{body}");
    let batch = body["batch_id"].as_i64().expect("batch");
    let task = body["tasks"][0]["id"].as_i64().expect("task");
    eventually("run 1 finished", Duration::from_secs(60), || async {
        (app.task(task).await["status"] == "FINISHED").then_some(())
    })
    .await;
    let (status, created) = send(
        app,
        "POST",
        &format!("/api/batches/{batch}/webhooks"),
        Some(json!({"url": format!("http://{addr}/hook"), "events": ["task.changed"]})),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let hook = created["id"].as_i64().expect("id");
    let secret = created["secret"].as_str().expect("secret").to_owned();

    pythons.store(5, Ordering::SeqCst);
    let (status, _) = send(
        app,
        "POST",
        &format!("/api/batches/{batch}/retry"),
        Some(json!({"outcomes": ["ok"]})),
    )
    .await;
    assert_eq!(status, 200);
    let d = wait_delivery(app, hook, "task.changed delivered", |d| {
        d["event"] == "task.changed" && d["state"] == "delivered"
    })
    .await;
    let seen = receiver.seen();
    let got = seen
        .iter()
        .find(|s| s.delivery == d["event_id"].as_str().unwrap_or("-"))
        .expect("received");
    assert_signed(got, &secret);
    let body: Value = serde_json::from_str(&got.body).expect("json");
    let change = &body["data"]["change"];
    assert_eq!(body["type"], "task.changed");
    assert_eq!(change["task_id"], task, "{body}");
    assert_eq!(change["batch_id"], batch, "{body}");
    assert_eq!(change["run"], 2, "{body}");
    assert_eq!(change["word"], "python", "{body}");
    assert_eq!(
        (change["before"].as_i64(), change["after"].as_i64()),
        (Some(2), Some(5))
    );
    let (_, listed) = send(app, "GET", &format!("/api/changes?batch={batch}"), None).await;
    assert_eq!(listed["changes"][0]["id"], change["id"], "{listed}");
    // Exactly what the runs imply: one change, one delivery, no batch.finished.
    eventually("the batch finished", Duration::from_secs(30), || async {
        let (_, b) = send(app, "GET", &format!("/api/batches/{batch}"), None).await;
        b["finished_at"].as_i64().map(|_| ())
    })
    .await;
    let all = deliveries(app, hook).await;
    assert_eq!(all.len(), 1, "{all:?}");
    assert!(receiver.seen().iter().all(|s| s.event == "task.changed"));
}

#[tokio::test]
async fn task_changed_is_delivered_embedded() {
    let db = TestDb::sqlite();
    let app = TestApp::start(fast(serve_args(&db.url, 2))).await;
    task_changed_story(&app).await;
    app.stop().await;
    db.cleanup().await;
}

#[tokio::test]
async fn task_changed_is_delivered_postgres_redis_nsq() {
    let stack = Stack::new().await;
    let app = TestApp::start(fast(stack.serve_args(2))).await;
    task_changed_story(&app).await;
    app.stop().await;
    stack.cleanup().await;
}
