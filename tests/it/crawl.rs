//! Crawls end to end (DESIGN §15): a generated local site (tests/it/site.rs) crawled from
//! its index on both stacks, compared page by page with the site's own model; the limits
//! and hostile pages end with counted reasons; `POST /api/crawls` refuses bad input with a
//! 4xx and stores nothing. Traffic goes to 127.0.0.1 only: links to other hosts are in the
//! pages but never fetched (they are out of scope).

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{Stack, TestApp, TestDb, eventually, serve_args};
use crate::site::{Site, SiteServer};

/// POST /api/crawls.
async fn crawl(app: &TestApp, body: Value) -> (u16, Value) {
    let res = app
        .client
        .post(app.url("/api/crawls"))
        .json(&body)
        .send()
        .await
        .expect("POST /api/crawls");
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

async fn get_json(app: &TestApp, path: &str) -> Value {
    app.client
        .get(app.url(path))
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("JSON")
}

/// Waits until the crawl has no waiting or pending task; returns the batch.
async fn wait_crawl(app: &TestApp, batch: i64, timeout: Duration) -> Value {
    eventually("the crawl to finish", timeout, || async {
        let b = get_json(app, &format!("/api/batches/{batch}")).await;
        let done = b["finished_at"].is_i64()
            && b["not_started"].as_i64() == Some(0)
            && b["pending"].as_i64() == Some(0);
        done.then_some(b)
    })
    .await
}

/// Every task of a batch (paged through `/api/tasks`).
async fn tasks_of(app: &TestApp, batch: i64) -> Vec<Value> {
    let mut out = Vec::new();
    let mut before: Option<i64> = None;
    loop {
        let mut path = format!("/api/tasks?batch={batch}&limit=500");
        if let Some(b) = before {
            path.push_str(&format!("&before={b}"));
        }
        let page = get_json(app, &path).await;
        out.extend(page["tasks"].as_array().cloned().unwrap_or_default());
        match page["next_before"].as_i64() {
            Some(b) => before = Some(b),
            None => return out,
        }
    }
}

/// path → (count, status, outcome) of a crawl's tasks, keyed by URL path.
fn by_path(
    site: &SiteServer,
    tasks: &[Value],
) -> BTreeMap<String, (Option<i64>, Option<u16>, String)> {
    let base = site.url("");
    tasks
        .iter()
        .map(|t| {
            let path = t["address"]
                .as_str()
                .unwrap()
                .trim_start_matches(&base)
                .to_string();
            let r = &t["result"];
            (
                path,
                (
                    r["words_count"].as_i64(),
                    r["http_status_code"].as_u64().map(|s| s as u16),
                    t["outcome"].as_str().unwrap_or("").to_string(),
                ),
            )
        })
        .collect()
}

/// The crawl of the generated site must store exactly the model's URLs with the model's
/// counts, fetch nothing twice, skip what robots.txt disallows, and follow nothing out of
/// scope, nofollow, or behind credentials.
async fn crawls_the_site_exactly(app: &TestApp) {
    let site = SiteServer::start(Site { pages: 60 }).await;
    let (status, body) = crawl(
        app,
        json!({"start": [site.url("/index.html")], "exclude": ["/trap/"], "label": "site"}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let batch = body["batch_id"].as_i64().unwrap();
    let b = wait_crawl(app, batch, Duration::from_secs(60)).await;
    let tasks = tasks_of(app, batch).await;
    let got = by_path(&site, &tasks);
    let want = site.site.expected();
    let got_paths: Vec<&String> = got.keys().collect();
    let want_paths: Vec<&String> = want.keys().collect();
    assert_eq!(got_paths, want_paths, "URL set differs");
    for (path, (count, status)) in &want {
        let (c, s, outcome) = &got[path];
        if path.starts_with("/private/") {
            assert_eq!(outcome, "skipped", "{path}");
            assert_eq!(site.hits(path), 0, "{path} was fetched despite robots.txt");
            continue;
        }
        assert_eq!((c, s), (count, status), "{path}");
    }
    assert!(
        site.fetched_twice().is_empty(),
        "fetched twice: {:?}",
        site.fetched_twice()
    );
    assert_eq!(site.hits("/nofollow.html"), 0);
    let c = &b["crawl"];
    assert_eq!(b["kind"], "crawl");
    assert_eq!(c["discovered"].as_i64(), Some(want.len() as i64), "{b}");
    let skipped = want.keys().filter(|p| p.starts_with("/private/")).count() as i64;
    assert_eq!(c["skipped"].as_i64(), Some(skipped), "{b}");
    assert!(c["out_of_scope"].as_i64().unwrap() > 0, "{b}");
    assert!(c["max_depth_seen"].as_i64().unwrap() >= 2, "{b}");
    assert_eq!(c["rules"]["follow"], "host");
    // Depth and "found on": the index is the only seed; /p/0 was found on it.
    let index = tasks
        .iter()
        .find(|t| t["address"].as_str().unwrap().ends_with("/index.html"))
        .unwrap();
    let p0 = tasks
        .iter()
        .find(|t| t["address"].as_str().unwrap().ends_with("/p/0.html"))
        .unwrap();
    assert_eq!(
        (index["depth"].as_i64(), index["found_on"].as_i64()),
        (Some(0), None)
    );
    assert_eq!(
        (p0["depth"].as_i64(), p0["found_on"].as_i64()),
        (Some(1), index["id"].as_i64())
    );
    // A redelivered result adds nothing: the batch's total equals the distinct URLs.
    assert_eq!(b["total"].as_i64(), Some(want.len() as i64));
    pages_sort_by_count(app, batch, &want).await;
}

/// `/batches/{id}/pages` lists the crawl's pages by count, most first or fewest first,
/// and refuses a bad order or page with a 400.
async fn pages_sort_by_count(
    app: &TestApp,
    batch: i64,
    want: &BTreeMap<String, (Option<i64>, Option<u16>)>,
) {
    let counts_of = |html: &str| -> Vec<i64> {
        html.split("<tr data-count=\"")
            .skip(1)
            .filter_map(|s| s.split('"').next()?.parse().ok())
            .collect()
    };
    let get = |path: String| async move {
        let res = app
            .client
            .get(app.url(&path))
            .send()
            .await
            .expect("GET pages");
        (res.status().as_u16(), res.text().await.unwrap_or_default())
    };
    let (status, html) = get(format!("/batches/{batch}/pages")).await;
    assert_eq!(status, 200, "{html}");
    let desc = counts_of(&html);
    let mut expected: Vec<i64> = want.values().filter_map(|(c, _)| *c).collect();
    expected.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(desc, expected[..desc.len()].to_vec(), "most first");
    let (_, html) = get(format!("/batches/{batch}/pages?order=asc")).await;
    let asc = counts_of(&html);
    assert!(
        asc.windows(2).all(|w| w[0] <= w[1]),
        "fewest first: {asc:?}"
    );
    for bad in [
        "order=sideways",
        "page=0",
        "page=-3",
        "page=99999999",
        "page=x",
    ] {
        let (status, _) = get(format!("/batches/{batch}/pages?{bad}")).await;
        assert_eq!(status, 400, "{bad}");
    }
    let (status, _) = get("/batches/999999/pages".to_string()).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn embedded_crawl_matches_the_site_model() {
    let db = TestDb::sqlite();
    let app = TestApp::start(serve_args(&db.url, 4)).await;
    crawls_the_site_exactly(&app).await;
    app.stop().await;
}

#[tokio::test]
async fn production_crawl_matches_the_site_model() {
    let stack = Stack::new().await;
    let app = TestApp::start(stack.serve_args(4)).await;
    crawls_the_site_exactly(&app).await;
    app.stop().await;
    stack.cleanup().await;
}

/// An endless calendar ends at `max_pages`, with the excess counted; `max_depth` bounds a
/// chain the same way.
#[tokio::test]
async fn link_traps_end_at_the_limits_with_a_counted_reason() {
    let site = SiteServer::start(Site { pages: 10 }).await;
    let db = TestDb::sqlite();
    let app = TestApp::start(serve_args(&db.url, 4)).await;
    let (status, body) = crawl(
        &app,
        json!({"start": [site.url("/trap/0")], "max_pages": 25}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let b = wait_crawl(
        &app,
        body["batch_id"].as_i64().unwrap(),
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(b["total"].as_i64(), Some(25), "{b}");
    assert!(b["crawl"]["over_limit"].as_i64().unwrap() > 0, "{b}");

    let (status, body) = crawl(
        &app,
        json!({"start": [site.url("/trap/0")], "max_depth": 3, "exclude": ["session="]}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let b = wait_crawl(
        &app,
        body["batch_id"].as_i64().unwrap(),
        Duration::from_secs(60),
    )
    .await;
    // /trap/0 .. /trap/3: depth 0 to 3.
    assert_eq!(b["total"].as_i64(), Some(4), "{b}");
    assert_eq!(b["crawl"]["max_depth_seen"].as_i64(), Some(3), "{b}");
    assert!(b["crawl"]["over_limit"].as_i64().unwrap() >= 1, "{b}");
    app.stop().await;
}

/// Bad crawl requests are a 4xx with a reason and store nothing.
#[tokio::test]
async fn hostile_crawl_requests_are_refused_and_store_nothing() {
    let db = TestDb::sqlite();
    let app = TestApp::start(serve_args(&db.url, 0)).await;
    let cases = [
        json!({"start": ["http://127.0.0.1:1/"], "include": ["(unclosed"]}),
        json!({"start": ["http://127.0.0.1:1/"], "exclude": ["a{100000}{100000}"]}),
        json!({"start": ["http://127.0.0.1:1/"], "max_pages": 1_000_000_000u64}),
        json!({"start": ["http://127.0.0.1:1/"], "max_pages": 0}),
        json!({"start": ["http://127.0.0.1:1/"], "follow": "everywhere"}),
        json!({"start": ["http://127.0.0.1:1/"], "folow": "host"}),
        json!({"start": ["ftp://127.0.0.1/", "javascript:alert(1)"]}),
        json!({"start": []}),
        json!({"start": ["http://127.0.0.1:1/"], "sitemaps": "sometimes"}),
        json!({"start": ["http://127.0.0.1:1/"], "include": vec!["x"; 21]}),
        json!({"start": ["http://127.0.0.1:1/"], "include": ["x".repeat(5000)]}),
        json!({"start": vec!["http://127.0.0.1:1/"; 101]}),
        json!({"start": "http://127.0.0.1:1/"}),
    ];
    for body in cases {
        let (status, res) = crawl(&app, body.clone()).await;
        assert!((400..500).contains(&status), "{body} -> {status} {res}");
        assert!(
            res["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{body} -> {res}"
        );
    }
    let batches = get_json(&app, "/api/batches").await;
    assert_eq!(
        batches["batches"].as_array().map(Vec::len),
        Some(0),
        "{batches}"
    );
    app.stop().await;
}

/// Hostile pages end with counted reasons and nothing crashes: `..` past the root stays at
/// the root, credentials and other hosts (an IDN one included) are never fetched, a page of
/// 200,000 links keeps `links_per_page` of them and counts the rest, a redirect to another
/// host is counted there but its links are not followed.
#[tokio::test]
async fn hostile_pages_end_with_counted_reasons() {
    let site = SiteServer::start(Site { pages: 10 }).await;
    let db = TestDb::sqlite();
    let app = TestApp::start(serve_args(&db.url, 4)).await;
    let (status, body) = crawl(
        &app,
        json!({"start": [site.url("/hostile/index.html")], "links_per_page": 50, "max_pages": 200}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let b = wait_crawl(
        &app,
        body["batch_id"].as_i64().unwrap(),
        Duration::from_secs(60),
    )
    .await;
    let tasks = tasks_of(&app, body["batch_id"].as_i64().unwrap()).await;
    let paths: std::collections::BTreeSet<String> = by_path(&site, &tasks).into_keys().collect();
    for p in [
        "/hostile/index.html",
        "/hostile/deep/a",
        "/hostile/deep/c",
        "/hostile/many",
        "/hostile/out",
    ] {
        assert!(paths.contains(p), "{p} missing from {paths:?}");
    }
    // 50 of the 200,000 /m/ links, the rest counted as over the limit.
    assert_eq!(
        paths.iter().filter(|p| p.starts_with("/m/")).count(),
        50,
        "{paths:?}"
    );
    assert!(b["crawl"]["over_limit"].as_i64().unwrap() >= 199_950, "{b}");
    // Credentials and the IDN host: out of scope, never fetched.
    assert!(b["crawl"]["out_of_scope"].as_i64().unwrap() >= 2, "{b}");
    assert!(
        !paths
            .iter()
            .any(|p| p.contains("secret") || p.contains("bücher"))
    );
    assert_eq!(site.hits("/hostile/deep/x"), 0);
    // The redirect out goes to a closed port of another host: the fetcher retries it (a
    // transient failure), it ends failed, and nothing was added from it.
    let out = tasks
        .iter()
        .find(|t| t["address"].as_str().unwrap().ends_with("/hostile/out"))
        .unwrap();
    assert_eq!(out["outcome"], "failed", "{out}");
    let twice: Vec<String> = site
        .fetched_twice()
        .into_iter()
        .filter(|p| p != "/hostile/out")
        .collect();
    assert!(twice.is_empty(), "{twice:?}");
    app.stop().await;
}

/// `wordtally crawl` against a running server: starts the crawl, waits for it, writes
/// every page as JSON Lines, and exits 0; a refused crawl exits non-zero with the reason.
#[tokio::test]
async fn command_line_crawl_waits_and_writes_every_page() {
    let site = SiteServer::start(Site { pages: 20 }).await;
    let db = TestDb::sqlite();
    let app = TestApp::start(serve_args(&db.url, 4)).await;
    let bin = env!("CARGO_BIN_EXE_wordtally");
    let run = |args: Vec<String>| async move {
        let child = tokio::process::Command::new(bin)
            .args(&args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .env_remove("WORDTALLY_TOKEN")
            .kill_on_drop(true)
            .spawn()
            .expect("spawn wordtally crawl");
        tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
            .await
            .expect("crawl finished")
            .unwrap()
    };
    let out = run(vec![
        "crawl".into(),
        site.url("/index.html"),
        "--server".into(),
        app.base.clone(),
        "--exclude".into(),
        "/trap/".into(),
        "--format".into(),
        "jsonl".into(),
    ])
    .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("crawl 1: started from 1 seed(s)"),
        "{stderr}"
    );
    let rows: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(rows.len(), site.site.expected().len(), "{rows:?}");
    assert!(rows.iter().all(|r| r["depth"].is_i64()), "{rows:?}");

    let out = run(vec![
        "crawl".into(),
        site.url("/index.html"),
        "--server".into(),
        app.base.clone(),
        "--include".into(),
        "(".into(),
    ])
    .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("refused the crawl") && stderr.contains("include pattern"),
        "{stderr}"
    );
    app.stop().await;
}
