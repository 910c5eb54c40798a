//! Schedules in the store (DESIGN §16): a batch's schedule, the claim of due ticks, and
//! the start of a scheduled run in chunks. Exactly once by construction:
//!
//! * a tick is claimed by a conditional UPDATE of `next_run_at` (it matches only the value
//!   the claimer read), in a transaction that also moves the batch to its next run — the
//!   batch UPDATE itself checks the previous run finished — and records the run's row;
//!   any number of `serve` processes may race, one wins each tick;
//! * the new run's tasks are handed their new run a thousand at a time, each chunk in the
//!   transaction that advances the run's `cursor` (again conditionally), so a process that
//!   dies half-way leaves a cursor that any process continues from, and no task gets two
//!   runs from one tick.

use sqlx::{QueryBuilder, Row};

use super::{CHUNK, Store, StoreResult, push_ids};
use crate::model::{Task, now_ms};
use crate::schedule::Cadence;

/// Schedules claimed per statement (and per transaction) by the tick.
pub const CLAIM_PAGE: usize = 100;

/// A batch's schedule as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schedule {
    pub batch_id: i64,
    pub every_ms: Option<i64>,
    pub cron: Option<String>,
    pub timezone: String,
    pub paused: bool,
    pub next_run_at: i64,
    pub last_tick_at: Option<i64>,
    pub last_tick_note: Option<String>,
    pub runs_started: i64,
}

/// One run of a batch.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct BatchRun {
    pub run: i32,
    /// `submit`, `schedule` or `retry`.
    pub trigger: String,
    pub started_at: i64,
    /// None while the run is unfinished.
    #[schema(required = true)]
    pub finished_at: Option<i64>,
    /// The batch's sum of counts (first word) when the run finished.
    #[schema(required = true)]
    pub words_total: Option<i64>,
    /// The batch's sums per word when the run finished.
    pub word_totals: std::collections::BTreeMap<String, i64>,
}

/// What one claim page did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClaimReport {
    /// Due schedules read.
    pub due: usize,
    /// Ticks this process won.
    pub claimed: usize,
    /// (batch, run) started.
    pub started: Vec<(i64, i32)>,
    /// Ticks skipped because the previous run was unfinished.
    pub skipped: usize,
}

/// A run whose tasks are still being handed their new run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StartingRun {
    pub batch_id: i64,
    pub run: i32,
    pub cursor: i64,
    pub started_at: i64,
}

/// Advances a starting run's cursor in the transaction that retries its next chunk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CursorStep {
    pub batch_id: i64,
    pub run: i32,
    /// The cursor as read; the step applies only if it is still this.
    pub from: i64,
    /// The new cursor; None = every task has its run.
    pub to: Option<i64>,
}

const SCHEDULE_COLUMNS: &str = "batch_id, every_ms, cron, timezone, paused, next_run_at, \
     last_tick_at, last_tick_note, runs_started";

macro_rules! schedule_from_row {
    ($row:expr) => {{
        let row = $row;
        Schedule {
            batch_id: row.try_get("batch_id")?,
            every_ms: row.try_get("every_ms")?,
            cron: row.try_get("cron")?,
            timezone: row.try_get("timezone")?,
            paused: row.try_get("paused")?,
            next_run_at: row.try_get("next_run_at")?,
            last_tick_at: row.try_get("last_tick_at")?,
            last_tick_note: row.try_get("last_tick_note")?,
            runs_started: row.try_get("runs_started")?,
        }
    }};
}

/// Applies a cursor step inside an open transaction: true when it matched (this process
/// owns the chunk), false when another process took it first.
macro_rules! step_cursor {
    ($tx:expr, $step:expr) => {{
        let step: &$crate::store::schedules::CursorStep = $step;
        sqlx::query(
            "UPDATE batch_run SET cursor = $1 WHERE batch_id = $2 AND run = $3 AND cursor = $4",
        )
        .bind(step.to)
        .bind(step.batch_id)
        .bind(step.run)
        .bind(step.from)
        .execute(&mut *$tx)
        .await?
        .rows_affected()
            == 1
    }};
}
pub(crate) use step_cursor;

/// Moves a batch's change counter: its polled panel (which shows the schedule) answers
/// with the new state instead of 204.
async fn bump_batch<'e, E>(db: E, batch_id: i64) -> Result<(), sqlx::Error>
where
    E: sqlx::Executor<'e>,
    i64: for<'q> sqlx::Encode<'q, E::Database> + sqlx::Type<E::Database>,
    for<'q> <E::Database as sqlx::Database>::Arguments<'q>: sqlx::IntoArguments<'q, E::Database>,
{
    sqlx::query("UPDATE batch SET version = version + 1 WHERE id = $1")
        .bind(batch_id)
        .execute(db)
        .await?;
    Ok(())
}

