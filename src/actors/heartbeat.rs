//! Heartbeats of a worker pool (queue → **fetch** → …, seen from the side): every
//! `interval` the pool tells the queue's transport who it is and how it is doing, so that
//! `serve` can list the workers without any database access from them (DESIGN §12).
//!
//! A task of its own beside the reserve loop, not a message loop that sleeps: it only
//! reads the pool's counters. A failed beat is logged once and retried at the next tick —
//! a worker that cannot reach the queue cannot take jobs either, so it rightly looks gone.

use std::sync::Arc;
use std::time::Duration;

use super::worker::WorkerCtx;
use crate::model::now_ms;
use crate::queue::Heartbeat;
use crate::queue::heartbeat::host_name;

/// The fixed part of a pool's heartbeat.
#[derive(Clone, Debug)]
pub struct Identity {
    pub id: String,
    pub host: String,
    pub pid: u32,
    pub started_at: i64,
    pub concurrency: usize,
    pub interval: Duration,
}

impl Identity {
    /// This process's identity (`host:pid`), started now.
    pub fn of_this_process(concurrency: usize, interval: Duration) -> Identity {
        let host = host_name();
        let pid = std::process::id();
        Identity {
            id: format!("{host}:{pid}"),
            host,
            pid,
            started_at: now_ms(),
            concurrency,
            interval,
        }
    }

    /// The beat to send now, with the pool's live counters.
    pub fn beat(&self, ctx: &WorkerCtx) -> Heartbeat {
        let (busy, done, failed) = ctx.counters();
        Heartbeat {
            id: self.id.clone(),
            host: self.host.clone(),
            pid: self.pid,
            version: env!("CARGO_PKG_VERSION").to_string(),
            started_at: self.started_at,
            last_seen: now_ms(),
            concurrency: self.concurrency,
            busy,
            done,
            failed,
            interval_ms: self.interval.as_millis() as i64,
        }
    }
}

/// Beats until the task is aborted (the pool does that once it has drained, then says
/// goodbye). The first beat goes at once, so a new worker shows up without waiting.
pub async fn beat_forever(ctx: Arc<WorkerCtx>, me: Identity) {
    let mut tick = tokio::time::interval(me.interval.max(Duration::from_millis(50)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tick.tick().await;
        let beat = me.beat(&ctx);
        let keep = Duration::from_millis(beat.keep_ms() as u64);
        match ctx.queue.heartbeat(&beat, keep).await {
            Ok(()) => {
                if failing {
                    tracing::info!("heartbeats reach the queue again");
                }
                failing = false;
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(error = %e, "cannot send a heartbeat; retrying each interval");
                }
                failing = true;
            }
        }
    }
}
