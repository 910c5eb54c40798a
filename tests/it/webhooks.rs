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

/// Runs the real `wordtally` binary with `args` (no token from the environment); its exit
/// status, stdout and stderr.
async fn wordtally_cli(args: &[String]) -> (bool, String, String) {
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_wordtally"))
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .env_remove("WORDTALLY_TOKEN")
        .env_remove("WORDTALLY_SERVER")
        .kill_on_drop(true)
        .spawn()
        .expect("spawn wordtally");
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("wordtally exited")
        .expect("wordtally output");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `wordtally webhook` against a served app and a local receiver: create prints the id
/// and the secret once, list shows it, test waits for the signed delivery (and exits 1
/// when the receiver answers 500), deliveries prints the log, remove removes it. Hostile
/// input — a bad URL, a private address the SSRF guard refuses, an unknown event, a
/// missing batch or webhook — exits non-zero with the server's reason and stores nothing.
#[tokio::test]
async fn command_line_webhooks_create_list_test_show_and_remove() {
    let db = TestDb::sqlite();
    let receiver = Receiver::default();
    let addr = receiver.start().await;
    let allowed = format!("127.0.0.1:{}", addr.port());
    let app = TestApp::start(fast(guarded(serve_args(&db.url, 0), &[allowed]))).await;
    let (_, body) = app
        .submit(json!({"addresses": ["http://127.0.0.1:9/never"]}))
        .await;
    let batch = body["batch_id"].as_i64().expect("batch");
    // `--server` after the action: it is shared by every action of the verb.
    let cli = |args: &[&str]| {
        let mut v: Vec<String> = std::iter::once("webhook")
            .chain(args.iter().copied())
            .map(String::from)
            .collect();
        v.extend(["--server".to_string(), app.base.clone()]);
        async move { wordtally_cli(&v).await }
    };
    let batch_arg = batch.to_string();
    let b = batch_arg.as_str();
    let hook_arg = format!("http://{addr}/hook");
    let hook_url = hook_arg.as_str();

    let (ok, out, err) = cli(&[
        "create",
        b,
        "--url",
        hook_url,
        "--event",
        "batch.finished",
        "--event",
        "task.changed",
    ])
    .await;
    assert!(ok, "{out}{err}");
    let first = out.lines().next().unwrap_or_default();
    let hook: i64 = first
        .strip_prefix("webhook ")
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no id in {out:?}"));
    assert_eq!(
        first,
        format!("webhook {hook} for batch {batch}: {hook_url} (batch.finished, task.changed)")
    );
    let secret = out
        .lines()
        .find_map(|l| l.strip_prefix("secret "))
        .unwrap_or_else(|| panic!("no secret in {out:?}"))
        .to_owned();
    assert!(secret.starts_with("whsec_"), "{out}");
    assert!(err.contains("won't be shown again"), "{err}");
    let hook_arg = hook.to_string();
    let h = hook_arg.as_str();

    let (ok, out, err) = cli(&["list", b]).await;
    assert!(ok, "{err}");
    assert!(
        out.starts_with(&format!(
            "{hook}\t{hook_url}\tbatch.finished,task.changed\tcreated "
        )),
        "{out}"
    );
    assert!(!out.contains(&secret), "the secret is shown once: {out}");

    // A test event: the command waits for the signed delivery.
    let (ok, out, err) = cli(&["test", h]).await;
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("\twebhook.test\tdelivered\tattempts 1\tstatus 200\terror -"),
        "{out}"
    );
    let seen = receiver.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].event, "webhook.test");
    assert_signed(&seen[0], &secret);
    assert!(
        err.contains("queued as delivery") && err.contains(&seen[0].delivery),
        "{err}"
    );

    // The receiver answers 500: the command says so and exits 1; the server retries, and
    // delivers once the receiver takes it.
    receiver.fail_first.store(1_000, Ordering::SeqCst);
    let (ok, out, err) = cli(&["test", h]).await;
    assert!(!ok, "{out}{err}");
    assert!(out.contains("\twebhook.test\t"), "{out}");
    assert!(out.contains("\tstatus 500\t"), "{out}");
    assert!(
        err.contains("did not take the test event (status 500"),
        "{err}"
    );
    receiver.fail_first.store(0, Ordering::SeqCst);
    eventually("the retry delivered", Duration::from_secs(60), || async {
        let log = deliveries(&app, hook).await;
        (log.len() == 2 && log.iter().all(|d| d["state"] == "delivered")).then_some(())
    })
    .await;
    let (ok, out, err) = cli(&["deliveries", h]).await;
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(
        lines[0].contains("\twebhook.test\tdelivered\tattempts ")
            && !lines[0].contains("\tattempts 1\t")
            && lines[0].contains("\tstatus 200\terror -"),
        "newest first: 500s, then the 200: {out}"
    );
    assert!(lines[1].contains("\tattempts 1\tstatus 200\t"), "{out}");
    let (ok, out, _) = cli(&["deliveries", h, "--limit", "1"]).await;
    assert!(ok);
    assert_eq!(out.lines().count(), 1, "{out}");

    // Hostile input: non-zero with the server's reason, nothing stored.
    for (args, reason) in [
        (
            vec![
                "create",
                b,
                "--url",
                "ftp://127.0.0.1/x",
                "--event",
                "batch.finished",
            ],
            "refused (422 Unprocessable Entity): the URL must start with http:// or https://",
        ),
        (
            vec![
                "create",
                b,
                "--url",
                "not a url",
                "--event",
                "batch.finished",
            ],
            "the URL is not valid",
        ),
        (
            vec![
                "create",
                b,
                "--url",
                "http://10.0.0.1/hook",
                "--event",
                "batch.finished",
            ],
            "SSRF",
        ),
        (
            vec![
                "create",
                b,
                "--url",
                "http://127.0.0.1:9/hook",
                "--event",
                "batch.finished",
            ],
            "SSRF",
        ),
        (
            vec!["create", b, "--url", hook_url, "--event", "batch.started"],
            "unknown event \"batch.started\"",
        ),
        (
            vec![
                "create",
                "999999",
                "--url",
                hook_url,
                "--event",
                "batch.finished",
            ],
            "cannot add the webhook to batch 999999: the server refused (404 Not Found)",
        ),
        (vec!["list", "999999"], "the server refused (404 Not Found)"),
        (
            vec!["deliveries", "999999"],
            "the server refused (404 Not Found)",
        ),
        (vec!["test", "999999"], "the server refused (404 Not Found)"),
        (
            vec!["remove", "999999"],
            "the server refused (404 Not Found)",
        ),
    ] {
        let (ok, out, err) = cli(&args).await;
        assert!(!ok, "{args:?} succeeded: {out}");
        assert!(
            err.starts_with("wordtally: error: ") && err.contains(reason),
            "{args:?}: {err}"
        );
    }
    // Usage errors are clap's (exit status 2), before any request.
    let (ok, _, err) = cli(&["create", b, "--url", hook_url]).await;
    assert!(!ok);
    assert!(err.contains("--event <EVENT>"), "{err}");
    // No server there.
    let (ok, _, err) = wordtally_cli(&[
        "webhook".into(),
        "list".into(),
        b.to_string(),
        "--server".into(),
        format!("http://127.0.0.1:{}", free_tcp_port()),
    ])
    .await;
    assert!(!ok);
    assert!(err.contains("cannot reach the server"), "{err}");
    let (_, list) = send(&app, "GET", &format!("/api/batches/{batch}/webhooks"), None).await;
    assert_eq!(
        list["webhooks"].as_array().map(Vec::len),
        Some(1),
        "nothing stored: {list}"
    );

    let (ok, out, err) = cli(&["remove", h]).await;
    assert!(ok, "{err}");
    assert_eq!(out.trim(), format!("webhook {hook} removed"));
    let (ok, out, _) = cli(&["list", b]).await;
    assert!(ok);
    assert!(out.contains("has no webhooks"), "{out}");
    app.stop().await;
    db.cleanup().await;
}
