//! Tasks in the store (**submit** → queue, and DB → **poll**): storing a submission as a
//! batch (multi-row INSERTs), marking jobs queued, the reconciler's claims, and the reads
//! behind the table, the task page and exports (keyset pages through an index).

use std::str::FromStr;

use sqlx::{QueryBuilder, Row};

use super::{
    CHUNK, Deltas, RESULT_COLUMNS, RETURNING_TASK, Store, StoreError, StoreResult, TASK_COLUMNS,
    push_ids,
};
use crate::count::CountOptions;
use crate::model::{Task, TaskStatus, TaskView, now_ms};
use crate::outcome::Outcome;

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
    pub outcome: Option<Outcome>,
    /// Only the tasks of this batch.
    pub batch: Option<i64>,
    /// Case-insensitive substring of the address.
    pub search: Option<String>,
    /// Only tasks with a smaller id (older); the next page.
    pub before: Option<i64>,
    /// Only tasks with a larger id (newer); the previous page.
    pub after: Option<i64>,
    pub limit: i64,
    /// Oldest first (exports, bulk actions) instead of newest first.
    pub oldest_first: bool,
    /// Only tasks whose current result counted this word or pattern more than zero times
    /// (`task_counts.rs`).
    pub contains: Option<String>,
    /// Only tasks whose current result counted this word or pattern zero times.
    pub absent: Option<String>,
}

impl TaskFilter {
    /// Adds this filter's conditions but the search (after a `WHERE 1 = 1`), on the task
    /// table aliased `t`: status, outcome, batch and the id bounds.
    pub(crate) fn push_filters<'a, DB: sqlx::Database>(
        &'a self,
        qb: &mut QueryBuilder<'a, DB>,
        t: &str,
    ) where
        i64: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
        &'a str: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    {
        if let Some(s) = self.status {
            qb.push(format!(" AND {t}.task_status = "))
                .push_bind(s.as_str());
        }
        if let Some(o) = self.outcome {
            qb.push(format!(" AND {t}.outcome = "))
                .push_bind(o.as_str());
        }
        if let Some(b) = self.batch {
            qb.push(format!(" AND {t}.batch_id = ")).push_bind(b);
        }
        self.push_bounds(qb, t);
    }

    /// Adds the id bounds (`before`/`after`) on the table aliased `t`.
    pub(crate) fn push_bounds<'a, DB: sqlx::Database>(
        &'a self,
        qb: &mut QueryBuilder<'a, DB>,
        t: &str,
    ) where
        i64: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    {
        if let Some(b) = self.before {
            qb.push(format!(" AND {t}.id < ")).push_bind(b);
        }
        if let Some(a) = self.after {
            qb.push(format!(" AND {t}.id > ")).push_bind(a);
        }
    }

    /// The search term, if there is one (an empty `q` searches nothing).
    pub(crate) fn term(&self) -> Option<&str> {
        self.search.as_deref().filter(|q| !q.is_empty())
    }
}

/// The per-chunk statements of the bulk path, written per database: Postgres binds whole
/// columns as arrays (`UNNEST`, one parse and a dozen binds for a thousand rows) and moves a
/// task to PENDING and counts the attempt in one UPDATE; SQLite, which has no arrays, takes
/// a multi-row VALUES and two UPDATEs.
trait Bulk: sqlx::Database {
    /// Inserts `chunk` as NOT_STARTED tasks of `batch_id`; the new ids, in any order.
    async fn insert_chunk(
        tx: &mut sqlx::Transaction<'_, Self>,
        now: i64,
        batch_id: i64,
        chunk: &[NewTask],
    ) -> Result<Vec<i64>, sqlx::Error>;

    /// Marks the tasks `ids` queued (see `Store::mark_queued`); the batch of each task
    /// that moved NOT_STARTED → PENDING.
    async fn mark_chunk(
        tx: &mut sqlx::Transaction<'_, Self>,
        now: i64,
        ids: &[i64],
    ) -> Result<Vec<Option<i64>>, sqlx::Error>;
}

