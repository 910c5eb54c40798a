//! What travels beside the jobs in the queue's transport (submit → **queue** → fetch): each
//! worker pool's heartbeat, and the queue's own state (depth, unacknowledged, lag). The
//! web side reads both to answer "who is working, and how far behind are we?" (DESIGN §12).

use serde::{Deserialize, Serialize};

use crate::model::now_ms;

/// How many missed beats make a worker "gone": alive means its last beat is younger than
/// this many intervals (so a SIGKILLed worker turns gone within 3 intervals + one read).
pub const MISSED_BEATS: i64 = 3;

/// How long a heartbeat is kept after its last refresh, at least (then it is dropped).
pub const KEEP_MS: i64 = 60_000;

/// One worker pool's report of itself, refreshed every `interval_ms`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// `host:pid`: unique per process, stable across the pool's restarts by its supervisor.
    pub id: String,
    pub host: String,
    pub pid: u32,
    /// wordtally version of the process.
    pub version: String,
    /// When the pool started (epoch ms).
    pub started_at: i64,
    /// When this beat was sent (epoch ms, the worker's clock). Readers compare it with
    /// their own clock, so hosts need NTP-grade agreement (a skew beyond 3 beats would
    /// show a live worker as gone); the Redis key's own expiry (`PX`) does not depend on it.
    pub last_seen: i64,
    /// Jobs it can run at once.
    pub concurrency: usize,
    /// Jobs running at the time of the beat.
    pub busy: usize,
    /// Jobs finished (result published) since it started.
    pub done: u64,
    /// Of `done`, those whose outcome is `failed` (no usable response).
    pub failed: u64,
    /// The beat interval, so that a reader can tell alive from gone without configuration.
    pub interval_ms: i64,
}

impl Heartbeat {
    /// Alive = the last beat is younger than `MISSED_BEATS` intervals at `now` (epoch ms).
    pub fn alive_at(&self, now: i64) -> bool {
        now - self.last_seen <= MISSED_BEATS * self.interval_ms.max(1)
    }

    pub fn alive(&self) -> bool {
        self.alive_at(now_ms())
    }

    /// How long the transport keeps this beat after its refresh: a minute, or 12 beats
    /// when beats are rarer than 5 s.
    pub fn keep_ms(&self) -> i64 {
        KEEP_MS.max(self.interval_ms.saturating_mul(12))
    }
}

/// The queue's state, read cheaply.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueState {
    /// Jobs waiting to be handed out (not yet delivered).
    pub depth: u64,
    /// Jobs delivered to a worker and not yet acknowledged.
    pub unacked: u64,
    /// Age of the oldest waiting job in milliseconds (0 when none waits).
    pub lag_ms: i64,
    /// Consumers the queue knows (Redis keeps dead consumers' names too; live workers
    /// come from the heartbeats).
    pub consumers: u64,
}

/// The host name of this machine (for heartbeats and consumer names).
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "host".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn beat(last_seen: i64, interval_ms: i64) -> Heartbeat {
        Heartbeat {
            id: "h:1".into(),
            host: "h".into(),
            pid: 1,
            version: "0".into(),
            started_at: 0,
            last_seen,
            concurrency: 1,
            busy: 0,
            done: 0,
            failed: 0,
            interval_ms,
        }
    }

    #[test]
    fn alive_within_three_beats() {
        let b = beat(10_000, 1_000);
        assert!(b.alive_at(10_000));
        assert!(b.alive_at(13_000));
        assert!(!b.alive_at(13_001));
        assert_eq!(b.keep_ms(), 60_000);
        assert_eq!(beat(0, 10_000).keep_ms(), 120_000);
    }
}
