//! Crawls (DESIGN §15): a batch that grows from start addresses by following links.
//!
//! Where each piece sits in submit → queue → fetch → count → NSQ → DB → poll:
//! * [`rules`] — what a crawl may follow (checked at submit, carried in every job, applied
//!   by the worker);
//! * [`job`] — the worker's crawl step: robots.txt, politeness, fetch and count, links;
//! * [`robots`] — robots.txt (RFC 9309): fetched once per (crawl, origin), cached in the
//!   process and, with Redis, across processes; `Crawl-delay`; `Sitemap:` lines;
//! * [`politeness`] — a per-host minimum delay between requests of every worker process;
//! * [`sitemap`] — sitemap.xml, sitemap indexes, `.xml.gz`: only `<loc>` values, capped;
//! * [`page`] — a page's links resolved, normalised, scoped and capped (worker);
//! * [`normalize`] — one spelling per page for the frontier (worker, per link);
//! * the frontier itself is the database: `store::crawls` inserts unseen links as tasks in
//!   the DB writer's transaction.
//!
//! [`RedisShared`] is the small Redis handle the robots cache and politeness share.

pub mod job;
pub mod normalize;
pub mod page;
pub mod politeness;
pub mod robots;
pub mod rules;
pub mod sitemap;

use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::OnceCell;

/// A Redis connection (made on first use, re-made by `ConnectionManager`) and the key prefix
/// of this deployment (`REDIS_PREFIX`), so crawl state shared across processes lives beside
/// the job queue and every key is `{prefix}:…`. Cheap to clone; clones share the connection.
#[derive(Clone)]
pub struct RedisShared {
    client: redis::Client,
    prefix: String,
    conn: Arc<OnceCell<ConnectionManager>>,
}

impl std::fmt::Debug for RedisShared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisShared")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// Why crawl state could not go through Redis. Callers fall back to process-local state
/// (and say so in the log) rather than stop the crawl.
#[derive(Debug, thiserror::Error)]
pub enum SharedError {
    #[error("bad REDIS_URL: {0}")]
    BadUrl(String),
    #[error("Redis unavailable: {0}")]
    Unavailable(String),
}

impl RedisShared {
    /// Checks the URL now; connects on first use (like the queue, so a worker starts while
    /// Redis is down).
    pub fn new(url: &str, prefix: &str) -> Result<Self, SharedError> {
        let client = redis::Client::open(url).map_err(|e| SharedError::BadUrl(e.to_string()))?;
        Ok(RedisShared {
            client,
            prefix: prefix.to_owned(),
            conn: Arc::new(OnceCell::new()),
        })
    }

    /// From the worker settings the app already has (`REDIS_URL`, `REDIS_PREFIX`); `None`
    /// when Redis is not configured (everything stays in the process).
    pub fn from_worker_args(
        w: &crate::config::WorkerArgs,
    ) -> Option<Result<RedisShared, SharedError>> {
        w.redis_url
            .as_deref()
            .map(|url| RedisShared::new(url, &w.redis_prefix))
    }

    /// `{prefix}:{rest}`.
    pub fn key(&self, rest: &str) -> String {
        format!("{}:{rest}", self.prefix)
    }

    /// The shared connection. Fails fast while Redis is down (2 s connect, 2 s response):
    /// callers fall back to local state instead of stalling a fetch.
    pub async fn conn(&self) -> Result<ConnectionManager, SharedError> {
        self.conn
            .get_or_try_init(|| async {
                let cfg = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(Duration::from_secs(2)))
                    .set_response_timeout(Some(Duration::from_secs(2)))
                    .set_number_of_retries(1)
                    .set_max_delay(Duration::from_secs(2));
                self.client
                    .get_connection_manager_with_config(cfg)
                    .await
                    .map_err(|e| SharedError::Unavailable(e.to_string()))
            })
            .await
            .cloned()
    }
}
