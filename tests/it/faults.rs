//! Faults against the real services (DESIGN §2, "nothing lost"): a worker process killed
//! with SIGKILL, the NSQ broker restarted with and without its messages, Postgres
//! connections terminated, Redis killed mid-run, `serve` restarted while results wait in
//! NSQ, floods of duplicate and malformed results, and SIGTERM to `serve` and `worker`
//! processes. Each run submits a few hundred tasks over local pages and ends with the same
//! check on the database: every task FINISHED, exactly one result row each, the right count.
//!
//! Timings are made short through the flags (visibility timeout 5 s, reconciler sweep 1 s,
//! pending deadline 5 s where results are meant to be lost), so each test takes seconds.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sqlx::Connection;
use wordtally::bus::ResultPublisher;
use wordtally::bus::nsq::NsqPublisher;
use wordtally::config::{ServeArgs, WorkerArgs};

use crate::helpers::{
    Stack, TestApp, TestRedis, WtProcess, assert_every_task_counted, db_status_counts,
    db_wait_finished, eventually, free_tcp_port, result_for, start_worker_in_process,
};
use crate::pages::PageServer;

/// How long any one fault run may take to settle after the fault.
const SETTLE: Duration = Duration::from_secs(60);

/// Pages whose default count is `i % 13`, answered after `delay_ms` (so jobs are in flight
/// when the fault lands); returns the addresses and the count each must give.
fn run_pages(pages: &PageServer, n: usize, delay_ms: u64) -> Vec<(String, i64)> {
    (0..n)
        .map(|i| {
            let c = i % 13;
            (pages.url(&format!("/slow/{delay_ms}/{c}")), c as i64)
        })
        .collect()
}

/// Submits through the JSON API in chunks of 100; returns the created tasks' JSON.
async fn submit_all(client: &reqwest::Client, base: &str, addresses: &[String]) -> Vec<Value> {
    let mut out = Vec::new();
    for chunk in addresses.chunks(100) {
        let res = client
            .post(format!("{base}/api/tasks"))
            .json(&json!({ "addresses": chunk }))
            .send()
            .await
            .expect("POST /api/tasks");
        let status = res.status().as_u16();
        let body: Value = res.json().await.unwrap_or(Value::Null);
        assert_eq!(status, 201, "submit: {body}");
        out.extend(body["tasks"].as_array().expect("tasks").iter().cloned());
    }
    assert_eq!(out.len(), addresses.len());
    out
}

/// Task id → expected count, from what `submit_all` returned.
fn expectations(tasks: &[Value], run: &[(String, i64)]) -> HashMap<i64, i64> {
    tasks
        .iter()
        .zip(run)
        .map(|(t, (_, c))| (t["id"].as_i64().expect("id"), *c))
        .collect()
}

fn addresses(run: &[(String, i64)]) -> Vec<String> {
    run.iter().map(|(a, _)| a.clone()).collect()
}

/// Worker settings for these runs: all pages are on one host, so allow more at once.
pub(crate) fn fast_worker(mut w: WorkerArgs) -> WorkerArgs {
    w.per_host_concurrency = 16;
    w
}

/// The reconciler re-queues quickly (results may be lost on purpose), and gives up late.
pub(crate) fn quick_reconciler(a: &mut ServeArgs) {
    a.sweep_interval_secs = 1;
    a.requeue_not_started_secs = 1;
    a.pending_deadline_secs = 5;
    a.max_task_attempts = 20;
}

/// Pending (reserved, unacknowledged) jobs per consumer of the stack's stream.
pub(crate) async fn pending_by_consumer(redis_url: &str, prefix: &str) -> Vec<(String, usize)> {
    let Ok(client) = redis::Client::open(redis_url) else {
        return Vec::new();
    };
    let Ok(mut conn) = client.get_multiplexed_async_connection().await else {
        return Vec::new();
    };
    let reply: Result<redis::streams::StreamPendingReply, _> = redis::cmd("XPENDING")
        .arg(format!("{prefix}:jobs"))
        .arg(format!("{prefix}:workers"))
        .query_async(&mut conn)
        .await;
    match reply {
        Ok(redis::streams::StreamPendingReply::Data(d)) => d
            .consumers
            .into_iter()
            .map(|c| (c.name, c.pending))
            .collect(),
        _ => Vec::new(),
    }
}

