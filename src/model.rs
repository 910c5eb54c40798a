//! The domain types every step shares: a `Task` as stored, the `Job` that travels through
//! the queue to a worker, and the `JobResult` that travels back over the result bus.
//! Both wire formats are JSON so that other tools (nsq_tail, redis-cli) can read them.

use std::fmt;
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::count::CountOptions;
use crate::outcome::Outcome;

/// Milliseconds since the Unix epoch: the one time format of the schema (portable between
/// SQLite and Postgres, exact in JSON).
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Where a task is in its life. Only ever moves forward (`NotStarted` → `Pending` →
/// `Finished`); every UPDATE in the store guards on the current value to keep it so.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
pub enum TaskStatus {
    /// Stored, not yet accepted by the queue (e.g. Redis was down). The reconciler retries.
    #[serde(rename = "NOT_STARTED")]
    NotStarted,
    /// Handed to the queue; a worker will (or did) fetch it.
    #[serde(rename = "PENDING")]
    Pending,
    /// Its result is stored.
    #[serde(rename = "FINISHED")]
    Finished,
}

impl TaskStatus {
    pub const ALL: [TaskStatus; 3] = [Self::NotStarted, Self::Pending, Self::Finished];

    /// The spelling used in the database, the API and the page.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotStarted => "NOT_STARTED",
            Self::Pending => "PENDING",
            Self::Finished => "FINISHED",
        }
    }
}

impl fmt::Display for TaskStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TaskStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_uppercase().as_str() {
            "NOT_STARTED" => Ok(Self::NotStarted),
            "PENDING" => Ok(Self::Pending),
            "FINISHED" => Ok(Self::Finished),
            other => Err(format!(
                "unknown status {other:?}: use NOT_STARTED, PENDING or FINISHED"
            )),
        }
    }
}

/// A task as stored: one address and what to count on it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Task {
    pub id: i64,
    pub address: String,
    /// When it was submitted (epoch ms).
    pub timestamp: i64,
    pub status: TaskStatus,
    pub options: CountOptions,
    /// How many times it was handed to the queue.
    pub attempts: i32,
    pub queued_at: Option<i64>,
    pub updated_at: i64,
    /// The submission it belongs to (None for tasks stored before batches existed).
    pub batch_id: Option<i64>,
    /// The current run: 1 at submission, one more per retry (DESIGN §11).
    pub run: i32,
    /// How the current run ended; None while it has not.
    pub outcome: Option<Outcome>,
    /// A crawl's page: how many links away from a start address (0 for starts and sitemap
    /// seeds); None for a listed address.
    pub depth: Option<i32>,
    /// A crawl's page: the task it was first found on (None for seeds).
    pub found_on: Option<i64>,
    /// A crawl task that is not a page (a sitemap, a robots.txt read for sitemaps).
    pub role: Option<TaskRole>,
}

impl Task {
    /// The job a worker needs to carry out this task's current run.
    pub fn job(&self) -> Job {
        Job {
            task_id: self.id,
            run: self.run,
            address: self.address.clone(),
            options: self.options.clone(),
            crawl: None,
        }
    }
}

/// The stored outcome of a task: the count plus what a person needs to trust it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ResultRecord {
    /// `None` when nothing could be counted (network error, refused content type, ...).
    #[schema(required = true)]
    pub words_count: Option<i64>,
    #[schema(required = true)]
    pub http_status_code: Option<i32>,
    #[schema(required = true)]
    pub error: Option<String>,
    /// When the result was produced (epoch ms).
    pub timestamp: i64,
    #[schema(required = true)]
    pub final_url: Option<String>,
    #[schema(required = true)]
    pub content_type: Option<String>,
    #[schema(required = true)]
    pub charset: Option<String>,
    pub bytes_read: i64,
    /// The body was longer than the limit: the count covers only what was read.
    pub truncated: bool,
    pub duration_ms: i64,
    /// Fetch attempts inside the worker (retries of transient failures).
    pub attempts: i32,
    /// Where the charset came from: `bom`, `header`, `meta` or `guess`.
    #[serde(default)]
    pub charset_source: Option<String>,
    /// Each fetch attempt's HTTP status or error, oldest first.
    #[serde(default)]
    pub attempt_log: Vec<AttemptRecord>,
    /// The count of every word the task counts (DESIGN §14); `words_count` is the first
    /// word's. None when nothing was counted (or from a worker older than this field).
    #[serde(default)]
    pub counts: Option<std::collections::BTreeMap<String, i64>>,
    /// The redirects followed to `final_url`, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub redirects: Vec<String>,
    /// The page was found by a crawl but not fetched (robots.txt disallows it; `error`
    /// says why): outcome `skipped`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub skipped: bool,
    /// What a crawl's page adds to the crawl (links in scope, what was left out). Travels
    /// to the DB writer, which turns the links into tasks; not stored with the result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(ignore)]
    pub crawl: Option<CrawlReport>,
}

