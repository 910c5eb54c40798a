//! Regions and patterns (DESIGN §17, issue 20) through the app: patterns counted beside
//! the words in one fetch, each with its own key of `counts` and batch total; the
//! `contains` / `absent` filters on the API, the export, the task table and a batch's
//! list; regions and patterns stored, shown and carried; hostile input refused with a
//! reason and nothing stored. On SQLite (embedded) and on Postgres + Redis + NSQ.

use std::time::Duration;

use axum::Router;
use axum::response::IntoResponse;
use axum::routing::get;
use serde_json::{Value, json};
use wordtally::count::CountOptions;
use wordtally::model::JobResult;
use wordtally::store::{NewTask, Store, TaskFilter};

use crate::helpers::{Stack, TestApp, TestDb, eventually, result_for, serve_args};

/// The docs-like page: the word in the navigation, the content and the footer.
const DOC: &str = "<!doctype html><html><head><title>t</title></head><body>\
    <nav>python python</nav>\
    <main><p>Python 3.11 and python3.12 and py2</p><p>jython</p></main>\
    <footer>python</footer></body></html>";
/// A page without the word.
const OTHER: &str = "<html><body><p>Rust only 1.80</p></body></html>";

const P1: &str = r"py(thon)?\d*";
const P2: &str = r"\d+\.\d+";

/// Serves `/doc` and `/other` on loopback.
async fn pages() -> (String, tokio::task::JoinHandle<()>) {
    let app = Router::new()
        .route(
            "/doc",
            get(|| async { ([("content-type", "text/html")], DOC).into_response() }),
        )
        .route(
            "/other",
            get(|| async { ([("content-type", "text/html")], OTHER).into_response() }),
        )
        .route(
            "/start",
            get(|| async {
                (
                    [("content-type", "text/html")],
                    "<html><body><p>pi is 3.14</p><a href=\"/other\">other</a></body></html>",
                )
                    .into_response()
            }),
        )
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(20)).await;
                ([("content-type", "text/html")], DOC).into_response()
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind pages");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (base, task)
}

