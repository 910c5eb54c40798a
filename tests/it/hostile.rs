//! Hostile input: addresses that must be refused line by line (API and form), request
//! bodies that must get a 4xx with a reason, hostile pages fetched through the whole
//! pipeline (endless bodies, slow drip, redirect loops, a compression bomb, bogus
//! charsets, binary types, error statuses), and markup in stored results shown as text.
//! Never a 5xx.

use std::time::Duration;

use serde_json::{Value, json};
use wordtally::bus::ResultPublisher;
use wordtally::bus::nsq::NsqPublisher;
use wordtally::model::{JobResult, ResultRecord, now_ms};

use crate::helpers::{
    Stack, TestApp, TestDb, eventually, init_tracing, serve_args, start_worker_in_process,
};
use crate::pages::PageServer;

/// (input, a phrase the reason must contain)
fn hostile_addresses() -> Vec<(String, &'static str)> {
    let mut v: Vec<(String, &'static str)> = [
        ("", "empty"),
        ("   ", "empty"),
        ("\t", "empty"),
        ("javascript:alert(1)", "only http and https"),
        ("JavaScript:alert(document.cookie)", "only http and https"),
        ("file:///etc/passwd", "only http and https"),
        (
            "data:text/html,<script>alert(1)</script>",
            "only http and https",
        ),
        ("ftp://ftp.example.com/file", "only http and https"),
        ("mailto:someone@example.com", "only http and https"),
        ("gopher://example.com", "only http and https"),
        ("http://", "no host"),
        ("https://", "no host"),
        ("http://:8080/x", "no host"),
        ("http://?q=1", "no host"),
        ("http://exa mple.com/", "space"),
        ("http://example.com/a b", "space"),
        ("example.com /x", "space"),
        ("http://exa\u{200b}mple.com/", "space"),
        ("http://example.com/\u{0}", "control character"),
        ("http://exa\u{0}mple.com", "control character"),
        ("http://example.com/\u{7}bell", "control character"),
        ("http://example.com/\u{1b}[31m", "control character"),
        ("http://example.com/\r\nX-Injected: 1", "control character"),
        ("http://example.com/\u{7f}", "control character"),
        ("http://example.com:99999/", "invalid port"),
        ("http://example.com:65536/", "invalid port"),
        ("example.com:abc/", "invalid port"),
        ("http://example.com:-1/", "invalid port"),
        ("http://example.com:8o80/", "invalid port"),
        ("http://[::1/", "IPv6"),
        ("http://[::g]/", "IPv6"),
        ("http://[1:2:3]/", "IPv6"),
        ("http://[:::1]/", "IPv6"),
        ("http://[12345::1]/", "IPv6"),
        ("http://[::1]]/", "IPv6"),
        ("<script>alert(1)</script>", "host name"),
        ("<img src=x onerror=alert(1)>", "space"),
        ("\"><svg/onload=alert(1)>", "host name"),
        ("http://<b>bold</b>/", "host name"),
        ("http://user:pass@example.com/", "user name or password"),
        ("http://%zz/", "host name"),
    ]
    .iter()
    .map(|(a, why)| (a.to_string(), *why))
    .collect();
    // One character over the limit (the stored column takes 2048).
    v.push((
        format!("http://example.com/{}", "a".repeat(2048 - 18)),
        "too long",
    ));
    v.push((format!("{}.example.com", "x".repeat(5000)), "too long"));
    v
}

/// Exactly as long as allowed: accepted and stored whole.
fn longest_address() -> String {
    let a = format!("http://example.com/{}", "a".repeat(2048 - 19));
    assert_eq!(a.len(), 2048);
    a
}

