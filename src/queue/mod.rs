//! The job queue between the Submitter and the workers (submit → **queue** → fetch).
//!
//! `TaskQueue` is at-least-once: a reserved job stays owned by its consumer until it is
//! acknowledged, which a worker does only after the job's result was published. A job whose
//! consumer went silent for longer than the visibility timeout is handed to another consumer,
//! with its delivery count, so a job that keeps killing workers ends as an error result
//! instead of looping forever. Two implementations: [`memory::MemoryQueue`] (the embedded
//! default, in-process) and [`redis::RedisQueue`] (a Redis stream with a consumer group).

pub mod heartbeat;
pub mod memory;
pub mod redis;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

pub use heartbeat::{Heartbeat, QueueState};

use crate::model::Job;
use crate::store::CancelledRun;

/// Identifies one delivery of a job, for `ack`/`release`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DeliveryTag(pub String);

/// A reserved job.
#[derive(Clone, Debug)]
pub struct Delivery {
    pub job: Job,
    pub tag: DeliveryTag,
    /// How many times this job has been handed out, this time included (1 = first time).
    pub deliveries: u32,
}

/// Why a queue operation failed. Every variant is transient from the caller's view: the
/// database still has the task, and the reconciler or the visibility timeout will retry.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("queue unavailable: {0}")]
    Unavailable(String),
    #[error("queue is closed")]
    Closed,
}

#[async_trait]
pub trait TaskQueue: Send + Sync + 'static {
    /// "memory" or "redis", for logs and /healthz.
    fn kind(&self) -> &'static str;
    /// Adds jobs; returns only once the queue holds all of them.
    async fn enqueue(&self, jobs: &[Job]) -> Result<(), QueueError>;
    /// Waits up to `wait` for at most `max` jobs for `consumer`, reclaiming first the jobs
    /// whose consumer has not acknowledged them within the visibility timeout.
    async fn reserve(
        &self,
        consumer: &str,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Delivery>, QueueError>;
    /// The job is done (its result is published): forget it.
    async fn ack(&self, tag: &DeliveryTag) -> Result<(), QueueError>;
    /// Gives reserved jobs back for immediate redelivery (graceful shutdown).
    async fn release(&self, consumer: &str, tags: &[DeliveryTag]) -> Result<(), QueueError>;
    /// Checks that the queue answers.
    async fn ping(&self) -> Result<(), QueueError>;
    /// These runs were cancelled in the database: a job for one of them that has not been
    /// handed out yet is dropped at `reserve` (acknowledged without a fetch). Best effort
    /// and cheap: a job already being fetched finishes, and its result changes nothing.
    async fn cancel(&self, runs: &[CancelledRun]) -> Result<(), QueueError>;

    /// Records (or refreshes) one worker pool's heartbeat; the transport forgets it by
    /// itself `keep` after its last refresh, so a killed process disappears unaided.
    async fn heartbeat(&self, beat: &Heartbeat, keep: Duration) -> Result<(), QueueError>;
    /// The heartbeats not yet forgotten (alive or gone), in no particular order.
    async fn heartbeats(&self) -> Result<Vec<Heartbeat>, QueueError>;
    /// Forgets one worker pool's heartbeat at once (a graceful stop says goodbye).
    async fn goodbye(&self, id: &str) -> Result<(), QueueError>;
    /// Depth, unacknowledged jobs, lag and consumers, from a few O(1) reads (never a scan).
    async fn state(&self) -> Result<QueueState, QueueError>;

    /// A token that changes whenever the queue lost what it held (a Redis restarted
    /// without persistence, a flushed database): the Submitter compares it between sweeps
    /// and, when it changes, re-queues every PENDING task at once instead of waiting out
    /// each one's deadline; at its first look it re-queues the tasks queued before the
    /// token was made ([`generation_made_at`]). None for a queue that cannot lose its jobs
    /// while this process lives (the in-process queue).
    async fn generation(&self) -> Result<Option<String>, QueueError> {
        Ok(None)
    }
}

pub type SharedQueue = Arc<dyn TaskQueue>;

/// When the queue of generation `token` was made (epoch ms), if the token says: a Redis
/// generation is `{random}-{ms}`. A task queued before that was queued into a queue that
/// no longer exists.
pub fn generation_made_at(token: &str) -> Option<i64> {
    token.rsplit_once('-')?.1.parse().ok()
}
