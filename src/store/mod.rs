//! The database: source of truth for every task and result (submit → … → **DB** → poll).
//!
//! One `Store` type over two concrete sqlx pools, SQLite (the embedded default) and
//! Postgres (production). We chose two concrete pools over sqlx's `Any` driver because
//! `Any` cannot bind or decode time types and hides per-database behaviour; the queries are
//! written once in the SQL both databases accept (`$N` placeholders, `ON CONFLICT`,
//! `RETURNING`) and the `on_pool!` macro compiles each body once per database. Times are
//! epoch-millisecond integers, so no column type differs in meaning between the two.
//!
//! Guarantees kept here, inside transactions:
//! * a task's status only moves forward (every UPDATE guards on the current status);
//! * one result per task (`UNIQUE (task_id)`, duplicates ignored);
//! * the `task_stats` row (totals by status and a change counter) changes in the same
//!   transaction as the rows it counts, so counters and "did anything change?" never scan.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, QueryBuilder, Row, SqlitePool};

use crate::count::{CountOptions, Scope};
use crate::model::{JobResult, ResultRecord, Stats, Task, TaskStatus, TaskView, now_ms};

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
        Task {
            id: row.try_get("id")?,
            address: row.try_get("address")?,
            timestamp: row.try_get("timestamp")?,
            status: TaskStatus::from_str(&status).map_err(StoreError::Corrupt)?,
            options: CountOptions {
                word: row.try_get("word")?,
                case_sensitive: row.try_get("case_sensitive")?,
                whole_word: row.try_get("whole_word")?,
                scope: Scope::from_str(&scope).map_err(StoreError::Corrupt)?,
            },
            attempts: row.try_get("attempts")?,
            queued_at: row.try_get("queued_at")?,
            updated_at: row.try_get("updated_at")?,
        }
    }};
}

/// Reads the result columns (selected as in `RESULT_COLUMNS`) of a LEFT JOINed row.
macro_rules! result_from_row {
    ($row:expr) => {{
        let row = $row;
        let rid: Option<i64> = row.try_get("r_id")?;
        match rid {
            None => None,
            Some(_) => Some(ResultRecord {
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
            }),
        }
    }};
}

const TASK_COLUMNS: &str = "t.id, t.address, t.timestamp, t.task_status, t.word, \
     t.case_sensitive, t.whole_word, t.scope, t.attempts, t.queued_at, t.updated_at";
const RESULT_COLUMNS: &str = "r.id AS r_id, r.words_count, r.http_status_code, r.error, \
     r.timestamp AS r_timestamp, r.final_url, r.content_type, r.charset, r.bytes_read, \
     r.truncated, r.duration_ms, r.attempts AS r_attempts";
const RETURNING_TASK: &str = " RETURNING id, address, timestamp, task_status, word, \
     case_sensitive, whole_word, scope, attempts, queued_at, updated_at";

/// A task to insert: a validated address and what to count.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewTask {
    pub address: String,
    pub options: CountOptions,
}

/// Which page of tasks to read. Keyset paging (`before`/`after` an id) so that a page
/// costs the same however many tasks exist.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TaskFilter {
    pub status: Option<TaskStatus>,
    /// Case-insensitive substring of the address.
    pub search: Option<String>,
    /// Only tasks with a smaller id (older); the next page.
    pub before: Option<i64>,
    /// Only tasks with a larger id (newer); the previous page.
    pub after: Option<i64>,
    pub limit: i64,
}

/// What happened to one incoming result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreOutcome {
    /// Stored; the task is now FINISHED.
    Stored,
    /// The task already had its result (a duplicate delivery); nothing changed.
    Duplicate,
    /// No such task (a stray or forged message); nothing stored.
    UnknownTask,
}

/// Changes to the `task_stats` row, summed over one transaction.
#[derive(Default)]
struct StatsDelta {
    not_started: i64,
    pending: i64,
    finished: i64,
}

impl StatsDelta {
    fn moved(&mut self, from: TaskStatus, to: TaskStatus, n: i64) {
        *self.slot(from) -= n;
        *self.slot(to) += n;
    }
    fn slot(&mut self, s: TaskStatus) -> &mut i64 {
        match s {
            TaskStatus::NotStarted => &mut self.not_started,
            TaskStatus::Pending => &mut self.pending,
            TaskStatus::Finished => &mut self.finished,
        }
    }
}

