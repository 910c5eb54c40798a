//! The database: source of truth for every task and result (submit → … → **DB** → poll).
//!
//! One `Store` type over two concrete sqlx pools, SQLite (the embedded default) and
//! Postgres (production). We chose two concrete pools over sqlx's `Any` driver because
//! `Any` cannot bind or decode time types and hides per-database behaviour; the queries are
//! written once in the SQL both databases accept (`$N` placeholders, `ON CONFLICT`,
//! `RETURNING`) and the `on_pool!` macro compiles each body once per database. Times are
//! epoch-millisecond integers, so no column type differs in meaning between the two.
//!
//! One file per subject: [`tasks`] (insert, queue marks, reconciler claims, reads),
//! [`results`] (the DB writer's batches), [`batches`] (batch totals, lists, deletion,
//! retention), [`runs`] (retry, cancel, history), [`search`] (address search: a bounded
//! walk, then the trigram index for the rarest part of the term).
//!
//! Guarantees kept here, inside transactions:
//! * within a run a task's status only moves forward (every UPDATE guards on the current
//!   status); a new run starts only by an explicit retry;
//! * one result per task and run (`UNIQUE (task_id, run)`, duplicates ignored);
//! * the `task_stats` row (totals by status and outcome, a change counter) and each
//!   `batch` row's totals change in the same transaction as the rows they count, so
//!   counters, progress bars and "did anything change?" never scan;
//! * work on N rows is a few statements (multi-row INSERT, `IN (...)` UPDATEs), never N
//!   round trips.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, QueryBuilder, Row, SqlitePool};

pub use self::batches::{Batch, BatchDistribution, BatchFilter, CrawlSummary};
pub use self::results::{StoreOutcome, Written};
pub use self::runs::{AuditEntry, CancelledRun};
pub use self::search::{SEARCH_WALK, SearchIndex, SearchTuning, TrigramFreq};
pub use self::tasks::{NewTask, TaskFilter};
use crate::model::{Stats, TaskStatus};
use crate::outcome::Outcome;

/// Rows per multi-row statement: far below both databases' bind-parameter limits
/// (SQLite 32,766, Postgres 65,535) at 16 columns.
pub const CHUNK: usize = 1000;

/// Splits `items` into pieces whose lengths are powers of two, at most `max` (a power of
/// two), largest first. Statements whose shape follows the piece length (`IN (…)` lists,
/// multi-row VALUES) then come in at most log2(max) + 1 shapes, which the connection's
/// statement cache keeps prepared. The result batches of the DB writer have every size
/// from 1 to 256, and a fresh shape costs a parse (~350,000 instructions for a few hundred
/// rows in SQLite); callgrind of the embedded service counted 268 prepares per 2,000 tasks
/// before this and 216 after (BENCHMARKS.md), the rest coming from other statements.
pub(crate) fn pow2_chunks<T>(items: &[T], max: usize) -> impl Iterator<Item = &[T]> {
    debug_assert!(max.is_power_of_two());
    let mut rest = items;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let n = if rest.len() >= max {
            max
        } else {
            1 << rest.len().ilog2()
        };
        let (piece, tail) = rest.split_at(n);
        rest = tail;
        Some(piece)
    })
}

