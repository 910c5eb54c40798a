//! Redis `TaskQueue`: one stream (`{prefix}:jobs`) read through one consumer group
//! (`{prefix}:workers`). `XADD` enqueues; `XREADGROUP` reserves (the entry enters the
//! group's pending list, owned by the reading consumer); `XACK` + `XDEL` acknowledge;
//! `XAUTOCLAIM` hands entries idle longer than the visibility timeout to a live consumer,
//! and `XPENDING` tells how often an entry was delivered. A crashed worker therefore loses
//! nothing, and Redis never grows with finished work.
//!
//! Connections are made lazily and re-made by `ConnectionManager`, so `serve` starts and
//! keeps answering while Redis is down (tasks wait as NOT_STARTED). The blocking read has a
//! connection of its own: on a shared multiplexed connection `XREADGROUP BLOCK` would stall
//! every enqueue and ack behind it.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::streams::{
    StreamAutoClaimReply, StreamId, StreamInfoGroupsReply, StreamPendingCountReply,
    StreamRangeReply, StreamReadReply,
};
use redis::{RedisError, Value};
use tokio::sync::OnceCell;

use super::{Delivery, DeliveryTag, Heartbeat, QueueError, QueueState, TaskQueue};
use crate::model::{Job, now_ms};
use crate::store::CancelledRun;

/// Settings of the Redis queue.
#[derive(Clone, Debug)]
pub struct RedisQueueConfig {
    /// `redis://host:port/db`.
    pub url: String,
    /// Every key this queue uses starts with this (several deployments can share a Redis).
    pub prefix: String,
    /// How long a reserved job may stay unacknowledged before another consumer takes it.
    /// Must exceed the longest fetch (all attempts and back-off) plus publishing.
    pub visibility_timeout: Duration,
}

pub struct RedisQueue {
    client: redis::Client,
    /// Key prefix (heartbeat keys are `{prefix}:beat:{id}`, indexed by `{prefix}:beats`).
    prefix: String,
    stream: String,
    group: String,
    visibility_ms: u64,
    conn: OnceCell<ConnectionManager>,
    blocking: OnceCell<ConnectionManager>,
}

impl std::fmt::Debug for RedisQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisQueue")
            .field("stream", &self.stream)
            .field("group", &self.group)
            .finish()
    }
}

fn unavailable(e: RedisError) -> QueueError {
    QueueError::Unavailable(e.to_string())
}

impl RedisQueue {
    /// Checks the URL now; connects on first use.
    pub fn new(config: &RedisQueueConfig) -> Result<Self, QueueError> {
        let client = redis::Client::open(config.url.as_str())
            .map_err(|e| QueueError::Unavailable(format!("bad REDIS_URL: {e}")))?;
        Ok(Self {
            client,
            prefix: config.prefix.clone(),
            stream: format!("{}:jobs", config.prefix),
            group: format!("{}:workers", config.prefix),
            visibility_ms: config.visibility_timeout.as_millis() as u64,
            conn: OnceCell::new(),
            blocking: OnceCell::new(),
        })
    }

    /// The stream key (tests inspect it).
    pub fn stream_key(&self) -> &str {
        &self.stream
    }

    async fn manager(&self, response_timeout: Duration) -> Result<ConnectionManager, QueueError> {
        // Fail fast while Redis is down: the caller keeps the task and retries later, and
        // the person submitting must not wait on reconnect back-off.
        let cfg = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(response_timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(2));
        let mut mgr = self
            .client
            .get_connection_manager_with_config(cfg)
            .await
            .map_err(unavailable)?;
        self.create_group(&mut mgr).await?;
        Ok(mgr)
    }

    async fn conn(&self) -> Result<ConnectionManager, QueueError> {
        self.conn
            .get_or_try_init(|| self.manager(Duration::from_secs(5)))
            .await
            .cloned()
    }

    async fn blocking_conn(&self, wait: Duration) -> Result<ConnectionManager, QueueError> {
        self.blocking
            .get_or_try_init(|| self.manager(wait.max(Duration::from_secs(5)) * 2))
            .await
            .cloned()
    }