impl Bulk for sqlx::Postgres {
    async fn insert_chunk(
        tx: &mut sqlx::Transaction<'_, Self>,
        now: i64,
        batch_id: i64,
        chunk: &[NewTask],
    ) -> Result<Vec<i64>, sqlx::Error> {
        let mut address = Vec::with_capacity(chunk.len());
        let mut word = Vec::with_capacity(chunk.len());
        let mut case_sensitive = Vec::with_capacity(chunk.len());
        let mut whole_word = Vec::with_capacity(chunk.len());
        let mut scope = Vec::with_capacity(chunk.len());
        let mut words = Vec::with_capacity(chunk.len());
        let mut extra = Vec::with_capacity(chunk.len());
        for t in chunk {
            address.push(t.address.as_str());
            word.push(t.options.word.as_str());
            case_sensitive.push(t.options.case_sensitive);
            whole_word.push(t.options.whole_word);
            scope.push(t.options.scope.as_str());
            words.push(super::json_list(&t.options.words));
            extra.push(super::RegionsPatterns::column(&t.options));
        }
        sqlx::query_scalar(
            "INSERT INTO task (address, timestamp, task_status, word, case_sensitive, \
             whole_word, scope, attempts, updated_at, batch_id, run, words, regions_patterns) \
             SELECT a, $1, 'NOT_STARTED', w, cs, ww, sc, 0, $1, $2, 1, ws, rp \
             FROM UNNEST($3::text[], $4::text[], $5::bool[], $6::bool[], $7::text[], $8::text[], \
             $9::text[]) WITH ORDINALITY AS u (a, w, cs, ww, sc, ws, rp, ord) ORDER BY ord \
             RETURNING id",
        )
        .bind(now)
        .bind(batch_id)
        .bind(address)
        .bind(word)
        .bind(case_sensitive)
        .bind(whole_word)
        .bind(scope)
        .bind(words)
        .bind(extra)
        .fetch_all(&mut **tx)
        .await
    }

    async fn mark_chunk(
        tx: &mut sqlx::Transaction<'_, Self>,
        now: i64,
        ids: &[i64],
    ) -> Result<Vec<Option<i64>>, sqlx::Error> {
        // The status each row had before is read in the same statement (RETURNING shows
        // only new values); writers hold the task_stats lock, so nothing moves in between.
        let rows: Vec<(Option<i64>, String)> = sqlx::query_as(
            "WITH old AS (SELECT id, task_status AS was FROM task \
               WHERE id = ANY($2) AND task_status <> 'FINISHED' FOR UPDATE) \
             UPDATE task SET \
               task_status = CASE WHEN old.was = 'NOT_STARTED' THEN 'PENDING' \
                             ELSE task.task_status END, \
               updated_at = CASE WHEN old.was = 'NOT_STARTED' THEN $1 ELSE task.updated_at END, \
               attempts = task.attempts + 1, queued_at = $1 \
             FROM old WHERE task.id = old.id RETURNING task.batch_id, old.was",
        )
        .bind(now)
        .bind(ids)
        .fetch_all(&mut **tx)
        .await?;
        Ok(rows
            .into_iter()
            .filter(|(_, was)| was == "NOT_STARTED")
            .map(|(batch, _)| batch)
            .collect())
    }
}

impl Bulk for sqlx::Sqlite {
    async fn insert_chunk(
        tx: &mut sqlx::Transaction<'_, Self>,
        now: i64,
        batch_id: i64,
        chunk: &[NewTask],
    ) -> Result<Vec<i64>, sqlx::Error> {
        let mut qb = QueryBuilder::new(
            "INSERT INTO task (address, timestamp, task_status, word, case_sensitive, \
             whole_word, scope, attempts, updated_at, batch_id, run, words, regions_patterns) ",
        );
        qb.push_values(chunk, |mut b, t| {
            b.push_bind(&t.address)
                .push_bind(now)
                .push_bind("NOT_STARTED")
                .push_bind(&t.options.word)
                .push_bind(t.options.case_sensitive)
                .push_bind(t.options.whole_word)
                .push_bind(t.options.scope.as_str())
                .push_bind(0i32)
                .push_bind(now)
                .push_bind(batch_id)
                .push_bind(1i32)
                .push_bind(super::json_list(&t.options.words))
                .push_bind(super::RegionsPatterns::column(&t.options));
        });
        qb.push(" RETURNING id");
        qb.build()
            .fetch_all(&mut **tx)
            .await?
            .iter()
            .map(|r| r.try_get::<i64, _>(0))
            .collect()
    }

