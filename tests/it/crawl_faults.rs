//! Faults during a crawl (DESIGN §2 "nothing lost" meets §15 crawls; issue 19, "Targets"):
//! on the production stack (`serve --workers 0`, worker processes, Postgres, Redis, the NSQ
//! test broker) a slow generated site ([`TreeSite`]) is crawled while one fault lands in
//! the middle: a worker process SIGKILLed, the NSQ broker restarted keeping or losing the
//! results it held, Postgres connections terminated, Redis killed and restarted empty,
//! `serve` killed and restarted (then stopped and restarted once more).
//!
//! Each crawl must end exactly as an undisturbed one: the tree's every page and no other
//! URL, none stored twice, each with the model's count, HTTP status, depth and "found on"
//! (the tree makes those fixed whatever order results arrive in), one result per task, and
//! the batch's counters agreeing with the rows. A page may be fetched twice only where
//! at-least-once delivery needs it (see [`assert_crawl_matches_model`]).
//!
//! The recovery path each fault needs is the only fast one left on: where a test does not
//! rely on the reconciler's pending deadline it keeps the default (five minutes), so a lost
//! result makes the crawl miss its deadline instead of being quietly papered over.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sqlx::Row;

use crate::faults::{
    fast_worker, held_by_pid, kill_backends_inside_result_transactions, pending_by_consumer,
    quick_reconciler, stream_len, terminate_backends,
};
use crate::helpers::{
    Stack, TestApp, TestRedis, WtProcess, eventually, free_tcp_port, start_worker_in_process,
};
use crate::site::{SiteServer, TreeSite};

/// How long a crawl may take to end after its fault.
const SETTLE: Duration = Duration::from_secs(60);

/// The site every fault test crawls: 300 pages five levels deep (1, 4, 16, 64, 215), each
/// answering after 40 ms, so the crawl lasts a few seconds and a fault lands inside it.
fn tree() -> TreeSite {
    TreeSite {
        pages: 300,
        fanout: 4,
        delay_ms: 40,
    }
}

/// Tree pages the crawl has fetched before a fault is injected.
const FETCHED_BEFORE_FAULT: usize = 40;

/// Starts the crawl of the tree through `POST /api/crawls`; returns the batch id.
async fn start_crawl(client: &reqwest::Client, base: &str, site: &SiteServer) -> i64 {
    let res = client
        .post(format!("{base}/api/crawls"))
        .json(&json!({ "start": [site.url(TreeSite::START)], "label": "crawl under fault" }))
        .send()
        .await
        .expect("POST /api/crawls");
    let status = res.status().as_u16();
    let body: Value = res.json().await.unwrap_or(Value::Null);
    assert_eq!(status, 201, "{body}");
    body["batch_id"].as_i64().expect("batch_id")
}

/// Tree pages requested from the site so far.
fn fetched(site: &SiteServer) -> usize {
    site.hits_under("/t/")
}

/// The crawl's tasks by status, from the database: (not started, pending, finished).
async fn crawl_status(pool: &sqlx::PgPool, batch: i64) -> Option<(i64, i64, i64)> {
    sqlx::query_as(
        "SELECT COUNT(*) FILTER (WHERE task_status = 'NOT_STARTED'), \
                COUNT(*) FILTER (WHERE task_status = 'PENDING'), \
                COUNT(*) FILTER (WHERE task_status = 'FINISHED') \
         FROM task WHERE batch_id = $1",
    )
    .bind(batch)
    .fetch_one(pool)
    .await
    .ok()
}

/// Waits until at least `n` tree pages were fetched (panics if the crawl ended first).
async fn wait_fetched(site: &SiteServer, n: usize) {
    eventually(&format!("{n} tree pages fetched"), SETTLE, || async move {
        (fetched(site) >= n).then_some(())
    })
    .await;
}

