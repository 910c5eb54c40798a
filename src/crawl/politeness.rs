//! Politeness, just before the "fetch" step (submit → queue → **fetch** → count → NSQ → DB →
//! poll): a per-host minimum delay between requests, held across every worker process.
//!
//! Each request reserves the host's next free slot: `slot = max(now, next[host])`,
//! `next[host] = slot + delay`, then waits until `slot`. The reservation is one atomic step
//! (a mutex in the process; a Lua script on Redis, timed by Redis' own clock so workers on
//! machines with skewed clocks still agree), so N workers asking at once get N slots one
//! delay apart instead of all going at once. Per-host *concurrency* is the fetcher's job.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::RedisShared;

/// Hosts the in-process map tracks before it forgets those whose next slot is already past
/// (a past slot means "go now", the same as no entry): memory follows the hosts being
/// crawled right now, not every host ever seen.
const LOCAL_PRUNE_AT: usize = 4096;

/// Reserves `slot = max(now, next)` and moves `next` on by the delay, atomically, in
/// milliseconds of Redis' clock. Returns how long the caller waits. The key expires a second
/// after its slot has passed, so Redis keeps nothing for hosts no longer crawled.
const RESERVE_LUA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local delay = tonumber(ARGV[1])
local nxt = tonumber(redis.call('GET', KEYS[1]) or '0')
local slot = now
if nxt > now then slot = nxt end
redis.call('SET', KEYS[1], slot + delay, 'PX', slot + delay - now + 1000)
return slot - now
";

/// The per-host delay keeper; `Clone`, clones share state. Build one per process and hand
/// it to every worker runner.
#[derive(Clone)]
pub struct Politeness {
    local: Arc<Mutex<HashMap<String, Instant>>>,
    shared: Option<(RedisShared, Arc<redis::Script>)>,
}

impl std::fmt::Debug for Politeness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Politeness")
            .field("redis", &self.shared.as_ref().map(|(s, _)| s))
            .finish_non_exhaustive()
    }
}

impl Politeness {
    /// In-process when `shared` is None (the embedded mode); across processes through Redis
    /// otherwise.
    pub fn new(shared: Option<RedisShared>) -> Self {
        Politeness {
            local: Arc::new(Mutex::new(HashMap::new())),
            shared: shared.map(|s| (s, Arc::new(redis::Script::new(RESERVE_LUA)))),
        }
    }

    /// Waits until this request's turn on `host_key` (e.g. `host:port`), at least
    /// `min_delay` after the previous request to it from any worker. A zero delay returns at
    /// once. When Redis does not answer, the process-local map keeps the delay among this
    /// process's workers (logged), rather than stalling or dropping the fetch.
    pub async fn wait_turn(&self, host_key: &str, min_delay: Duration) {
        if min_delay.is_zero() {
            return;
        }
        if let Some((shared, script)) = &self.shared {
            match reserve_shared(shared, script, host_key, min_delay).await {
                Ok(wait) => {
                    if !wait.is_zero() {
                        tokio::time::sleep(wait).await;
                    }
                    return;
                }
                Err(e) => {
                    tracing::warn!(host = host_key, error = %e,
                        "politeness: Redis unavailable, keeping the delay in this process only");
                }
            }
        }
        let slot = self.reserve_local(host_key, min_delay);
        tokio::time::sleep_until(slot).await;
    }

    fn reserve_local(&self, host_key: &str, delay: Duration) -> Instant {
        let now = Instant::now();
        let mut map = self.local.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= LOCAL_PRUNE_AT {
            map.retain(|_, next| *next > now);
        }
        let next = map.entry(host_key.to_owned()).or_insert(now);
        let slot = (*next).max(now);
        *next = slot + delay;
        slot
    }

    /// Hosts the in-process map holds (tests check the bound).
    #[cfg(test)]
    fn tracked_hosts(&self) -> usize {
        self.local.lock().map(|m| m.len()).unwrap_or(0)
    }
}

async fn reserve_shared(
    shared: &RedisShared,
    script: &redis::Script,
    host_key: &str,
    delay: Duration,
) -> Result<Duration, super::SharedError> {
    let mut conn = shared.conn().await?;
    let delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX).max(1);
    let wait_ms: i64 = script
        .key(shared.key(&format!("polite:{host_key}")))
        .arg(delay_ms)
        .invoke_async(&mut conn)
        .await
        .map_err(|e| super::SharedError::Unavailable(e.to_string()))?;
    Ok(Duration::from_millis(u64::try_from(wait_ms).unwrap_or(0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn requests_to_one_host_are_spaced_by_the_delay() {
        let p = Politeness::new(None);
        let start = Instant::now();
        let mut turns = Vec::new();
        for _ in 0..4 {
            p.wait_turn("a.test:80", Duration::from_secs(2)).await;
            turns.push(start.elapsed());
        }
        assert_eq!(
            turns,
            [0, 2, 4, 6].map(Duration::from_secs).to_vec(),
            "each request waits one delay after the previous one"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_workers_get_distinct_slots_and_hosts_do_not_wait_for_each_other() {
        let p = Politeness::new(None);
        let start = Instant::now();
        let mut tasks = Vec::new();
        for i in 0..6 {
            let p = p.clone();
            let host = if i % 2 == 0 { "a.test:80" } else { "b.test:80" };
            tasks.push(tokio::spawn(async move {
                p.wait_turn(host, Duration::from_millis(500)).await;
                (host, start.elapsed())
            }));
        }
        let mut a = Vec::new();
        let mut b = Vec::new();
        for t in tasks {
            let (host, at) = t.await.expect("task");
            if host == "a.test:80" {
                a.push(at)
            } else {
                b.push(at)
            }
        }
        a.sort();
        b.sort();
        let want = [0, 500, 1000].map(Duration::from_millis).to_vec();
        assert_eq!(a, want);
        assert_eq!(b, want, "host b is not held up by host a");
    }

    #[tokio::test(start_paused = true)]
    async fn zero_delay_never_waits_and_tracks_nothing() {
        let p = Politeness::new(None);
        let start = Instant::now();
        for _ in 0..100 {
            p.wait_turn("a.test:80", Duration::ZERO).await;
        }
        assert_eq!(start.elapsed(), Duration::ZERO);
        assert_eq!(p.tracked_hosts(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn the_map_forgets_hosts_whose_slot_has_passed() {
        let p = Politeness::new(None);
        for i in 0..LOCAL_PRUNE_AT {
            p.wait_turn(&format!("h{i}.test:80"), Duration::from_millis(10))
                .await;
        }
        tokio::time::advance(Duration::from_secs(1)).await;
        p.wait_turn("late.test:80", Duration::from_millis(10)).await;
        assert!(
            p.tracked_hosts() < 10,
            "old hosts pruned, got {}",
            p.tracked_hosts()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_unreachable_redis_falls_back_to_the_process_map() {
        // Port 1 on loopback: nothing listens, the connect fails fast.
        let shared = RedisShared::new("redis://127.0.0.1:1", "wt-test").expect("url");
        let p = Politeness::new(Some(shared));
        let start = Instant::now();
        p.wait_turn("a.test:80", Duration::from_secs(1)).await;
        p.wait_turn("a.test:80", Duration::from_secs(1)).await;
        assert!(start.elapsed() >= Duration::from_secs(1));
        assert_eq!(p.tracked_hosts(), 1);
    }
}
