//! In-process `TaskQueue` for the embedded default (no Redis): the same reserve / ack /
//! visibility-timeout semantics as the Redis stream, so the actors cannot tell them apart.
//! Jobs live only in memory; the database is still the source of truth, and the
//! reconciler re-queues whatever a restart dropped.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{Mutex, Notify};
use tokio::time::Instant;

use super::{Delivery, DeliveryTag, Heartbeat, QueueError, QueueState, TaskQueue};
use crate::model::{Job, now_ms};
use crate::store::CancelledRun;

#[derive(Debug)]
struct Entry {
    id: u64,
    job: Job,
    deliveries: u32,
    /// When it was enqueued (epoch ms), for the lag.
    enqueued_at: i64,
}

#[derive(Debug, Default)]
struct Inner {
    ready: VecDeque<Entry>,
    /// Reserved, not yet acknowledged: id → (entry, deadline).
    in_flight: HashMap<u64, (Entry, Instant)>,
    next_id: u64,
    /// Cancelled (task, run) pairs whose jobs are dropped when they come up.
    cancelled: HashSet<(i64, i32)>,
    /// Worker heartbeats: id → (beat, forget after).
    beats: HashMap<String, (Heartbeat, Instant)>,
}

/// The in-process queue.
#[derive(Debug)]
pub struct MemoryQueue {
    inner: Mutex<Inner>,
    notify: Notify,
    visibility: Duration,
}

impl MemoryQueue {
    pub fn new(visibility: Duration) -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            notify: Notify::new(),
            visibility,
        }
    }

    /// Jobs waiting plus jobs reserved (for tests and /healthz).
    pub async fn len(&self) -> usize {
        let g = self.inner.lock().await;
        g.ready.len() + g.in_flight.len()
    }

    pub async fn is_empty(&self) -> bool {
        self.len().await == 0
    }
}