    /// Creates the stream and the group if missing (after a Redis restart without
    /// persistence both are gone; the reconciler re-queues what they held).
    async fn create_group(&self, conn: &mut ConnectionManager) -> Result<(), QueueError> {
        let r: Result<(), RedisError> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&self.stream)
            .arg(&self.group)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(conn)
            .await;
        match r {
            Ok(()) => {
                // A new group: whatever a previous one held is gone. A new generation
                // tells the Submitter to re-queue every PENDING task (see `generation`);
                // it carries when it was made (Redis' clock), for a Submitter that never
                // saw the one before (see `super::generation_made_at`).
                let made: Result<(i64, i64), RedisError> =
                    redis::cmd("TIME").query_async(conn).await;
                let made = made.map_or_else(|_| now_ms(), |(s, us)| s * 1000 + us / 1000);
                let token = format!("{:016x}-{made}", fastrand::u64(..));
                let _: Result<(), RedisError> = redis::cmd("SET")
                    .arg(self.generation_key())
                    .arg(&token)
                    .query_async(conn)
                    .await;
                tracing::info!(stream = %self.stream, generation = %token, "queue group created");
                Ok(())
            }
            Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
            Err(e) => Err(unavailable(e)),
        }
    }

    fn generation_key(&self) -> String {
        format!("{}:generation", self.prefix)
    }

    fn beat_key(&self, id: &str) -> String {
        format!("{}:beat:{id}", self.prefix)
    }

    fn beats_index(&self) -> String {
        format!("{}:beats", self.prefix)
    }

    fn is_nogroup(e: &RedisError) -> bool {
        e.code() == Some("NOGROUP") || e.to_string().contains("NOGROUP")
    }

    /// Turns stream entries into deliveries; malformed entries (not written by us) are
    /// logged, acknowledged and dropped so they cannot block the queue.
    async fn to_deliveries(
        &self,
        conn: &mut ConnectionManager,
        entries: Vec<StreamId>,
        counts: &HashMap<String, u32>,
    ) -> Vec<Delivery> {
        let mut out = Vec::with_capacity(entries.len());
        for e in entries {
            let parsed = match e.map.get("job") {
                Some(Value::BulkString(b)) => {
                    serde_json::from_slice::<Job>(b).map_err(|err| err.to_string())
                }
                Some(Value::SimpleString(s)) => {
                    serde_json::from_str::<Job>(s).map_err(|err| err.to_string())
                }
                other => Err(format!("no `job` field ({other:?})")),
            };
            match parsed {
                Ok(job) => {
                    let deliveries = counts.get(&e.id).copied().unwrap_or(1);
                    out.push(Delivery {
                        job,
                        tag: DeliveryTag(e.id),
                        deliveries,
                    });
                }
                Err(err) => {
                    tracing::warn!(id = %e.id, entry = ?e.map, error = %err, "dropping malformed queue entry");
                    let _ = self.ack_id(conn, &e.id).await;
                }
            }
        }
        out
    }

    async fn ack_id(&self, conn: &mut ConnectionManager, id: &str) -> Result<(), QueueError> {
        redis::pipe()
            .cmd("XACK")
            .arg(&self.stream)
            .arg(&self.group)
            .arg(id)
            .ignore()
            .cmd("XDEL")
            .arg(&self.stream)
            .arg(id)
            .ignore()
            .query_async::<()>(conn)
            .await
            .map_err(unavailable)
    }

    async fn reclaim(
        &self,
        conn: &mut ConnectionManager,
        consumer: &str,
        max: usize,
    ) -> Result<Vec<Delivery>, RedisError> {
        let reply: StreamAutoClaimReply = redis::cmd("XAUTOCLAIM")
            .arg(&self.stream)
            .arg(&self.group)
            .arg(consumer)
            .arg(self.visibility_ms)
            .arg("0-0")
            .arg("COUNT")
            .arg(max)
            .query_async(conn)
            .await?;
        if reply.claimed.is_empty() {
            return Ok(Vec::new());
        }
        // Only reclaimed entries need their delivery count (a fresh read is delivery 1).
        let mut counts = HashMap::new();
        for e in &reply.claimed {
            let p: StreamPendingCountReply = redis::cmd("XPENDING")
                .arg(&self.stream)
                .arg(&self.group)
                .arg(&e.id)
                .arg(&e.id)
                .arg(1)
                .query_async(conn)
                .await?;
            if let Some(pid) = p.ids.first() {
                counts.insert(e.id.clone(), pid.times_delivered as u32);
            }
        }
        tracing::info!(
            count = reply.claimed.len(),
            consumer,
            "reclaimed jobs past their visibility timeout"
        );
        Ok(self.to_deliveries(conn, reply.claimed, &counts).await)
    }
}