/// Errors of the store. Callers decide what is retryable; every sqlx error is.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("unsupported DATABASE_URL {0:?}: use sqlite://PATH or postgres://USER@HOST/DB")]
    UnsupportedUrl(String),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("corrupt row: {0}")]
    Corrupt(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// A handle to the database; cheap to clone (the pools are reference counted).
#[derive(Clone, Debug)]
pub enum Store {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs `$body` with `$pool` bound to the concrete pool; the body is compiled once per
/// database, so sqlx's types are concrete in each copy.
macro_rules! on_pool {
    ($store:expr, |$pool:ident| $body:expr) => {
        match $store {
            Store::Sqlite($pool) => $body,
            Store::Postgres($pool) => $body,
        }
    };
}

// After `on_pool!`, which its queries use.
pub mod accounts;

/// Reads the task columns (selected as in `TASK_COLUMNS`) of a row.
macro_rules! task_from_row {
    ($row:expr) => {{
        let row = $row;
        let status: String = row.try_get("task_status")?;
        let scope: String = row.try_get("scope")?;
        let outcome: Option<String> = row.try_get("outcome")?;
        let extra = crate::store::RegionsPatterns::read(row.try_get("regions_patterns")?)?;
        crate::model::Task {
            id: row.try_get("id")?,
            address: row.try_get("address")?,
            timestamp: row.try_get("timestamp")?,
            status: crate::model::TaskStatus::from_str(&status).map_err(StoreError::Corrupt)?,
            options: crate::count::CountOptions {
                word: row.try_get("word")?,
                case_sensitive: row.try_get("case_sensitive")?,
                whole_word: row.try_get("whole_word")?,
                scope: crate::count::Scope::from_str(&scope).map_err(StoreError::Corrupt)?,
                words: crate::store::json_column(row.try_get("words")?, "words")?
                    .unwrap_or_default(),
                within: extra.within,
                outside: extra.outside,
                patterns: extra.patterns,
            },
            attempts: row.try_get("attempts")?,
            queued_at: row.try_get("queued_at")?,
            updated_at: row.try_get("updated_at")?,
            batch_id: row.try_get("batch_id")?,
            run: row.try_get("run")?,
            outcome: outcome
                .map(|o| crate::outcome::Outcome::from_str(&o))
                .transpose()
                .map_err(StoreError::Corrupt)?,
            depth: row.try_get("depth")?,
            found_on: row.try_get("found_on")?,
            role: row
                .try_get::<Option<String>, _>("role")?
                .and_then(|r| crate::model::TaskRole::parse(&r)),
        }
    }};
}

/// Reads the result columns (selected as in `RESULT_COLUMNS`) of a (LEFT JOINed) row.
macro_rules! result_from_row {
    ($row:expr) => {{
        let row = $row;
        let rid: Option<i64> = row.try_get("r_id")?;
        match rid {
            None => None,
            Some(_) => {
                let log: Option<String> = row.try_get("attempt_log")?;
                Some(crate::model::ResultRecord {
                    words_count: row.try_get("words_count")?,
                    http_status_code: row.try_get("http_status_code")?,
                    error: row.try_get("error")?,
                    timestamp: row.try_get("r_timestamp")?,
                    final_url: row.try_get("final_url")?,
                    content_type: row.try_get("content_type")?,
                    charset: row.try_get("charset")?,
                    bytes_read: row.try_get("bytes_read")?,
                    truncated: row.try_get("truncated")?,
                    duration_ms: row.try_get("duration_ms")?,
                    attempts: row.try_get("r_attempts")?,
                    charset_source: row.try_get("charset_source")?,
                    attempt_log: log
                        .map(|l| serde_json::from_str(&l))
                        .transpose()
                        .map_err(|e| StoreError::Corrupt(format!("attempt_log: {e}")))?
                        .unwrap_or_default(),
                    counts: crate::store::json_column(row.try_get("counts")?, "counts")?,
                    redirects: crate::store::json_column(row.try_get("redirects")?, "redirects")?
                        .unwrap_or_default(),
                    skipped: false,
                    crawl: None,
                })
            }
        }
    }};
}

pub(crate) const TASK_COLUMNS: &str = "t.id, t.address, t.timestamp, t.task_status, t.word, \
     t.case_sensitive, t.whole_word, t.scope, t.attempts, t.queued_at, t.updated_at, \
     t.batch_id, t.run, t.outcome, t.words, t.depth, t.found_on, t.role, t.regions_patterns";
pub(crate) const RESULT_COLUMNS: &str = "r.id AS r_id, r.words_count, r.http_status_code, \
     r.error, r.timestamp AS r_timestamp, r.final_url, r.content_type, r.charset, \
     r.bytes_read, r.truncated, r.duration_ms, r.attempts AS r_attempts, r.charset_source, \
     r.attempt_log, r.counts, r.redirects";
pub(crate) const RETURNING_TASK: &str = " RETURNING id, address, timestamp, task_status, \
     word, case_sensitive, whole_word, scope, attempts, queued_at, updated_at, batch_id, \
     run, outcome, words, depth, found_on, role, regions_patterns";

/// Changes to one set of totals (the `task_stats` row, or one batch), summed over one
/// transaction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Delta {
    pub not_started: i64,
    pub pending: i64,
    pub finished: i64,
    pub ok: i64,
    pub http_error: i64,
    pub failed: i64,
    pub truncated: i64,
    pub cancelled: i64,
    pub skipped: i64,
    /// Tasks added (+) or deleted (-).
    pub total: i64,
    /// Sum of current counts gained or lost.
    pub words: i64,
}

impl Delta {
    pub fn moved(&mut self, from: TaskStatus, to: TaskStatus, n: i64) {
        *self.slot(from) -= n;
        *self.slot(to) += n;
    }
    pub fn slot(&mut self, s: TaskStatus) -> &mut i64 {
        match s {
            TaskStatus::NotStarted => &mut self.not_started,
            TaskStatus::Pending => &mut self.pending,
            TaskStatus::Finished => &mut self.finished,
        }
    }
    pub fn outcome(&mut self, o: Outcome) -> &mut i64 {
        match o {
            Outcome::Ok => &mut self.ok,
            Outcome::HttpError => &mut self.http_error,
            Outcome::Failed => &mut self.failed,
            Outcome::Truncated => &mut self.truncated,
            Outcome::Cancelled => &mut self.cancelled,
            Outcome::Skipped => &mut self.skipped,
        }
    }
    fn add(&mut self, o: &Delta) {
        self.not_started += o.not_started;
        self.pending += o.pending;
        self.finished += o.finished;
        self.ok += o.ok;
        self.http_error += o.http_error;
        self.failed += o.failed;
        self.truncated += o.truncated;
        self.cancelled += o.cancelled;
        self.skipped += o.skipped;
        self.total += o.total;
        self.words += o.words;
    }
    fn is_zero(&self) -> bool {
        *self == Delta::default()
    }
}

/// The deltas of one transaction: per batch, and (summed) for `task_stats`.
#[derive(Debug, Default)]
pub(crate) struct Deltas {
    pub by_batch: BTreeMap<Option<i64>, Delta>,
    /// Per-word count sums gained (+) or lost (-), per batch.
    pub words_by_batch: BTreeMap<i64, BTreeMap<String, i64>>,
}

impl Deltas {
    pub fn of(&mut self, batch: Option<i64>) -> &mut Delta {
        self.by_batch.entry(batch).or_default()
    }
    /// Adds `sign` × a result's per-word counts to its batch's sums.
    pub fn words(&mut self, batch: Option<i64>, counts: Option<&BTreeMap<String, i64>>, sign: i64) {
        let (Some(b), Some(c)) = (batch, counts) else {
            return;
        };
        let sums = self.words_by_batch.entry(b).or_default();
        for (w, n) in c {
            *sums.entry(w.clone()).or_default() += sign * n;
        }
    }
}

/// Begins a write transaction by taking the lock on the one `task_stats` row (and bumping
/// the change counter). Every writer takes it first, so writers run one at a time and each
/// reads what the previous one committed: a result stored while the Submitter marks the
/// same task PENDING can no longer read NOT_STARTED, then find its guarded UPDATE matching
/// nothing (found by the e2e suite); a cancel and a result for the same task are ordered,
/// and the second sees the first. On SQLite the first statement being a write also takes
/// the write lock up front, so a read-then-write transaction cannot fail with
/// SQLITE_BUSY_SNAPSHOT. Writes are batched, so one writer at a time costs little.
macro_rules! begin_write {
    ($pool:expr) => {{
        let mut tx = $pool.begin().await?;
        sqlx::query("UPDATE task_stats SET version = version + 1 WHERE id = 1")
            .execute(&mut *tx)
            .await?;
        tx
    }};
}

/// Applies `Deltas` inside the transaction `$tx`: the global row, then each batch touched
/// (its change counter, and `finished_at` when its last unfinished task finished).
macro_rules! apply_deltas {
    ($tx:expr, $deltas:expr, $now:expr) => {{
        let deltas: &crate::store::Deltas = $deltas;
        let mut sum = crate::store::Delta::default();
        for d in deltas.by_batch.values() {
            sum.add(d);
        }
        if !sum.is_zero() {
            sqlx::query(crate::store::BUMP_STATS)
                .bind(sum.not_started)
                .bind(sum.pending)
                .bind(sum.finished)
                .bind(sum.ok)
                .bind(sum.http_error)
                .bind(sum.failed)
                .bind(sum.truncated)
                .bind(sum.cancelled)
                .bind(sum.skipped)
                .execute(&mut *$tx)
                .await?;
        }
        for (batch, d) in &deltas.by_batch {
            let Some(batch) = batch else { continue };
            if d.is_zero() {
                continue;
            }
            if let Some(words) = deltas.words_by_batch.get(batch) {
                // Read-modify-write is safe: every writer holds the task_stats lock.
                let old: Option<String> =
                    sqlx::query_scalar("SELECT word_totals FROM batch WHERE id = $1")
                        .bind(*batch)
                        .fetch_optional(&mut *$tx)
                        .await?
                        .flatten();
                let mut sums: std::collections::BTreeMap<String, i64> =
                    crate::store::json_column(old, "word_totals")?.unwrap_or_default();
                for (w, n) in words {
                    *sums.entry(w.clone()).or_default() += n;
                }
                sqlx::query("UPDATE batch SET word_totals = $1 WHERE id = $2")
                    .bind(serde_json::to_string(&sums).unwrap_or_default())
                    .bind(*batch)
                    .execute(&mut *$tx)
                    .await?;
            }
            sqlx::query(crate::store::BUMP_BATCH)
                .bind(d.not_started)
                .bind(d.pending)
                .bind(d.finished)
                .bind(d.ok)
                .bind(d.http_error)
                .bind(d.failed)
                .bind(d.truncated)
                .bind(d.cancelled)
                .bind(d.skipped)
                .bind(d.total)
                .bind(d.words)
                .bind($now)
                .bind(*batch)
                .execute(&mut *$tx)
                .await?;
        }
    }};
}

pub(crate) const BUMP_STATS: &str = "UPDATE task_stats SET \
     not_started = not_started + $1, pending = pending + $2, finished = finished + $3, \
     ok = ok + $4, http_error = http_error + $5, failed = failed + $6, \
     truncated = truncated + $7, cancelled = cancelled + $8, skipped = skipped + $9 \
     WHERE id = 1";

/// SET expressions read the row's old values, so the `finished_at` test adds the deltas.
pub(crate) const BUMP_BATCH: &str = "UPDATE batch SET \
     not_started = not_started + $1, pending = pending + $2, finished = finished + $3, \
     ok = ok + $4, http_error = http_error + $5, failed = failed + $6, \
     truncated = truncated + $7, cancelled = cancelled + $8, skipped = skipped + $9, \
     total = total + $10, words_total = words_total + $11, version = version + 1, \
     updated_at = $12, \
     finished_at = CASE WHEN not_started + $1 + pending + $2 = 0 \
                        THEN COALESCE(finished_at, $12) ELSE NULL END \
     WHERE id = $13";

// After the macros: `macro_rules!` are visible only below their definition.
mod batches;
#[macro_use]
pub mod crawls;
mod results;
mod runs;
mod search;
mod task_counts;
mod tasks;

pub mod rollups;

impl Store {
    /// Opens the database named by `url` and brings its schema up to date.
    pub async fn connect(url: &str) -> StoreResult<Store> {
        let store = if url.starts_with("sqlite:") {
            // WAL lets the page read while the DB writer commits; NORMAL sync is durable
            // across process crashes (the case that matters here) and much faster.
            let opts = SqliteConnectOptions::from_str(url)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(10))
                .foreign_keys(true);
            let pool = SqlitePoolOptions::new()
                .max_connections(8)
                .acquire_timeout(Duration::from_secs(10))
                .connect_with(opts)
                .await?;
            sqlx::migrate!("migrations/sqlite").run(&pool).await?;
            Store::Sqlite(pool)
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            let opts = PgConnectOptions::from_str(url)?.application_name("wordtally");
            // One direct connection first: its error says why (refused, auth, no such
            // database), where the pool would only report a time-out.
            use sqlx::Connection;
            match tokio::time::timeout(
                Duration::from_secs(10),
                sqlx::PgConnection::connect_with(&opts),
            )
            .await
            {
                Ok(Ok(conn)) => conn.close().await?,
                Ok(Err(e)) => return Err(e.into()),
                Err(_) => return Err(StoreError::Db(sqlx::Error::PoolTimedOut)),
            }
            let pool = PgPoolOptions::new()
                .max_connections(16)
                .acquire_timeout(Duration::from_secs(5))
                .connect_with(opts)
                .await?;
            sqlx::migrate!("migrations/postgres").run(&pool).await?;
            Store::Postgres(pool)
        } else {
            return Err(StoreError::UnsupportedUrl(url.to_string()));
        };
        Ok(store)
    }

    /// "sqlite" or "postgres", for logs and /healthz.
    pub fn kind(&self) -> &'static str {
        match self {
            Store::Sqlite(_) => "sqlite",
            Store::Postgres(_) => "postgres",
        }
    }

    /// Cheap liveness check.
    pub async fn ping(&self) -> StoreResult<()> {
        on_pool!(self, |pool| {
            sqlx::query("SELECT 1").execute(pool).await?;
        });
        Ok(())
    }

    /// Totals by status and outcome, and the change counter (one row; never a scan).
    pub async fn stats(&self) -> StoreResult<Stats> {
        on_pool!(self, |pool| {
            let row = sqlx::query(
                "SELECT version, not_started, pending, finished, ok, http_error, failed, \
                 truncated, cancelled, skipped FROM task_stats WHERE id = 1",
            )
            .fetch_one(pool)
            .await?;
            Ok(Stats {
                version: row.try_get("version")?,
                not_started: row.try_get("not_started")?,
                pending: row.try_get("pending")?,
                finished: row.try_get("finished")?,
                ok: row.try_get("ok")?,
                http_error: row.try_get("http_error")?,
                failed: row.try_get("failed")?,
                truncated: row.try_get("truncated")?,
                cancelled: row.try_get("cancelled")?,
                skipped: row.try_get("skipped")?,
            })
        })
    }

    /// Closes the pool, waiting for connections in use to be returned.
    pub async fn close(&self) {
        on_pool!(self, |pool| pool.close().await)
    }
}