/// Begins a write transaction by taking the lock on the one `task_stats` row (and bumping
/// the change counter). Every writer takes it first, so writers run one at a time and each
/// reads what the previous one committed: a result stored while the Submitter marks the
/// same task PENDING can no longer read NOT_STARTED, then find its guarded UPDATE matching
/// nothing (found by the e2e suite). On SQLite the first statement being a write also
/// takes the write lock up front, so a read-then-write transaction cannot fail with
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

/// Applies a `StatsDelta` inside the transaction `$tx`.
macro_rules! bump {
    ($tx:expr, $d:expr) => {{
        let d: &StatsDelta = $d;
        sqlx::query(BUMP_STATS)
            .bind(d.not_started)
            .bind(d.pending)
            .bind(d.finished)
            .execute(&mut *$tx)
            .await?;
    }};
}

const BUMP_STATS: &str = "UPDATE task_stats SET \
     not_started = not_started + $1, pending = pending + $2, finished = finished + $3 WHERE id = 1";

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

    /// Stores new tasks as NOT_STARTED, in one transaction, before anything is queued.
    pub async fn insert_tasks(&self, new: &[NewTask]) -> StoreResult<Vec<Task>> {
        if new.is_empty() {
            return Ok(Vec::new());
        }
        let now = now_ms();
        let sql = format!(
            "INSERT INTO task (address, timestamp, task_status, word, case_sensitive, \
             whole_word, scope, attempts, queued_at, updated_at) \
             VALUES ($1, $2, 'NOT_STARTED', $3, $4, $5, $6, 0, NULL, $2){RETURNING_TASK}"
        );
        let mut out = Vec::with_capacity(new.len());
        on_pool!(self, |pool| {
            let mut tx = begin_write!(pool);
            for t in new {
                let row = sqlx::query(&sql)
                    .bind(&t.address)
                    .bind(now)
                    .bind(&t.options.word)
                    .bind(t.options.case_sensitive)
                    .bind(t.options.whole_word)
                    .bind(t.options.scope.as_str())
                    .fetch_one(&mut *tx)
                    .await?;
                out.push(task_from_row!(&row));
            }
            sqlx::query(BUMP_STATS)
                .bind(new.len() as i64)
                .bind(0i64)
                .bind(0i64)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        });
        Ok(out)
    }

    /// Records that these tasks were accepted by the queue: NOT_STARTED → PENDING (never
    /// backwards: a result may already have arrived), one more attempt, queued now.
    pub async fn mark_queued(&self, ids: &[i64]) -> StoreResult<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let now = now_ms();
        on_pool!(self, |pool| {
            let mut tx = begin_write!(pool);
            let mut qb =
                QueryBuilder::new("UPDATE task SET task_status = 'PENDING', updated_at = ");
            qb.push_bind(now);
            qb.push(" WHERE task_status = 'NOT_STARTED' AND id IN (");
            push_ids(&mut qb, ids);
            qb.push(")");
            let moved = qb.build().execute(&mut *tx).await?.rows_affected() as i64;

            let mut qb = QueryBuilder::new("UPDATE task SET attempts = attempts + 1, queued_at = ");
            qb.push_bind(now);
            qb.push(" WHERE task_status <> 'FINISHED' AND id IN (");
            push_ids(&mut qb, ids);
            qb.push(")");
            qb.build().execute(&mut *tx).await?;

            let mut d = StatsDelta::default();
            d.moved(TaskStatus::NotStarted, TaskStatus::Pending, moved);
            bump!(tx, &d);
            tx.commit().await?;
        });
        Ok(())
    }

    /// Claims up to `limit` tasks of `status` whose last hand-off to the queue (or, never
    /// queued, whose submission) is older than `older_than_ms`, by moving their `queued_at`
    /// to now. The guard is re-checked by the UPDATE itself, so several `serve` processes
    /// running the reconciler at once never claim the same task twice.
    pub async fn claim_stale(
        &self,
        status: TaskStatus,
        older_than_ms: i64,
        limit: i64,
    ) -> StoreResult<Vec<Task>> {
        self.claim_queued_before(status, now_ms() - older_than_ms, limit)
            .await
    }

    /// Like `claim_stale`, with an absolute cutoff (epoch ms): claims tasks last queued
    /// (or submitted) before `cutoff`.
    pub async fn claim_queued_before(
        &self,
        status: TaskStatus,
        cutoff: i64,
        limit: i64,
    ) -> StoreResult<Vec<Task>> {
        let now = now_ms();
        let sql = format!(
            "UPDATE task SET queued_at = $1 WHERE id IN (\
               SELECT id FROM task WHERE task_status = $2 AND COALESCE(queued_at, timestamp) < $3 \
               ORDER BY id LIMIT $4) \
             AND task_status = $2 AND COALESCE(queued_at, timestamp) < $3{RETURNING_TASK}"
        );
        let mut out = Vec::new();
        on_pool!(self, |pool| {
            let rows = sqlx::query(&sql)
                .bind(now)
                .bind(status.as_str())
                .bind(cutoff)
                .bind(limit)
                .fetch_all(pool)
                .await?;
            for row in &rows {
                out.push(task_from_row!(row));
            }
        });
        out.sort_by_key(|t| t.id);
        Ok(out)
    }

    /// Stores a batch of results in one transaction: one result per task, status to
    /// FINISHED. Returns one outcome per input, in order. Duplicates and unknown tasks
    /// are not errors (at-least-once delivery makes them normal).
    pub async fn store_results(&self, results: &[JobResult]) -> StoreResult<Vec<StoreOutcome>> {
        let mut outcomes = Vec::with_capacity(results.len());
        if results.is_empty() {
            return Ok(outcomes);
        }
        let now = now_ms();
        on_pool!(self, |pool| {
            let mut tx = begin_write!(pool);
            let mut d = StatsDelta::default();
            for jr in results {
                let status: Option<String> =
                    sqlx::query_scalar("SELECT task_status FROM task WHERE id = $1")
                        .bind(jr.task_id)
                        .fetch_optional(&mut *tx)
                        .await?;
                let Some(status) = status else {
                    outcomes.push(StoreOutcome::UnknownTask);
                    continue;
                };
                let old = TaskStatus::from_str(&status).map_err(StoreError::Corrupt)?;
                let r = &jr.result;
                let inserted = sqlx::query(
                    "INSERT INTO result (task_id, words_count, http_status_code, error, timestamp, \
                     final_url, content_type, charset, bytes_read, truncated, duration_ms, attempts) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
                     ON CONFLICT (task_id) DO NOTHING",
                )
                .bind(jr.task_id)
                .bind(r.words_count)
                .bind(r.http_status_code)
                .bind(&r.error)
                .bind(r.timestamp)
                .bind(&r.final_url)
                .bind(&r.content_type)
                .bind(&r.charset)
                .bind(r.bytes_read)
                .bind(r.truncated)
                .bind(r.duration_ms)
                .bind(r.attempts)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                // Guarded on the status we read: if another writer finished it meanwhile,
                // this moves nothing and counts nothing.
                let moved = sqlx::query(
                    "UPDATE task SET task_status = 'FINISHED', updated_at = $2 \
                     WHERE id = $1 AND task_status = $3",
                )
                .bind(jr.task_id)
                .bind(now)
                .bind(old.as_str())
                .execute(&mut *tx)
                .await?
                .rows_affected() as i64;
                if old != TaskStatus::Finished {
                    d.moved(old, TaskStatus::Finished, moved);
                }
                outcomes.push(if inserted == 1 {
                    StoreOutcome::Stored
                } else {
                    StoreOutcome::Duplicate
                });
            }
            bump!(tx, &d);
            tx.commit().await?;
        });
        Ok(outcomes)
    }

    /// One task with its result.
    pub async fn get_task(&self, id: i64) -> StoreResult<Option<TaskView>> {
        let sql = format!(
            "SELECT {TASK_COLUMNS}, {RESULT_COLUMNS} FROM task t \
             LEFT JOIN result r ON r.task_id = t.id WHERE t.id = $1"
        );
        on_pool!(self, |pool| {
            let row = sqlx::query(&sql).bind(id).fetch_optional(pool).await?;
            match row {
                None => Ok(None),
                Some(row) => Ok(Some(TaskView {
                    task: task_from_row!(&row),
                    result: result_from_row!(&row),
                })),
            }
        })
    }

    /// One page of tasks with their results, newest first.
    pub async fn list_tasks(&self, f: &TaskFilter) -> StoreResult<Vec<TaskView>> {
        let limit = f.limit.clamp(1, 500);
        // `after` pages towards newer tasks: read ascending, then flip.
        let ascending = f.after.is_some() && f.before.is_none();
        let mut out = Vec::new();
        on_pool!(self, |pool| {
            let mut qb = QueryBuilder::new(format!(
                "SELECT {TASK_COLUMNS}, {RESULT_COLUMNS} FROM task t \
                 LEFT JOIN result r ON r.task_id = t.id WHERE 1 = 1"
            ));
            if let Some(s) = f.status {
                qb.push(" AND t.task_status = ").push_bind(s.as_str());
            }
            if let Some(b) = f.before {
                qb.push(" AND t.id < ").push_bind(b);
            }
            if let Some(a) = f.after {
                qb.push(" AND t.id > ").push_bind(a);
            }
            if let Some(q) = f.search.as_deref().filter(|q| !q.is_empty()) {
                qb.push(" AND LOWER(t.address) LIKE ")
                    .push_bind(like_pattern(q))
                    .push(" ESCAPE '\\'");
            }
            qb.push(if ascending {
                " ORDER BY t.id ASC LIMIT "
            } else {
                " ORDER BY t.id DESC LIMIT "
            });
            qb.push_bind(limit);
            let rows = qb.build().fetch_all(pool).await?;
            for row in &rows {
                out.push(TaskView {
                    task: task_from_row!(row),
                    result: result_from_row!(row),
                });
            }
        });
        if ascending {
            out.reverse();
        }
        Ok(out)
    }

    /// Totals by status and the change counter (one row; never a scan).
    pub async fn stats(&self) -> StoreResult<Stats> {
        on_pool!(self, |pool| {
            let row = sqlx::query(
                "SELECT version, not_started, pending, finished FROM task_stats WHERE id = 1",
            )
            .fetch_one(pool)
            .await?;
            Ok(Stats {
                version: row.try_get("version")?,
                not_started: row.try_get("not_started")?,
                pending: row.try_get("pending")?,
                finished: row.try_get("finished")?,
            })
        })
    }

    /// Closes the pool, waiting for connections in use to be returned.
    pub async fn close(&self) {
        on_pool!(self, |pool| pool.close().await)
    }
}

