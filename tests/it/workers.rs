//! Seeing the system (DESIGN §12): worker heartbeats from real `worker` processes (listed
//! with their concurrency, gone after SIGKILL, removed at once on SIGTERM), queue lag,
//! rollups against a recount of the result table on both databases, a worker's own
//! `/metrics`, the bus depth from nsqd's `/stats`, and the JSON contract of
//! `/api/workers` and `/api/throughput` with hostile parameters.

use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;
use wordtally::outcome::Outcome;
use wordtally::store::Store;
use wordtally::store::rollups::{Tally, bucket_of};

use crate::helpers::{
    Stack, TestApp, TestDb, WtProcess, eventually, free_tcp_port, result_for, serve_args,
    start_worker_in_process,
};
use crate::pages::PageServer;

/// Beat interval the tests give workers: "gone" then comes within 3 × 300 ms.
const BEAT_MS: u64 = 300;

async fn get_json(app: &TestApp, path: &str) -> (u16, Value) {
    let res = app
        .client
        .get(app.url(path))
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

async fn get_text(app: &TestApp, path: &str) -> (u16, String) {
    let res = app
        .client
        .get(app.url(path))
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    let status = res.status().as_u16();
    (status, res.text().await.unwrap_or_default())
}

/// The worker with `pid` in an `/api/workers` answer.
fn worker_with_pid(body: &Value, pid: u32) -> Option<Value> {
    body["workers"]
        .as_array()?
        .iter()
        .find(|w| w["pid"].as_u64() == Some(u64::from(pid)))
        .cloned()
}

fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    k.sort();
    k
}

