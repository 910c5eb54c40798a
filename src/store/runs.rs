//! Runs in the store (DESIGN §11): retry starts a new run of finished tasks, cancel ends
//! unfinished ones, and earlier runs' results are kept as history. Both act on at most a
//! thousand tasks per transaction and keep the totals in the same transaction.

use std::str::FromStr;

use sqlx::{QueryBuilder, Row};

use super::rollups::{RecordRollups, RollupRow};
use super::{
    CHUNK, Deltas, RESULT_COLUMNS, RETURNING_TASK, Store, StoreError, StoreResult, push_ids,
    tasks::parse_outcome,
};
use crate::model::{RunRecord, Task, TaskStatus, now_ms};
use crate::outcome::Outcome;

/// One recorded action on a task.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditEntry {
    pub at: i64,
    pub who: String,
    /// `retry` or `cancel`.
    pub action: String,
    /// The run it started (retry) or ended (cancel).
    pub run: Option<i32>,
}

/// A task's run that was cancelled: what the queue needs to drop its job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CancelledRun {
    pub task_id: i64,
    pub run: i32,
}

impl Store {
    /// Starts a new run of every FINISHED task among `ids` (at most a thousand): run + 1,
    /// back to NOT_STARTED, outcome cleared, the old result kept as history. Unfinished
    /// tasks are left alone. Returns the retried tasks, for the Submitter to queue.
    pub async fn retry_tasks(&self, ids: &[i64]) -> StoreResult<Vec<Task>> {
        self.retry_tasks_by(ids, "system").await
    }