fn push_ids<'a, DB: sqlx::Database>(qb: &mut QueryBuilder<'a, DB>, ids: &'a [i64])
where
    i64: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    let mut sep = qb.separated(", ");
    for id in ids {
        sep.push_bind(*id);
    }
}

/// `%q%` for LIKE, lowercased, with the pattern characters of `q` escaped.
fn like_pattern(q: &str) -> String {
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
mod tests {
    use super::*;

    #[test]
    fn like_pattern_escapes_wildcards() {
        assert_eq!(like_pattern("A_b%c"), "%a\\_b\\%c%");
    }

    fn result_for(task_id: i64, n: i64) -> JobResult {
        JobResult {
            task_id,
            result: ResultRecord {
                words_count: Some(n),
                http_status_code: Some(200),
                error: None,
                timestamp: now_ms(),
                final_url: None,
                content_type: Some("text/html".into()),
                charset: Some("UTF-8".into()),
                bytes_read: 10,
                truncated: false,
                duration_ms: 1,
                attempts: 1,
            },
            worker: "test".into(),
        }
    }

    async fn memory_store() -> Store {
        Store::connect("sqlite::memory:").await.unwrap()
    }

    #[tokio::test]
    async fn lifecycle_moves_forward_and_counts() {
        let store = memory_store().await;
        let new: Vec<NewTask> = (0..3)
            .map(|i| NewTask {
                address: format!("http://example.com/{i}"),
                options: CountOptions::default(),
            })
            .collect();
        let tasks = store.insert_tasks(&new).await.unwrap();
        assert_eq!(tasks.len(), 3);
        assert!(tasks.iter().all(|t| t.status == TaskStatus::NotStarted));
        let s = store.stats().await.unwrap();
        assert_eq!((s.not_started, s.pending, s.finished), (3, 0, 0));

        // Result arrives before mark_queued (fast worker): status must not go back.
        let out = store
            .store_results(&[result_for(tasks[0].id, 5)])
            .await
            .unwrap();
        assert_eq!(out, vec![StoreOutcome::Stored]);
        store
            .mark_queued(&tasks.iter().map(|t| t.id).collect::<Vec<_>>())
            .await
            .unwrap();
        let t0 = store.get_task(tasks[0].id).await.unwrap().unwrap();
        assert_eq!(t0.task.status, TaskStatus::Finished);
        assert_eq!(t0.result.unwrap().words_count, Some(5));
        let t1 = store.get_task(tasks[1].id).await.unwrap().unwrap();
        assert_eq!(t1.task.status, TaskStatus::Pending);
        assert_eq!(t1.task.attempts, 1);
        let s = store.stats().await.unwrap();
        assert_eq!((s.not_started, s.pending, s.finished), (0, 2, 1));

        // Duplicate and unknown are harmless.
        let out = store
            .store_results(&[result_for(tasks[0].id, 99), result_for(999_999, 1)])
            .await
            .unwrap();
        assert_eq!(
            out,
            vec![StoreOutcome::Duplicate, StoreOutcome::UnknownTask]
        );
        let t0 = store.get_task(tasks[0].id).await.unwrap().unwrap();
        assert_eq!(t0.result.unwrap().words_count, Some(5));
        let s2 = store.stats().await.unwrap();
        assert_eq!((s2.not_started, s2.pending, s2.finished), (0, 2, 1));
        assert!(s2.version > s.version);
    }

    #[tokio::test]
    async fn paging_filters_and_search() {
        let store = memory_store().await;
        let new: Vec<NewTask> = (0..10)
            .map(|i| NewTask {
                address: format!("http://host{i}.example/100%_x"),
                options: CountOptions::default(),
            })
            .collect();
        let tasks = store.insert_tasks(&new).await.unwrap();
        let page = store
            .list_tasks(&TaskFilter {
                limit: 4,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(page.len(), 4);
        assert_eq!(page[0].task.id, tasks[9].id);
        let next = store
            .list_tasks(&TaskFilter {
                limit: 4,
                before: Some(page[3].task.id),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(next[0].task.id, tasks[5].id);
        let back = store
            .list_tasks(&TaskFilter {
                limit: 4,
                after: Some(next[0].task.id),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(
            back.iter().map(|v| v.task.id).collect::<Vec<_>>(),
            page.iter().map(|v| v.task.id).collect::<Vec<_>>()
        );
        let found = store
            .list_tasks(&TaskFilter {
                limit: 50,
                search: Some("HOST3".into()),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(found.len(), 1);
        // '%' and '_' in the query are literal, not wildcards.
        let none = store
            .list_tasks(&TaskFilter {
                limit: 50,
                search: Some("1%x".into()),
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(none.is_empty());
        let pending = store
            .list_tasks(&TaskFilter {
                limit: 50,
                status: Some(TaskStatus::Pending),
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(pending.is_empty());
    }

    #[tokio::test]
    async fn claim_stale_claims_once() {
        let store = memory_store().await;
        let tasks = store
            .insert_tasks(&[NewTask {
                address: "http://a.example/".into(),
                options: CountOptions::default(),
            }])
            .await
            .unwrap();
        // Not old enough yet.
        let none = store
            .claim_stale(TaskStatus::NotStarted, 60_000, 10)
            .await
            .unwrap();
        assert!(none.is_empty());
        let claimed = store
            .claim_stale(TaskStatus::NotStarted, -1, 10)
            .await
            .unwrap();
        assert_eq!(claimed.len(), 1);
        assert_eq!(claimed[0].id, tasks[0].id);
        // Claimed just now: a second reconciler with a real deadline sees nothing.
        let again = store
            .claim_stale(TaskStatus::NotStarted, 1_000, 10)
            .await
            .unwrap();
        assert!(again.is_empty());
    }
}