fn worker_env(stack: &Stack) -> Vec<(&'static str, String)> {
    let mut env = stack.worker_env();
    env.push(("HEARTBEAT_INTERVAL_MS", BEAT_MS.to_string()));
    env
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_processes_appear_turn_gone_when_killed_and_leave_on_sigterm() {
    crate::helpers::init_tracing();
    let stack = Stack::new().await;
    let app = TestApp::start(stack.serve_args(0)).await;
    let env = worker_env(&stack);
    let mut killed = WtProcess::spawn(
        "worker-killed",
        &["worker", "--allow-private-targets", "--workers", "3"],
        &env,
    );
    let mut stopped = WtProcess::spawn(
        "worker-stopped",
        &["worker", "--allow-private-targets", "--workers", "5"],
        &env,
    );
    let (pk, ps) = (killed.pid(), stopped.pid());
    eventually(
        "both workers listed alive with their concurrency",
        Duration::from_secs(30),
        || {
            killed.assert_running();
            stopped.assert_running();
            let app = &app;
            async move {
                let (_, body) = get_json(app, "/api/workers").await;
                let k = worker_with_pid(&body, pk)?;
                let s = worker_with_pid(&body, ps)?;
                (k["alive"] == true
                    && s["alive"] == true
                    && k["concurrency"] == 3
                    && s["concurrency"] == 5)
                    .then_some(())
            }
        },
    )
    .await;
    let (_, body) = get_json(&app, "/api/workers").await;
    let k = worker_with_pid(&body, pk).expect("listed");
    assert_eq!(
        k["id"].as_str().map(|s| s.ends_with(&format!(":{pk}"))),
        Some(true)
    );
    assert_eq!(k["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(k["busy"], 0);

    // SIGKILL: no goodbye. Gone after 3 missed beats (documented), still listed as gone.
    let t = Instant::now();
    killed.kill().await;
    eventually(
        "the killed worker turns not-alive",
        Duration::from_secs(10),
        || {
            let app = &app;
            async move {
                let (_, body) = get_json(app, "/api/workers").await;
                let k = worker_with_pid(&body, pk)?;
                (k["alive"] == false).then_some(())
            }
        },
    )
    .await;
    let took = t.elapsed();
    eprintln!("[workers] SIGKILLed worker shown as gone after {took:?} (beat {BEAT_MS} ms)");
    assert!(
        took <= Duration::from_millis(3 * BEAT_MS + 1_500),
        "gone after {took:?}, documented: 3 beats"
    );

    // SIGTERM: a goodbye, so the entry is gone the moment the process has exited.
    let status = stopped.terminate(Duration::from_secs(30)).await;
    assert!(status.success(), "worker exit status {status}");
    let (_, body) = get_json(&app, "/api/workers").await;
    assert!(
        worker_with_pid(&body, ps).is_none(),
        "a gracefully stopped worker leaves at once: {body}"
    );
    assert!(
        worker_with_pid(&body, pk).is_some(),
        "the killed one stays, as gone"
    );
    app.stop().await;
    stack.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lag_grows_while_nobody_works_and_falls_when_a_worker_starts() {
    crate::helpers::init_tracing();
    let pages = PageServer::start().await;
    let stack = Stack::new().await;
    let app = TestApp::start(stack.serve_args(0)).await;
    let n = 12;
    let addresses: Vec<String> = (0..n).map(|i| pages.url(&format!("/count/{i}"))).collect();
    app.submit_addresses(&addresses).await;

    let first = eventually("jobs waiting in the queue", Duration::from_secs(20), || {
        let app = &app;
        async move {
            let (_, body) = get_json(app, "/api/workers").await;
            (body["queue"]["depth"] == n).then(|| body["queue"]["lag_ms"].as_i64())?
        }
    })
    .await;
    eventually("the lag grows", Duration::from_secs(10), || {
        let app = &app;
        async move {
            let (_, body) = get_json(app, "/api/workers").await;
            let lag = body["queue"]["lag_ms"].as_i64()?;
            (lag >= first + 500).then_some(())
        }
    })
    .await;
    let (status, alert) = get_text(&app, "/workers/alert").await;
    assert_eq!(status, 200);
    assert!(
        alert.contains(&format!("nobody is working on {n} waiting tasks")),
        "{alert}"
    );

    let mut args = stack.worker_args(4);
    args.heartbeat_interval_ms = BEAT_MS;
    let worker = start_worker_in_process(args).await;
    app.wait_finished(n, Duration::from_secs(30)).await;
    eventually(
        "queue empty, lag back to 0",
        Duration::from_secs(10),
        || {
            let app = &app;
            async move {
                let (_, body) = get_json(app, "/api/workers").await;
                (body["queue"]["depth"] == 0
                    && body["queue"]["unacked"] == 0
                    && body["queue"]["lag_ms"] == 0)
                    .then_some(())
            }
        },
    )
    .await;
    let (_, alert) = get_text(&app, "/workers/alert").await;
    assert!(!alert.contains("nobody"), "{alert}");
    worker.stop().await.expect("worker stop");
    app.stop().await;
    stack.cleanup().await;
}

/// What the rollups should hold, recounted from the stored results.
async fn recount(store: &Store, ids: &[i64]) -> Tally {
    let mut t = Tally::default();
    for id in ids {
        let view = store.get_task(*id).await.expect("read").expect("task");
        let r = view.result.expect("finished task has a result");
        match Outcome::of(&r) {
            Outcome::Ok => t.ok += 1,
            Outcome::HttpError => t.http_error += 1,
            Outcome::Failed => t.failed += 1,
            Outcome::Truncated => t.truncated += 1,
            Outcome::Cancelled => t.cancelled += 1,
            Outcome::Skipped => t.skipped += 1,
        }
        t.bytes += r.bytes_read;
        t.duration_sum += r.duration_ms;
        t.hist[bucket_of(r.duration_ms)] += 1;
    }
    t
}

async fn rollups_equal_a_recount(db: TestDb) {
    crate::helpers::init_tracing();
    let pages = PageServer::start().await;
    let mut args = serve_args(&db.url, 4);
    args.worker.max_body_bytes = 20_000;
    args.worker.fetch_attempts = 1;
    let app = TestApp::start(args).await;
    let closed = free_tcp_port();
    let mut addresses: Vec<String> = (0..6).map(|i| pages.url(&format!("/count/{i}"))).collect();
    addresses.extend((0..3).map(|_| pages.url("/status/404")));
    addresses.extend((0..2).map(|_| pages.url("/count/5000")));
    addresses.extend((0..2).map(|i| format!("http://127.0.0.1:{closed}/{i}")));
    let ids = app.submit_addresses(&addresses).await;
    app.wait_finished(ids.len() as i64, Duration::from_secs(60))
        .await;
    let store = app.running.store.clone();
    let want = recount(&store, &ids).await;
    assert_eq!(
        (want.ok, want.http_error, want.truncated, want.failed),
        (6, 3, 2, 2),
        "the mixed run has every outcome"
    );
    let got = store.rollup_total().await.expect("rollups");
    assert_eq!(got, want, "rollups equal the recount");

    // A duplicate delivery changes nothing in the rollups.
    let v0 = store.stats().await.expect("stats").version;
    app.running
        .memory_bus
        .as_ref()
        .expect("embedded bus")
        .publish_raw(serde_json::to_vec(&result_for(ids[0], 99)).expect("json"))
        .expect("publish");
    eventually("duplicate processed", Duration::from_secs(10), || {
        let store = store.clone();
        async move { (store.stats().await.ok()?.version > v0).then_some(()) }
    })
    .await;
    assert_eq!(store.rollup_total().await.expect("rollups"), want);

    // The API shows the same totals in the last hour.
    let (status, body) = get_json(&app, "/api/throughput?window=1h").await;
    assert_eq!(status, 200);
    let buckets = body["buckets"].as_array().expect("buckets");
    let sum = |k: &str| {
        buckets
            .iter()
            .map(|b| b[k].as_i64().unwrap_or(0))
            .sum::<i64>()
    };
    assert_eq!(
        (
            sum("ok"),
            sum("http_error"),
            sum("failed"),
            sum("truncated")
        ),
        (6, 3, 2, 2)
    );
    let p95 = buckets.iter().filter_map(|b| b["p95_ms"].as_i64()).max();
    assert!(p95.is_some(), "a bucket with fetches has a p95: {body}");
    app.stop().await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollups_equal_a_recount_on_sqlite() {
    rollups_equal_a_recount(TestDb::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollups_equal_a_recount_on_postgres() {
    rollups_equal_a_recount(TestDb::postgres().await).await;
}

/// The value of the sample `name` (labels included, as written) in Prometheus text.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_process_serves_metrics_of_its_own_fetches() {
    crate::helpers::init_tracing();
    let pages = PageServer::start().await;
    let stack = Stack::new().await;
    let app = TestApp::start(stack.serve_args(0)).await;
    let port = free_tcp_port();
    let listen = format!("127.0.0.1:{port}");
    let mut worker = WtProcess::spawn(
        "worker-metrics",
        &[
            "worker",
            "--allow-private-targets",
            "--workers",
            "2",
            "--metrics-listen",
            &listen,
        ],
        &worker_env(&stack),
    );
    let mut addresses: Vec<String> = (0..3).map(|i| pages.url(&format!("/count/{i}"))).collect();
    addresses.push(pages.url("/status/404"));
    app.submit_addresses(&addresses).await;
    app.wait_finished(4, Duration::from_secs(30)).await;
    let client = reqwest::Client::new();
    let url = format!("http://{listen}/metrics");
    let text = eventually(
        "worker metrics count every job",
        Duration::from_secs(10),
        || {
            worker.assert_running();
            let (client, url) = (&client, &url);
            async move {
                let text = client.get(url).send().await.ok()?.text().await.ok()?;
                (sample(&text, "wordtally_jobs_acked_total") == Some(4.0)).then_some(text)
            }
        },
    )
    .await;
    assert_eq!(
        sample(&text, "wordtally_fetches_total{outcome=\"ok\"}"),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "wordtally_fetches_total{outcome=\"http_error\"}"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "wordtally_jobs_reserved_total"),
        Some(4.0),
        "{text}"
    );
    assert!(
        text.contains("wordtally_fetch_duration_seconds_bucket"),
        "{text}"
    );

    // serve's own /metrics has the queue and worker gauges.
    let (_, serve_text) = get_text(&app, "/metrics").await;
    assert_eq!(
        sample(&serve_text, "wordtally_queue_depth"),
        Some(0.0),
        "{serve_text}"
    );
    assert_eq!(
        sample(&serve_text, "wordtally_workers_alive"),
        Some(1.0),
        "{serve_text}"
    );
    assert!(
        serve_text.contains("wordtally_queue_lag_seconds"),
        "{serve_text}"
    );
    let status = worker.terminate(Duration::from_secs(30)).await;
    assert!(status.success());
    app.stop().await;
    stack.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bus_depth_comes_from_nsqd_stats_directly_or_through_lookupd() {
    crate::helpers::init_tracing();
    let stack = Stack::new().await;
    let http = stack.broker().http_addr().to_string();
    for (direct, lookupd) in [(Some(http.clone()), vec![]), (None, vec![http.clone()])] {
        let mut args = stack.serve_args(0);
        args.nsqd_http_address = direct;
        args.nsqlookupd_http_address = lookupd;
        let app = TestApp::start(args).await;
        let body = eventually("bus depth known", Duration::from_secs(20), || {
            let app = &app;
            async move {
                let (_, body) = get_json(app, "/api/workers").await;
                body["bus"]["depth"].is_u64().then_some(body)
            }
        })
        .await;
        assert_eq!(body["bus"]["kind"], "nsq");
        assert!(body["bus"]["in_flight"].is_u64(), "{body}");
        app.stop().await;
    }
    stack.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_contract_shapes_and_hostile_window_parameters() {
    crate::helpers::init_tracing();
    let db = TestDb::sqlite();
    let app = TestApp::start(serve_args(&db.url, 2)).await;

    let body = eventually(
        "the local pool's heartbeat",
        Duration::from_secs(10),
        || {
            let app = &app;
            async move {
                let (_, body) = get_json(app, "/api/workers").await;
                (body["workers"].as_array()?.len() == 1).then_some(body)
            }
        },
    )
    .await;
    assert_eq!(keys(&body), ["bus", "queue", "workers"]);
    assert_eq!(
        keys(&body["workers"][0]),
        [
            "alive",
            "busy",
            "concurrency",
            "done",
            "failed",
            "host",
            "id",
            "last_seen",
            "pid",
            "started_at",
            "version"
        ]
    );
    assert_eq!(body["workers"][0]["concurrency"], 2);
    assert_eq!(body["workers"][0]["pid"], std::process::id());
    assert_eq!(keys(&body["queue"]), ["depth", "kind", "lag_ms", "unacked"]);
    assert_eq!(body["queue"]["kind"], "memory");
    assert_eq!(
        body["bus"],
        serde_json::json!({"kind": "memory", "depth": null, "in_flight": null})
    );

    for (q, n, step) in [
        ("", 60, 60_000),
        ("?window=1h", 60, 60_000),
        ("?window=24h", 96, 900_000),
    ] {
        let (status, body) = get_json(&app, &format!("/api/throughput{q}")).await;
        assert_eq!(status, 200, "{q}");
        assert_eq!(keys(&body), ["buckets"]);
        let b = body["buckets"].as_array().expect("buckets");
        assert_eq!(b.len(), n, "{q}");
        assert_eq!(
            keys(&b[0]),
            [
                "cancelled",
                "failed",
                "http_error",
                "ok",
                "p50_ms",
                "p95_ms",
                "start",
                "truncated"
            ]
        );
        assert_eq!(
            b[1]["start"].as_i64().unwrap() - b[0]["start"].as_i64().unwrap(),
            step
        );
        assert!(b[0]["p50_ms"].is_null());
    }
    let long = format!("?window={}", "1h".repeat(5_000));
    for q in [
        "?window=",
        "?window=7d",
        "?window=1H",
        "?window=1h&window=24h",
        "?window=1h%00",
        "?window=%FF%FE",
        "?window=-1",
        "?window=1h;drop",
        long.as_str(),
    ] {
        let (status, body) = get_json(&app, &format!("/api/throughput{q}")).await;
        assert_eq!(status, 400, "{q}: {body}");
        assert!(
            body["error"].as_str().is_some_and(|e| e.contains("window")),
            "{q}: {body}"
        );
    }
    // The pages render (with their SVG charts) and reject a bad window too.
    let (status, html) = get_text(&app, "/workers").await;
    assert_eq!(status, 200);
    assert!(html.contains("<svg class=\"wt-chart\"") && html.contains("workers-panel"));
    let (status, _) = get_text(&app, "/workers/panel?window=24h").await;
    assert_eq!(status, 200);
    let (status, _) = get_text(&app, "/workers/panel?window=nope").await;
    assert_eq!(status, 400);
    let (status, html) = get_text(&app, "/workers/compact").await;
    assert_eq!(status, 200);
    assert!(
        html.contains("<svg") && html.contains("1 worker alive"),
        "{html}"
    );
    app.stop().await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_format_json_writes_one_object_per_line_and_text_has_no_colours_off_a_terminal() {
    let stack = Stack::new().await;
    for format in ["json", "text"] {
        let mut env = worker_env(&stack);
        env.push(("LOG_FORMAT", format.to_string()));
        let mut w = WtProcess::spawn(
            &format!("worker-log-{format}"),
            &["worker", "--allow-private-targets", "--workers", "1"],
            &env,
        );
        eventually(
            "the start-up line is logged",
            Duration::from_secs(20),
            || {
                w.assert_running();
                let log = w.log_text();
                async move { log.contains("wordtally worker running").then_some(()) }
            },
        )
        .await;
        let status = w.terminate(Duration::from_secs(30)).await;
        assert!(status.success());
        let log = w.log_text();
        assert!(!log.contains('\u{1b}'), "no ANSI codes in a file: {log}");
        let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
        assert!(lines.len() >= 2, "{log}");
        if format == "json" {
            for line in &lines {
                let v: Value = serde_json::from_str(line)
                    .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
                assert!(
                    v["level"].is_string() && v["fields"]["message"].is_string(),
                    "{line}"
                );
            }
        } else {
            assert!(
                lines
                    .iter()
                    .all(|l| serde_json::from_str::<Value>(l).is_err())
            );
        }
    }
    // A typo is an error at start-up, not silently the default.
    let mut env = worker_env(&stack);
    env.push(("LOG_FORMAT", "yaml".into()));
    let mut bad = WtProcess::spawn("worker-log-bad", &["worker", "--workers", "1"], &env);
    let status = bad.wait_exit(Duration::from_secs(10)).await;
    assert!(!status.success());
    assert!(bad.log_text().contains("LOG_FORMAT"), "{}", bad.log_text());
    stack.cleanup().await;
}