/// A JSON text column (NULL = None).
pub(crate) fn json_column<T: serde::de::DeserializeOwned>(
    v: Option<String>,
    what: &str,
) -> StoreResult<Option<T>> {
    v.map(|t| serde_json::from_str(&t))
        .transpose()
        .map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

/// The `regions_patterns` column of a task or batch (migration 0011): a task's regions and
/// patterns as one JSON object, NULL when it has none.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub(crate) struct RegionsPatterns {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub within: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub outside: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub patterns: Vec<String>,
}

impl RegionsPatterns {
    /// The column's value for `o`.
    pub(crate) fn column(o: &crate::count::CountOptions) -> Option<String> {
        if o.within.is_empty() && o.outside.is_empty() && o.patterns.is_empty() {
            return None;
        }
        let v = RegionsPatterns {
            within: o.within.clone(),
            outside: o.outside.clone(),
            patterns: o.patterns.clone(),
        };
        serde_json::to_string(&v).ok()
    }

    /// The column read back (NULL = none).
    pub(crate) fn read(v: Option<String>) -> StoreResult<Self> {
        Ok(json_column(v, "regions_patterns")?.unwrap_or_default())
    }
}

/// A list as a JSON text column: NULL when empty.
pub(crate) fn json_list(v: &[String]) -> Option<String> {
    (!v.is_empty()).then(|| serde_json::to_string(v).unwrap_or_default())
}

pub(crate) fn push_ids<'a, DB: sqlx::Database>(qb: &mut QueryBuilder<'a, DB>, ids: &'a [i64])
where
    i64: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    let mut sep = qb.separated(", ");
    for id in ids {
        sep.push_bind(*id);
    }
}

/// `%q%` for LIKE, lowercased, with the pattern characters of `q` escaped.
pub(crate) fn like_pattern(q: &str) -> String {
    let mut p = String::with_capacity(q.len() + 2);
    p.push('%');
    for c in q.to_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
}

#[cfg(test)]
mod tests;