/// Records where the crawl stands as a fault is injected, and checks it is mid-crawl:
/// some of the tree's pages fetched, not all. Returns how many are.
fn at_fault(what: &str, site: &SiteServer, tree: &TreeSite) -> usize {
    let distinct = site
        .all_hits()
        .keys()
        .filter(|p| p.starts_with("/t/"))
        .count();
    eprintln!(
        "[crawl faults] {what} with {distinct}/{} tree pages fetched",
        tree.pages
    );
    assert!(
        (1..tree.pages).contains(&distinct),
        "the fault must land mid-crawl ({distinct} of {} pages fetched)",
        tree.pages
    );
    distinct
}

/// Waits until the crawl has no task waiting or pending (read from the database, which
/// is there whichever process is up).
async fn wait_crawl_done(pool: &sqlx::PgPool, batch: i64) {
    eventually("the crawl to finish", SETTLE, || async move {
        let (not_started, pending, finished) = crawl_status(pool, batch).await?;
        (not_started == 0 && pending == 0 && finished > 0).then_some(())
    })
    .await;
}

/// One crawl task as stored, with its result.
#[derive(Debug)]
struct Stored {
    id: i64,
    path: String,
    depth: Option<i32>,
    found_on: Option<i64>,
    status: String,
    outcome: Option<String>,
    attempts: i32,
    count: Option<i64>,
    http: Option<i32>,
}