/// How long a cancellation mark lives: longer than any job waits in a healthy queue; a job
/// that outlives it is fetched, and its result changes nothing.
const CANCEL_TTL_SECS: u64 = 24 * 3600;

impl RedisQueue {
    fn cancel_key(&self, task_id: i64, run: i32) -> String {
        format!(
            "{}:cancel:{task_id}:{run}",
            self.stream.trim_end_matches(":jobs")
        )
    }

    /// One `MGET` over the reserved jobs' cancellation marks; cancelled ones are
    /// acknowledged (and deleted from the stream) instead of being handed out.
    async fn drop_cancelled(
        &self,
        conn: &mut ConnectionManager,
        out: Vec<Delivery>,
    ) -> Result<Vec<Delivery>, QueueError> {
        if out.is_empty() {
            return Ok(out);
        }
        let keys: Vec<String> = out
            .iter()
            .map(|d| self.cancel_key(d.job.task_id, d.job.run))
            .collect();
        let marks: Vec<Option<String>> = match redis::cmd("MGET").arg(&keys).query_async(conn).await
        {
            Ok(m) => m,
            Err(e) => {
                // Best effort: without the marks, deliver everything.
                tracing::warn!(error = %e, "cannot read cancellation marks");
                return Ok(out);
            }
        };
        let mut kept = Vec::with_capacity(out.len());
        for (d, mark) in out.into_iter().zip(marks) {
            if mark.is_some() {
                tracing::debug!(task_id = d.job.task_id, "cancelled job dropped");
                self.ack_id(conn, &d.tag.0).await?;
            } else {
                kept.push(d);
            }
        }
        Ok(kept)
    }
}