async fn task_rows(pool: &sqlx::PgPool) -> Vec<String> {
    sqlx::query_scalar("SELECT address FROM task ORDER BY id")
        .fetch_all(pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn hostile_addresses_are_refused_line_by_line_in_api_and_form() {
    let db = TestDb::postgres().await;
    let app = TestApp::start(serve_args(&db.url, 0)).await;
    let pool = db.pool().await;
    let cases = hostile_addresses();

    // API: one good address among them; one reason per bad one, in order; nothing stored.
    let mut addresses: Vec<String> = cases.iter().map(|(a, _)| a.clone()).collect();
    addresses.push(longest_address());
    let (status, body) = app.submit(json!({ "addresses": addresses })).await;
    assert_eq!(status, 201, "{body}");
    let rejected = body["rejected"].as_array().unwrap();
    assert_eq!(rejected.len(), cases.len(), "{body}");
    for (r, (input, why)) in rejected.iter().zip(&cases) {
        let err = r["error"].as_str().unwrap();
        assert!(err.contains(why), "{input:?}: {err:?} should say {why:?}");
        let shown = r["address"].as_str().unwrap();
        assert!(
            !shown.chars().any(|c| c.is_control()),
            "control characters are made visible: {shown:?}"
        );
        assert!(shown.chars().count() <= 201, "echo is bounded");
    }
    assert_eq!(body["tasks"].as_array().unwrap().len(), 1);
    assert_eq!(task_rows(&pool).await, vec![longest_address()]);

    // Each alone: 422, never a 5xx.
    for (input, why) in &cases {
        let (status, body) = app.submit(json!({ "addresses": [input] })).await;
        assert_eq!(status, 422, "{input:?}: {body}");
        assert!(
            body["rejected"][0]["error"].as_str().unwrap().contains(why),
            "{body}"
        );
    }
    assert_eq!(task_rows(&pool).await.len(), 1, "nothing stored for them");

    // The form: the same lines (blank lines are not addresses there), one good one.
    let form_cases: Vec<&(String, &str)> = cases
        .iter()
        .filter(|(a, _)| !a.trim().is_empty() && !a.contains(['\r', '\n']))
        .collect();
    let mut lines: Vec<&str> = form_cases.iter().map(|(a, _)| a.as_str()).collect();
    lines.push("http://good.example/");
    let text = lines.join("\n");
    let form: String = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("addresses", &text)
        .append_pair("word", "python")
        .append_pair("whole_word", "on")
        .finish();
    for htmx in [false, true] {
        let mut req = app
            .client
            .post(app.url("/tasks"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form.clone());
        if htmx {
            req = req.header("hx-request", "true");
        }
        let res = req.send().await.unwrap();
        assert_eq!(res.status().as_u16(), 200);
        let html = res.text().await.unwrap();
        assert!(html.contains("Queued 1 address."), "{html}");
        assert!(
            html.contains(&format!("{} lines were not accepted", form_cases.len())),
            "{html}"
        );
        for (i, (_, why)) in form_cases.iter().enumerate() {
            assert!(html.contains(&format!("line {}", i + 1)), "line {}", i + 1);
            assert!(html.contains(why), "reason {why:?} shown");
        }
        for raw in ["<script>alert(1)", "<img src=x", "<svg/onload", "<b>bold"] {
            assert!(!html.contains(raw), "markup {raw:?} reached the page raw");
        }
        // No raw control character reaches the page: the textarea keeps the rejected lines
        // for fixing with U+FFFD in their place, the list shows visible symbols.
        assert!(
            !html
                .chars()
                .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t')),
            "a raw control character reached the page"
        );
        let list = html
            .split("<ul class=\"rejected\">")
            .nth(1)
            .and_then(|rest| rest.split("</ul>").next())
            .expect("the list of rejected lines");
        assert!(
            !list.chars().any(|c| c.is_control() && c != '\n'),
            "{list:?}"
        );
        assert!(list.contains('\u{2400}'), "NUL shown as a visible symbol");
    }
    let rows = task_rows(&pool).await;
    assert_eq!(rows.len(), 3, "the good line, once per form post: {rows:?}");

    pool.close().await;
    app.stop().await;
    db.cleanup().await;
}

#[tokio::test]
async fn hostile_bodies_get_a_4xx_with_a_reason() {
    let db = TestDb::sqlite();
    let mut args = serve_args(&db.url, 0);
    args.max_submit_addresses = 50;
    let app = TestApp::start(args).await;
    let api = app.url("/api/tasks");
    let form_url = app.url("/tasks");

    // (content type, body, expected status, phrase in the reason)
    let long_word = "w".repeat(1000);
    let too_many: Vec<String> = (0..51).map(|i| format!("e{i}.example")).collect();
    let json_cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        ("application/json", b"{not json".to_vec(), 400, ""),
        ("application/json", b"".to_vec(), 400, ""),
        ("application/json", b"[]".to_vec(), 422, ""),
        ("application/json", b"null".to_vec(), 422, ""),
        ("application/json", vec![0xff, 0xfe, b'{', b'}'], 400, ""),
        ("application/json", "[".repeat(50_000).into_bytes(), 422, ""),
        (
            "application/json",
            br#"{"word": "python"}"#.to_vec(),
            422,
            "addresses",
        ),
        (
            "application/json",
            br#"{"addresses": [1, null]}"#.to_vec(),
            422,
            "addresses",
        ),
        (
            "application/json",
            br#"{"addresses": {"a": 1}}"#.to_vec(),
            422,
            "addresses",
        ),
        (
            "application/json",
            br#"{"addresses": ["a.example"], "scope": 3}"#.to_vec(),
            400,
            "scope",
        ),
        (
            "application/json",
            br#"{"addresses": ["a.example"], "scope": "DOM"}"#.to_vec(),
            422,
            "scope",
        ),
        (
            "application/json",
            br#"{"addresses": ["a.example"], "word": ""}"#.to_vec(),
            422,
            "word",
        ),
        (
            "application/json",
            br#"{"addresses": ["a.example"], "word": "a\u0000b"}"#.to_vec(),
            422,
            "word",
        ),
        (
            "application/json",
            format!(r#"{{"addresses": ["a.example"], "word": "{long_word}"}}"#).into_bytes(),
            422,
            "word",
        ),
        (
            "application/json",
            br#"{"addresses": ["a.example"], "whole_word": 1}"#.to_vec(),
            422,
            "whole_word",
        ),
        (
            "application/json",
            serde_json::to_vec(&json!({ "addresses": too_many })).unwrap(),
            413,
            "at most 50",
        ),
        (
            "application/json",
            format!(r#"{{"addresses": ["{}"]}}"#, "a".repeat(2 * 1024 * 1024)).into_bytes(),
            413,
            "larger than",
        ),
        (
            "text/plain",
            br#"{"addresses": ["a.example"]}"#.to_vec(),
            400,
            "Content-Type",
        ),
        (
            "application/x-www-form-urlencoded",
            b"addresses=a.example".to_vec(),
            400,
            "Content-Type",
        ),
    ];
    for (ct, body, code, why) in json_cases {
        let shown = String::from_utf8_lossy(&body[..body.len().min(60)]).into_owned();
        let res = app
            .client
            .post(&api)
            .header("content-type", ct)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), code, "{ct} {shown}");
        let v: Value = res.json().await.unwrap_or(Value::Null);
        let err = v["error"].as_str().unwrap_or_default();
        assert!(!err.is_empty(), "a reason for {shown}: {v}");
        assert!(err.contains(why), "{shown}: {err:?} should mention {why:?}");
    }
    // No content type at all.
    let res = app.client.post(&api).body("{}").send().await.unwrap();
    assert_eq!(res.status().as_u16(), 400);

    // The form: the person's mistakes are shown in the form (the page is still usable),
    // oversized and non-form bodies are a 4xx with a reason.
    let form_cases: Vec<(String, &str)> = vec![
        ("addresses=a.example&word=python&scope=dom".into(), "scope"),
        ("addresses=a.example&word=".into(), "word"),
        ("addresses=a.example&word=%20%20".into(), "word"),
        (format!("addresses=a.example&word={long_word}"), "word"),
        ("addresses=a.example&word=a%00b".into(), "word"),
        ("addresses=&word=python".into(), "at least one address"),
        (
            "addresses=%0A%0A%20%0A&word=python".into(),
            "at least one address",
        ),
        ("word=python".into(), "at least one address"),
        (
            format!(
                "word=python&addresses={}",
                (0..51)
                    .map(|i| format!("e{i}.example"))
                    .collect::<Vec<_>>()
                    .join("%0A")
            ),
            "at most 50",
        ),
    ];
    for (body, why) in &form_cases {
        for htmx in [false, true] {
            let mut req = app
                .client
                .post(&form_url)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body.clone());
            if htmx {
                req = req.header("hx-request", "true");
            }
            let res = req.send().await.unwrap();
            assert_eq!(res.status().as_u16(), 200, "{body}");
            let html = res.text().await.unwrap();
            assert!(html.contains("class=\"bad\""), "{body}: {html}");
            assert!(html.contains(why), "{body}: reason {why:?} in {html}");
        }
    }
    let big = format!("addresses={}", "a".repeat(2 * 1024 * 1024));
    for htmx in [false, true] {
        let mut req = app
            .client
            .post(&form_url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(big.clone());
        if htmx {
            req = req.header("hx-request", "true");
        }
        let res = req.send().await.unwrap();
        assert_eq!(res.status().as_u16(), 413);
        let html = res.text().await.unwrap();
        assert!(html.contains("larger than"), "{html}");
        if htmx {
            assert!(html.contains("toast"), "an htmx error is a toast: {html}");
        }
    }
    let res = app
        .client
        .post(&form_url)
        .header("content-type", "application/json")
        .body(r#"{"addresses": "a.example"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 400);
    assert!(res.text().await.unwrap().contains("Content-Type"));

    assert_eq!(
        app.running.store.stats().await.unwrap().total(),
        0,
        "nothing stored by any of them"
    );
    app.stop().await;
    db.cleanup().await;
}

// ------------------------------------------------------------------ hostile pages

const CAP: u64 = 64 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_pages_through_the_whole_pipeline() {
    init_tracing();
    let pages = PageServer::start_full().await;
    let stack = Stack::new().await;
    let app = TestApp::start(stack.serve_args(0)).await;
    let mut w = stack.worker_args(8);
    w.max_body_bytes = CAP;
    w.fetch_timeout_ms = 1500;
    w.fetch_attempts = 2;
    let worker = start_worker_in_process(w).await;

    let paths = [
        "/endless",
        "/bomb",
        "/drip",
        "/loop",
        "/chain/12",
        "/chain/3",
        "/bogus-charset",
        "/binary/png",
        "/binary/octet",
        "/status/404",
        "/status/500",
        "/status/503",
    ];
    let addresses: Vec<String> = paths.iter().map(|p| pages.url(p)).collect();
    let ids = app.submit_addresses(&addresses).await;
    app.wait_finished(ids.len() as i64, Duration::from_secs(40))
        .await;
    let mut r = std::collections::HashMap::new();
    for (p, id) in paths.iter().zip(&ids) {
        let t = app.task(*id).await;
        assert_eq!(t["status"], "FINISHED", "{p}: {t}");
        r.insert(*p, t["result"].clone());
    }
    // `python ` repeated, cut at the cap: 9362 whole words and a partial "py".
    let capped = (CAP / 7) as i64;
    for p in ["/endless", "/bomb"] {
        let x = &r[p];
        assert_eq!(x["truncated"], true, "{p}: {x}");
        assert_eq!(
            x["bytes_read"], CAP,
            "{p}: the cap counts decompressed bytes: {x}"
        );
        assert_eq!(x["words_count"], capped, "{p}: {x}");
        assert_eq!(
            x["error"],
            Value::Null,
            "{p}: truncation is a flag, not an error: {x}"
        );
        assert_eq!(x["http_status_code"], 200);
    }
    let drip = &r["/drip"];
    assert!(
        drip["error"]
            .as_str()
            .unwrap_or_default()
            .contains("timed out"),
        "{drip}"
    );
    assert_eq!(drip["attempts"], 2, "a timeout is retried: {drip}");
    assert!(drip["duration_ms"].as_i64().unwrap() >= 3000, "{drip}");
    assert!(
        r["/loop"]["error"]
            .as_str()
            .unwrap_or_default()
            .contains("redirect loop"),
        "{}",
        r["/loop"]
    );
    assert_eq!(r["/loop"]["attempts"], 1, "a loop is not retried");
    assert!(
        r["/chain/12"]["error"]
            .as_str()
            .unwrap_or_default()
            .contains("too many redirects"),
        "{}",
        r["/chain/12"]
    );
    let chain = &r["/chain/3"];
    assert_eq!(chain["words_count"], 1, "{chain}");
    assert!(
        chain["final_url"].as_str().unwrap().ends_with("/chain/0"),
        "{chain}"
    );
    let bogus = &r["/bogus-charset"];
    assert_eq!(
        bogus["words_count"], 3,
        "unknown labels fall through: {bogus}"
    );
    assert_eq!(bogus["error"], Value::Null, "{bogus}");
    for (p, ct) in [
        ("/binary/png", "image/png"),
        ("/binary/octet", "application/octet-stream"),
    ] {
        let x = &r[p];
        assert_eq!(x["words_count"], Value::Null, "{p}: {x}");
        assert!(
            x["error"]
                .as_str()
                .unwrap_or_default()
                .contains(&format!("not a text document (content type {ct})")),
            "{p}: {x}"
        );
        assert_eq!(x["http_status_code"], 200);
    }
    let nf = &r["/status/404"];
    assert_eq!(
        (
            nf["http_status_code"].clone(),
            nf["words_count"].clone(),
            nf["attempts"].clone()
        ),
        (json!(404), json!(2), json!(1)),
        "4xx: recorded, counted, not retried: {nf}"
    );
    assert_eq!(nf["error"], Value::Null);
    for (p, code) in [("/status/500", 500), ("/status/503", 503)] {
        let x = &r[p];
        assert_eq!(x["http_status_code"], code, "{p}: {x}");
        assert_eq!(x["words_count"], 2, "{p}: the last body is counted: {x}");
        assert_eq!(x["attempts"], 2, "{p}: 5xx retried: {x}");
        assert_eq!(
            x["error"],
            format!("HTTP {code} after 2 attempts"),
            "{p}: {x}"
        );
    }
    assert_eq!(pages.hits("/status/500"), 2);
    assert_eq!(pages.hits("/loop"), 1);

    worker.stop().await.unwrap();
    app.stop().await;
    stack.cleanup().await;
}

// ------------------------------------------------------------------ output escaping

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn markup_in_addresses_and_results_is_shown_as_text() {
    let stack = Stack::new().await;
    let app = TestApp::start(stack.serve_args(0)).await;
    // Accepted addresses carrying markup-ish characters (the URL parser percent-encodes
    // `<>"'`, but `&` stays and must be escaped in the page).
    let ids = app
        .submit_addresses(&[
            "http://example.com/\"><svg/onload=alert(1)>".to_string(),
            "http://example.com/?a=1&b=<i>2</i>".to_string(),
        ])
        .await;
    // A worker (played by the test) reports markup in every free-text field.
    let evil = "<script>alert(\"xss\")</script><img src=x onerror=alert(1)>";
    let result = JobResult {
        task_id: ids[0],
        run: 1,
        result: ResultRecord {
            words_count: None,
            http_status_code: Some(502),
            error: Some(format!("upstream said {evil}")),
            timestamp: now_ms(),
            final_url: Some(format!("http://example.com/{evil}")),
            content_type: Some(format!("text/html; x={evil}")),
            charset: Some(evil.into()),
            bytes_read: 0,
            truncated: false,
            duration_ms: 1,
            attempts: 1,
            charset_source: None,
            attempt_log: Vec::new(),
            counts: None,
            redirects: Vec::new(),
            skipped: false,
            crawl: None,
        },
        worker: evil.into(),
    };
    let publisher = NsqPublisher::new(
        stack
            .worker_args(1)
            .nsq_config("unused", &[], 1)
            .expect("nsq config"),
    )
    .unwrap();
    publisher.publish(&result).await.unwrap();
    eventually("crafted result stored", Duration::from_secs(30), || async {
        let t = app.task(ids[0]).await;
        (t["status"] == "FINISHED").then_some(())
    })
    .await;

    for path in ["/tasks", "/tasks/table"] {
        let res = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(res.status().as_u16(), 200);
        let html = res.text().await.unwrap();
        for raw in ["<script>alert", "<img src=x", "<svg/onload", "<i>2</i>"] {
            assert!(!html.contains(raw), "{path}: {raw:?} reached the page raw");
        }
        assert!(
            html.contains("&lt;script&gt;alert") || html.contains("&#60;script&#62;alert"),
            "{path}: the error is shown, as text"
        );
        assert!(
            html.contains("a=1&amp;b=") || html.contains("a=1&#38;b="),
            "{path}: `&` escaped in the address"
        );
    }
    // The JSON API returns the values as they are (JSON-encoded, not HTML).
    let t = app.task(ids[0]).await;
    assert_eq!(t["result"]["error"], format!("upstream said {evil}"));

    app.stop().await;
    stack.cleanup().await;
}