/// The end of every fault test: the crawl stored exactly what the model says an
/// undisturbed crawl stores, and fetched nothing twice without a reason.
///
/// * URLs: the model's set, no other, none twice (by address and by normalised URL key).
/// * Per URL: FINISHED, exactly one result row, the model's count and HTTP status, the
///   outcome (`skipped` for robots.txt-disallowed pages, `http_error` for the 404, `ok`
///   otherwise), the model's depth, and "found on" = the model's parent page.
/// * Counters: the batch's totals, `skipped`, `out_of_scope` (two per tree page, so a
///   result counted twice shows), `over_limit` 0, `max_depth_seen`, pages per depth, the
///   words total and `finished_at`; the database-wide counters agree with the rows.
/// * Fetches (the site's own record): every counted page at least once, a disallowed one
///   never. At-least-once delivery allows a second fetch only of a page whose job was
///   delivered twice: a task the reconciler queued again (`attempts > 1`), or one of the
///   jobs a killed worker held unacknowledged (`redelivered`, handed to another worker by
///   the queue). Any other page fetched twice means work was repeated without need, e.g.
///   a URL queued twice by the frontier. (A job also comes back when its worker holds it
///   past the visibility timeout, e.g. while retrying a publish; the tests where that
///   could happen without a killed worker set a long visibility timeout.)
async fn assert_crawl_matches_model(
    pool: &sqlx::PgPool,
    site: &SiteServer,
    tree: &TreeSite,
    batch: i64,
    redelivered: &HashSet<String>,
) {
    let model = tree.expected();
    let base = site.url("");
    let rows: Vec<Stored> = sqlx::query(
        "SELECT t.id, t.address, t.depth, t.found_on, t.task_status, t.outcome, t.attempts, \
                r.words_count, r.http_status_code \
         FROM task t LEFT JOIN result r ON r.task_id = t.id AND r.run = t.run \
         WHERE t.batch_id = $1 ORDER BY t.id",
    )
    .bind(batch)
    .fetch_all(pool)
    .await
    .expect("read the crawl's tasks")
    .iter()
    .map(|r| {
        let address: String = r.get("address");
        Stored {
            id: r.get("id"),
            path: address
                .strip_prefix(&base)
                .unwrap_or_else(|| panic!("a URL outside the site: {address}"))
                .to_string(),
            depth: r.get("depth"),
            found_on: r.get("found_on"),
            status: r.get("task_status"),
            outcome: r.get("outcome"),
            attempts: r.get("attempts"),
            count: r.get("words_count"),
            http: r.get("http_status_code"),
        }
    })
    .collect();

    // The URL set: the model's, each once.
    let mut by_path: BTreeMap<&str, &Stored> = BTreeMap::new();
    let mut twice = Vec::new();
    for s in &rows {
        if by_path.insert(s.path.as_str(), s).is_some() {
            twice.push(s.path.clone());
        }
    }
    assert!(twice.is_empty(), "URLs stored twice: {twice:?}");
    let (keys, distinct_keys): (i64, i64) = sqlx::query_as(
        "SELECT COUNT(url_key), COUNT(DISTINCT url_key) FROM task WHERE batch_id = $1",
    )
    .bind(batch)
    .fetch_one(pool)
    .await
    .expect("count URL keys");
    assert_eq!(
        (keys, distinct_keys),
        (rows.len() as i64, rows.len() as i64),
        "one normalised URL key per task, none twice"
    );
    let extra: Vec<&&str> = by_path
        .keys()
        .filter(|p| !model.contains_key(**p))
        .collect();
    let missing: Vec<&String> = model
        .keys()
        .filter(|p| !by_path.contains_key(p.as_str()))
        .collect();
    assert!(
        extra.is_empty() && missing.is_empty(),
        "URL set differs from the model: {} stored, {} expected; not in the model: {extra:?}; \
         missing: {missing:?}",
        rows.len(),
        model.len()
    );

    // One result per task.
    let (results, distinct): (i64, i64) = sqlx::query_as(
        "SELECT COUNT(*), COUNT(DISTINCT r.task_id) FROM result r \
         JOIN task t ON t.id = r.task_id WHERE t.batch_id = $1",
    )
    .bind(batch)
    .fetch_one(pool)
    .await
    .expect("count results");
    assert_eq!(
        (results, distinct),
        (rows.len() as i64, rows.len() as i64),
        "exactly one result row per task"
    );

    // Every page as the model says.
    let path_of: HashMap<i64, &str> = rows.iter().map(|s| (s.id, s.path.as_str())).collect();
    for (path, want) in &model {
        let got = by_path[path.as_str()];
        let outcome = match (want.count, want.status) {
            (None, _) => "skipped",
            (_, Some(404)) => "http_error",
            _ => "ok",
        };
        assert_eq!(got.status, "FINISHED", "{path}: {got:?}");
        assert_eq!(got.outcome.as_deref(), Some(outcome), "{path}: {got:?}");
        assert_eq!(got.count, want.count, "{path}: count");
        assert_eq!(
            got.http.map(|h| h as u16),
            want.status,
            "{path}: HTTP status"
        );
        assert_eq!(got.depth, Some(want.depth), "{path}: depth");
        let found_on = got.found_on.map(|id| {
            *path_of
                .get(&id)
                .unwrap_or_else(|| panic!("{path}: found on task {id}, not of this crawl"))
        });
        assert_eq!(found_on, want.found_on.as_deref(), "{path}: found on");
    }

    // The batch's counters, kept in the same transactions as the rows.
    let b = sqlx::query(
        "SELECT total, not_started, pending, finished, skipped, out_of_scope, over_limit, \
                max_depth_seen, depth_counts, words_total, finished_at \
         FROM batch WHERE id = $1",
    )
    .bind(batch)
    .fetch_one(pool)
    .await
    .expect("read the batch");
    let n = model.len() as i64;
    let skipped = model.values().filter(|p| p.count.is_none()).count() as i64;
    let words: i64 = model.values().filter_map(|p| p.count).sum();
    let deepest = model.values().map(|p| p.depth).max().unwrap_or(0);
    let mut per_depth: BTreeMap<String, i64> = BTreeMap::new();
    for p in model.values() {
        *per_depth.entry(p.depth.to_string()).or_default() += 1;
    }
    let counters: [(&str, i64, i64); 9] = [
        ("total", b.get("total"), n),
        ("not_started", b.get("not_started"), 0),
        ("pending", b.get("pending"), 0),
        ("finished", b.get("finished"), n),
        ("skipped", b.get("skipped"), skipped),
        (
            "out_of_scope",
            b.get("out_of_scope"),
            TreeSite::OUT_OF_SCOPE_PER_PAGE * tree.pages as i64,
        ),
        ("over_limit", b.get("over_limit"), 0),
        (
            "max_depth_seen",
            i64::from(b.get::<i32, _>("max_depth_seen")),
            i64::from(deepest),
        ),
        ("words_total", b.get("words_total"), words),
    ];
    for (name, got, want) in counters {
        assert_eq!(got, want, "batch counter {name}");
    }
    let depth_counts: Option<String> = b.get("depth_counts");
    let depth_counts: BTreeMap<String, i64> =
        serde_json::from_str(depth_counts.as_deref().unwrap_or("{}")).expect("depth_counts");
    assert_eq!(depth_counts, per_depth, "pages per depth");
    assert!(
        b.get::<Option<i64>, _>("finished_at").is_some(),
        "the batch is marked finished"
    );
    let (ns, p, f): (i64, i64, i64) =
        sqlx::query_as("SELECT not_started, pending, finished FROM task_stats WHERE id = 1")
            .fetch_one(pool)
            .await
            .expect("read counters");
    assert_eq!((ns, p, f), (0, 0, n), "the database's counters agree");

    // Fetches, as the site saw them.
    let hits = site.all_hits();
    let requeued: HashSet<&str> = rows
        .iter()
        .filter(|s| s.attempts > 1)
        .map(|s| s.path.as_str())
        .collect();
    let mut repeated = Vec::new();
    for (path, want) in &model {
        let n = hits.get(path).copied().unwrap_or(0);
        if want.count.is_none() {
            assert_eq!(n, 0, "{path} was fetched despite robots.txt");
            continue;
        }
        assert!(n >= 1, "{path} was never fetched");
        if n > 1 {
            repeated.push(path.clone());
            assert!(
                requeued.contains(path.as_str()) || redelivered.contains(path),
                "{path} fetched {n} times, but its job was delivered only once"
            );
        }
    }
    let fetched_elsewhere: Vec<&String> = hits
        .keys()
        .filter(|p| !model.contains_key(*p) && p.as_str() != "/robots.txt")
        .collect();
    assert!(
        fetched_elsewhere.is_empty(),
        "fetched outside the model: {fetched_elsewhere:?}"
    );
    eprintln!(
        "[crawl faults] crawl matches the model: {n} URLs; {} pages fetched twice ({} tasks \
         queued again, {} jobs redelivered from a killed worker)",
        repeated.len(),
        requeued.len(),
        redelivered.len()
    );
}