#[async_trait]
impl TaskQueue for RedisQueue {
    fn kind(&self) -> &'static str {
        "redis"
    }

    async fn generation(&self) -> Result<Option<String>, QueueError> {
        let mut conn = self.conn().await?;
        let key = self.generation_key();
        let get = |conn: &mut ConnectionManager| {
            let mut conn = conn.clone();
            let key = key.clone();
            async move {
                redis::cmd("GET")
                    .arg(&key)
                    .query_async::<Option<String>>(&mut conn)
                    .await
                    .map_err(unavailable)
            }
        };
        if let Some(g) = get(&mut conn).await? {
            return Ok(Some(g));
        }
        // No token: Redis lost everything (or this is its first use). Make the group now,
        // which sets a new token, so the loss is seen once and not again when a worker
        // re-creates the group.
        self.create_group(&mut conn).await?;
        Ok(Some(get(&mut conn).await?.unwrap_or_default()))
    }

    async fn enqueue(&self, jobs: &[Job]) -> Result<(), QueueError> {
        if jobs.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn().await?;
        let mut pipe = redis::pipe();
        for job in jobs {
            let body = serde_json::to_string(job)
                .map_err(|e| QueueError::Unavailable(format!("cannot encode job: {e}")))?;
            pipe.cmd("XADD")
                .arg(&self.stream)
                .arg("*")
                .arg("job")
                .arg(body)
                .ignore();
        }
        pipe.query_async::<()>(&mut conn).await.map_err(unavailable)
    }

    async fn reserve(
        &self,
        consumer: &str,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Delivery>, QueueError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let mut conn = self.conn().await?;
        let mut out = match self.reclaim(&mut conn, consumer, max).await {
            Ok(v) => v,
            Err(e) if Self::is_nogroup(&e) => {
                self.create_group(&mut conn).await?;
                Vec::new()
            }
            Err(e) => return Err(unavailable(e)),
        };
        if out.len() >= max {
            return self.drop_cancelled(&mut conn, out).await;
        }
        let mut blocking = self.blocking_conn(wait).await?;
        let read: Result<Option<StreamReadReply>, RedisError> = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(&self.group)
            .arg(consumer)
            .arg("COUNT")
            .arg(max - out.len())
            .arg("BLOCK")
            .arg(wait.as_millis() as u64)
            .arg("STREAMS")
            .arg(&self.stream)
            .arg(">")
            .query_async(&mut blocking)
            .await;
        match read {
            Ok(Some(reply)) => {
                let entries: Vec<StreamId> = reply.keys.into_iter().flat_map(|k| k.ids).collect();
                out.extend(
                    self.to_deliveries(&mut conn, entries, &HashMap::new())
                        .await,
                );
            }
            Ok(None) => {}
            Err(e) if Self::is_nogroup(&e) => self.create_group(&mut conn).await?,
            Err(e) => {
                if out.is_empty() {
                    return Err(unavailable(e));
                }
                tracing::warn!(error = %e, "XREADGROUP failed after reclaiming jobs");
            }
        }
        self.drop_cancelled(&mut conn, out).await
    }

    async fn ack(&self, tag: &DeliveryTag) -> Result<(), QueueError> {
        let mut conn = self.conn().await?;
        self.ack_id(&mut conn, &tag.0).await
    }

    async fn release(&self, consumer: &str, tags: &[DeliveryTag]) -> Result<(), QueueError> {
        if tags.is_empty() {
            return Ok(());
        }
        // Streams have no "nack": mark the entries as idle for ages so that the next
        // XAUTOCLAIM by any consumer takes them at once. JUSTID keeps the delivery count.
        let mut conn = self.conn().await?;
        let mut cmd = redis::cmd("XCLAIM");
        cmd.arg(&self.stream).arg(&self.group).arg(consumer).arg(0);
        for t in tags {
            cmd.arg(&t.0);
        }
        cmd.arg("IDLE")
            .arg(self.visibility_ms.saturating_mul(1000))
            .arg("JUSTID");
        cmd.query_async::<Value>(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn cancel(&self, runs: &[CancelledRun]) -> Result<(), QueueError> {
        if runs.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn().await?;
        let mut pipe = redis::pipe();
        for r in runs {
            pipe.cmd("SET")
                .arg(self.cancel_key(r.task_id, r.run))
                .arg(1)
                .arg("EX")
                .arg(CANCEL_TTL_SECS)
                .ignore();
        }
        pipe.query_async::<()>(&mut conn).await.map_err(unavailable)
    }

    async fn ping(&self) -> Result<(), QueueError> {
        let mut conn = self.conn().await?;
        redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    /// Two commands per beat (Sidekiq's shape): the beat itself as one key that expires on
    /// its own, and its id in a sorted set scored by that expiry, so listing never scans
    /// the key space.
    async fn heartbeat(&self, beat: &Heartbeat, keep: Duration) -> Result<(), QueueError> {
        let body = serde_json::to_string(beat)
            .map_err(|e| QueueError::Unavailable(format!("cannot encode heartbeat: {e}")))?;
        let keep_ms = keep.as_millis().max(1) as i64;
        let mut conn = self.conn().await?;
        redis::pipe()
            .cmd("SET")
            .arg(self.beat_key(&beat.id))
            .arg(body)
            .arg("PX")
            .arg(keep_ms)
            .ignore()
            .cmd("ZADD")
            .arg(self.beats_index())
            .arg(now_ms() + keep_ms)
            .arg(&beat.id)
            .ignore()
            .query_async::<()>(&mut conn)
            .await
            .map_err(unavailable)
    }

    async fn heartbeats(&self) -> Result<Vec<Heartbeat>, QueueError> {
        let mut conn = self.conn().await?;
        let index = self.beats_index();
        let (ids,): (Vec<String>,) = redis::pipe()
            .cmd("ZREMRANGEBYSCORE")
            .arg(&index)
            .arg("-inf")
            .arg(now_ms())
            .ignore()
            .cmd("ZRANGE")
            .arg(&index)
            .arg(0)
            .arg(-1)
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = ids.iter().map(|id| self.beat_key(id)).collect();
        let bodies: Vec<Option<String>> = redis::cmd("MGET")
            .arg(&keys)
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(bodies
            .into_iter()
            .flatten()
            .filter_map(|b| match serde_json::from_str::<Heartbeat>(&b) {
                Ok(h) => Some(h),
                Err(e) => {
                    tracing::warn!(error = %e, "ignoring a malformed heartbeat");
                    None
                }
            })
            .collect())
    }

    async fn goodbye(&self, id: &str) -> Result<(), QueueError> {
        let mut conn = self.conn().await?;
        redis::pipe()
            .cmd("DEL")
            .arg(self.beat_key(id))
            .ignore()
            .cmd("ZREM")
            .arg(self.beats_index())
            .arg(id)
            .ignore()
            .query_async::<()>(&mut conn)
            .await
            .map_err(unavailable)
    }

    /// XLEN + XINFO GROUPS, then one XRANGE … COUNT 1 for the oldest undelivered entry:
    /// three O(1)/O(log n) commands whatever the queue holds. Acknowledged entries are
    /// deleted (XDEL), so the stream holds exactly the waiting and the pending entries.
    async fn state(&self) -> Result<QueueState, QueueError> {
        let mut conn = self.conn().await?;
        let (len, groups): (u64, StreamInfoGroupsReply) = redis::pipe()
            .cmd("XLEN")
            .arg(&self.stream)
            .cmd("XINFO")
            .arg("GROUPS")
            .arg(&self.stream)
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        let Some(group) = groups.groups.into_iter().find(|g| g.name == self.group) else {
            return Ok(QueueState {
                depth: len,
                ..QueueState::default()
            });
        };
        let unacked = group.pending as u64;
        let depth = len.saturating_sub(unacked);
        let mut lag_ms = 0;
        if depth > 0 {
            let first: StreamRangeReply = redis::cmd("XRANGE")
                .arg(&self.stream)
                .arg(format!("({}", group.last_delivered_id))
                .arg("+")
                .arg("COUNT")
                .arg(1)
                .query_async(&mut conn)
                .await
                .map_err(unavailable)?;
            if let Some(e) = first.ids.first() {
                lag_ms = entry_age_ms(&e.id, now_ms());
            }
        }
        Ok(QueueState {
            depth,
            unacked,
            lag_ms,
            consumers: group.consumers as u64,
        })
    }
}

/// Age of a stream entry from its id (`<ms>-<seq>`, the ms being Redis's clock at XADD).
fn entry_age_ms(id: &str, now: i64) -> i64 {
    id.split('-')
        .next()
        .and_then(|ms| ms.parse::<i64>().ok())
        .map(|ms| (now - ms).max(0))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_age_from_stream_id() {
        assert_eq!(entry_age_ms("1000-3", 1500), 500);
        assert_eq!(entry_age_ms("2000-0", 1500), 0);
        assert_eq!(entry_age_ms("garbage", 1500), 0);
    }

    #[test]
    fn a_generation_says_when_it_was_made() {
        let at = super::super::generation_made_at;
        assert_eq!(
            at("00ab34cd56ef7890-1764925200123"),
            Some(1_764_925_200_123)
        );
        // Tokens of the format before the time was added: no time.
        assert_eq!(at("00ab34cd56ef7890"), None);
        assert_eq!(at("x-y"), None);
        assert_eq!(at(""), None);
    }
}
