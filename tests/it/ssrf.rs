//! The SSRF guard through the whole pipeline (guard ON: no `--allow-private-targets`):
//! every spelling of loopback ends FINISHED with a "blocked" error and the page server
//! never sees a request; an allow-listed server cannot redirect the fetch to another
//! loopback port. The address-range checks themselves are unit-tested in
//! `src/fetch/guard.rs`; these tests only ever connect to loopback.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{Stack, TestApp, init_tracing, start_worker_in_process};
use crate::pages::PageServer;

/// `serve --workers 0` plus a worker with the guard on and `allow` as its allow-list.
async fn guarded_stack(allow: Vec<String>) -> (Stack, TestApp, wordtally::app::RunningWorker) {
    let stack = Stack::new().await;
    let app = TestApp::start(stack.serve_args(0)).await;
    let mut w = stack.worker_args(4);
    w.allow_private_targets = false;
    w.allow_targets = allow;
    let worker = start_worker_in_process(w).await;
    (stack, app, worker)
}

fn assert_blocked(t: &Value, what: &str) {
    assert_eq!(t["status"], "FINISHED", "{what}: {t}");
    let r = &t["result"];
    let err = r["error"].as_str().unwrap_or_default();
    assert!(
        err.starts_with("blocked by SSRF guard"),
        "{what}: a clear refusal expected: {t}"
    );
    assert!(
        err.contains("--allow-private-targets"),
        "{what}: the refusal says how to allow it: {err}"
    );
    assert_eq!(r["words_count"], Value::Null, "{what}: no count: {t}");
    assert_eq!(r["http_status_code"], Value::Null, "{what}: {t}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loopback_in_every_spelling_is_blocked_and_never_contacted() {
    init_tracing();
    let pages = PageServer::start_full_dual_stack().await;
    let port = pages.port();
    let (stack, app, worker) = guarded_stack(Vec::new()).await;

    let spellings: Vec<String> = [
        "127.0.0.1",
        "localhost",
        "foo.localhost",
        "a.b.LOCALHOST",
        "[::1]",
        "[::ffff:127.0.0.1]",
        "[0:0:0:0:0:0:0:1]",
        "0.0.0.0",
        "2130706433",
        "0x7f.0.0.1",
        "0177.0.0.1",
        "127.1",
        "127.0.0.2",
    ]
    .iter()
    .map(|h| format!("http://{h}:{port}/count/3"))
    .collect();
    // Without a scheme too, as a person would paste it.
    let mut addresses = spellings.clone();
    addresses.push(format!("localhost:{port}/count/3"));
    addresses.push(format!("127.0.0.1:{port}/count/3"));

    let (status, body) = app.submit(json!({ "addresses": addresses })).await;
    assert_eq!(status, 201, "{body}");
    assert!(
        body["rejected"].as_array().unwrap().is_empty(),
        "they are valid addresses; the guard refuses them at fetch time: {body}"
    );
    let ids: Vec<i64> = body["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids.len(), addresses.len());
    app.wait_finished(ids.len() as i64, Duration::from_secs(30))
        .await;
    for (id, spelling) in ids.iter().zip(&addresses) {
        let t = app.task(*id).await;
        assert_blocked(&t, spelling);
        assert_eq!(
            t["result"]["attempts"], 0,
            "{spelling}: refused before any request"
        );
    }
    assert_eq!(
        pages.total_hits(),
        0,
        "the page server (on 127.0.0.1 and [::1]) must never see a request"
    );

    worker.stop().await.unwrap();
    app.stop().await;
    stack.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_listed_server_cannot_redirect_to_another_loopback_port() {
    init_tracing();
    let a = PageServer::start_full().await;
    let b = PageServer::start_full_dual_stack().await;
    let (stack, app, worker) = guarded_stack(vec![a.addr.to_string()]).await;

    let via_a = |target: String| {
        let to: String = url::form_urlencoded::byte_serialize(target.as_bytes()).collect();
        a.url(&format!("/redirect?to={to}"))
    };
    let bp = b.port();
    let redirects = vec![
        via_a(format!("http://127.0.0.1:{bp}/count/3")),
        via_a(format!("http://localhost:{bp}/count/3")),
        via_a(format!("http://[::1]:{bp}/count/3")),
        via_a(format!("http://2130706433:{bp}/count/3")),
    ];
    let mut addresses = redirects.clone();
    // Controls: the allow-listed server itself, directly and through a redirect to itself.
    addresses.push(a.url("/count/4"));
    addresses.push(via_a(a.url("/count/5")));
    let ids = app.submit_addresses(&addresses).await;
    app.wait_finished(ids.len() as i64, Duration::from_secs(30))
        .await;

    for (id, address) in ids.iter().zip(&redirects) {
        let t = app.task(*id).await;
        assert_blocked(&t, address);
        assert_eq!(t["result"]["attempts"], 1, "{t}");
        let err = t["result"]["error"].as_str().unwrap();
        assert!(err.contains(&bp.to_string()), "the refusal names B: {err}");
    }
    let direct = app.task(ids[redirects.len()]).await;
    assert_eq!(direct["result"]["words_count"], 4, "{direct}");
    let same = app.task(ids[redirects.len() + 1]).await;
    assert_eq!(same["result"]["words_count"], 5, "{same}");

    assert_eq!(b.total_hits(), 0, "B must never be contacted");
    assert_eq!(
        a.hits("/redirect"),
        redirects.len() + 1,
        "A (allow-listed) is asked once per task"
    );
    assert_eq!(a.hits("/count/4"), 1);
    assert_eq!(a.hits("/count/5"), 1);

    worker.stop().await.unwrap();
    app.stop().await;
    stack.cleanup().await;
}