impl Store {
    /// Sets (creates or replaces) a batch's schedule; `next_run_at` is the first tick.
    /// None when there is no such batch (nothing stored).
    pub async fn put_schedule(
        &self,
        batch_id: i64,
        cadence: &Cadence,
        paused: bool,
        next_run_at: i64,
    ) -> StoreResult<Option<Schedule>> {
        let now = now_ms();
        let sql = format!(
            "INSERT INTO schedule (batch_id, every_ms, cron, timezone, paused, next_run_at, \
             created_at, updated_at) \
             SELECT id, $2, $3, $4, $5, $6, $7, $7 FROM batch WHERE id = $1 \
             ON CONFLICT (batch_id) DO UPDATE SET every_ms = excluded.every_ms, \
             cron = excluded.cron, timezone = excluded.timezone, paused = excluded.paused, \
             next_run_at = excluded.next_run_at, updated_at = excluded.updated_at \
             RETURNING {SCHEDULE_COLUMNS}"
        );
        on_pool!(self, |pool| {
            let row = sqlx::query(&sql)
                .bind(batch_id)
                .bind(cadence.every_ms())
                .bind(cadence.cron())
                .bind(cadence.timezone())
                .bind(paused)
                .bind(next_run_at)
                .bind(now)
                .fetch_optional(pool)
                .await?;
            let Some(r) = row else { return Ok(None) };
            bump_batch(pool, batch_id).await?;
            Ok(Some(schedule_from_row!(&r)))
        })
    }

    /// A batch's schedule, if it has one.
    pub async fn get_schedule(&self, batch_id: i64) -> StoreResult<Option<Schedule>> {
        let sql = format!("SELECT {SCHEDULE_COLUMNS} FROM schedule WHERE batch_id = $1");
        on_pool!(self, |pool| {
            match sqlx::query(&sql)
                .bind(batch_id)
                .fetch_optional(pool)
                .await?
            {
                None => Ok(None),
                Some(r) => Ok(Some(schedule_from_row!(&r))),
            }
        })
    }

    /// Removes a batch's schedule; false when it had none.
    pub async fn delete_schedule(&self, batch_id: i64) -> StoreResult<bool> {
        on_pool!(self, |pool| {
            let n = sqlx::query("DELETE FROM schedule WHERE batch_id = $1")
                .bind(batch_id)
                .execute(pool)
                .await?
                .rows_affected();
            if n > 0 {
                bump_batch(pool, batch_id).await?;
            }
            Ok(n > 0)
        })
    }

    /// Sets a batch's change rules (their text; empty = none). False: no such batch.
    pub async fn set_change_rules(&self, batch_id: i64, rules: &[String]) -> StoreResult<bool> {
        let value = super::json_list(rules);
        on_pool!(self, |pool| {
            let n = sqlx::query(
                "UPDATE batch SET change_rules = $1, version = version + 1 WHERE id = $2",
            )
            .bind(value)
            .bind(batch_id)
            .execute(pool)
            .await?
            .rows_affected();
            Ok(n > 0)
        })
    }

    /// A batch's change rules (their text), empty when none.
    pub async fn change_rules(&self, batch_id: i64) -> StoreResult<Vec<String>> {
        on_pool!(self, |pool| {
            let v: Option<Option<String>> =
                sqlx::query_scalar("SELECT change_rules FROM batch WHERE id = $1")
                    .bind(batch_id)
                    .fetch_optional(pool)
                    .await?;
            Ok(super::json_column(v.flatten(), "change_rules")?.unwrap_or_default())
        })
    }

    /// A batch's runs, oldest first (at most the last `limit`).
    pub async fn batch_runs(&self, batch_id: i64, limit: i64) -> StoreResult<Vec<BatchRun>> {
        on_pool!(self, |pool| {
            let rows = sqlx::query(
                "SELECT run, trigger, started_at, finished_at, words_total, word_totals \
                 FROM batch_run WHERE batch_id = $1 ORDER BY run DESC LIMIT $2",
            )
            .bind(batch_id)
            .bind(limit)
            .fetch_all(pool)
            .await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in rows.iter().rev() {
                out.push(BatchRun {
                    run: r.try_get("run")?,
                    trigger: r.try_get("trigger")?,
                    started_at: r.try_get("started_at")?,
                    finished_at: r.try_get("finished_at")?,
                    words_total: r.try_get("words_total")?,
                    word_totals: super::json_column(r.try_get("word_totals")?, "word_totals")?
                        .unwrap_or_default(),
                });
            }
            Ok(out)
        })
    }