/// The links a crawled page contributes, found in the same pass as the count (DESIGN §15).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CrawlReport {
    /// Normalised absolute URLs in the crawl's scope, distinct, in page order, at most
    /// the crawl's `links_per_page`.
    #[serde(default)]
    pub links: Vec<String>,
    /// Sitemaps (from a sitemap index or robots.txt) to read as seeds.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sitemaps: Vec<String>,
    /// Distinct links of the page outside the crawl's scope (host, domain, prefix,
    /// include/exclude patterns).
    #[serde(default)]
    pub out_of_scope: u64,
    /// Links left out for a limit of the page (links per page, URL length, the counting
    /// pass's own bounds). Links that are no page to crawl (mailto:, javascript:, broken)
    /// are not counted anywhere.
    #[serde(default)]
    pub dropped: u64,
    /// Why no links were followed from this page, if none were (nofollow, a redirect out
    /// of scope, not HTML).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// What one fetch attempt ended with.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AttemptRecord {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl ResultRecord {
    /// A result that carries only an error (nothing was fetched or counted).
    pub fn error_only(error: String, duration_ms: i64) -> ResultRecord {
        ResultRecord {
            words_count: None,
            http_status_code: None,
            error: Some(error),
            timestamp: now_ms(),
            final_url: None,
            content_type: None,
            charset: None,
            bytes_read: 0,
            truncated: false,
            duration_ms,
            attempts: 0,
            charset_source: None,
            attempt_log: Vec::new(),
            counts: None,
            redirects: Vec::new(),
            skipped: false,
            crawl: None,
        }
    }
}

/// A result of an earlier run, kept as history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct RunRecord {
    pub run: i32,
    pub result: ResultRecord,
}

/// A task with its result, as the page and the JSON API show it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskView {
    pub task: Task,
    /// The current run's result.
    pub result: Option<ResultRecord>,
}

/// Runs start at 1; messages from before runs existed mean run 1.
fn first_run() -> i32 {
    1
}

/// What travels through the queue: everything a worker needs, nothing it may not see.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    pub task_id: i64,
    /// Which run of the task this job is; its result is stored under it.
    #[serde(default = "first_run")]
    pub run: i32,
    pub address: String,
    #[serde(flatten)]
    pub options: CountOptions,
    /// Set for a page of a crawl: what the worker needs to collect its links.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crawl: Option<CrawlJob>,
}

/// The crawl part of a job (DESIGN §15): the worker never reads the database, so the
/// rules travel with every job of the crawl.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CrawlJob {
    /// The crawl (batch) id: robots.txt is cached per crawl and origin.
    pub batch: i64,
    pub depth: u32,
    /// What the address is: a page (None), a sitemap, or a robots.txt read for its
    /// `Sitemap:` lines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<TaskRole>,
    pub rules: crate::crawl::rules::CrawlRules,
}

/// A crawl task that is not a page to count.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TaskRole {
    /// A sitemap or sitemap index: its `<loc>`s become depth-0 seeds.
    Sitemap,
    /// An origin's robots.txt, read for its `Sitemap:` lines (`sitemaps: "auto"`).
    Robots,
}

impl TaskRole {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskRole::Sitemap => "sitemap",
            TaskRole::Robots => "robots",
        }
    }
    pub fn parse(s: &str) -> Option<TaskRole> {
        match s {
            "sitemap" => Some(TaskRole::Sitemap),
            "robots" => Some(TaskRole::Robots),
            _ => None,
        }
    }
}

/// What travels back over the result bus (NSQ topic `counter` by default).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobResult {
    pub task_id: i64,
    /// The run of the job it answers (a late result of an earlier run becomes history).
    #[serde(default = "first_run")]
    pub run: i32,
    #[serde(flatten)]
    pub result: ResultRecord,
    /// Which worker produced it (host:pid), for the logs.
    #[serde(default)]
    pub worker: String,
}

/// Totals by status and outcome plus a counter that changes whenever any task or result
/// changes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Stats {
    pub version: i64,
    pub not_started: i64,
    pub pending: i64,
    pub finished: i64,
    pub ok: i64,
    pub http_error: i64,
    pub failed: i64,
    pub truncated: i64,
    pub cancelled: i64,
    #[serde(default)]
    pub skipped: i64,
}

impl Stats {
    pub fn total(&self) -> i64 {
        self.not_started + self.pending + self.finished
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_round_trips_and_orders_forward() {
        for s in TaskStatus::ALL {
            assert_eq!(s.as_str().parse::<TaskStatus>(), Ok(s));
        }
        assert!(TaskStatus::NotStarted < TaskStatus::Pending);
        assert!(TaskStatus::Pending < TaskStatus::Finished);
        assert!("DONE".parse::<TaskStatus>().is_err());
    }

    #[test]
    fn job_wire_format_is_flat_json() {
        let job = Job {
            task_id: 7,
            run: 2,
            address: "http://example.com/".into(),
            options: CountOptions::default(),
            crawl: None,
        };
        let v: serde_json::Value = serde_json::to_value(&job).unwrap();
        assert_eq!(v["task_id"], 7);
        assert_eq!(v["word"], "python");
        assert_eq!(v["scope"], "text");
        assert_eq!(v["run"], 2);
        let back: Job = serde_json::from_value(v).unwrap();
        assert_eq!(back, job);
    }
}
