//! The production path: PostgreSQL, a Redis stream queue, NSQ results (the test broker or
//! a real nsqd), `serve --workers 0` and separate workers.

use std::time::Duration;

use serde_json::json;
use wordtally::model::TaskStatus;
use wordtally::store::{NewTask, Store, StoreOutcome};

use crate::helpers::{
    Stack, TestApp, TestDb, TestRedis, eventually, free_tcp_port, result_for,
    start_worker_in_process, unique,
};
use crate::pages::PageServer;

/// Every task finished, exactly one result row each, the count each page was made with.
async fn assert_all_counted(
    app: &TestApp,
    db: &TestDb,
    ids: &[i64],
    expected: impl Fn(usize) -> i64,
) {
    for (i, id) in ids.iter().enumerate() {
        let t = app.task(*id).await;
        assert_eq!(t["status"], "FINISHED", "{t}");
        assert_eq!(t["result"]["words_count"], json!(expected(i)), "{t}");
    }
    let pool = db.pool().await;
    let (rows, distinct): (i64, i64) =
        sqlx::query_as("SELECT COUNT(*), COUNT(DISTINCT task_id) FROM result")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(rows, ids.len() as i64, "one result per task");
    assert_eq!(distinct, ids.len() as i64);
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_without_workers_and_two_workers_count_every_task_once() {
    let pages = PageServer::start().await;
    let stack = Stack::new().await;
    let app = TestApp::start(stack.serve_args(0)).await;
    assert!(
        app.running.worker_pool.get().is_none(),
        "--workers 0 runs no local worker"
    );
    let w1 = start_worker_in_process(stack.worker_args(4)).await;
    let w2 = start_worker_in_process(stack.worker_args(4)).await;

    let n = 300;
    let addresses: Vec<String> = (0..n)
        .map(|i| pages.url(&format!("/count/{}", i % 17)))
        .collect();
    let mut ids = Vec::new();
    for chunk in addresses.chunks(100) {
        ids.extend(app.submit_addresses(chunk).await);
    }
    app.wait_finished(n as i64, Duration::from_secs(120)).await;
    assert_all_counted(&app, &stack.db, &ids, |i| (i % 17) as i64).await;

    if let Some(b) = &stack.broker {
        // FIN follows the commit, so the last ones may still be on their way.
        eventually(
            "every result finished in NSQ",
            Duration::from_secs(30),
            || async {
                let stats = b.stats();
                let ch = stats.channel(&stack.topic, &stack.channel)?;
                (ch.depth == 0 && ch.in_flight_count == 0 && ch.finish_count >= n as u64)
                    .then_some(())
            },
        )
        .await;
    }

    w1.stop().await.unwrap();
    w2.stop().await.unwrap();
    app.stop().await;
    stack.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_and_malformed_results_are_harmless() {
    let stack = Stack::new().await;
    // No workers anywhere: the test plays the worker by publishing to the topic itself.
    let app = TestApp::start(stack.serve_args(0)).await;
    let ids = app
        .submit_addresses(&[
            "http://a.example/".to_string(),
            "http://b.example/".to_string(),
        ])
        .await;
    let broker = stack.broker();

    broker.publish(&stack.topic, b"this is not JSON").await;
    broker
        .publish(&stack.topic, br#"{"task_id": "seven"}"#)
        .await;
    let unknown = serde_json::to_vec(&result_for(987_654_321, 1)).unwrap();
    broker.publish(&stack.topic, &unknown).await;
    let first = serde_json::to_vec(&result_for(ids[0], 7)).unwrap();
    broker.publish(&stack.topic, &first).await;
    broker.publish(&stack.topic, &first).await;
    let dup_other = serde_json::to_vec(&result_for(ids[0], 99)).unwrap();
    broker.publish(&stack.topic, &dup_other).await;
    // The channel is not blocked by what came before.
    broker
        .publish(
            &stack.topic,
            &serde_json::to_vec(&result_for(ids[1], 3)).unwrap(),
        )
        .await;

    app.wait_finished(2, Duration::from_secs(30)).await;
    eventually(
        "all 7 messages finished",
        Duration::from_secs(30),
        || async {
            let s = broker.stats();
            let ch = s.channel(&stack.topic, &stack.channel)?;
            (ch.finish_count >= 7 && ch.depth == 0 && ch.in_flight_count == 0).then_some(())
        },
    )
    .await;
    assert_eq!(
        app.task(ids[0]).await["result"]["words_count"],
        7,
        "first result wins"
    );
    assert_eq!(app.task(ids[1]).await["result"]["words_count"], 3);
    let pool = stack.db.pool().await;
    let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM result")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(rows, 2);
    pool.close().await;
    let stats = app.running.store.stats().await.unwrap();
    assert_eq!(
        (stats.pending, stats.finished),
        (0, 2),
        "counters not moved by duplicates"
    );

    app.stop().await;
    stack.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_at_submit_tasks_wait_then_finish() {
    let pages = PageServer::start().await;
    let port = free_tcp_port();
    let mut redis = TestRedis::start(port).await;
    let mut stack = Stack::new().await;
    stack.redis_url = format!("redis://127.0.0.1:{port}");
    let mut args = stack.serve_args(2);
    args.requeue_not_started_secs = 1;
    args.sweep_interval_secs = 1;
    let app = TestApp::start(args).await;
    // Warm path works.
    let first = app.submit_addresses(&[pages.url("/count/1")]).await;
    app.wait_finished(1, Duration::from_secs(30)).await;

    redis.stop().await;
    let addresses: Vec<String> = (0..10).map(|n| pages.url(&format!("/count/{n}"))).collect();
    let (status, body) = app.submit(json!({ "addresses": addresses })).await;
    assert_eq!(
        status, 201,
        "a queue outage is not the person's error: {body}"
    );
    let ids: Vec<i64> = body["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_i64().unwrap())
        .collect();
    for t in body["tasks"].as_array().unwrap() {
        assert_eq!(
            t["status"], "NOT_STARTED",
            "stored, waiting for the queue: {body}"
        );
    }
    // The page says they are waiting.
    let html = app
        .client
        .get(app.url("/tasks"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("waiting for queue"), "{html}");
    assert_eq!(app.running.store.stats().await.unwrap().not_started, 10);

    let _redis = TestRedis::start(port).await;
    app.wait_finished(11, Duration::from_secs(60)).await;
    for (n, id) in ids.iter().enumerate() {
        assert_eq!(app.task(*id).await["result"]["words_count"], json!(n));
    }
    assert_eq!(app.task(first[0]).await["result"]["words_count"], 1);
    app.stop().await;
    stack.cleanup().await;
}

#[tokio::test]
async fn postgres_store_keeps_the_same_guarantees() {
    let db = TestDb::postgres().await;
    let store = Store::connect(&db.url).await.expect("postgres store");
    // Connecting twice (a second `serve`) finds the schema in place.
    let again = Store::connect(&db.url).await.expect("second connect");
    let new: Vec<NewTask> = (0..3)
        .map(|i| NewTask {
            address: format!("http://e{i}.example/"),
            options: Default::default(),
        })
        .collect();
    let tasks = store.insert_tasks(&new).await.unwrap();
    store
        .mark_queued(&[tasks[0].id, tasks[1].id])
        .await
        .unwrap();
    let out = store
        .store_results(&[
            result_for(tasks[0].id, 4),
            result_for(tasks[0].id, 5),
            result_for(-1, 1),
        ])
        .await
        .unwrap();
    assert_eq!(
        out,
        vec![
            StoreOutcome::Stored,
            StoreOutcome::Duplicate,
            StoreOutcome::UnknownTask
        ]
    );
    // Concurrent claims from two "processes": each task claimed once. (The task must be
    // older than the deadline, hence the short pause: setup, not a wait for an outcome.)
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (a, b) = tokio::join!(
        store.claim_stale(TaskStatus::NotStarted, 20, 10),
        again.claim_stale(TaskStatus::NotStarted, 20, 10)
    );
    let claimed = a.unwrap().len() + b.unwrap().len();
    assert_eq!(claimed, 1, "task 3 claimed exactly once");
    let s = store.stats().await.unwrap();
    assert_eq!((s.not_started, s.pending, s.finished), (1, 1, 1));
    let t0 = store.get_task(tasks[0].id).await.unwrap().unwrap();
    assert_eq!(t0.task.status, TaskStatus::Finished);
    assert_eq!(t0.result.unwrap().words_count, Some(4));
    store.close().await;
    again.close().await;
    db.cleanup().await;
}

#[tokio::test]
async fn postgres_bulk_insert_and_mark_queued_keep_rows_and_counters() {
    let db = TestDb::postgres().await;
    let store = Store::connect(&db.url).await.expect("postgres store");
    let opts = |i: usize| wordtally::count::CountOptions {
        word: format!("w{i}"),
        case_sensitive: i.is_multiple_of(2),
        whole_word: i.is_multiple_of(3),
        scope: if i.is_multiple_of(2) {
            wordtally::count::Scope::Raw
        } else {
            wordtally::count::Scope::Text
        },
        words: if i.is_multiple_of(4) {
            vec![format!("w{i}"), "rust".into()]
        } else {
            Vec::new()
        },
        ..Default::default()
    };
    // More than one chunk of a thousand, each row with options of its own.
    let new: Vec<NewTask> = (0..1500)
        .map(|i| NewTask {
            address: format!("http://e{i}.example/"),
            options: opts(i),
        })
        .collect();
    let tasks = store.insert_tasks(&new).await.unwrap();
    assert_eq!(tasks.len(), new.len());
    for (t, n) in tasks.iter().zip(&new) {
        let read = store.get_task(t.id).await.unwrap().unwrap().task;
        assert_eq!((&read.address, &read.options), (&n.address, &n.options));
        assert_eq!(read.status, TaskStatus::NotStarted);
    }
    // Task 0 finishes before it is marked, task 1 is marked twice (a re-queue).
    store
        .store_results(&[result_for(tasks[0].id, 4)])
        .await
        .unwrap();
    store.mark_queued(&[tasks[1].id]).await.unwrap();
    let ids: Vec<i64> = tasks.iter().map(|t| t.id).collect();
    store.mark_queued(&ids).await.unwrap();
    let s = store.stats().await.unwrap();
    assert_eq!((s.not_started, s.pending, s.finished), (0, 1499, 1));
    let t0 = store.get_task(tasks[0].id).await.unwrap().unwrap().task;
    assert_eq!((t0.status, t0.attempts), (TaskStatus::Finished, 0));
    let t1 = store.get_task(tasks[1].id).await.unwrap().unwrap().task;
    assert_eq!((t1.status, t1.attempts), (TaskStatus::Pending, 2));
    let t2 = store.get_task(tasks[1499].id).await.unwrap().unwrap().task;
    assert_eq!((t2.status, t2.attempts), (TaskStatus::Pending, 1));
    assert!(t2.queued_at.is_some());
    store.close().await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn result_arriving_while_the_task_is_marked_pending_still_finishes_it() {
    // Widens the window between enqueue and mark_queued: the task's NOT_STARTED → PENDING
    // transaction stays open 1.5 s after moving the row, while the worker's result arrives.
    // Before writers were serialized, the result was stored and the task stayed PENDING.
    let pages = PageServer::start().await;
    let stack = Stack::new().await;
    let pool = stack.db.pool().await;
    let app = TestApp::start(stack.serve_args(2)).await;
    sqlx::query(
        "CREATE FUNCTION slow_mark() RETURNS trigger LANGUAGE plpgsql AS \
         $$ BEGIN PERFORM pg_sleep(1.5); RETURN NULL; END $$",
    )
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query(
        "CREATE TRIGGER slow_mark AFTER UPDATE ON task FOR EACH ROW \
         WHEN (OLD.task_status = 'NOT_STARTED' AND NEW.task_status = 'PENDING') \
         EXECUTE FUNCTION slow_mark()",
    )
    .execute(&pool)
    .await
    .unwrap();
    let ids = app.submit_addresses(&[pages.url("/count/2")]).await;
    app.wait_finished(1, Duration::from_secs(30)).await;
    let t = app.task(ids[0]).await;
    assert_eq!(t["status"], "FINISHED", "{t}");
    assert_eq!(t["result"]["words_count"], 2);
    let s = app.running.store.stats().await.unwrap();
    assert_eq!((s.not_started, s.pending, s.finished), (0, 0, 1));
    pool.close().await;
    app.stop().await;
    stack.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listener_finds_nsqd_through_lookupd() {
    let pages = PageServer::start().await;
    let stack = Stack::new().await;
    let Some(broker) = &stack.broker else {
        return; // a real nsqd without a known nsqlookupd: nothing to point at
    };
    // The broker's HTTP side answers /lookup as nsqlookupd does. The topic must exist
    // before the consumer's first lookup, as with a real nsqlookupd.
    broker.publish(&stack.topic, b"warm-up: not a result").await;
    let mut args = stack.serve_args(2);
    args.nsqlookupd_http_address = vec![broker.http_addr().to_string()];
    let app = TestApp::start(args).await;
    let ids = app
        .submit_addresses(&[pages.url("/count/3"), pages.url("/count/4")])
        .await;
    app.wait_finished(2, Duration::from_secs(60)).await;
    assert_eq!(app.task(ids[0]).await["result"]["words_count"], 3);
    assert_eq!(app.task(ids[1]).await["result"]["words_count"], 4);
    app.stop().await;
    stack.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_delivered_too_often_ends_as_an_error_result() {
    use wordtally::queue::TaskQueue;
    use wordtally::queue::redis::{RedisQueue, RedisQueueConfig};

    let pages = PageServer::start().await;
    let stack = Stack::new().await;
    let app = TestApp::start(stack.serve_args(0)).await;
    // An address of this test's own: hits on a reused port from other tests' jobs do not count.
    let own = format!("/count/5?{}", unique("given-up"));
    let ids = app.submit_addresses(&[pages.url(&own)]).await;

    // A consumer that takes the job and dies twice (never acks): deliveries 1 and 2.
    let queue = RedisQueue::new(&RedisQueueConfig {
        url: stack.redis_url.clone(),
        prefix: stack.redis_prefix.clone(),
        visibility_timeout: Duration::from_secs(1),
    })
    .unwrap();
    let first = queue
        .reserve("doomed-1", 1, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!((first.len(), first[0].deliveries), (1, 1));
    let second = eventually(
        "job reclaimed after the visibility timeout",
        Duration::from_secs(10),
        || async {
            let d = queue
                .reserve("doomed-2", 1, Duration::from_millis(200))
                .await
                .ok()?;
            d.into_iter().next()
        },
    )
    .await;
    assert_eq!(
        second.deliveries, 2,
        "the delivery count comes from XPENDING"
    );

    // A worker allowing 2 deliveries reclaims it as the 3rd: an error result, not a fetch.
    // Its own visibility timeout is longer: publishing the error result must not outlast
    // it, or a loaded machine reclaims the job a 4th time before the 3rd result is stored
    // (and results of one run may arrive in either order over several NSQ connections).
    let mut args = stack.worker_args(2);
    args.visibility_timeout_secs = 3;
    args.max_deliveries = 2;
    let worker = start_worker_in_process(args).await;
    app.wait_finished(1, Duration::from_secs(30)).await;
    let t = app.task(ids[0]).await;
    assert_eq!(t["status"], "FINISHED");
    assert_eq!(t["result"]["words_count"], serde_json::Value::Null, "{t}");
    let error = t["result"]["error"].as_str().unwrap_or_default();
    assert!(error.contains("delivered 3 times"), "{t}");
    assert_eq!(pages.hits(&own), 0, "given up without fetching");

    worker.stop().await.unwrap();
    app.stop().await;
    stack.cleanup().await;
}