    /// Claims up to `CLAIM_PAGE` due ticks (next_run_at ≤ `now`) in one transaction: each
    /// claimed schedule's next tick is computed from `now` (missed ticks collapse), its
    /// batch moves to a new run when the previous one finished, otherwise the tick is
    /// skipped and the schedule says so. Call again while `due == CLAIM_PAGE`.
    pub async fn claim_due_ticks(&self, now: i64) -> StoreResult<ClaimReport> {
        let mut report = ClaimReport::default();
        on_pool!(self, |pool| {
            // Nothing due (the common case): no write transaction, so the change counter
            // does not move and the polled pages keep answering 204.
            let any: Option<i64> = sqlx::query_scalar(
                "SELECT batch_id FROM schedule WHERE NOT paused AND next_run_at <= $1 LIMIT 1",
            )
            .bind(now)
            .fetch_optional(pool)
            .await?;
            if any.is_none() {
                return Ok(report);
            }
            let mut tx = begin_write!(pool);
            let rows = sqlx::query(
                "SELECT batch_id, every_ms, cron, timezone, next_run_at FROM schedule \
                 WHERE NOT paused AND next_run_at <= $1 ORDER BY next_run_at, batch_id LIMIT $2",
            )
            .bind(now)
            .bind(CLAIM_PAGE as i64)
            .fetch_all(&mut *tx)
            .await?;
            report.due = rows.len();
            if rows.is_empty() {
                tx.commit().await?;
                return Ok(report);
            }
            // (batch, seen next_run_at, new next_run_at)
            let mut claims: Vec<(i64, i64, i64)> = Vec::with_capacity(rows.len());
            let mut broken: Vec<(i64, String)> = Vec::new();
            for r in &rows {
                let batch: i64 = r.try_get("batch_id")?;
                let cron: Option<String> = r.try_get("cron")?;
                let tz: String = r.try_get("timezone")?;
                let next = Cadence::from_columns(r.try_get("every_ms")?, cron.as_deref(), &tz)
                    .and_then(|c| c.next_after(now));
                match next {
                    Ok(n) => claims.push((batch, r.try_get("next_run_at")?, n)),
                    Err(e) => broken.push((batch, format!("paused: {e}"))),
                }
            }
            // A stored schedule that no longer computes (a time zone dropped from the
            // database, say) is paused with the reason rather than claimed forever.
            for (batch, note) in &broken {
                sqlx::query(
                    "UPDATE schedule SET paused = TRUE, last_tick_at = $1, last_tick_note = $2 \
                     WHERE batch_id = $3",
                )
                .bind(now)
                .bind(note)
                .bind(batch)
                .execute(&mut *tx)
                .await?;
            }
            let mut claimed: Vec<i64> = Vec::new();
            if !claims.is_empty() {
                let mut qb = QueryBuilder::new(
                    "UPDATE schedule SET next_run_at = v.column3, last_tick_at = ",
                );
                qb.push_bind(now);
                qb.push(" FROM (");
                qb.push_values(&claims, |mut b, (batch, seen, next)| {
                    b.push_bind(*batch).push_bind(*seen).push_bind(*next);
                });
                qb.push(
                    ") AS v WHERE schedule.batch_id = v.column1 AND schedule.next_run_at = v.column2 \
                     AND NOT schedule.paused RETURNING schedule.batch_id",
                );
                for row in qb.build().fetch_all(&mut *tx).await? {
                    claimed.push(row.try_get(0)?);
                }
            }
            report.claimed = claimed.len();
            if !claimed.is_empty() {
                claimed.sort_unstable();
                // The batch moves to its next run only if its previous run finished and is
                // not still being started: the check and the move are one statement.
                let mut qb = QueryBuilder::new(
                    "UPDATE batch SET run = run + 1, version = version + 1, updated_at = ",
                );
                qb.push_bind(now);
                qb.push(
                    " WHERE finished_at IS NOT NULL AND NOT EXISTS (SELECT 1 FROM batch_run br \
                     WHERE br.batch_id = batch.id AND br.cursor IS NOT NULL) AND id IN (",
                );
                push_ids(&mut qb, &claimed);
                qb.push(") RETURNING id, run");
                for row in qb.build().fetch_all(&mut *tx).await? {
                    report.started.push((row.try_get(0)?, row.try_get(1)?));
                }
                report.started.sort_unstable();
                if !report.started.is_empty() {
                    let mut qb = QueryBuilder::new(
                        "INSERT INTO batch_run (batch_id, run, trigger, started_at, cursor) ",
                    );
                    qb.push_values(&report.started, |mut b, (batch, run)| {
                        b.push_bind(*batch)
                            .push_bind(*run)
                            .push_bind("schedule")
                            .push_bind(now)
                            .push_bind(0i64);
                    });
                    qb.push(" ON CONFLICT (batch_id, run) DO NOTHING");
                    qb.build().execute(&mut *tx).await?;
                }
                let mut notes: Vec<(i64, String, i64)> = Vec::with_capacity(claimed.len());
                for &b in &claimed {
                    match report.started.binary_search_by_key(&b, |(id, _)| *id) {
                        Ok(i) => notes.push((b, format!("started run {}", report.started[i].1), 1)),
                        Err(_) => notes.push((
                            b,
                            "skipped: the previous run is still unfinished".to_string(),
                            0,
                        )),
                    }
                }
                report.skipped = claimed.len() - report.started.len();
                let mut qb = QueryBuilder::new(
                    "UPDATE schedule SET last_tick_note = v.column2, \
                     runs_started = runs_started + v.column3 FROM (",
                );
                qb.push_values(&notes, |mut b, (batch, note, n)| {
                    b.push_bind(*batch).push_bind(note.clone()).push_bind(*n);
                });
                qb.push(") AS v WHERE schedule.batch_id = v.column1");
                qb.build().execute(&mut *tx).await?;
            }
            tx.commit().await?;
        });
        Ok(report)
    }

