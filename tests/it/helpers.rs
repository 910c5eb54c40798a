//! Test support: fresh databases, Redis prefixes and NSQ brokers per test, the app started
//! on port 0 through the library (as `main` does), and request/polling helpers.

#![allow(dead_code)] // each test module uses a different subset

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use clap::Parser;
use serde_json::Value;
use tokio::time::Instant;
use wordtally::app::{Running, RunningWorker, start_serve, start_worker};
use wordtally::config::{Cli, Command, ServeArgs, WorkerArgs};

use crate::nsq_broker::{BrokerConfig, NsqTestBroker};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A name unique to this test process and call.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}_{}_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst),
        fastrand::u32(..)
    )
}

pub fn postgres_admin_url() -> String {
    std::env::var("WORDTALLY_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

pub fn redis_url() -> String {
    std::env::var("WORDTALLY_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// Polls `check` every 25 ms until it returns Some, or panics with `what` at the deadline.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A fresh PostgreSQL database, dropped by `cleanup`.
pub struct TestDb {
    pub name: String,
    pub url: String,
}

impl TestDb {
    pub async fn postgres() -> TestDb {
        use sqlx::Connection;
        let admin = postgres_admin_url();
        let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap_or_else(|e| {
            panic!(
                "PostgreSQL is required by the integration tests and is not reachable at {admin}: {e}. \
                 Start it (see README) or set WORDTALLY_TEST_POSTGRES."
            )
        });
        let name = unique("wt_it");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .expect("create test database");
        let mut url = url::Url::parse(&admin).expect("postgres url");
        url.set_path(&name);
        TestDb {
            name,
            url: url.to_string(),
        }
    }

    /// A SQLite file in a fresh temporary directory.
    pub fn sqlite() -> TestDb {
        let dir = std::env::temp_dir().join(unique("wt_it"));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("wordtally.db");
        TestDb {
            name: dir.display().to_string(),
            url: format!("sqlite://{}", path.display()),
        }
    }

    pub async fn pool(&self) -> sqlx::PgPool {
        sqlx::PgPool::connect(&self.url)
            .await
            .expect("connect test db")
    }

    pub async fn cleanup(self) {
        use sqlx::Connection;
        if self.url.starts_with("sqlite:") {
            let _ = std::fs::remove_dir_all(&self.name);
            return;
        }
        if let Ok(mut conn) = sqlx::PgConnection::connect(&postgres_admin_url()).await {
            let _ = sqlx::query(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .execute(&mut conn)
            .await;
        }
    }
}

/// Checks Redis is there (fails the test with a clear message if not).
pub async fn require_redis() {
    let url = redis_url();
    let client = redis::Client::open(url.as_str()).expect("redis url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .unwrap_or_else(|e| {
            panic!(
                "Redis is required by the integration tests and is not reachable at {url}: {e}. \
             Start it (see README) or set WORDTALLY_TEST_REDIS."
            )
        });
    let _: String = redis::cmd("PING")
        .query_async(&mut conn)
        .await
        .expect("redis ping");
}

/// Deletes every key under `prefix`.
pub async fn redis_cleanup(url: &str, prefix: &str) {
    if let Ok(client) = redis::Client::open(url)
        && let Ok(mut conn) = client.get_multiplexed_async_connection().await
    {
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{prefix}:*"))
            .query_async(&mut conn)
            .await
            .unwrap_or_default();
        for k in keys {
            let _: Result<(), _> = redis::cmd("DEL").arg(k).query_async(&mut conn).await;
        }
    }
}

/// `serve` settings as the command line would give them, plus test-friendly timings.
pub fn serve_args(database_url: &str, workers: usize) -> ServeArgs {
    let cli = Cli::try_parse_from([
        "wordtally",
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--database-url",
        database_url,
        "--workers",
        &workers.to_string(),
        "--allow-private-targets",
        "--retry-backoff-ms",
        "20",
        "--fetch-timeout-ms",
        "5000",
    ])
    .expect("serve args");
    match cli.command {
        Some(Command::Serve(mut a)) => {
            // The tests do not set these from the environment they run in.
            a.worker.redis_url = None;
            a.worker.nsqd_tcp_address = None;
            a.nsqlookupd_http_address.clear();
            a
        }
        _ => unreachable!(),
    }
}

/// The full production shape: Postgres, a Redis prefix of its own, an NSQ broker (or the
/// real nsqd named by NSQD_TCP_ADDRESS) with a topic of its own.
pub struct Stack {
    pub db: TestDb,
    pub redis_url: String,
    pub redis_prefix: String,
    pub broker: Option<NsqTestBroker>,
    pub nsqd_tcp: String,
    pub topic: String,
    pub channel: String,
}

impl Stack {
    pub async fn new() -> Stack {
        Self::with_broker(BrokerConfig::default()).await
    }

    pub async fn with_broker(config: BrokerConfig) -> Stack {
        require_redis().await;
        let db = TestDb::postgres().await;
        let (broker, nsqd_tcp) = match std::env::var("NSQD_TCP_ADDRESS") {
            Ok(addr) if !addr.is_empty() => (None, addr),
            _ => {
                let b = NsqTestBroker::start(config)
                    .await
                    .expect("start NSQ test broker");
                let addr = b.tcp_addr().to_string();
                (Some(b), addr)
            }
        };
        Stack {
            db,
            redis_url: redis_url(),
            redis_prefix: unique("wt-it"),
            broker,
            nsqd_tcp,
            topic: unique("results"),
            channel: "wordtally".into(),
        }
    }

    pub fn broker(&self) -> &NsqTestBroker {
        self.broker
            .as_ref()
            .expect("this test controls the broker; it cannot run against an external nsqd")
    }

    fn wire(&self, w: &mut WorkerArgs) {
        w.redis_url = Some(self.redis_url.clone());
        w.redis_prefix = self.redis_prefix.clone();
        w.nsqd_tcp_address = Some(self.nsqd_tcp.clone());
        w.nsq_topic = self.topic.clone();
        w.visibility_timeout_secs = 5;
    }

    pub fn serve_args(&self, workers: usize) -> ServeArgs {
        let mut a = serve_args(&self.db.url, workers);
        self.wire(&mut a.worker);
        a.nsq_channel = self.channel.clone();
        a
    }

    pub fn worker_args(&self, workers: usize) -> WorkerArgs {
        let mut a = self.serve_args(workers).worker;
        a.workers = workers;
        a
    }

    /// Environment for a `wordtally worker` child process.
    pub fn worker_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("REDIS_URL", self.redis_url.clone()),
            ("REDIS_PREFIX", self.redis_prefix.clone()),
            ("NSQD_TCP_ADDRESS", self.nsqd_tcp.clone()),
            ("NSQ_TOPIC", self.topic.clone()),
            ("VISIBILITY_TIMEOUT_SECS", "5".into()),
            ("RETRY_BACKOFF_MS", "20".into()),
            ("RUST_LOG", "warn,wordtally=info".into()),
        ]
    }

    pub async fn cleanup(self) {
        redis_cleanup(&self.redis_url, &self.redis_prefix).await;
        if let Some(b) = self.broker {
            let _ = b.stop().await;
        }
        self.db.cleanup().await;
    }
}

/// The app, started through the library on port 0.
pub struct TestApp {
    pub running: Running,
    pub base: String,
    pub client: reqwest::Client,
}

impl TestApp {
    pub async fn start(args: ServeArgs) -> TestApp {
        let running = start_serve(args).await.expect("start serve");
        let base = format!("http://{}", running.addr);
        TestApp {
            running,
            base,
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("client"),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// POST /api/tasks; returns the status and the JSON body.
    pub async fn submit(&self, body: Value) -> (u16, Value) {
        let res = self
            .client
            .post(self.url("/api/tasks"))
            .json(&body)
            .send()
            .await
            .expect("POST /api/tasks");
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    /// Submits addresses with default options and returns the created task ids.
    pub async fn submit_addresses(&self, addresses: &[String]) -> Vec<i64> {
        let (status, body) = self
            .submit(serde_json::json!({ "addresses": addresses }))
            .await;
        assert_eq!(status, 201, "submit failed: {body}");
        body["tasks"]
            .as_array()
            .expect("tasks")
            .iter()
            .map(|t| t["id"].as_i64().expect("id"))
            .collect()
    }

    pub async fn task(&self, id: i64) -> Value {
        self.client
            .get(self.url(&format!("/api/tasks/{id}")))
            .send()
            .await
            .expect("GET task")
            .json()
            .await
            .expect("task json")
    }

    /// Waits until `n` tasks in total are FINISHED (reads the counters: one row).
    pub async fn wait_finished(&self, n: i64, timeout: Duration) {
        let store = self.running.store.clone();
        eventually(&format!("{n} tasks finished"), timeout, || {
            let store = store.clone();
            async move {
                let s = store.stats().await.ok()?;
                (s.finished >= n).then_some(())
            }
        })
        .await;
    }

    pub async fn stop(self) {
        self.running.stop().await.expect("graceful stop");
    }
}

/// Starts an in-process `worker` (the same code as the `worker` subcommand).
pub async fn start_worker_in_process(args: WorkerArgs) -> RunningWorker {
    start_worker(args).await.expect("start worker")
}

// ------------------------------------------------------------------ fault-test support
//
// Used by `faults.rs`, `hostile.rs` and `ssrf.rs`: services the test can stop and start,
// `wordtally` child processes, and checks made on the database itself (so they hold
// whichever process wrote it).

/// A free TCP port on 127.0.0.1 (bound, then released).
pub fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind port 0")
        .local_addr()
        .expect("local addr")
        .port()
}

/// A `redis-server` of the test's own on a fixed port, without persistence, that the test
/// stops (SIGKILL: everything it held is lost) and starts again.
pub struct TestRedis {
    pub port: u16,
    child: Option<tokio::process::Child>,
}

impl TestRedis {
    pub async fn start(port: u16) -> TestRedis {
        let child = tokio::process::Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("redis-server must be installed to run this test");
        let url = format!("redis://127.0.0.1:{port}");
        eventually("own redis-server up", Duration::from_secs(10), || {
            let url = url.clone();
            async move {
                let c = redis::Client::open(url).ok()?;
                let mut conn = c.get_multiplexed_async_connection().await.ok()?;
                redis::cmd("PING")
                    .query_async::<String>(&mut conn)
                    .await
                    .ok()
            }
        })
        .await;
        TestRedis {
            port,
            child: Some(child),
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub async fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill().await;
            let _ = c.wait().await;
        }
    }
}

/// A `wordtally` child process (the real binary), killed when dropped. Its stderr goes to a
/// log file that is printed if the test fails while it runs.
pub struct WtProcess {
    pub name: String,
    child: tokio::process::Child,
    log: std::path::PathBuf,
}

impl WtProcess {
    pub fn spawn(name: &str, args: &[&str], env: &[(&str, String)]) -> WtProcess {
        let log = std::env::temp_dir().join(format!("{}.log", unique(name)));
        let file = std::fs::File::create(&log).expect("log file");
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_wordtally"));
        cmd.args(args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(file)
            .kill_on_drop(true);
        // Nothing from the environment the tests run in may leak into the child.
        for var in [
            "DATABASE_URL",
            "REDIS_URL",
            "REDIS_PREFIX",
            "NSQD_TCP_ADDRESS",
            "NSQLOOKUPD_HTTP_ADDRESS",
            "NSQ_TOPIC",
            "NSQ_CHANNEL",
            "ALLOW_TARGETS",
            "ALLOW_PRIVATE_TARGETS",
            "LISTEN",
            "WORKERS",
        ] {
            cmd.env_remove(var);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("spawn wordtally");
        WtProcess {
            name: name.to_string(),
            child,
            log,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id().expect("process still running")
    }

    /// SIGKILL: no chance to clean up.
    pub async fn kill(&mut self) {
        let _ = self.child.kill().await;
    }

    /// SIGTERM, then the exit status (panics if it does not exit within `timeout`).
    pub async fn terminate(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let pid = self.pid();
        let ok = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("run kill")
            .success();
        assert!(ok, "kill -TERM {pid} failed");
        match tokio::time::timeout(timeout, self.child.wait()).await {
            Ok(status) => status.expect("wait"),
            Err(_) => panic!(
                "{} did not exit within {timeout:?} of SIGTERM; log:\n{}",
                self.name,
                self.log_text()
            ),
        }
    }

    /// Waits for the process to exit by itself (panics after `timeout`).
    pub async fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        match tokio::time::timeout(timeout, self.child.wait()).await {
            Ok(status) => status.expect("wait"),
            Err(_) => panic!("{} still running after {timeout:?}", self.name),
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Panics with the log if the process already exited.
    pub fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!(
                "{} exited early ({status}); log:\n{}",
                self.name,
                self.log_text()
            );
        }
    }
}

impl Drop for WtProcess {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("----- log of {} -----\n{}", self.name, self.log_text());
        }
        let _ = std::fs::remove_file(&self.log);
    }
}

impl Stack {
    /// Environment for a `wordtally serve` child process on this stack.
    pub fn serve_env(&self, listen: &str) -> Vec<(&'static str, String)> {
        let mut env = self.worker_env();
        env.extend([
            ("DATABASE_URL", self.db.url.clone()),
            ("NSQ_CHANNEL", self.channel.clone()),
            ("LISTEN", listen.to_string()),
        ]);
        env
    }

    /// Stops the broker (keeping what `stop` returns) and starts a new one on the same
    /// ports, with its messages (`keep`) or without them (a crash of an in-memory nsqd).
    /// Returns how many messages the old one held. `down` is how long it stays away.
    pub async fn restart_broker(&mut self, keep: bool, down: Duration) -> usize {
        let old = self
            .broker
            .take()
            .expect("this test controls the broker; it cannot run against an external nsqd");
        let (tcp, http) = (old.tcp_addr(), old.http_addr());
        let state = old.stop().await;
        let held = state.message_count();
        tokio::time::sleep(down).await;
        let new =
            NsqTestBroker::start_on(BrokerConfig::default(), tcp, http, keep.then_some(state))
                .await
                .expect("restart NSQ test broker on the same ports");
        self.broker = Some(new);
        held
    }
}

/// Task counts by status, read from the database.
pub async fn db_status_counts(pool: &sqlx::PgPool) -> Option<(i64, i64, i64)> {
    sqlx::query_as(
        "SELECT COUNT(*) FILTER (WHERE task_status = 'NOT_STARTED'), \
                COUNT(*) FILTER (WHERE task_status = 'PENDING'), \
                COUNT(*) FILTER (WHERE task_status = 'FINISHED') FROM task",
    )
    .fetch_one(pool)
    .await
    .ok()
}

/// Waits until at least `n` tasks are FINISHED, reading the database (not the counters).
pub async fn db_wait_finished(pool: &sqlx::PgPool, n: i64, timeout: Duration) {
    eventually(&format!("{n} tasks FINISHED"), timeout, || async move {
        let (_, _, finished) = db_status_counts(pool).await?;
        (finished >= n).then_some(())
    })
    .await;
}

/// The end-of-run check of every fault test: each task FINISHED, exactly one result row
/// per task, no error, and the count `expected` gives for it; the counters agree.
pub async fn assert_every_task_counted(
    pool: &sqlx::PgPool,
    expected: &std::collections::HashMap<i64, i64>,
) {
    let (rows, distinct): (i64, i64) =
        sqlx::query_as("SELECT COUNT(*), COUNT(DISTINCT task_id) FROM result")
            .fetch_one(pool)
            .await
            .expect("count results");
    assert_eq!(rows, expected.len() as i64, "one result row per task");
    assert_eq!(distinct, expected.len() as i64, "one result row per task");
    let tasks: Vec<(i64, String, Option<i64>, Option<String>)> = sqlx::query_as(
        "SELECT t.id, t.task_status, r.words_count, r.error \
         FROM task t LEFT JOIN result r ON r.task_id = t.id ORDER BY t.id",
    )
    .fetch_all(pool)
    .await
    .expect("read tasks");
    assert_eq!(tasks.len(), expected.len(), "no task more, none less");
    for (id, status, count, error) in tasks {
        let want = expected
            .get(&id)
            .unwrap_or_else(|| panic!("unexpected task {id}"));
        assert_eq!(status, "FINISHED", "task {id}");
        assert_eq!(error, None, "task {id}");
        assert_eq!(count, Some(*want), "task {id}");
    }
    let (ns, p, f): (i64, i64, i64) =
        sqlx::query_as("SELECT not_started, pending, finished FROM task_stats WHERE id = 1")
            .fetch_one(pool)
            .await
            .expect("read counters");
    assert_eq!(
        (ns, p, f),
        (0, 0, expected.len() as i64),
        "the counters agree with the rows"
    );
}

/// Logs of the in-process app to the test's output when RUST_LOG is set (off otherwise).
pub fn init_tracing() {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
}

/// A plausible result for `task_id` with count `n`, as a worker would publish it.
pub fn result_for(task_id: i64, n: i64) -> wordtally::model::JobResult {
    use wordtally::model::{JobResult, ResultRecord, now_ms};
    JobResult {
        task_id,
        run: 1,
        result: ResultRecord {
            words_count: Some(n),
            http_status_code: Some(200),
            error: None,
            timestamp: now_ms(),
            final_url: None,
            content_type: Some("text/html".into()),
            charset: Some("UTF-8".into()),
            bytes_read: 1,
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
        worker: "test".into(),
    }
}
