//! The embedded default (SQLite file, in-process queue and bus): the JSON API, the form
//! with and without htmx, polling, hostile request bodies, and a restart.

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::helpers::{TestApp, TestDb, serve_args};
use crate::pages::{PageServer, page_with};

async fn body_text(res: axum::response::Response) -> String {
    let bytes = res.into_body().collect().await.expect("body").to_bytes();
    String::from_utf8_lossy(&bytes).into_owned()
}

async fn embedded(workers: usize) -> (TestApp, TestDb) {
    let db = TestDb::sqlite();
    let app = TestApp::start(serve_args(&db.url, workers)).await;
    (app, db)
}

#[tokio::test]
async fn api_counts_pages_end_to_end() {
    let pages = PageServer::start().await;
    let (app, db) = embedded(4).await;

    let mut addresses: Vec<String> = (0..7).map(|n| pages.url(&format!("/count/{n}"))).collect();
    addresses.push(pages.url("/plain"));
    addresses.push(pages.url("/status/404"));
    // Without a scheme, http:// is assumed (as the original service did).
    addresses.push(
        pages
            .url("/count/5")
            .trim_start_matches("http://")
            .to_string(),
    );
    let ids = app.submit_addresses(&addresses).await;
    assert_eq!(ids.len(), addresses.len());

    // Raw scope, case-sensitive, substring: Python's str.count on the body.
    let (status, raw) = app
        .submit(
            json!({"addresses": [pages.url("/count/3")], "word": "python", "scope": "raw",
                       "case_sensitive": true, "whole_word": false}),
        )
        .await;
    assert_eq!(status, 201, "{raw}");
    let raw_id = raw["tasks"][0]["id"].as_i64().unwrap();

    app.wait_finished(ids.len() as i64 + 1, Duration::from_secs(30))
        .await;
    for (i, id) in ids.iter().take(7).enumerate() {
        let t = app.task(*id).await;
        assert_eq!(t["status"], "FINISHED");
        assert_eq!(t["result"]["words_count"], json!(i), "page /count/{i}: {t}");
        assert_eq!(t["result"]["http_status_code"], 200);
        assert_eq!(t["result"]["charset"], "UTF-8");
        assert_eq!(t["result"]["truncated"], false);
    }
    let plain = app.task(ids[7]).await;
    assert_eq!(plain["result"]["words_count"], 3, "{plain}");
    let not_found = app.task(ids[8]).await;
    assert_eq!(not_found["result"]["http_status_code"], 404);
    assert_eq!(
        not_found["result"]["words_count"], 2,
        "a 4xx body is still counted"
    );
    assert_eq!(not_found["result"]["attempts"], 1, "a 4xx is not retried");
    let no_scheme = app.task(ids[9]).await;
    assert_eq!(no_scheme["address"], pages.url("/count/5"));
    assert_eq!(no_scheme["result"]["words_count"], 5);
    let raw = app.task(raw_id).await;
    let expected = page_with(3).matches("python").count();
    assert_eq!(raw["result"]["words_count"], json!(expected), "{raw}");

    // Prometheus metrics. The recorder is process-wide and other tests run beside this
    // one, so counters are at least what this test did.
    let text = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let value = |series: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {series} in /metrics:\n{text}"))
    };
    let n = (ids.len() + 1) as f64;
    assert!(value("wordtally_tasks_submitted_total") >= n);
    assert!(value("wordtally_results_total{outcome=\"stored\"}") >= n);
    assert!(value("wordtally_fetches_total{outcome=\"ok\"}") >= n - 1.0);
    assert!(
        value("wordtally_fetches_total{outcome=\"http_error\"}") >= 1.0,
        "the 404"
    );
    assert!(value("wordtally_fetch_duration_seconds_count") >= n);
    assert!(text.contains("wordtally_tasks{status=\"FINISHED\"}"));
    assert!(text.contains("wordtally_db_batch_size_bucket"));

    // The list endpoint pages newest first.
    let list: Value = app
        .client
        .get(app.url("/api/tasks?limit=5"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["tasks"].as_array().unwrap().len(), 5);
    assert_eq!(list["tasks"][0]["id"], json!(raw_id));
    assert_eq!(list["stats"]["finished"], json!(ids.len() + 1));
    assert!(list["next_before"].is_i64());

    app.stop().await;
    db.cleanup().await;
}