    /// Runs whose tasks are still being handed their new run (at most `limit`).
    pub async fn starting_runs(&self, limit: i64) -> StoreResult<Vec<StartingRun>> {
        on_pool!(self, |pool| {
            let rows = sqlx::query(
                "SELECT batch_id, run, cursor, started_at FROM batch_run \
                 WHERE cursor IS NOT NULL ORDER BY started_at LIMIT $1",
            )
            .bind(limit)
            .fetch_all(pool)
            .await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in &rows {
                out.push(StartingRun {
                    batch_id: r.try_get("batch_id")?,
                    run: r.try_get("run")?,
                    cursor: r.try_get("cursor")?,
                    started_at: r.try_get("started_at")?,
                });
            }
            Ok(out)
        })
    }

    /// Hands the next chunk (≤ a thousand, by id) of a starting run's tasks their new run.
    /// Only tasks that existed when the run started take part (a crawl's pages found
    /// during the run are already part of it). Returns None when another process moved
    /// the cursor first (nothing done), else the retried tasks for the Submitter and the
    /// run's new state (None = fully started).
    pub async fn start_run_chunk(
        &self,
        run: &StartingRun,
    ) -> StoreResult<Option<(Vec<Task>, Option<StartingRun>)>> {
        let ids: Vec<i64> = on_pool!(self, |pool| {
            sqlx::query_scalar(
                "SELECT id FROM task WHERE batch_id = $1 AND id > $2 AND timestamp <= $3 \
                 ORDER BY id LIMIT $4",
            )
            .bind(run.batch_id)
            .bind(run.cursor)
            .bind(run.started_at)
            .bind(CHUNK as i64)
            .fetch_all(pool)
            .await?
        });
        let last = ids.last().copied();
        let to = if ids.len() >= CHUNK { last } else { None };
        let step = CursorStep {
            batch_id: run.batch_id,
            run: run.run,
            from: run.cursor,
            to,
        };
        let next = to.map(|c| StartingRun { cursor: c, ..*run });
        if ids.is_empty() {
            // Nothing left: close the cursor (and finish the run if nothing was pending).
            let won = on_pool!(self, |pool| {
                let mut tx = begin_write!(pool);
                let won = step_cursor!(tx, &step);
                if won {
                    super::changes::FinishRuns::finish_runs(&mut *tx, &[run.batch_id]).await?;
                }
                tx.commit().await?;
                won
            });
            return Ok(won.then_some((Vec::new(), None)));
        }
        let tasks = self
            .retry_tasks_guarded(&ids, "schedule", Some(&step))
            .await?;
        Ok(tasks.map(|t| (t, next)))
    }
}