/// Entries left in the job stream (acknowledged jobs are deleted).
pub(crate) async fn stream_len(redis_url: &str, prefix: &str) -> Option<usize> {
    let client = redis::Client::open(redis_url).ok()?;
    let mut conn = client.get_multiplexed_async_connection().await.ok()?;
    redis::cmd("XLEN")
        .arg(format!("{prefix}:jobs"))
        .query_async(&mut conn)
        .await
        .ok()
}

/// Jobs the process with this pid holds reserved (consumer names are host-pid-random).
pub(crate) async fn held_by_pid(stack: &Stack, pid: u32) -> usize {
    let tag = format!("-{pid}-");
    pending_by_consumer(&stack.redis_url, &stack.redis_prefix)
        .await
        .into_iter()
        .filter(|(name, _)| name.contains(&tag))
        .map(|(_, n)| n)
        .sum()
}

/// Kills that surely land inside a result transaction, `rounds` times: hold the counters
/// row locked (every writer updates it last), wait until a transaction is blocked on it,
/// terminate every other backend of the test's database, release, then `between`.
/// Returns how many backends were terminated.
pub(crate) async fn kill_backends_inside_result_transactions(
    stack: &Stack,
    admin: &sqlx::PgPool,
    rounds: usize,
    mut between: impl AsyncFnMut(),
) -> usize {
    let mut locker = sqlx::PgConnection::connect(&stack.db.url)
        .await
        .expect("locker connection");
    let locker_pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut locker)
        .await
        .unwrap();
    let mut in_tx_kills = 0;
    for _ in 0..rounds {
        sqlx::query("BEGIN").execute(&mut locker).await.unwrap();
        sqlx::query("SELECT 1 FROM task_stats WHERE id = 1 FOR UPDATE")
            .execute(&mut locker)
            .await
            .unwrap();
        eventually("a transaction waiting on the counters", SETTLE, || async {
            let waiting: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM pg_stat_activity \
                 WHERE datname = $1 AND wait_event_type = 'Lock'",
            )
            .bind(&stack.db.name)
            .fetch_one(admin)
            .await
            .ok()?;
            (waiting > 0).then_some(())
        })
        .await;
        let killed: Vec<bool> = sqlx::query_scalar(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = $1 AND pid <> $2",
        )
        .bind(&stack.db.name)
        .bind(locker_pid)
        .fetch_all(admin)
        .await
        .expect("terminate backends");
        in_tx_kills += killed.iter().filter(|k| **k).count();
        sqlx::query("ROLLBACK").execute(&mut locker).await.unwrap();
        between().await;
    }
    let _ = locker.close().await;
    in_tx_kills
}

/// Terminates every backend of the test's database but the admin's own; how many.
pub(crate) async fn terminate_backends(stack: &Stack, admin: &sqlx::PgPool) -> usize {
    let killed: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = $1 AND pid <> pg_backend_pid()",
    )
    .bind(&stack.db.name)
    .fetch_all(admin)
    .await
    .expect("terminate backends");
    killed.iter().filter(|k| **k).count()
}