fn report(what: &str, started: Instant) {
    eprintln!(
        "[crawl faults] {what}: {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

/// Sends `signal` (e.g. `STOP`) to a process.
fn signal(pid: u32, signal: &str) {
    let ok = std::process::Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .expect("run kill")
        .success();
    assert!(ok, "kill -{signal} {pid} failed");
}

/// The URL paths of the jobs the process `pid` holds reserved and unacknowledged.
async fn paths_held_by_pid(stack: &Stack, site: &SiteServer, pid: u32) -> HashSet<String> {
    let client = redis::Client::open(stack.redis_url.as_str()).expect("redis url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis connection");
    let stream = format!("{}:jobs", stack.redis_prefix);
    let group = format!("{}:workers", stack.redis_prefix);
    let tag = format!("-{pid}-");
    let base = site.url("");
    let mut out = HashSet::new();
    for (consumer, _) in pending_by_consumer(&stack.redis_url, &stack.redis_prefix).await {
        if !consumer.contains(&tag) {
            continue;
        }
        let held: redis::streams::StreamPendingCountReply = redis::cmd("XPENDING")
            .arg(&stream)
            .arg(&group)
            .arg("-")
            .arg("+")
            .arg(10_000)
            .arg(&consumer)
            .query_async(&mut conn)
            .await
            .expect("XPENDING of the consumer");
        for p in held.ids {
            let entry: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
                .arg(&stream)
                .arg(&p.id)
                .arg(&p.id)
                .query_async(&mut conn)
                .await
                .expect("XRANGE of a held job");
            for e in entry.ids {
                let job: String = e.get("job").expect("a job field");
                let job: Value = serde_json::from_str(&job).expect("job JSON");
                let address = job["address"].as_str().expect("address");
                out.insert(address.trim_start_matches(&base).to_string());
            }
        }
    }
    out
}

// ---------------------------------------------------------------------- worker SIGKILL

/// A worker process SIGKILLed mid-crawl with jobs in hand: the queue hands them to the
/// surviving worker after the visibility timeout (5 s here). The reconciler keeps its
/// five-minute deadline, so only that redelivery can finish the crawl in time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crawl_survives_a_worker_killed_with_sigkill() {
    crate::helpers::init_tracing();
    let started = Instant::now();
    let tree = tree();
    let site = SiteServer::start_tree(tree.clone()).await;
    let stack = Stack::new().await;
    let app = TestApp::start(stack.serve_args(0)).await;
    let pool = stack.db.pool().await;
    let mut env = stack.worker_env();
    env.push(("PER_HOST_CONCURRENCY", "16".into()));
    let mut victim = WtProcess::spawn(
        "crawl-worker-victim",
        &["worker", "--allow-private-targets", "--workers", "8"],
        &env,
    );
    let survivor = start_worker_in_process(fast_worker(stack.worker_args(4))).await;

    let batch = start_crawl(&app.client, &app.base, &site).await;
    let pid = victim.pid();
    eventually("the victim fetching with jobs in hand", SETTLE, || {
        victim.assert_running();
        let (site, stack) = (&site, &stack);
        async move {
            let held = held_by_pid(stack, pid).await;
            (fetched(site) >= FETCHED_BEFORE_FAULT && held > 0).then_some(())
        }
    })
    .await;
    // Frozen first, so that what it holds can be read exactly, then killed.
    signal(pid, "STOP");
    let held = paths_held_by_pid(&stack, &site, pid).await;
    at_fault(
        &format!("worker {pid} SIGKILLed holding {} jobs", held.len()),
        &site,
        &tree,
    );
    victim.kill().await;
    assert!(!held.is_empty(), "the victim must die with jobs in hand");

    wait_crawl_done(&pool, batch).await;
    assert_crawl_matches_model(&pool, &site, &tree, batch, &held).await;
    // Its jobs were claimed and acknowledged by the survivor: nothing is left reserved.
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
    report("worker SIGKILL", started);

    survivor.stop().await.unwrap();
    app.stop().await;
    pool.close().await;
    stack.cleanup().await;
}

// ---------------------------------------------------------------------- NSQ restart

/// The NSQ broker restarted mid-crawl, keeping its messages (nsqd stopped and started
/// again) or losing them (an nsqd crash). Either way the listener was holding results
/// when it went: committed ones whose `FIN` never arrived come again (kept) and must
/// change nothing, since their links are already in the frontier.
///
/// Losing them, the results it held (and with them the links to pages not yet known)
/// exist nowhere else: the reconciler (pending deadline 5 s here) queues those tasks
/// again, their pages are fetched again and their links found again. Keeping them, the
/// reconciler keeps its five-minute deadline and no page may be fetched twice.
async fn nsq_restart_mid_crawl(keep: bool) {
    crate::helpers::init_tracing();
    let started = Instant::now();
    let tree = tree();
    let site = SiteServer::start_tree(tree.clone()).await;
    let mut stack = Stack::new().await;
    let mut args = stack.serve_args(0);
    if !keep {
        quick_reconciler(&mut args);
    }
    // A slow listener (a few results at a time, written after 50 ms), so that results
    // pile up in the broker and the restart surely finds some there, and some in flight.
    args.nsq_max_in_flight = 4;
    args.db_batch_delay_ms = 50;
    let app = TestApp::start(args).await;
    let pool = stack.db.pool().await;
    // No worker dies here, so the visibility timeout is long: a job whose result waits
    // to be published while the broker is away (retried with back-off, up to 5 s a try)
    // must not come back to be fetched again by the queue. A page fetched twice can then
    // only be one the reconciler queued again.
    let mut w = fast_worker(stack.worker_args(8));
    w.visibility_timeout_secs = 60;
    let worker = start_worker_in_process(w).await;

    let batch = start_crawl(&app.client, &app.base, &site).await;
    eventually("results waiting in the broker", SETTLE, || async {
        let s = stack.broker().stats();
        let ch = s.channel(&stack.topic, &stack.channel)?;
        (fetched(&site) >= FETCHED_BEFORE_FAULT && ch.depth >= 10 && ch.in_flight_count > 0)
            .then_some(())
    })
    .await;
    let how = if keep {
        "keeping its messages"
    } else {
        "without its messages"
    };
    at_fault(&format!("NSQ broker restarted {how}"), &site, &tree);
    let held = stack.restart_broker(keep, Duration::from_millis(500)).await;
    eprintln!("[crawl faults] the broker held {held} results");
    assert!(held > 0, "the restart must find results in the broker");

    wait_crawl_done(&pool, batch).await;
    assert_crawl_matches_model(&pool, &site, &tree, batch, &HashSet::new()).await;
    let requeued: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM task WHERE batch_id = $1 AND attempts > 1")
            .bind(batch)
            .fetch_one(&pool)
            .await
            .unwrap();
    if keep {
        assert_eq!(requeued, 0, "nothing was lost, nothing queued again");
    } else {
        assert!(
            requeued > 0,
            "the lost results come back by queueing their tasks again"
        );
    }
    report(&format!("NSQ restart {how}"), started);

    worker.stop().await.unwrap();
    app.stop().await;
    pool.close().await;
    stack.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crawl_survives_an_nsq_restart_that_loses_results() {
    nsq_restart_mid_crawl(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crawl_survives_an_nsq_restart_that_keeps_results() {
    nsq_restart_mid_crawl(true).await;
}

// ---------------------------------------------------------------------- Postgres

/// Every Postgres connection of the database terminated, again and again, mid-crawl, some
/// of them inside the DB writer's transaction (the one that stores results and extends
/// the frontier): the transaction rolls back, its NSQ messages are requeued, and the next
/// attempt stores the results and their links once. The reconciler keeps its five-minute
/// deadline: a result lost here would stall the crawl.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crawl_survives_postgres_connections_terminated() {
    crate::helpers::init_tracing();
    let started = Instant::now();
    let tree = tree();
    let site = SiteServer::start_tree(tree.clone()).await;
    let stack = Stack::new().await;
    let app = TestApp::start(stack.serve_args(0)).await;
    let pool = stack.db.pool().await;
    let worker = start_worker_in_process(fast_worker(stack.worker_args(8))).await;

    let batch = start_crawl(&app.client, &app.base, &site).await;
    wait_fetched(&site, FETCHED_BEFORE_FAULT).await;
    at_fault("Postgres connections terminated", &site, &tree);

    let admin = sqlx::PgPool::connect(&crate::helpers::postgres_admin_url())
        .await
        .expect("admin connection");
    // Kills that surely land inside a result transaction; the crawl goes on a little
    // before each next round.
    let in_tx_kills = kill_backends_inside_result_transactions(&stack, &admin, 3, async || {
        let next = fetched(&site) + 10;
        wait_fetched(&site, next.min(tree.pages)).await;
    })
    .await;
    // Then blind kills every 50 ms while the crawl runs on.
    let mut terminated = 0;
    let mut rounds = 0;
    let mut ticks = tokio::time::interval(Duration::from_millis(50));
    while rounds < 40 && fetched(&site) < tree.pages * 3 / 4 {
        ticks.tick().await;
        terminated += terminate_backends(&stack, &admin).await;
        rounds += 1;
    }
    admin.close().await;
    eprintln!(
        "[crawl faults] {in_tx_kills} connections terminated with a transaction blocked, \
         {terminated} more in {rounds} rounds; {}/{} tree pages fetched by then",
        fetched(&site),
        tree.pages
    );
    assert!(in_tx_kills > 0, "kills must land inside transactions");

    wait_crawl_done(&pool, batch).await;
    assert_crawl_matches_model(&pool, &site, &tree, batch, &HashSet::new()).await;
    let requeued = stack
        .broker()
        .stats()
        .channel(&stack.topic, &stack.channel)
        .map(|c| c.requeue_count)
        .unwrap_or(0);
    eprintln!("[crawl faults] {requeued} results requeued in NSQ after a failed transaction");
    assert!(
        requeued > 0,
        "some kills must land inside the DB writer's transactions"
    );
    report("Postgres connections terminated", started);

    worker.stop().await.unwrap();
    app.stop().await;
    pool.close().await;
    stack.cleanup().await;
}

// ---------------------------------------------------------------------- Redis

/// Redis (a server of the test's own, without persistence) SIGKILLed mid-crawl with jobs
/// waiting in it, and restarted empty once the crawl has felt it (discovered pages cannot
/// be queued and wait). The queued jobs are gone: `serve` notices the new queue and queues
/// every PENDING task again at once; the pending deadline is ten minutes, so nothing else
/// could bring them back in time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crawl_survives_redis_killed_and_restarted_empty() {
    crate::helpers::init_tracing();
    let started = Instant::now();
    let tree = tree();
    let site = SiteServer::start_tree(tree.clone()).await;
    let mut redis = TestRedis::start(free_tcp_port()).await;
    let mut stack = Stack::new().await;
    stack.redis_url = redis.url();
    let mut args = stack.serve_args(0);
    quick_reconciler(&mut args);
    args.pending_deadline_secs = 600;
    let app = TestApp::start(args).await;
    let pool = stack.db.pool().await;
    let worker = start_worker_in_process(fast_worker(stack.worker_args(8))).await;

    let batch = start_crawl(&app.client, &app.base, &site).await;
    eventually("jobs waiting in the queue", SETTLE, || async {
        let len = stream_len(&stack.redis_url, &stack.redis_prefix).await?;
        (fetched(&site) >= FETCHED_BEFORE_FAULT && len >= 20).then_some(len)
    })
    .await;
    at_fault("Redis killed", &site, &tree);
    redis.stop().await;
    eventually("discovered pages waiting for the queue", SETTLE, || async {
        let (not_started, _, _) = crawl_status(&pool, batch).await?;
        (not_started > 0).then_some(())
    })
    .await;
    let _redis = TestRedis::start(redis.port).await;
    eprintln!(
        "[crawl faults] Redis back (empty) with {}/{} tree pages fetched",
        fetched(&site),
        tree.pages
    );

    wait_crawl_done(&pool, batch).await;
    assert_crawl_matches_model(&pool, &site, &tree, batch, &HashSet::new()).await;
    let requeued: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM task WHERE batch_id = $1 AND attempts > 1")
            .bind(batch)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(requeued > 0, "the lost jobs were queued again");
    report("Redis killed and restarted empty", started);

    worker.stop().await.unwrap();
    app.stop().await;
    pool.close().await;
    stack.cleanup().await;
}

/// `serve` stopped and Redis killed with it, both started again, Redis empty (a machine
/// restarted): the new `serve` never saw the queue that held the crawl's PENDING jobs,
/// so it has no earlier generation to compare with, yet must queue those tasks again at
/// once (the pending deadline is ten minutes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crawl_survives_serve_and_redis_restarted_together() {
    crate::helpers::init_tracing();
    let started = Instant::now();
    let tree = tree();
    let site = SiteServer::start_tree(tree.clone()).await;
    let mut redis = TestRedis::start(free_tcp_port()).await;
    let mut stack = Stack::new().await;
    stack.redis_url = redis.url();
    let mut args = stack.serve_args(0);
    quick_reconciler(&mut args);
    args.pending_deadline_secs = 600;
    let app = TestApp::start(args.clone()).await;
    let pool = stack.db.pool().await;
    let worker = start_worker_in_process(fast_worker(stack.worker_args(8))).await;

    let batch = start_crawl(&app.client, &app.base, &site).await;
    eventually("jobs waiting in the queue", SETTLE, || async {
        let len = stream_len(&stack.redis_url, &stack.redis_prefix).await?;
        (fetched(&site) >= FETCHED_BEFORE_FAULT && len >= 20).then_some(len)
    })
    .await;
    at_fault("serve stopped and Redis killed", &site, &tree);
    app.stop().await;
    redis.stop().await;
    let _redis = TestRedis::start(redis.port).await;
    let app = TestApp::start(args).await;

    wait_crawl_done(&pool, batch).await;
    assert_crawl_matches_model(&pool, &site, &tree, batch, &HashSet::new()).await;
    report("serve and Redis restarted together", started);

    worker.stop().await.unwrap();
    app.stop().await;
    pool.close().await;
    stack.cleanup().await;
}

// ---------------------------------------------------------------------- serve restart

/// `serve` (the real binary: web, Submitter, listener, DB writer, the frontier) SIGKILLed
/// mid-crawl and started again, later stopped with SIGTERM and started again. While it is
/// away the workers go on and their results (with the links) wait in NSQ; a transaction
/// cut by the kill rolls back and its messages come again. The pending deadline keeps its
/// five minutes: a result or discovered page lost here would stall the crawl.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crawl_survives_serve_killed_and_restarted() {
    crate::helpers::init_tracing();
    let started = Instant::now();
    let tree = tree();
    let site = SiteServer::start_tree(tree.clone()).await;
    let stack = Stack::new().await;
    let pool = stack.db.pool().await;
    let listen = format!("127.0.0.1:{}", free_tcp_port());
    let base = format!("http://{listen}");
    let serve_cmd = ["serve", "--workers", "0", "--allow-private-targets"];
    let mut serve_env = stack.serve_env(&listen);
    // Discovered pages the killed process had not queued yet are queued by the next one's
    // sweep of NOT_STARTED tasks: every second here instead of every five.
    serve_env.push(("SWEEP_INTERVAL_SECS", "1".into()));
    serve_env.push(("REQUEUE_NOT_STARTED_SECS", "1".into()));
    wordtally::fetch::install_crypto_provider();
    let client = reqwest::Client::new();
    let wait_up = |serve: &mut WtProcess| {
        serve.assert_running();
        let client = client.clone();
        let url = format!("{base}/healthz");
        async move {
            eventually("serve answering", Duration::from_secs(30), || {
                let (client, url) = (client.clone(), url.clone());
                async move {
                    let r = client.get(url).send().await.ok()?;
                    r.status().is_success().then_some(())
                }
            })
            .await
        }
    };
    let worker = start_worker_in_process(fast_worker(stack.worker_args(8))).await;
    let mut serve = WtProcess::spawn("crawl-serve-1", &serve_cmd, &serve_env);
    wait_up(&mut serve).await;

    let batch = start_crawl(&client, &base, &site).await;
    wait_fetched(&site, FETCHED_BEFORE_FAULT).await;
    at_fault("serve SIGKILLed", &site, &tree);
    serve.kill().await;
    // Away until results pile up in NSQ (the workers carry on with what was queued).
    eventually("results waiting in NSQ", SETTLE, || async {
        let s = stack.broker().stats();
        (s.channel(&stack.topic, &stack.channel)?.depth > 0).then_some(())
    })
    .await;
    let mut serve = WtProcess::spawn("crawl-serve-2", &serve_cmd, &serve_env);
    wait_up(&mut serve).await;

    // Once the new process has taken the crawl on (a few more pages fetched).
    wait_fetched(&site, fetched(&site) + 20).await;
    at_fault("serve stopped by SIGTERM", &site, &tree);
    let status = serve.terminate(Duration::from_secs(30)).await;
    assert!(status.success(), "serve exit after SIGTERM: {status}");
    let mut serve = WtProcess::spawn("crawl-serve-3", &serve_cmd, &serve_env);
    wait_up(&mut serve).await;

    wait_crawl_done(&pool, batch).await;
    assert_crawl_matches_model(&pool, &site, &tree, batch, &HashSet::new()).await;
    // The API of the last process tells the same story.
    let b: Value = client
        .get(format!("{base}/api/batches/{batch}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(b["kind"], "crawl", "{b}");
    assert_eq!(
        b["crawl"]["discovered"].as_i64(),
        Some(tree.expected().len() as i64),
        "{b}"
    );
    report(
        "serve SIGKILLed and restarted, then SIGTERMed and restarted",
        started,
    );

    let status = serve.terminate(Duration::from_secs(30)).await;
    assert!(status.success(), "{status}");
    worker.stop().await.unwrap();
    pool.close().await;
    stack.cleanup().await;
}