    async fn mark_chunk(
        tx: &mut sqlx::Transaction<'_, Self>,
        now: i64,
        ids: &[i64],
    ) -> Result<Vec<Option<i64>>, sqlx::Error> {
        let mut qb = QueryBuilder::new("UPDATE task SET task_status = 'PENDING', updated_at = ");
        qb.push_bind(now);
        qb.push(" WHERE task_status = 'NOT_STARTED' AND id IN (");
        push_ids(&mut qb, ids);
        qb.push(") RETURNING batch_id");
        let moved = qb
            .build()
            .fetch_all(&mut **tx)
            .await?
            .iter()
            .map(|r| r.try_get::<Option<i64>, _>(0))
            .collect::<Result<_, _>>()?;
        let mut qb = QueryBuilder::new("UPDATE task SET attempts = attempts + 1, queued_at = ");
        qb.push_bind(now);
        qb.push(" WHERE task_status <> 'FINISHED' AND id IN (");
        push_ids(&mut qb, ids);
        qb.push(")");
        qb.build().execute(&mut **tx).await?;
        Ok(moved)
    }
}

impl Store {
    /// Stores a submission as one batch of NOT_STARTED tasks, in one transaction, before
    /// anything is queued: one INSERT for the batch and one multi-row INSERT per thousand
    /// tasks. The batch takes its counting options from the first task.
    pub async fn insert_batch(
        &self,
        label: Option<&str>,
        new: &[NewTask],
    ) -> StoreResult<(Option<i64>, Vec<Task>)> {
        self.insert_batch_by(label, None, new).await
    }

    /// `insert_batch`, recording who submitted it (an account or token, see `crate::auth`).
    pub async fn insert_batch_by(
        &self,
        label: Option<&str>,
        created_by: Option<&str>,
        new: &[NewTask],
    ) -> StoreResult<(Option<i64>, Vec<Task>)> {
        let Some(first) = new.first() else {
            return Ok((None, Vec::new()));
        };
        let now = now_ms();
        let n = new.len() as i64;
        let mut out = Vec::with_capacity(new.len());
        let batch_id: i64 = on_pool!(self, |pool| {
            let mut tx = begin_write!(pool);
            let o = &first.options;
            let batch_id: i64 = sqlx::query_scalar(
                "INSERT INTO batch (label, created_at, word, case_sensitive, whole_word, scope, \
                 updated_at, created_by, words, regions_patterns) \
                 VALUES ($1, $2, $3, $4, $5, $6, $2, $7, $8, $9) \
                 RETURNING id",
            )
            .bind(label)
            .bind(now)
            .bind(&o.word)
            .bind(o.case_sensitive)
            .bind(o.whole_word)
            .bind(o.scope.as_str())
            .bind(created_by)
            .bind(super::json_list(&o.words))
            .bind(super::RegionsPatterns::column(o))
            .fetch_one(&mut *tx)
            .await?;
            for chunk in new.chunks(CHUNK) {
                let mut ids = Bulk::insert_chunk(&mut tx, now, batch_id, chunk).await?;
                // Writers hold the task_stats lock, so one statement's ids are allocated
                // in VALUES order; sorting makes that independent of RETURNING's order.
                ids.sort_unstable();
                if ids.len() != chunk.len() {
                    return Err(StoreError::Corrupt(format!(
                        "inserted {} tasks, got {} ids",
                        chunk.len(),
                        ids.len()
                    )));
                }
                for (id, t) in ids.into_iter().zip(chunk) {
                    out.push(Task {
                        id,
                        address: t.address.clone(),
                        timestamp: now,
                        status: TaskStatus::NotStarted,
                        options: t.options.clone(),
                        attempts: 0,
                        queued_at: None,
                        updated_at: now,
                        batch_id: Some(batch_id),
                        run: 1,
                        outcome: None,
                        etag: None,
                        last_modified: None,
                        depth: None,
                        found_on: None,
                        role: None,
                    });
                }
            }
            let mut deltas = Deltas::default();
            let d = deltas.of(Some(batch_id));
            d.total = n;
            d.not_started = n;
            apply_deltas!(tx, &deltas, now);
            tx.commit().await?;
            batch_id
        });
        Ok((Some(batch_id), out))
    }