fn report(what: &str, n: usize, started: Instant) {
    eprintln!(
        "[faults] {what}: {n} tasks, {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

// ------------------------------------------------------------------------ 1. SIGKILL

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_process_killed_with_sigkill_loses_nothing() {
    crate::helpers::init_tracing();
    let started = Instant::now();
    let pages = PageServer::start_full().await;
    let stack = Stack::new().await;
    let app = TestApp::start(stack.serve_args(0)).await;
    let pool = stack.db.pool().await;
    let mut env = stack.worker_env();
    env.push(("PER_HOST_CONCURRENCY", "16".into()));
    let mut victim = WtProcess::spawn(
        "worker-victim",
        &["worker", "--allow-private-targets", "--workers", "8"],
        &env,
    );
    let survivor = start_worker_in_process(fast_worker(stack.worker_args(4))).await;

    let n = 200;
    let run = run_pages(&pages, n, 150);
    let tasks = submit_all(&app.client, &app.base, &addresses(&run)).await;
    let expected = expectations(&tasks, &run);

    // Mid-run: some results are in, and the victim holds jobs it has not acknowledged.
    let pid = victim.pid();
    let held = eventually("victim working with jobs in hand", SETTLE, || {
        victim.assert_running();
        async {
            let (_, _, finished) = db_status_counts(&pool).await?;
            let held = held_by_pid(&stack, pid).await;
            (finished >= 20 && held > 0).then_some(held)
        }
    })
    .await;
    victim.kill().await;
    eprintln!("[faults] SIGKILLed worker {pid} holding {held} unacknowledged jobs");

    db_wait_finished(&pool, n as i64, SETTLE).await;
    assert_every_task_counted(&pool, &expected).await;
    // The dead consumer's jobs were claimed and acknowledged by the survivor.
    eventually("job stream empty", Duration::from_secs(10), || async {
        let pending: usize = pending_by_consumer(&stack.redis_url, &stack.redis_prefix)
            .await
            .iter()
            .map(|(_, n)| n)
            .sum();
        let len = stream_len(&stack.redis_url, &stack.redis_prefix).await?;
        (pending == 0 && len == 0).then_some(())
    })
    .await;
    report("worker SIGKILL", n, started);

    survivor.stop().await.unwrap();
    app.stop().await;
    pool.close().await;
    stack.cleanup().await;
}

// ------------------------------------------------------------------------ 2. NSQ restart

async fn broker_restart_mid_run(keep: bool) {
    crate::helpers::init_tracing();
    let started = Instant::now();
    let pages = PageServer::start_full().await;
    let mut stack = Stack::new().await;
    let mut args = stack.serve_args(0);
    quick_reconciler(&mut args);
    // A deliberately slow listener (a few messages at a time, written after 50 ms), so
    // that results pile up in the broker and the restart really finds messages there.
    args.nsq_max_in_flight = 4;
    args.db_batch_delay_ms = 50;
    let app = TestApp::start(args).await;
    let pool = stack.db.pool().await;
    let worker = start_worker_in_process(fast_worker(stack.worker_args(8))).await;

    let n = 200;
    let run = run_pages(&pages, n, 20);
    let tasks = submit_all(&app.client, &app.base, &addresses(&run)).await;
    let expected = expectations(&tasks, &run);

    // Keeping: stopped while workers still publish (their publishes fail and are retried).
    // Losing: stopped once every job is done and acknowledged, so the results in the
    // broker exist nowhere else and only the reconciler can bring them back.
    eventually("results waiting in the broker", SETTLE, || async {
        let (_, _, finished) = db_status_counts(&pool).await?;
        let s = stack.broker().stats();
        let depth = s.channel(&stack.topic, &stack.channel)?.depth;
        let workers_done = keep
            || (stream_len(&stack.redis_url, &stack.redis_prefix).await? == 0
                && pending_by_consumer(&stack.redis_url, &stack.redis_prefix)
                    .await
                    .is_empty());
        (finished >= 10 && depth >= 20 && workers_done).then_some(())
    })
    .await;
    let held = stack
        .restart_broker(keep, Duration::from_millis(1500))
        .await;
    eprintln!(
        "[faults] NSQ broker restarted ({}), it held {held} messages",
        if keep {
            "keeping its messages"
        } else {
            "losing them"
        }
    );
    assert!(held > 0, "the restart must hit messages in the broker");

    db_wait_finished(&pool, n as i64, SETTLE).await;
    assert_every_task_counted(&pool, &expected).await;
    if !keep {
        // The lost results came back through the reconciler: those tasks were queued again.
        let requeued: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM task WHERE attempts > 1")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert!(
            requeued > 0,
            "lost results are recovered by re-queueing ({held} messages were lost)"
        );
    }
    // Both sides reconnected to the new broker: it carried results and they were finished.
    let s = stack.broker().stats();
    let ch = s
        .channel(&stack.topic, &stack.channel)
        .expect("listener subscribed to the new broker");
    assert!(ch.finish_count > 0, "{ch:?}");
    report(
        if keep {
            "NSQ restart keeping messages"
        } else {
            "NSQ restart losing messages"
        },
        n,
        started,
    );

    worker.stop().await.unwrap();
    app.stop().await;
    pool.close().await;
    stack.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nsq_restart_keeping_messages_loses_nothing() {
    broker_restart_mid_run(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nsq_restart_losing_messages_is_recovered_by_the_reconciler() {
    broker_restart_mid_run(false).await;
}

// ------------------------------------------------------------------------ 3. Postgres

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_connections_terminated_mid_run_lose_nothing() {
    crate::helpers::init_tracing();
    let started = Instant::now();
    let pages = PageServer::start_full().await;
    let stack = Stack::new().await;
    let app = TestApp::start(stack.serve_args(0)).await;
    let pool = stack.db.pool().await;
    let worker = start_worker_in_process(fast_worker(stack.worker_args(8))).await;

    let n = 200;
    let run = run_pages(&pages, n, 300);
    let tasks = submit_all(&app.client, &app.base, &addresses(&run)).await;
    let expected = expectations(&tasks, &run);

    let admin = sqlx::PgPool::connect(&crate::helpers::postgres_admin_url())
        .await
        .expect("admin connection");
    // First, kills that surely land inside the DB writer's transaction.
    let in_tx_kills = kill_backends_inside_result_transactions(&stack, &admin, 3, async || {
        tokio::time::sleep(Duration::from_millis(300)).await;
    })
    .await;
    eprintln!(
        "[faults] {in_tx_kills} Postgres connections terminated while a transaction was blocked"
    );

    let mut terminated = 0i64;
    let mut rounds = 0;
    let mut finished_at_last_kill = 0;
    // Every 50 ms for a few seconds: idle pooled connections are replaced quietly (sqlx
    // tests them before use), so the kills that matter are the ones landing inside the DB
    // writer's transactions, and those need many tries.
    while rounds < 80 && finished_at_last_kill < n as i64 * 3 / 4 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        terminated += terminate_backends(&stack, &admin).await as i64;
        rounds += 1;
        if let Some((_, _, f)) = db_status_counts(&pool).await {
            finished_at_last_kill = f;
        }
    }
    eprintln!(
        "[faults] terminated {terminated} Postgres connections in {rounds} rounds; \
         {finished_at_last_kill}/{n} finished at the last one"
    );
    assert!(
        terminated > 0 && rounds >= 3,
        "{terminated} in {rounds} rounds"
    );
    assert!(
        finished_at_last_kill < n as i64,
        "the kills must land mid-run"
    );
    admin.close().await;

    db_wait_finished(&pool, n as i64, SETTLE).await;
    assert_every_task_counted(&pool, &expected).await;
    let requeued = stack
        .broker()
        .stats()
        .channel(&stack.topic, &stack.channel)
        .map(|c| c.requeue_count)
        .unwrap_or(0);
    eprintln!("[faults] {requeued} results were requeued in NSQ after a failed transaction");
    assert!(
        requeued > 0,
        "some kills must land inside the DB writer's transactions"
    );
    report("Postgres connections terminated", n, started);

    worker.stop().await.unwrap();
    app.stop().await;
    pool.close().await;
    stack.cleanup().await;
}

// ------------------------------------------------------------------------ 4. Redis

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_mid_run_and_down_at_submit_loses_nothing() {
    crate::helpers::init_tracing();
    let started = Instant::now();
    let pages = PageServer::start_full().await;
    let mut redis = TestRedis::start(free_tcp_port()).await;
    let mut stack = Stack::new().await;
    stack.redis_url = redis.url();
    let mut args = stack.serve_args(0);
    quick_reconciler(&mut args);
    let app = TestApp::start(args).await;
    let pool = stack.db.pool().await;
    let worker = start_worker_in_process(fast_worker(stack.worker_args(8))).await;

    let first = 150;
    let run = run_pages(&pages, 200, 100);
    let tasks = submit_all(&app.client, &app.base, &addresses(&run[..first])).await;
    eventually("run under way", SETTLE, || async {
        let (_, _, finished) = db_status_counts(&pool).await?;
        (finished >= 20).then_some(())
    })
    .await;

    // Killed while the workers are reserving: the stream and everything in it is gone.
    redis.stop().await;
    let (_, _, finished_at_kill) = db_status_counts(&pool).await.unwrap();
    eprintln!("[faults] Redis killed with {finished_at_kill}/{first} finished");

    // A submission while Redis is down: stored, answered without a 5xx, waiting.
    let t0 = Instant::now();
    let res = app
        .client
        .post(app.url("/api/tasks"))
        .json(&json!({ "addresses": addresses(&run[first..]) }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 201, "a queue outage is not a 5xx");
    let body: Value = res.json().await.unwrap();
    let waiting = body["tasks"].as_array().unwrap().clone();
    assert_eq!(waiting.len(), run.len() - first);
    for t in &waiting {
        assert_eq!(t["status"], "NOT_STARTED", "{t}");
    }
    eprintln!(
        "[faults] submit with Redis down answered in {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    let page = app.client.get(app.url("/tasks")).send().await.unwrap();
    assert_eq!(page.status().as_u16(), 200);
    assert!(page.text().await.unwrap().contains("waiting for queue"));
    let health = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(
        health.status().as_u16(),
        200,
        "the queue is reported, not required"
    );
    let health: Value = health.json().await.unwrap();
    assert_eq!(health["queue"]["ok"], false, "{health}");

    tokio::time::sleep(Duration::from_secs(1)).await;
    let _redis = TestRedis::start(redis.port).await;

    let mut all_tasks = tasks;
    all_tasks.extend(waiting);
    let expected = expectations(&all_tasks, &run);
    db_wait_finished(&pool, run.len() as i64, SETTLE).await;
    assert_every_task_counted(&pool, &expected).await;
    report("Redis killed mid-run", run.len(), started);

    worker.stop().await.unwrap();
    app.stop().await;
    pool.close().await;
    stack.cleanup().await;
}

// ------------------------------------------------------------------------ 5. serve restart

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_restarted_while_results_wait_in_nsq() {
    crate::helpers::init_tracing();
    let started = Instant::now();
    let pages = PageServer::start_full().await;
    let stack = Stack::new().await;
    let app = TestApp::start(stack.serve_args(0)).await;
    let pool = stack.db.pool().await;
    let worker = start_worker_in_process(fast_worker(stack.worker_args(8))).await;

    let n = 200;
    let run = run_pages(&pages, n, 30);
    let tasks = submit_all(&app.client, &app.base, &addresses(&run)).await;
    let expected = expectations(&tasks, &run);
    eventually("run under way", SETTLE, || async {
        let (_, _, finished) = db_status_counts(&pool).await?;
        (finished >= 10).then_some(())
    })
    .await;
    app.stop().await;
    let (_, _, finished_at_stop) = db_status_counts(&pool).await.unwrap();

    // The workers go on: every job is done and acknowledged, so every result not yet in
    // the database is now waiting in NSQ, and only there.
    eventually("workers done", SETTLE, || async {
        let len = stream_len(&stack.redis_url, &stack.redis_prefix).await?;
        let pending = pending_by_consumer(&stack.redis_url, &stack.redis_prefix)
            .await
            .len();
        (len == 0 && pending == 0).then_some(())
    })
    .await;
    let waiting = stack
        .broker()
        .stats()
        .channel(&stack.topic, &stack.channel)
        .map(|c| c.depth)
        .unwrap_or(0);
    let (_, _, finished_now) = db_status_counts(&pool).await.unwrap();
    eprintln!("[faults] serve stopped at {finished_at_stop}/{n}; {waiting} results wait in NSQ");
    assert_eq!(
        finished_now, finished_at_stop,
        "nothing stored while serve is down"
    );
    assert_eq!(
        waiting,
        n as u64 - finished_now as u64,
        "the rest waits in NSQ"
    );

    let app = TestApp::start(stack.serve_args(0)).await;
    db_wait_finished(&pool, n as i64, SETTLE).await;
    assert_every_task_counted(&pool, &expected).await;
    let once: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM task WHERE attempts = 1")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(
        once, n as i64,
        "nothing re-queued: the results came out of NSQ"
    );
    report("serve restart with results in NSQ", n, started);

    worker.stop().await.unwrap();
    app.stop().await;
    pool.close().await;
    stack.cleanup().await;
}

// ------------------------------------------------------------------------ 6. bad results

/// Messages that are not results of ours.
fn garbage() -> Vec<Vec<u8>> {
    vec![
        b"this is not JSON".to_vec(),
        b"{}".to_vec(),
        b"[]".to_vec(),
        b"null".to_vec(),
        b"42".to_vec(),
        br#"{"task_id": "seven"}"#.to_vec(),
        br#"{"task_id": 1.5, "result": {}}"#.to_vec(),
        br#"{"task_id": 1, "result": {"words_count": "many"}, "worker": 3}"#.to_vec(),
        vec![0xff, 0xfe, 0x00, 0x01, 0x80],
        "[".repeat(100_000).into_bytes(), // deeper than any parser should recurse
        vec![b'x'; 200_000],
        serde_json::to_vec(&result_for(-5, 1)).unwrap(),
        serde_json::to_vec(&result_for(9_999_999_999, 1)).unwrap(),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundreds_of_results_among_duplicates_and_garbage() {
    crate::helpers::init_tracing();
    let started = Instant::now();
    let stack = Stack::new().await;
    // No workers anywhere: the test plays the workers by publishing to the topic itself.
    let app = TestApp::start(stack.serve_args(0)).await;
    let pool = stack.db.pool().await;
    let n = 300;
    let addrs: Vec<String> = (0..n).map(|i| format!("http://t{i}.example/")).collect();
    let tasks = submit_all(&app.client, &app.base, &addrs).await;
    let ids: Vec<i64> = tasks.iter().map(|t| t["id"].as_i64().unwrap()).collect();
    let expected: HashMap<i64, i64> = ids.iter().map(|id| (*id, id % 17)).collect();

    // The real publisher (batching into MPUB) for results, the broker directly for garbage.
    let publisher = NsqPublisher::new(
        stack
            .worker_args(1)
            .nsq_config("unused", &[], 1)
            .expect("nsq config"),
    )
    .unwrap();
    let broker = stack.broker();
    let junk = garbage();
    let mut sent = 0u64;
    for (i, id) in ids.iter().enumerate() {
        let r = result_for(*id, id % 17);
        publisher.publish(&r).await.unwrap();
        sent += 1;
        if i % 3 == 0 {
            publisher.publish(&r).await.unwrap(); // an exact duplicate
            sent += 1;
        }
        if i % 5 == 0 {
            broker
                .publish(&stack.topic, &junk[i / 5 % junk.len()])
                .await;
            sent += 1;
        }
    }
    db_wait_finished(&pool, n as i64, SETTLE).await;

    // Late duplicates that disagree, after every first result is stored: ignored.
    for (i, id) in ids.iter().enumerate() {
        publisher
            .publish(&result_for(*id, 1000 + i as i64))
            .await
            .unwrap();
        sent += 1;
    }
    for j in &junk {
        broker.publish(&stack.topic, j).await;
        sent += 1;
    }
    eventually(&format!("all {sent} messages finished"), SETTLE, || async {
        let s = broker.stats();
        let ch = s.channel(&stack.topic, &stack.channel)?;
        (ch.finish_count >= sent && ch.depth == 0 && ch.in_flight_count == 0).then_some(())
    })
    .await;
    let ch = broker
        .stats()
        .channel(&stack.topic, &stack.channel)
        .cloned()
        .unwrap();
    assert_eq!(
        ch.finish_count, sent,
        "every message finished once, none requeued: {ch:?}"
    );
    assert_eq!(ch.requeue_count, 0, "{ch:?}");
    assert_every_task_counted(&pool, &expected).await;
    report(
        &format!("{sent} messages (results, duplicates, garbage)"),
        n,
        started,
    );

    app.stop().await;
    pool.close().await;
    stack.cleanup().await;
}

// ------------------------------------------------------------------------ 7. SIGTERM

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_to_serve_and_worker_processes_loses_nothing() {
    crate::helpers::init_tracing();
    let started = Instant::now();
    let pages = PageServer::start_full().await;
    let stack = Stack::new().await;
    let pool = stack.db.pool().await;
    let port = free_tcp_port();
    let listen = format!("127.0.0.1:{port}");
    let base = format!("http://{listen}");
    let serve_cmd = ["serve", "--workers", "0"];
    let worker_cmd = ["worker", "--allow-private-targets", "--workers", "8"];
    let mut worker_env = stack.worker_env();
    worker_env.push(("PER_HOST_CONCURRENCY", "16".into()));
    wordtally::fetch::install_crypto_provider();
    let client = reqwest::Client::new();
    let wait_up = |base: String| {
        let client = client.clone();
        async move {
            eventually("serve process answering", Duration::from_secs(30), || {
                let client = client.clone();
                let url = format!("{base}/healthz");
                async move {
                    let r = client.get(url).send().await.ok()?;
                    r.status().is_success().then_some(())
                }
            })
            .await
        }
    };

    let mut serve = WtProcess::spawn("serve-1", &serve_cmd, &stack.serve_env(&listen));
    let mut worker = WtProcess::spawn("worker-1", &worker_cmd, &worker_env);
    wait_up(base.clone()).await;

    let n = 200;
    let run = run_pages(&pages, n, 200);
    let tasks = submit_all(&client, &base, &addresses(&run)).await;
    let expected = expectations(&tasks, &run);

    let pid = worker.pid();
    let held = eventually("worker busy with jobs in hand", SETTLE, || {
        worker.assert_running();
        async {
            let (_, _, finished) = db_status_counts(&pool).await?;
            let held = held_by_pid(&stack, pid).await;
            (finished >= 20 && held > 0).then_some(held)
        }
    })
    .await;
    let t0 = Instant::now();
    let status = worker.terminate(Duration::from_secs(30)).await;
    assert!(status.success(), "worker exit after SIGTERM: {status}");
    eprintln!(
        "[faults] worker stopped by SIGTERM with {held} jobs in hand in {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    // What it had not finished within its drain time it released to the queue (still
    // listed under its name, but idle "for ages", so the next reserve takes it at once).

    // A new worker goes on; serve is stopped while its results flow in.
    let mut worker = WtProcess::spawn("worker-2", &worker_cmd, &worker_env);
    eventually("more results", SETTLE, || {
        worker.assert_running();
        async {
            let (_, _, finished) = db_status_counts(&pool).await?;
            (finished >= 60).then_some(())
        }
    })
    .await;
    let t0 = Instant::now();
    let status = serve.terminate(Duration::from_secs(30)).await;
    assert!(status.success(), "serve exit after SIGTERM: {status}");
    eprintln!(
        "[faults] serve stopped by SIGTERM in {:.1} s",
        t0.elapsed().as_secs_f64()
    );

    let mut serve = WtProcess::spawn("serve-2", &serve_cmd, &stack.serve_env(&listen));
    wait_up(base.clone()).await;
    db_wait_finished(&pool, n as i64, SETTLE).await;
    assert_every_task_counted(&pool, &expected).await;
    let t: Value = client
        .get(format!("{base}/api/tasks/{}", tasks[0]["id"]))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(t["status"], "FINISHED", "{t}");

    let status = worker.terminate(Duration::from_secs(30)).await;
    assert!(status.success(), "{status}");
    let status = serve.terminate(Duration::from_secs(30)).await;
    assert!(status.success(), "{status}");
    report("SIGTERM to worker and serve processes", n, started);
    pool.close().await;
    stack.cleanup().await;
}

// ------------------------------------------------ 7. a queue that lost its data, noticed

/// Redis restarted empty while jobs waited in it: the Submitter notices the loss (the
/// queue's generation changed) and re-queues every PENDING task at once, long before their
/// pending deadline (set to ten minutes here, so only the noticing can bring them back).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_restarted_empty_is_noticed_and_refilled_at_once() {
    crate::helpers::init_tracing();
    let started = Instant::now();
    let pages = PageServer::start_full().await;
    let mut redis = TestRedis::start(free_tcp_port()).await;
    let mut stack = Stack::new().await;
    stack.redis_url = redis.url();
    let mut args = stack.serve_args(0);
    quick_reconciler(&mut args);
    args.pending_deadline_secs = 600;
    let app = TestApp::start(args).await;
    let pool = stack.db.pool().await;

    // No worker yet: every job waits in the stream, every task is PENDING.
    let run = run_pages(&pages, 300, 0);
    let tasks = submit_all(&app.client, &app.base, &addresses(&run)).await;
    eventually("every task queued", SETTLE, || async {
        let (_, pending, _) = db_status_counts(&pool).await?;
        (pending == run.len() as i64).then_some(())
    })
    .await;
    // Let a sweep record the queue's generation, then lose everything.
    tokio::time::sleep(Duration::from_secs(2)).await;
    redis.stop().await;
    let _redis = TestRedis::start(redis.port).await;
    let lost_at = Instant::now();

    let worker = start_worker_in_process(fast_worker(stack.worker_args(8))).await;
    let expected = expectations(&tasks, &run);
    db_wait_finished(&pool, run.len() as i64, SETTLE).await;
    assert_every_task_counted(&pool, &expected).await;
    let secs = lost_at.elapsed().as_secs_f64();
    eprintln!(
        "[faults] queue lost with {} PENDING: all finished {:.1} s later ({:.0} tasks/s)",
        run.len(),
        secs,
        run.len() as f64 / secs
    );
    report("queue restarted empty", run.len(), started);
    worker.stop().await.unwrap();
    app.stop().await;
    pool.close().await;
    stack.cleanup().await;
}