#[async_trait]
impl TaskQueue for MemoryQueue {
    fn kind(&self) -> &'static str {
        "memory"
    }

    async fn enqueue(&self, jobs: &[Job]) -> Result<(), QueueError> {
        let mut g = self.inner.lock().await;
        for job in jobs {
            g.next_id += 1;
            let id = g.next_id;
            g.ready.push_back(Entry {
                id,
                job: job.clone(),
                deliveries: 0,
                enqueued_at: now_ms(),
            });
        }
        drop(g);
        self.notify.notify_waiters();
        self.notify.notify_one();
        Ok(())
    }

    async fn reserve(
        &self,
        _consumer: &str,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Delivery>, QueueError> {
        let deadline = Instant::now() + wait;
        loop {
            // Register interest before checking, so an enqueue between the check and
            // the wait is not missed.
            let notified = self.notify.notified();
            {
                let mut g = self.inner.lock().await;
                let now = Instant::now();
                let expired: Vec<u64> = g
                    .in_flight
                    .iter()
                    .filter(|(_, (_, dl))| *dl <= now)
                    .map(|(id, _)| *id)
                    .collect();
                for id in expired {
                    if let Some((e, _)) = g.in_flight.remove(&id) {
                        g.ready.push_front(e);
                    }
                }
                let mut out = Vec::new();
                while out.len() < max {
                    let Some(mut e) = g.ready.pop_front() else {
                        break;
                    };
                    if g.cancelled.remove(&(e.job.task_id, e.job.run)) {
                        tracing::debug!(task_id = e.job.task_id, "cancelled job dropped");
                        continue;
                    }
                    e.deliveries += 1;
                    out.push(Delivery {
                        job: e.job.clone(),
                        tag: DeliveryTag(e.id.to_string()),
                        deliveries: e.deliveries,
                    });
                    let id = e.id;
                    g.in_flight.insert(id, (e, now + self.visibility));
                }
                if !out.is_empty() || max == 0 {
                    return Ok(out);
                }
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(Vec::new());
            }
            // Wake for new jobs, the deadline, or (at most every second) to re-check
            // visibility timeouts.
            let nap = (deadline - now).min(Duration::from_secs(1));
            let _ = tokio::time::timeout(nap, notified).await;
        }
    }

    async fn ack(&self, tag: &DeliveryTag) -> Result<(), QueueError> {
        if let Ok(id) = tag.0.parse::<u64>() {
            self.inner.lock().await.in_flight.remove(&id);
        }
        Ok(())
    }

    async fn release(&self, _consumer: &str, tags: &[DeliveryTag]) -> Result<(), QueueError> {
        let mut g = self.inner.lock().await;
        for tag in tags {
            if let Ok(id) = tag.0.parse::<u64>()
                && let Some((e, _)) = g.in_flight.remove(&id)
            {
                g.ready.push_front(e);
            }
        }
        drop(g);
        self.notify.notify_one();
        Ok(())
    }

    async fn ping(&self) -> Result<(), QueueError> {
        Ok(())
    }

    async fn cancel(&self, runs: &[CancelledRun]) -> Result<(), QueueError> {
        let mut g = self.inner.lock().await;
        // Only jobs still waiting can be dropped; remember just those, so the set stays
        // as small as the queue.
        let waiting: HashSet<(i64, i32)> =
            g.ready.iter().map(|e| (e.job.task_id, e.job.run)).collect();
        for r in runs {
            if waiting.contains(&(r.task_id, r.run)) {
                g.cancelled.insert((r.task_id, r.run));
            }
        }
        Ok(())
    }
    async fn heartbeat(&self, beat: &Heartbeat, keep: Duration) -> Result<(), QueueError> {
        let mut g = self.inner.lock().await;
        let now = Instant::now();
        g.beats.retain(|_, (_, until)| *until > now);
        g.beats.insert(beat.id.clone(), (beat.clone(), now + keep));
        Ok(())
    }

    async fn heartbeats(&self) -> Result<Vec<Heartbeat>, QueueError> {
        let g = self.inner.lock().await;
        let now = Instant::now();
        Ok(g.beats
            .values()
            .filter(|(_, until)| *until > now)
            .map(|(b, _)| b.clone())
            .collect())
    }

    async fn goodbye(&self, id: &str) -> Result<(), QueueError> {
        self.inner.lock().await.beats.remove(id);
        Ok(())
    }

    async fn state(&self) -> Result<QueueState, QueueError> {
        let g = self.inner.lock().await;
        // Released and expired jobs go back to the front, so the front is the oldest.
        let lag_ms = g
            .ready
            .front()
            .map(|e| (now_ms() - e.enqueued_at).max(0))
            .unwrap_or(0);
        let now = Instant::now();
        Ok(QueueState {
            depth: g.ready.len() as u64,
            unacked: g.in_flight.len() as u64,
            lag_ms,
            consumers: g.beats.values().filter(|(_, u)| *u > now).count() as u64,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::count::CountOptions;

    fn job(id: i64) -> Job {
        Job {
            task_id: id,
            run: 1,
            address: format!("http://example.com/{id}"),
            options: CountOptions::default(),
            crawl: None,
        }
    }

    #[tokio::test]
    async fn cancelled_waiting_job_is_dropped_without_delivery() {
        let q = MemoryQueue::new(Duration::from_secs(30));
        q.enqueue(&[job(1), job(2)]).await.unwrap();
        q.cancel(&[
            CancelledRun { task_id: 1, run: 1 },
            CancelledRun { task_id: 9, run: 1 },
        ])
        .await
        .unwrap();
        let got = q.reserve("c", 10, Duration::ZERO).await.unwrap();
        assert_eq!(
            got.iter().map(|d| d.job.task_id).collect::<Vec<_>>(),
            vec![2]
        );
        assert!(q.inner.lock().await.cancelled.is_empty());
    }

    #[tokio::test]
    async fn reserve_ack_and_bounded() {
        let q = MemoryQueue::new(Duration::from_secs(60));
        q.enqueue(&[job(1), job(2), job(3)]).await.unwrap();
        let got = q.reserve("c", 2, Duration::ZERO).await.unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].job.task_id, 1);
        for d in &got {
            q.ack(&d.tag).await.unwrap();
        }
        let rest = q.reserve("c", 10, Duration::ZERO).await.unwrap();
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].job.task_id, 3);
        q.ack(&rest[0].tag).await.unwrap();
        assert!(q.is_empty().await);
    }

    #[tokio::test(start_paused = true)]
    async fn unacked_job_is_redelivered_after_visibility_timeout() {
        let q = MemoryQueue::new(Duration::from_secs(5));
        q.enqueue(&[job(1)]).await.unwrap();
        let first = q.reserve("a", 1, Duration::ZERO).await.unwrap();
        assert_eq!(first[0].deliveries, 1);
        // Not yet visible again.
        assert!(q.reserve("b", 1, Duration::ZERO).await.unwrap().is_empty());
        let again = q.reserve("b", 1, Duration::from_secs(10)).await.unwrap();
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].deliveries, 2);
    }

    #[tokio::test]
    async fn release_makes_job_available_now() {
        let q = MemoryQueue::new(Duration::from_secs(600));
        q.enqueue(&[job(1)]).await.unwrap();
        let d = q.reserve("a", 1, Duration::ZERO).await.unwrap();
        q.release("a", &[d[0].tag.clone()]).await.unwrap();
        let again = q.reserve("b", 1, Duration::ZERO).await.unwrap();
        assert_eq!(again[0].job.task_id, 1);
    }

    fn beat(id: &str) -> Heartbeat {
        Heartbeat {
            id: id.into(),
            host: "h".into(),
            pid: 1,
            version: "0".into(),
            started_at: 0,
            last_seen: now_ms(),
            concurrency: 4,
            busy: 0,
            done: 0,
            failed: 0,
            interval_ms: 1000,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn heartbeats_expire_and_goodbye_forgets_at_once() {
        let q = MemoryQueue::new(Duration::from_secs(60));
        q.heartbeat(&beat("a"), Duration::from_secs(10))
            .await
            .unwrap();
        q.heartbeat(&beat("b"), Duration::from_secs(10))
            .await
            .unwrap();
        assert_eq!(q.heartbeats().await.unwrap().len(), 2);
        q.goodbye("a").await.unwrap();
        let left = q.heartbeats().await.unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].id, "b");
        tokio::time::advance(Duration::from_secs(11)).await;
        assert!(q.heartbeats().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn state_counts_waiting_unacked_and_lag() {
        let q = MemoryQueue::new(Duration::from_secs(60));
        assert_eq!(q.state().await.unwrap(), QueueState::default());
        q.enqueue(&[job(1), job(2), job(3)]).await.unwrap();
        let _d = q.reserve("c", 1, Duration::ZERO).await.unwrap();
        tokio::time::sleep(Duration::from_millis(30)).await;
        let s = q.state().await.unwrap();
        assert_eq!((s.depth, s.unacked), (2, 1));
        assert!(s.lag_ms >= 25, "lag {}", s.lag_ms);
    }

    #[tokio::test]
    async fn waiting_reserve_wakes_on_enqueue() {
        let q = std::sync::Arc::new(MemoryQueue::new(Duration::from_secs(60)));
        let q2 = q.clone();
        let waiter = tokio::spawn(async move { q2.reserve("a", 1, Duration::from_secs(30)).await });
        tokio::task::yield_now().await;
        q.enqueue(&[job(9)]).await.unwrap();
        let got = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("reserve did not wake")
            .unwrap()
            .unwrap();
        assert_eq!(got[0].job.task_id, 9);
    }
}