    /// Stores new tasks as one unlabelled batch (see `insert_batch`).
    pub async fn insert_tasks(&self, new: &[NewTask]) -> StoreResult<Vec<Task>> {
        Ok(self.insert_batch(None, new).await?.1)
    }

    /// Records that these tasks were accepted by the queue: NOT_STARTED → PENDING (never
    /// backwards: a result may already have arrived), one more attempt, queued now. One
    /// UPDATE per thousand tasks on Postgres (one new row version each), two on SQLite.
    pub async fn mark_queued(&self, ids: &[i64]) -> StoreResult<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let now = now_ms();
        on_pool!(self, |pool| {
            let mut tx = begin_write!(pool);
            let mut deltas = Deltas::default();
            for chunk in ids.chunks(CHUNK) {
                for batch in Bulk::mark_chunk(&mut tx, now, chunk).await? {
                    deltas
                        .of(batch)
                        .moved(TaskStatus::NotStarted, TaskStatus::Pending, 1);
                }
            }
            apply_deltas!(tx, &deltas, now);
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
        let postgres = matches!(self, Store::Postgres(_));
        on_pool!(self, |pool| {
            // Under the writers' lock like every other writer: an UPDATE of hundreds of rows
            // racing a result batch's UPDATE of the same rows in another order would
            // otherwise deadlock on Postgres (found by the 100k-row export test). The lock
            // is taken without bumping the change counter: a claim only moves `queued_at`,
            // which no page shows, so polls keep answering 204. (SQLite needs no lock row:
            // its first write takes the database's one write lock.)
            let mut tx = pool.begin().await?;
            if postgres {
                sqlx::query("SELECT id FROM task_stats WHERE id = 1 FOR UPDATE")
                    .execute(&mut *tx)
                    .await?;
            }
            let rows = sqlx::query(&sql)
                .bind(now)
                .bind(status.as_str())
                .bind(cutoff)
                .bind(limit)
                .fetch_all(&mut *tx)
                .await?;
            tx.commit().await?;
            for row in &rows {
                out.push(task_from_row!(row));
            }
        });
        out.sort_by_key(|t| t.id);
        Ok(out)
    }

    /// Claims a crawl's just-discovered tasks and marks them queued, in one transaction:
    /// of `ids`, those still NOT_STARTED and never handed to the queue (`queued_at` NULL)
    /// move to PENDING, one attempt, queued now; returns their ids. The caller then hands
    /// their jobs to the queue, and on failure gives them back (`unclaim_queued`).
    ///
    /// Two paths may queue such a task — the DB writer's `Discovered` message and the
    /// reconciler's sweep of NOT_STARTED tasks older than REQUEUE_NOT_STARTED_SECS, which
    /// claims by setting `queued_at` — and a page was fetched twice whenever the sweep came
    /// first (the message handled more than those seconds after the transaction's clock:
    /// 10,085 of 100,000 pages once, BENCHMARKS "Production-path crawl"). Exactly one of
    /// them queues it. Claiming and marking used to be two transactions under the writers'
    /// lock (claim, enqueue, mark), each a new version of every row with all its index
    /// entries; marking before the enqueue makes it one, and a job can only reach a
    /// worker after its task is PENDING. Should this process die between the commit and
    /// the enqueue, the tasks wait for their pending deadline: a delay, never a loss.
    pub async fn claim_and_mark_queued(&self, ids: &[i64]) -> StoreResult<Vec<i64>> {
        let mut out = Vec::new();
        if ids.is_empty() {
            return Ok(out);
        }
        let now = now_ms();
        on_pool!(self, |pool| {
            let mut tx = begin_write!(pool);
            let mut deltas = Deltas::default();
            for chunk in ids.chunks(CHUNK) {
                let mut qb = QueryBuilder::new(
                    "UPDATE task SET task_status = 'PENDING', attempts = attempts + 1, queued_at = ",
                );
                qb.push_bind(now);
                qb.push(", updated_at = ").push_bind(now);
                // The status and `queued_at` tests are written so that no index can take
                // them (`IS TRUE`, `COALESCE`): otherwise Postgres, planning on a table it
                // has not analysed yet (a crawl's first seconds), read every NOT_STARTED
                // task through `task_status_queued` and filtered by id — 130 ms a statement
                // while the frontier held 50,000 of them (BENCHMARKS "Production-path
                // crawl"). The primary key is then the only way in.
                qb.push(
                    " WHERE (task_status = 'NOT_STARTED') IS TRUE \
                     AND COALESCE(queued_at, -1) = -1 AND id IN (",
                );
                push_ids(&mut qb, chunk);
                qb.push(") RETURNING id, batch_id");
                for row in qb.build().fetch_all(&mut *tx).await? {
                    out.push(row.try_get::<i64, _>(0)?);
                    deltas.of(row.try_get::<Option<i64>, _>(1)?).moved(
                        TaskStatus::NotStarted,
                        TaskStatus::Pending,
                        1,
                    );
                }
            }
            apply_deltas!(tx, &deltas, now);
            tx.commit().await?;
        });
        out.sort_unstable();
        Ok(out)
    }

    /// Undoes `claim_and_mark_queued` for tasks the queue refused: back to NOT_STARTED,
    /// keeping `queued_at`, so the reconciler's sweep of NOT_STARTED tasks queues them once
    /// the queue is back. The attempt stays counted: a refused hand-off may have reached
    /// the queue in part (Redis killed in the middle of the XADDs), so a worker may run
    /// the job and the sweep's re-queue is its second delivery. Only tasks still PENDING
    /// move (a task whose result came first stays finished).
    pub async fn unclaim_queued(&self, ids: &[i64]) -> StoreResult<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let now = now_ms();
        on_pool!(self, |pool| {
            let mut tx = begin_write!(pool);
            let mut deltas = Deltas::default();
            for chunk in ids.chunks(CHUNK) {
                let mut qb =
                    QueryBuilder::new("UPDATE task SET task_status = 'NOT_STARTED', updated_at = ");
                qb.push_bind(now);
                // By primary key only, as in `claim_and_mark_queued`.
                qb.push(" WHERE (task_status = 'PENDING') IS TRUE AND id IN (");
                push_ids(&mut qb, chunk);
                qb.push(") RETURNING batch_id");
                for row in qb.build().fetch_all(&mut *tx).await? {
                    deltas.of(row.try_get::<Option<i64>, _>(0)?).moved(
                        TaskStatus::Pending,
                        TaskStatus::NotStarted,
                        1,
                    );
                }
            }
            apply_deltas!(tx, &deltas, now);
            tx.commit().await?;
        });
        Ok(())
    }