async fn get_json(app: &TestApp, path: &str) -> (u16, Value) {
    let res = app.client.get(app.url(path)).send().await.expect("GET");
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

async fn get_text(app: &TestApp, path: &str) -> (u16, String) {
    let res = app.client.get(app.url(path)).send().await.expect("GET");
    let status = res.status().as_u16();
    (status, res.text().await.unwrap_or_default())
}

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// The addresses of a task list answer.
fn addresses(list: &Value) -> Vec<String> {
    list["tasks"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|t| t["address"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

async fn patterns_story(app: &TestApp) {
    let (base, server) = pages().await;
    let doc = format!("{base}/doc");
    let other = format!("{base}/other");
    let (status, created) = app
        .submit(json!({
            "addresses": [doc.clone(), other.clone()],
            "word": "python",
            "patterns": [P1, P2],
            "outside": ["nav", "footer"],
            "label": "patterns",
        }))
        .await;
    assert_eq!(status, 201, "{created}");
    let batch = created["batch_id"].as_i64().expect("batch");
    let ids: Vec<i64> = created["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .map(|t| t["id"].as_i64().expect("id"))
        .collect();
    let b = eventually("the batch finished", Duration::from_secs(60), || {
        let app = &app;
        async move {
            let (_, b) = get_json(app, &format!("/api/batches/{batch}")).await;
            (b["unfinished"] == 0 || (b["finished"] == b["total"] && b["total"] == 2)).then_some(b)
        }
    })
    .await;

    // One key per word and per pattern; whole word and any case apply to the patterns
    // (`python3.12` is no whole `python`, but `python3` is a whole match of P1; `3.12`
    // touches `n`, so P2 counts only `3.11`). The outside selectors leave out the
    // navigation and the footer: only the main text counts.
    let t = app.task(ids[0]).await;
    assert_eq!(t["patterns"], json!([P1, P2]), "{t}");
    assert_eq!(t["outside"], json!(["nav", "footer"]), "{t}");
    let counts = &t["result"]["counts"];
    assert_eq!(counts[P1], 3, "{t}");
    assert_eq!(counts[P2], 1, "{t}");
    assert!(counts["python"].is_i64(), "{t}");
    let python = counts["python"].as_i64().unwrap_or(-1);
    assert_eq!(
        t["result"]["words_count"], python,
        "words_count stays the word's"
    );
    let t2 = app.task(ids[1]).await;
    assert_eq!(
        t2["result"]["counts"],
        json!({"python": 0, P1: 0, P2: 1}),
        "{t2}"
    );
    assert_eq!(b["word_totals"][P1], 3, "{b}");
    assert_eq!(b["word_totals"][P2], 2, "{b}");

    // A task that has no result yet (and then is cancelled) matches neither filter.
    let (status, slow) = app
        .submit(json!({"addresses": [format!("{base}/slow")], "patterns": [P1, P2]}))
        .await;
    assert_eq!(status, 201, "{slow}");
    let slow_id = slow["tasks"][0]["id"].as_i64().expect("id");

    let q = |f: &str, w: &str| format!("/api/tasks?{f}={}", enc(w));
    let (s, l) = get_json(app, &q("contains", P1)).await;
    assert_eq!(s, 200, "{l}");
    assert_eq!(addresses(&l), vec![doc.clone()], "{l}");
    let (_, l) = get_json(app, &q("absent", P1)).await;
    assert_eq!(addresses(&l), vec![other.clone()], "{l}");
    let (_, l) = get_json(app, &q("contains", P2)).await;
    assert_eq!(addresses(&l), vec![other.clone(), doc.clone()], "{l}");
    let (_, l) = get_json(app, &q("absent", P2)).await;
    assert!(addresses(&l).is_empty(), "{l}");
    // Not counted by any task: matches nothing either way.
    let (_, l) = get_json(app, &q("absent", "rust")).await;
    assert!(addresses(&l).is_empty(), "{l}");
    // Both at once, in a batch, paged.
    let (_, l) = get_json(
        app,
        &format!(
            "/api/tasks?batch={batch}&contains={}&absent={}&limit=1",
            enc(P2),
            enc(P1)
        ),
    )
    .await;
    assert_eq!(addresses(&l), vec![other.clone()], "{l}");
    let (_, l) = get_json(app, &format!("/api/tasks?contains={}&limit=1", enc(P2))).await;
    assert_eq!(addresses(&l), vec![other.clone()], "{l}");
    let next = l["next_before"].as_i64().expect("a next page");
    let (_, l) = get_json(
        app,
        &format!("/api/tasks?contains={}&limit=1&before={next}", enc(P2)),
    )
    .await;
    assert_eq!(addresses(&l), vec![doc.clone()], "{l}");
    // With an address search too.
    let (_, l) = get_json(app, &format!("/api/tasks?q=doc&contains={}", enc(P2))).await;
    assert_eq!(addresses(&l), vec![doc.clone()], "{l}");

    // The export, the task table and the batch's page.
    let (s, csv) = get_text(
        app,
        &format!("/api/tasks/export?format=csv&contains={}", enc(P1)),
    )
    .await;
    assert_eq!(s, 200, "{csv}");
    assert_eq!(csv.lines().count(), 2, "{csv}");
    assert!(csv.contains(&doc), "{csv}");
    // One batch: a column per word and pattern.
    let (_, csv) = get_text(app, &format!("/api/tasks/export?format=csv&batch={batch}")).await;
    let header = csv.lines().next().unwrap_or_default();
    assert!(
        header.ends_with(&format!(",count:python,count:{P1},count:{P2}")),
        "{header}"
    );
    let (s, html) = get_text(app, &format!("/tasks?absent={}", enc(P1))).await;
    assert_eq!(s, 200);
    assert!(html.contains(&other) && !html.contains(&doc), "{html}");
    assert!(
        html.contains("name=\"contains\""),
        "the filter bar has the fields"
    );
    let (s, html) = get_text(app, &format!("/batches/{batch}?contains={}", enc(P1))).await;
    assert_eq!(s, 200);
    assert!(html.contains(&doc) && !html.contains(&other), "{html}");
    assert!(html.contains("never inside"), "{html}");
    assert!(html.contains("patterns"), "{html}");
    let (_, html) = get_text(app, &format!("/tasks/{}", ids[0])).await;
    assert!(
        html.contains("never inside") && html.contains("“nav”"),
        "{html}"
    );

    // The form: regions and patterns one per line.
    let res = app
        .client
        .post(app.url("/tasks"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "addresses={}&word=python&whole_word=on&within=main&outside=nav%0D%0Afooter&patterns={}%0A{}",
            enc(&doc),
            enc(P1),
            enc(P2)
        ))
        .send()
        .await
        .expect("POST /tasks");
    assert_eq!(res.status(), 200);
    let (_, list) = get_json(app, "/api/tasks?limit=1").await;
    let newest = &list["tasks"][0];
    assert_eq!(newest["within"], json!(["main"]), "{list}");
    assert_eq!(newest["outside"], json!(["nav", "footer"]), "{list}");
    assert_eq!(newest["patterns"], json!([P1, P2]), "{list}");

    let (s, c) = get_json(app, &format!("/api/tasks/{slow_id}")).await;
    assert_eq!(s, 200, "{c}");
    let res = app
        .client
        .post(app.url(&format!("/api/tasks/{slow_id}/cancel")))
        .send()
        .await
        .expect("cancel");
    assert!(res.status().is_success() || res.status().as_u16() == 409);
    server.abort();
}

#[tokio::test]
async fn patterns_and_count_filters_embedded() {
    let db = TestDb::sqlite();
    let app = TestApp::start(serve_args(&db.url, 2)).await;
    patterns_story(&app).await;
    app.stop().await;
    db.cleanup().await;
}

#[tokio::test]
async fn patterns_and_count_filters_postgres_redis_nsq() {
    let stack = Stack::new().await;
    let app = TestApp::start(stack.serve_args(2)).await;
    patterns_story(&app).await;
    app.stop().await;
    stack.cleanup().await;
}

/// The `task_count` rows at the store: written with the current result, dropped when a
/// new run starts (no result: matches neither), rewritten by the new result.
async fn count_rows_follow_the_current_run(url: &str) {
    let store = Store::connect(url).await.expect("store");
    let o = CountOptions {
        patterns: vec![P1.to_owned()],
        ..CountOptions::default()
    };
    let new: Vec<NewTask> = (0..3)
        .map(|i| NewTask {
            address: format!("http://127.0.0.1:9/{i}"),
            options: o.clone(),
        })
        .collect();
    let (_, tasks) = store
        .insert_batch(Some("rows"), &new)
        .await
        .expect("insert");
    let with = |t: i64, n: i64| -> JobResult {
        let mut r = result_for(t, n);
        r.result.counts = Some([("python".to_owned(), n), (P1.to_owned(), n * 2)].into());
        r
    };
    store
        .store_results(&[with(tasks[0].id, 1), with(tasks[1].id, 0)])
        .await
        .expect("results");
    let ids = |f: TaskFilter| {
        let store = &store;
        async move {
            let mut v: Vec<i64> = store
                .list_tasks(&TaskFilter { limit: 10, ..f })
                .await
                .expect("list")
                .iter()
                .map(|t| t.task.id)
                .collect();
            v.sort_unstable();
            v
        }
    };
    let contains = TaskFilter {
        contains: Some(P1.to_owned()),
        ..Default::default()
    };
    let absent = TaskFilter {
        absent: Some(P1.to_owned()),
        ..Default::default()
    };
    assert_eq!(ids(contains.clone()).await, vec![tasks[0].id]);
    assert_eq!(ids(absent.clone()).await, vec![tasks[1].id]);
    // The stored options come back with the task.
    let t = store
        .get_task(tasks[2].id)
        .await
        .expect("get")
        .expect("task");
    assert_eq!(t.task.options.patterns, vec![P1.to_owned()]);
    // A new run: no current result, in neither list.
    let retried = store.retry_tasks(&[tasks[0].id]).await.expect("retry");
    assert_eq!(retried.len(), 1);
    assert!(ids(contains.clone()).await.is_empty());
    assert_eq!(ids(absent.clone()).await, vec![tasks[1].id]);
    // Its result: counted zero times now.
    let mut r = with(tasks[0].id, 0);
    r.run = 2;
    store.store_results(&[r]).await.expect("result of run 2");
    assert!(ids(contains.clone()).await.is_empty());
    assert_eq!(ids(absent).await, vec![tasks[0].id, tasks[1].id]);
    // Bulk actions see the same set.
    let bulk = store
        .task_ids(&TaskFilter {
            limit: 10,
            ..contains
        })
        .await
        .expect("ids");
    assert!(bulk.is_empty());
    store.close().await;
}

#[tokio::test]
async fn count_rows_follow_the_current_run_sqlite() {
    let db = TestDb::sqlite();
    count_rows_follow_the_current_run(&db.url).await;
    db.cleanup().await;
}

#[tokio::test]
async fn count_rows_follow_the_current_run_postgres() {
    let db = TestDb::postgres().await;
    count_rows_follow_the_current_run(&db.url).await;
    db.cleanup().await;
}

/// Hostile options: a 4xx with a reason, and nothing stored.
async fn hostile(app: &TestApp) {
    let total = || async { app.running.store.stats().await.expect("stats").total() };
    let before = total().await;
    let addr = "http://127.0.0.1:9/";
    let nested = format!("{}a{}", ":not(".repeat(40), ")".repeat(40));
    let many: Vec<String> = (0..21).map(|i| format!("p{i}")).collect();
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"addresses": [addr], "within": ["a".repeat(10_000)]}),
            "at most 1000",
        ),
        (
            json!({"addresses": [addr], "outside": ["b".repeat(10_000)]}),
            "at most 1000",
        ),
        (json!({"addresses": [addr], "outside": [nested]}), "nest"),
        (
            json!({"addresses": [addr], "within": vec!["main"; 21]}),
            "at most 20",
        ),
        (json!({"addresses": [addr], "within": [""]}), "empty"),
        (
            json!({"addresses": [addr], "patterns": ["a{100000}{100000}"]}),
            "limit",
        ),
        (
            json!({"addresses": [addr], "patterns": [r"\w{1000}"]}),
            "limit",
        ),
        (
            json!({"addresses": [addr], "patterns": ["x*"]}),
            "empty string",
        ),
        (
            json!({"addresses": [addr], "patterns": ["py(thon"]}),
            "unclosed",
        ),
        (
            json!({"addresses": [addr], "patterns": [r"\bpy"]}),
            "word boundaries",
        ),
        (
            json!({"addresses": [addr], "patterns": ["a".repeat(1001)]}),
            "at most 1000",
        ),
        (json!({"addresses": [addr], "patterns": many}), "at most 20"),
        (
            json!({"addresses": [addr], "patterns": ["python"]}),
            "also a word",
        ),
        (
            json!({"addresses": [addr], "patterns": ["\u{FFFD}+"]}),
            "U+FFFD",
        ),
        (
            json!({"addresses": [addr], "scope": "raw", "outside": ["nav"]}),
            "text scope",
        ),
    ];
    for (body, why) in cases {
        let (status, r) = app.submit(body.clone()).await;
        assert_eq!(status, 422, "{body} → {r}");
        let msg = r["error"].as_str().unwrap_or_default();
        assert!(msg.contains(why), "{why:?} not in {msg:?} for {body}");
    }
    // Invalid UTF-8 in a pattern: raw bytes in the JSON body, and in the form.
    let mut raw = br#"{"addresses": ["http://127.0.0.1:9/"], "patterns": [""#.to_vec();
    raw.extend_from_slice(b"py\xff\xfe");
    raw.extend_from_slice(br#""]}"#);
    let res = app
        .client
        .post(app.url("/api/tasks"))
        .header("content-type", "application/json")
        .body(raw)
        .send()
        .await
        .expect("POST raw");
    let status = res.status().as_u16();
    let body = res.text().await.unwrap_or_default();
    assert!((400..500).contains(&status), "{status} {body}");
    assert!(body.contains("error"), "{body}");
    for form in [
        b"addresses=http%3A%2F%2F127.0.0.1%3A9%2F&word=python&patterns=py%FF%FE".to_vec(),
        b"addresses=http%3A%2F%2F127.0.0.1%3A9%2F&word=python&patterns=py\xff\xfe".to_vec(),
        b"addresses=http%3A%2F%2F127.0.0.1%3A9%2F&word=python&scope=raw&within=main".to_vec(),
        b"addresses=http%3A%2F%2F127.0.0.1%3A9%2F&word=python&patterns=a%7B100000%7D%7B100000%7D"
            .to_vec(),
    ] {
        let res = app
            .client
            .post(app.url("/tasks"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form.clone())
            .send()
            .await
            .expect("POST form");
        let status = res.status().as_u16();
        let html = res.text().await.unwrap_or_default();
        // The form shows a person's mistakes in the form (the project's rule for the
        // form: its page, 200, with the reason), not as an error page.
        assert_eq!(status, 200, "{:?}", String::from_utf8_lossy(&form));
        assert!(
            html.contains("U+FFFD") || html.contains("text scope") || html.contains("limit"),
            "{html}"
        );
    }
    // A bad filter value is a 400 with a reason.
    let (s, r) = get_json(app, &format!("/api/tasks?contains={}", "a".repeat(1001))).await;
    assert_eq!(s, 400, "{r}");
    assert!(
        r["error"].as_str().unwrap_or_default().contains("contains"),
        "{r}"
    );
    assert_eq!(total().await, before, "nothing stored");
}

#[tokio::test]
async fn hostile_regions_and_patterns_are_refused_sqlite() {
    let db = TestDb::sqlite();
    let app = TestApp::start(serve_args(&db.url, 0)).await;
    hostile(&app).await;
    app.stop().await;
    db.cleanup().await;
}

#[tokio::test]
async fn hostile_regions_and_patterns_are_refused_postgres() {
    let db = TestDb::postgres().await;
    let app = TestApp::start(serve_args(&db.url, 0)).await;
    hostile(&app).await;
    app.stop().await;
    db.cleanup().await;
}

/// A crawl counts its patterns on every page it discovers, filtered like any batch.
#[tokio::test]
async fn a_crawl_counts_patterns_on_discovered_pages() {
    let db = TestDb::sqlite();
    let app = TestApp::start(serve_args(&db.url, 2)).await;
    let (base, server) = pages().await;
    let res = app
        .client
        .post(app.url("/api/crawls"))
        .json(&json!({"start": [format!("{base}/start")], "patterns": [P2], "max_pages": 5}))
        .send()
        .await
        .expect("POST /api/crawls");
    assert_eq!(res.status().as_u16(), 201);
    let created: Value = res.json().await.expect("JSON");
    let batch = created["batch_id"].as_i64().expect("batch");
    let list = eventually(
        "the crawl fetched both pages",
        Duration::from_secs(60),
        || {
            let app = &app;
            async move {
                let (_, l) = get_json(app, &format!("/api/tasks?batch={batch}")).await;
                let tasks = l["tasks"].as_array()?;
                (tasks.len() == 2 && tasks.iter().all(|t| t["status"] == "FINISHED")).then_some(l)
            }
        },
    )
    .await;
    for t in list["tasks"].as_array().into_iter().flatten() {
        assert_eq!(t["patterns"], json!([P2]), "{t}");
        assert_eq!(t["result"]["counts"][P2], 1, "{t}");
    }
    let (_, l) = get_json(
        &app,
        &format!("/api/tasks?batch={batch}&contains={}", enc(P2)),
    )
    .await;
    assert_eq!(addresses(&l).len(), 2, "{l}");
    server.abort();
    app.stop().await;
    db.cleanup().await;
}