    /// `retry_tasks`, recording who retried each task (and the run it started).
    pub async fn retry_tasks_by(&self, ids: &[i64], who: &str) -> StoreResult<Vec<Task>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let ids = &ids[..ids.len().min(CHUNK)];
        let now = now_ms();
        let mut out = Vec::new();
        on_pool!(self, |pool| {
            let mut tx = begin_write!(pool);
            // What the current runs counted, to take it out of the batch sums.
            let mut qb = QueryBuilder::new(
                "SELECT t.id, t.batch_id, t.outcome, r.words_count, r.counts FROM task t \
                 LEFT JOIN result r ON r.task_id = t.id AND r.run = t.run \
                 WHERE t.task_status = 'FINISHED' AND t.id IN (",
            );
            push_ids(&mut qb, ids);
            qb.push(")");
            let rows = qb.build().fetch_all(&mut *tx).await?;
            let mut deltas = Deltas::default();
            let mut finished: Vec<i64> = Vec::with_capacity(rows.len());
            for row in &rows {
                let batch: Option<i64> = row.try_get("batch_id")?;
                let d = deltas.of(batch);
                d.moved(TaskStatus::Finished, TaskStatus::NotStarted, 1);
                if let Some(o) = parse_outcome(row.try_get("outcome")?)? {
                    *d.outcome(o) -= 1;
                }
                d.words -= row.try_get::<Option<i64>, _>("words_count")?.unwrap_or(0);
                let counts: Option<std::collections::BTreeMap<String, i64>> =
                    super::json_column(row.try_get("counts")?, "counts")?;
                deltas.words(batch, counts.as_ref(), -1);
                finished.push(row.try_get("id")?);
            }
            if !finished.is_empty() {
                let mut qb = QueryBuilder::new(
                    "UPDATE task SET run = run + 1, task_status = 'NOT_STARTED', outcome = NULL, \
                     attempts = 0, queued_at = NULL, updated_at = ",
                );
                qb.push_bind(now);
                qb.push(" WHERE task_status = 'FINISHED' AND id IN (");
                push_ids(&mut qb, &finished);
                qb.push(")");
                qb.push(RETURNING_TASK);
                for row in qb.build().fetch_all(&mut *tx).await? {
                    out.push(task_from_row!(&row));
                }
                // A new run has no result yet: it matches neither `contains` nor `absent`.
                let mut qb = QueryBuilder::new("DELETE FROM task_count WHERE task_id IN (");
                push_ids(&mut qb, &finished);
                qb.push(")");
                qb.build().execute(&mut *tx).await?;
                let mut qb = QueryBuilder::new(
                    "INSERT INTO audit (at, who, action, batch_id, task_id, run) ",
                );
                qb.push_values(&out, |mut b, t| {
                    b.push_bind(now)
                        .push_bind(who)
                        .push_bind("retry")
                        .push_bind(t.batch_id)
                        .push_bind(t.id)
                        .push_bind(t.run);
                });
                qb.build().execute(&mut *tx).await?;
            }
            apply_deltas!(tx, &deltas, now);
            tx.commit().await?;
        });
        out.sort_by_key(|t| t.id);
        Ok(out)
    }

    /// Ends every unfinished task among `ids` (at most a thousand) with outcome
    /// `cancelled`. Runs under the writers' lock, so against a result of the same run
    /// whichever commits first wins and the other changes nothing. Returns the runs that
    /// were cancelled.
    pub async fn cancel_tasks(&self, ids: &[i64]) -> StoreResult<Vec<CancelledRun>> {
        self.cancel_tasks_by(ids, "system").await
    }

    /// `cancel_tasks`, recording who cancelled each task (and the run it ended).
    pub async fn cancel_tasks_by(&self, ids: &[i64], who: &str) -> StoreResult<Vec<CancelledRun>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let ids = &ids[..ids.len().min(CHUNK)];
        let now = now_ms();
        let mut out = Vec::new();
        on_pool!(self, |pool| {
            let mut tx = begin_write!(pool);
            let mut qb = QueryBuilder::new(
                "SELECT id, batch_id, task_status, run FROM task \
                 WHERE task_status <> 'FINISHED' AND id IN (",
            );
            push_ids(&mut qb, ids);
            qb.push(")");
            let rows = qb.build().fetch_all(&mut *tx).await?;
            let mut deltas = Deltas::default();
            let mut chosen: Vec<i64> = Vec::with_capacity(rows.len());
            for row in &rows {
                let status: String = row.try_get("task_status")?;
                let status = TaskStatus::from_str(&status).map_err(StoreError::Corrupt)?;
                let d = deltas.of(row.try_get("batch_id")?);
                d.moved(status, TaskStatus::Finished, 1);
                *d.outcome(Outcome::Cancelled) += 1;
                let id: i64 = row.try_get("id")?;
                chosen.push(id);
                out.push(CancelledRun {
                    task_id: id,
                    run: row.try_get("run")?,
                });
            }
            if !chosen.is_empty() {
                let mut qb = QueryBuilder::new(
                    "UPDATE task SET task_status = 'FINISHED', outcome = 'cancelled', updated_at = ",
                );
                qb.push_bind(now);
                qb.push(" WHERE task_status <> 'FINISHED' AND id IN (");
                push_ids(&mut qb, &chosen);
                qb.push(")");
                qb.build().execute(&mut *tx).await?;
                let batches: Vec<Option<i64>> = rows
                    .iter()
                    .map(|r| r.try_get("batch_id"))
                    .collect::<Result<_, _>>()?;
                let mut qb = QueryBuilder::new(
                    "INSERT INTO audit (at, who, action, batch_id, task_id, run) ",
                );
                qb.push_values(out.iter().zip(&batches), |mut b, (c, batch)| {
                    b.push_bind(now)
                        .push_bind(who)
                        .push_bind("cancel")
                        .push_bind(*batch)
                        .push_bind(c.task_id)
                        .push_bind(c.run);
                });
                qb.build().execute(&mut *tx).await?;
            }
            apply_deltas!(tx, &deltas, now);
            let rollup: Vec<RollupRow> = out
                .iter()
                .map(|_| RollupRow {
                    at_ms: now,
                    outcome: Outcome::Cancelled,
                    duration_ms: 0,
                    bytes: 0,
                })
                .collect();
            RecordRollups::record_rollups(&mut *tx, &rollup).await?;
            tx.commit().await?;
        });
        Ok(out)
    }

    /// What people did to a task (retries, cancels), newest first.
    pub async fn task_audit(&self, task_id: i64) -> StoreResult<Vec<AuditEntry>> {
        on_pool!(self, |pool| {
            let rows = sqlx::query(
                "SELECT at, who, action, run FROM audit WHERE task_id = $1 \
                 ORDER BY id DESC LIMIT 100",
            )
            .bind(task_id)
            .fetch_all(pool)
            .await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in &rows {
                out.push(AuditEntry {
                    at: r.try_get("at")?,
                    who: r.try_get("who")?,
                    action: r.try_get("action")?,
                    run: r.try_get("run")?,
                });
            }
            Ok(out)
        })
    }

    /// The results of a task's earlier runs (before `run`), newest first.
    pub async fn history(&self, task_id: i64, run: i32) -> StoreResult<Vec<RunRecord>> {
        let sql = format!(
            "SELECT r.run AS run_no, {RESULT_COLUMNS} FROM result r \
             WHERE r.task_id = $1 AND r.run < $2 ORDER BY r.run DESC LIMIT 100"
        );
        on_pool!(self, |pool| {
            let rows = sqlx::query(&sql)
                .bind(task_id)
                .bind(run)
                .fetch_all(pool)
                .await?;
            let mut out = Vec::with_capacity(rows.len());
            for row in &rows {
                if let Some(result) = result_from_row!(row) {
                    out.push(RunRecord {
                        run: row.try_get("run_no")?,
                        result,
                    });
                }
            }
            Ok(out)
        })
    }
}