    /// One task with its current run's result.
    pub async fn get_task(&self, id: i64) -> StoreResult<Option<TaskView>> {
        let sql = format!(
            "SELECT {TASK_COLUMNS}, {RESULT_COLUMNS} FROM task t \
             LEFT JOIN result r ON r.task_id = t.id AND r.run = t.run WHERE t.id = $1"
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

    /// One page of tasks with their current results, newest first (or oldest first).
    pub async fn list_tasks(&self, f: &TaskFilter) -> StoreResult<Vec<TaskView>> {
        let limit = f.limit.clamp(1, CHUNK as i64);
        // `after` pages towards newer tasks: read ascending, then flip.
        let flip = f.after.is_some() && f.before.is_none() && !f.oldest_first;
        let ascending = flip || f.oldest_first;
        // A search finds its ids first (src/store/search.rs), then reads their rows.
        let ids = match f.term() {
            Some(_) => {
                let ids = self.search_ids(f, ascending, limit).await?;
                if ids.is_empty() {
                    return Ok(Vec::new());
                }
                Some(ids)
            }
            None => None,
        };
        let mut out = Vec::new();
        let counts = f.count_filters();
        on_pool!(self, |pool| {
            let mut qb = QueryBuilder::new(format!("SELECT {TASK_COLUMNS}, {RESULT_COLUMNS}"));
            // Led by `task_count` when a count filter is given (task_counts.rs).
            let mut key = "t.id";
            if ids.is_none() && f.push_count_source(&mut qb) {
                key = "c.task_id";
                f.push_filters(&mut qb, "t");
            } else {
                qb.push(
                    " FROM task t LEFT JOIN result r ON r.task_id = t.id AND r.run = t.run \
                     WHERE 1 = 1",
                );
                match &ids {
                    Some(ids) => {
                        qb.push(" AND t.id IN (");
                        push_ids(&mut qb, ids);
                        qb.push(")");
                        // A search page is then only narrowed (it may hold fewer rows).
                        f.push_other_counts(&mut qb, &counts);
                    }
                    None => f.push_filters(&mut qb, "t"),
                }
            }
            qb.push(format!(
                " ORDER BY {key} {} LIMIT ",
                if ascending { "ASC" } else { "DESC" }
            ));
            qb.push_bind(limit);
            let rows = qb.build().fetch_all(pool).await?;
            for row in &rows {
                out.push(TaskView {
                    task: task_from_row!(row),
                    result: result_from_row!(row),
                });
            }
        });
        if flip {
            out.reverse();
        }
        Ok(out)
    }

    /// The ids of up to `limit` tasks matching `f` (paging and order as `f` says), for
    /// bulk actions that walk a filter in bounded chunks.
    pub async fn task_ids(&self, f: &TaskFilter) -> StoreResult<Vec<i64>> {
        let limit = f.limit.clamp(1, CHUNK as i64);
        if f.term().is_some() {
            let counts = f.count_filters();
            if counts.is_empty() {
                return self.search_ids(f, f.oldest_first, limit).await;
            }
            // Searched and count-filtered: the search's chunks narrowed, until a full chunk
            // (bulk actions stop at a short one) or the end of the search.
            let mut out: Vec<i64> = Vec::new();
            let mut g = f.clone();
            loop {
                let ids = self.search_ids(&g, g.oldest_first, limit).await?;
                let Some(&last) = ids.last() else { break };
                let narrowed: Vec<i64> = on_pool!(self, |pool| {
                    let mut qb = QueryBuilder::new("SELECT t.id FROM task t WHERE t.id IN (");
                    push_ids(&mut qb, &ids);
                    qb.push(")");
                    g.push_other_counts(&mut qb, &counts);
                    let rows = qb.build().fetch_all(pool).await?;
                    rows.iter()
                        .map(|r| r.try_get::<i64, _>(0))
                        .collect::<Result<_, _>>()?
                });
                out.extend(narrowed);
                if out.len() as i64 >= limit || (ids.len() as i64) < limit {
                    break;
                }
                if g.oldest_first {
                    g.after = Some(last);
                } else {
                    g.before = Some(last);
                }
            }
            out.sort_unstable();
            if !f.oldest_first {
                out.reverse();
            }
            out.truncate(limit as usize);
            return Ok(out);
        }
        on_pool!(self, |pool| {
            let mut qb = QueryBuilder::new("SELECT t.id");
            let mut key = "t.id";
            if f.push_count_source(&mut qb) {
                key = "c.task_id";
            } else {
                qb.push(" FROM task t WHERE 1 = 1");
            }
            f.push_filters(&mut qb, "t");
            qb.push(format!(
                " ORDER BY {key} {} LIMIT ",
                if f.oldest_first { "ASC" } else { "DESC" }
            ));
            qb.push_bind(limit);
            let rows = qb.build().fetch_all(pool).await?;
            rows.iter()
                .map(|r| r.try_get::<i64, _>(0).map_err(StoreError::from))
                .collect()
        })
    }
}

/// Parses a stored outcome (for rows read outside `task_from_row!`).
pub(crate) fn parse_outcome(s: Option<String>) -> StoreResult<Option<Outcome>> {
    s.map(|o| Outcome::from_str(&o))
        .transpose()
        .map_err(StoreError::Corrupt)
}