#[tokio::test]
async fn api_rejects_bad_input_with_reasons() {
    let (app, db) = embedded(0).await;
    let router = app.running.router();
    let post = |body: &'static str| {
        Request::post("/api/tasks")
            .header("content-type", "application/json")
            .body(Body::from(body))
            .unwrap()
    };
    let cases: &[(&str, u16, &str)] = &[
        ("{not json", 400, ""),
        (r#"{"addresses": "http://a.example"}"#, 422, "addresses"),
        (
            r#"{"addresses": ["http://a.example"], "scope": "dom"}"#,
            422,
            "scope",
        ),
        (
            r#"{"addresses": ["http://a.example"], "word": ""}"#,
            422,
            "word",
        ),
        (
            r#"{"addresses": ["http://a.example"], "word": "   "}"#,
            422,
            "word",
        ),
        (
            r#"{"addresses": ["http://a.example"], "case_sensitive": "yes"}"#,
            422,
            "case_sensitive",
        ),
        (
            r#"{"addresses": ["http://a.example"], "wholeword": true}"#,
            422,
            "wholeword",
        ),
        (r#"{"addresses": []}"#, 422, "at least one"),
    ];
    for (body, code, needle) in cases {
        let res = router.clone().oneshot(post(body)).await.unwrap();
        assert_eq!(res.status().as_u16(), *code, "body {body}");
        let text = body_text(res).await;
        let v: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"));
        let msg = v["error"].as_str().unwrap_or_default();
        assert!(!msg.is_empty(), "no reason for {body}");
        assert!(
            msg.contains(needle),
            "reason {msg:?} for {body} should mention {needle:?}"
        );
    }

    // Every address bad: 422 with one reason per address, nothing stored.
    let res = router
        .clone()
        .oneshot(post(r#"{"addresses": ["javascript:alert(1)", "file:///etc/passwd", "", "http://exa mple.com", "http://[::1"]}"#))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let v: Value = serde_json::from_str(&body_text(res).await).unwrap();
    assert_eq!(v["rejected"].as_array().unwrap().len(), 5, "{v}");
    assert!(v["tasks"].as_array().unwrap().is_empty());
    assert_eq!(app.running.store.stats().await.unwrap().total(), 0);

    // Oversized body: 413 with a reason.
    let big = format!(r#"{{"addresses": ["{}"]}}"#, "a".repeat(2 * 1024 * 1024));
    let res = router
        .clone()
        .oneshot(
            Request::post("/api/tasks")
                .header("content-type", "application/json")
                .body(Body::from(big))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);

    let res = router
        .clone()
        .oneshot(Request::get("/api/tasks/abc").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let res = router
        .clone()
        .oneshot(
            Request::get("/api/tasks/424242")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let res = router
        .clone()
        .oneshot(
            Request::get("/tasks?status=DONE")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);

    app.stop().await;
    db.cleanup().await;
}

#[tokio::test]
async fn form_works_without_javascript_and_with_htmx() {
    let (app, db) = embedded(0).await;
    let router = app.running.router();
    let form = "addresses=http%3A%2F%2Fa.example%2F%0D%0Ab.example%2Fx%0D%0A%3Cscript%3Ealert(1)%3C%2Fscript%3E%0D%0A%0D%0A&word=python&whole_word=on&scope=text";
    let res = router
        .clone()
        .oneshot(
            Request::post("/tasks")
                .header("content-type", "application/x-www-form-urlencoded")
                .body(Body::from(form))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let html = body_text(res).await;
    assert!(
        html.contains("<!doctype html>"),
        "a whole page without htmx"
    );
    assert!(html.contains("Queued 2 addresses"), "{html}");
    assert!(
        html.contains("line 3"),
        "the bad line is reported with its number"
    );
    assert!(
        html.contains("&#60;script&#62;alert(1)&#60;/script&#62;")
            || html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "markup is shown escaped: {html}"
    );
    assert!(
        !html.contains("<script>alert(1)"),
        "markup never reaches the page raw"
    );
    assert!(
        html.contains("http://a.example/"),
        "the new task is in the table"
    );
    assert_eq!(app.running.store.stats().await.unwrap().total(), 2);

    // With htmx: a fragment, the textarea replaced out of band, the table told to refresh.
    let res = router
        .clone()
        .oneshot(
            Request::post("/tasks")
                .header("content-type", "application/x-www-form-urlencoded")
                .header("hx-request", "true")
                .body(Body::from(
                    "addresses=ftp%3A%2F%2Fx%0Ac.example&word=python&whole_word=on",
                ))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers().get("hx-trigger").unwrap(), "tasks-changed");
    let frag = body_text(res).await;
    assert!(!frag.contains("<!doctype html>"));
    assert!(frag.contains("Queued 1 address."), "{frag}");
    assert!(frag.contains("hx-swap-oob=\"true\""));
    assert!(
        frag.contains(">ftp://x</textarea>"),
        "only the rejected line stays: {frag}"
    );

    // An empty word is the person's mistake: shown in the form, nothing stored.
    let res = router
        .clone()
        .oneshot(
            Request::post("/tasks")
                .header("content-type", "application/x-www-form-urlencoded")
                .header("hx-request", "true")
                .body(Body::from("addresses=d.example&word=+"))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(body_text(res).await.contains("word"));
    assert_eq!(app.running.store.stats().await.unwrap().total(), 3);

    app.stop().await;
    db.cleanup().await;
}

#[tokio::test]
async fn poll_answers_204_until_something_changes() {
    let pages = PageServer::start().await;
    let (app, db) = embedded(2).await;
    let router = app.running.router();
    let v = app.running.store.stats().await.unwrap().version;
    let poll = |v: i64| {
        Request::get(format!("/tasks/table?v={v}"))
            .body(Body::empty())
            .unwrap()
    };
    let res = router.clone().oneshot(poll(v)).await.unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);

    app.submit_addresses(&[pages.url("/count/4")]).await;
    app.wait_finished(1, Duration::from_secs(20)).await;
    let res = router.clone().oneshot(poll(v)).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let html = body_text(res).await;
    assert!(html.contains("id=\"tasks-table\""));
    assert!(html.contains("data-status=\"FINISHED\""), "{html}");
    // The fragment carries the new version: polling it again is 204.
    let new_v = app.running.store.stats().await.unwrap().version;
    assert!(html.contains(&format!("v={new_v}")));
    let res = router.clone().oneshot(poll(new_v)).await.unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);

    let res = router
        .clone()
        .oneshot(Request::get("/healthz").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let res = router
        .clone()
        .oneshot(
            Request::get("/static/htmx.min.js")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(body_text(res).await.contains("htmx"));

    app.stop().await;
    db.cleanup().await;
}

#[tokio::test]
async fn restart_finishes_tasks_left_behind() {
    let pages = PageServer::start().await;
    let db = TestDb::sqlite();
    // First run: no workers, so everything stays queued in memory and is lost on stop.
    let app = TestApp::start(serve_args(&db.url, 0)).await;
    let addresses: Vec<String> = (0..20).map(|n| pages.url(&format!("/count/{n}"))).collect();
    let ids = app.submit_addresses(&addresses).await;
    app.stop().await;

    // Second run: with an in-process queue nothing can be in flight at start-up, so the
    // PENDING tasks are queued again at once (not after the 300 s pending deadline).
    let app = TestApp::start(serve_args(&db.url, 4)).await;
    app.wait_finished(20, Duration::from_secs(30)).await;
    for (n, id) in ids.iter().enumerate() {
        let t = app.task(*id).await;
        assert_eq!(t["result"]["words_count"], json!(n), "{t}");
        assert_eq!(t["attempts"], 2, "queued once per run: {t}");
    }
    let stats = app.running.store.stats().await.unwrap();
    assert_eq!(
        (stats.not_started, stats.pending, stats.finished),
        (0, 0, 20)
    );
    app.stop().await;
    db.cleanup().await;
}
