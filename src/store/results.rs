//! Results into the store (… → NSQ → **DB**): the DB writer's batches, a few statements
//! per batch whatever its size. Under the writers' lock (see `begin_write!`) the current
//! run and status of every task concerned are read once, each result is judged against
//! them (current run, earlier run, duplicate, unknown), and then one multi-row INSERT and
//! at most one UPDATE per outcome apply the verdicts.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::str::FromStr;

use sqlx::{QueryBuilder, Row};

use super::changes::{FinishRuns, RecordChanges, StoredCount};
use super::rollups::{RecordRollups, RollupRow};
use super::{Deltas, Store, StoreError, StoreResult, pow2_chunks, push_ids};

/// Largest `IN (…)` list of a result batch, a power of two (see [`pow2_chunks`]); its
/// multi-row INSERT takes half as many rows (18 columns each).
const PIECE: usize = 512;
use super::crawls::{CrawlDelta, Found};
use crate::model::{CrawlReport, JobResult, Task, TaskRole, TaskStatus, now_ms};
use crate::outcome::Outcome;

/// The latest `ok` result before each listed task's current run, for a `304` of that run
/// (`… IN (` + ids + `)`).
const CARRIED_NOW: &str = "SELECT t.id AS task_id, t.run AS cur_run, r.words_count, r.counts, \
     r.charset, r.charset_source, r.content_type FROM task t JOIN result r ON r.task_id = t.id \
     WHERE r.run = (SELECT MAX(r2.run) FROM result r2 WHERE r2.task_id = t.id \
     AND r2.outcome = 'ok' AND r2.words_count IS NOT NULL AND r2.run < t.run) AND t.id IN (";

/// The same for one task and an earlier run ($1 task, $2 run).
const CARRIED_BEFORE: &str = "SELECT r.words_count, r.counts, r.charset, r.charset_source, \
     r.content_type FROM result r WHERE r.task_id = $1 AND r.run < $2 AND r.outcome = 'ok' \
     AND r.words_count IS NOT NULL ORDER BY r.run DESC LIMIT 1";

/// Copies the current run's result validators onto the task (inside `UPDATE task SET …`).
const TASK_VALIDATORS: &str = ", etag = (SELECT r.etag FROM result r \
     WHERE r.task_id = task.id AND r.run = task.run), last_modified = (SELECT r.last_modified \
     FROM result r WHERE r.task_id = task.id AND r.run = task.run)";

/// What a `304` carries over from the earlier result it confirms.
struct Carried {
    words_count: Option<i64>,
    counts: Option<std::collections::BTreeMap<String, i64>>,
    charset: Option<String>,
    charset_source: Option<String>,
    content_type: Option<String>,
}

impl Carried {
    fn apply(&self, r: &mut crate::model::ResultRecord) {
        r.words_count = self.words_count;
        r.counts = self.counts.clone();
        r.charset = self.charset.clone();
        r.charset_source = self.charset_source.clone();
        if r.content_type.is_none() {
            r.content_type = self.content_type.clone();
        }
    }
}

macro_rules! carried_from_row {
    ($row:expr) => {{
        let row = &$row;
        Carried {
            words_count: row.try_get("words_count")?,
            counts: super::json_column(row.try_get("counts")?, "counts")?,
            charset: row.try_get("charset")?,
            charset_source: row.try_get("charset_source")?,
            content_type: row.try_get("content_type")?,
        }
    }};
}

/// What happened to one incoming result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreOutcome {
    /// Stored as the current run's result; the task is now FINISHED.
    Stored,
    /// A late result of an earlier run: kept in the task's history, the current run is
    /// untouched.
    History,
    /// The run already has its result, or was cancelled: nothing changed.
    Duplicate,
    /// No such task or run (a stray or forged message, or a deleted batch): nothing stored.
    UnknownTask,
}

/// What one write of results did.
#[derive(Debug, Default)]
pub struct Written {
    /// One verdict per result, in order.
    pub verdicts: Vec<StoreOutcome>,
    /// Tasks the crawls' results added, NOT_STARTED: to be queued.
    pub discovered: Vec<Task>,
}

/// Turns a stored crawl result's report into frontier input: a page's links one level
/// deeper; a sitemap's URLs as depth-0 seeds and its child sitemaps one nesting deeper; a
/// robots.txt's sitemaps as depth-0 sitemaps.
fn frontier_input<'a>(
    found: &mut Vec<Found<'a>>,
    crawl: &mut BTreeMap<i64, CrawlDelta>,
    task: i64,
    batch: i64,
    depth: i32,
    role: Option<TaskRole>,
    report: &'a CrawlReport,
) {
    let cd = crawl.entry(batch).or_default();
    cd.out_of_scope += report.out_of_scope as i64;
    cd.over_limit += report.dropped as i64;
    let (page_depth, sitemap_depth) = match role {
        None => (depth + 1, depth + 1),
        Some(TaskRole::Sitemap) => (0, depth + 1),
        Some(TaskRole::Robots) => (0, 0),
    };
    let link = |url: &'a String, depth: i32, role: Option<TaskRole>| Found {
        batch,
        url: url.as_str(),
        depth,
        found_on: Some(task),
        role,
    };
    if role != Some(TaskRole::Robots) {
        found.extend(report.links.iter().map(|u| link(u, page_depth, None)));
    }
    found.extend(
        report
            .sitemaps
            .iter()
            .map(|u| link(u, sitemap_depth, Some(TaskRole::Sitemap))),
    );
}

/// What the store knows of a task while judging results.
struct Current {
    status: TaskStatus,
    run: i32,
    batch: Option<i64>,
    /// Crawl tasks: the depth and role, for the links their result brings.
    depth: Option<i32>,
    role: Option<TaskRole>,
}

impl Store {
    /// Stores a batch of results in one transaction: one result per task and run, the
    /// current run's status to FINISHED with its outcome. Returns one verdict per input, in
    /// order. Duplicates, earlier runs and unknown tasks are not errors (at-least-once
    /// delivery makes them normal); whichever of a cancel and a result commits first wins.
    pub async fn store_results(&self, results: &[JobResult]) -> StoreResult<Vec<StoreOutcome>> {
        Ok(self.write_results(results, None).await?.verdicts)
    }

    /// [`store_results`](Self::store_results), also returning the tasks a crawl's results
    /// added (the frontier, DESIGN §15): the caller queues them.
    ///
    /// `known`: the writer's cache of URLs its crawls have (links in it skip the probe);
    /// what this transaction learned is added after the commit.
    pub async fn write_results(
        &self,
        results: &[JobResult],
        known: Option<&mut super::crawls::KnownUrls>,
    ) -> StoreResult<Written> {
        let mut learned: Vec<(i64, String)> = Vec::new();
        let mut verdicts = Vec::with_capacity(results.len());
        let mut discovered: Vec<Task> = Vec::new();
        if results.is_empty() {
            return Ok(Written {
                verdicts,
                discovered,
            });
        }
        let now = now_ms();
        let mut ids: Vec<i64> = results.iter().map(|r| r.task_id).collect();
        ids.sort_unstable();
        ids.dedup();
        on_pool!(self, |pool| {
            let mut tx = begin_write!(pool);
            let mut current: HashMap<i64, Current> = HashMap::with_capacity(ids.len());
            for chunk in pow2_chunks(&ids, PIECE) {
                let mut qb = QueryBuilder::new(
                    "SELECT id, task_status, run, batch_id, depth, role FROM task WHERE id IN (",
                );
                push_ids(&mut qb, chunk);
                qb.push(")");
                for row in qb.build().fetch_all(&mut *tx).await? {
                    let status: String = row.try_get("task_status")?;
                    current.insert(
                        row.try_get("id")?,
                        Current {
                            status: TaskStatus::from_str(&status).map_err(StoreError::Corrupt)?,
                            run: row.try_get("run")?,
                            batch: row.try_get("batch_id")?,
                            depth: row.try_get("depth")?,
                            role: row
                                .try_get::<Option<String>, _>("role")?
                                .and_then(|r| TaskRole::parse(&r)),
                        },
                    );
                }
            }
            // A `304 Not Modified` keeps the counts of the task's latest `ok` result before
            // its run (DESIGN §16): copied here, in this transaction, before the results
            // are judged and counted into the totals.
            let amended: Option<Vec<JobResult>> = if results.iter().any(|r| r.result.not_modified) {
                let mut own = results.to_vec();
                let wanted: Vec<(usize, i64, i32)> = own
                    .iter()
                    .enumerate()
                    .filter(|(_, r)| r.result.not_modified)
                    .map(|(i, r)| (i, r.task_id, r.run))
                    .collect();
                let mut earlier: HashMap<(i64, i32), Carried> = HashMap::new();
                // The current runs' (the usual case) in one statement per piece…
                let mut now_ids: Vec<i64> = wanted
                    .iter()
                    .filter(|(_, t, r)| current.get(t).is_some_and(|c| c.run == *r))
                    .map(|(_, t, _)| *t)
                    .collect();
                now_ids.sort_unstable();
                now_ids.dedup();
                for chunk in pow2_chunks(&now_ids, PIECE) {
                    let mut qb = QueryBuilder::new(CARRIED_NOW);
                    push_ids(&mut qb, chunk);
                    qb.push(")");
                    for row in qb.build().fetch_all(&mut *tx).await? {
                        let task: i64 = row.try_get("task_id")?;
                        let run: i32 = row.try_get("cur_run")?;
                        earlier.insert((task, run), carried_from_row!(row));
                    }
                }
                // …and a late 304 of an earlier run (rare) one by one.
                for (_, task, run) in &wanted {
                    if earlier.contains_key(&(*task, *run))
                        || current.get(task).is_none_or(|c| c.run == *run)
                    {
                        continue;
                    }
                    if let Some(row) = sqlx::query(CARRIED_BEFORE)
                        .bind(*task)
                        .bind(*run)
                        .fetch_optional(&mut *tx)
                        .await?
                    {
                        earlier.insert((*task, *run), carried_from_row!(row));
                    }
                }
                for (i, task, run) in wanted {
                    let r = &mut own[i].result;
                    match earlier.get(&(task, run)) {
                        Some(c) => c.apply(r),
                        None => {
                            r.error = Some(
                                "the server answered 304 Not Modified, but no earlier \
                                     count of this page is kept"
                                    .into(),
                            )
                        }
                    }
                }
                Some(own)
            } else {
                None
            };
            let results: &[JobResult] = amended.as_deref().unwrap_or(results);
            // Judge every result against what is (now) current.
            let mut deltas = Deltas::default();
            let mut seen: HashSet<(i64, i32)> = HashSet::new();
            let mut to_insert: Vec<(&JobResult, Outcome)> = Vec::new();
            let mut finish: HashMap<Outcome, Vec<i64>> = HashMap::new();
            let mut history_at: Vec<usize> = Vec::new();
            // Throughput rollups count each run's first result only (DESIGN §12).
            let mut rollup: Vec<RollupRow> = Vec::new();
            // One row per word/pattern of each stored current result (the filters').
            let mut count_rows: Vec<super::task_counts::CountRow<'_>> = Vec::new();
            // Crawls (DESIGN §15): the links of stored results, and their counters.
            let mut found: Vec<Found> = Vec::new();
            let mut crawl: BTreeMap<i64, CrawlDelta> = BTreeMap::new();
            for jr in results {
                let Some(cur) = current.get_mut(&jr.task_id) else {
                    verdicts.push(StoreOutcome::UnknownTask);
                    continue;
                };
                if jr.run < 1 || jr.run > cur.run {
                    verdicts.push(StoreOutcome::UnknownTask);
                    continue;
                }
                if !seen.insert((jr.task_id, jr.run)) {
                    verdicts.push(StoreOutcome::Duplicate);
                    continue;
                }
                let outcome = Outcome::of(&jr.result);
                if jr.run < cur.run {
                    history_at.push(verdicts.len());
                    verdicts.push(StoreOutcome::History);
                    to_insert.push((jr, outcome));
                    continue;
                }
                if cur.status == TaskStatus::Finished {
                    // Already has its result, or was cancelled first: the first commit won.
                    verdicts.push(StoreOutcome::Duplicate);
                    continue;
                }
                let d = deltas.of(cur.batch);
                d.moved(cur.status, TaskStatus::Finished, 1);
                *d.outcome(outcome) += 1;
                d.words += jr.result.words_count.unwrap_or(0);
                deltas.words(cur.batch, jr.result.counts.as_ref(), 1);
                cur.status = TaskStatus::Finished;
                rollup.push(RollupRow {
                    at_ms: now,
                    outcome,
                    duration_ms: jr.result.duration_ms,
                    bytes: jr.result.bytes_read,
                });
                finish.entry(outcome).or_default().push(jr.task_id);
                super::task_counts::rows_of(&mut count_rows, jr.task_id, cur.batch, &jr.result);
                to_insert.push((jr, outcome));
                verdicts.push(StoreOutcome::Stored);
                if let (Some(report), Some(batch), Some(depth)) =
                    (&jr.result.crawl, cur.batch, cur.depth)
                {
                    frontier_input(
                        &mut found, &mut crawl, jr.task_id, batch, depth, cur.role, report,
                    );
                }
            }
            let mut inserted: HashSet<(i64, i32)> = HashSet::new();
            for chunk in pow2_chunks(&to_insert, PIECE / 2) {
                let mut qb = QueryBuilder::new(
                    "INSERT INTO result (task_id, run, words_count, http_status_code, error, \
                     timestamp, final_url, content_type, charset, bytes_read, truncated, \
                     duration_ms, attempts, outcome, charset_source, attempt_log, counts, \
                     redirects, not_modified, etag, last_modified) ",
                );
                qb.push_values(chunk, |mut b, (jr, outcome)| {
                    let r = &jr.result;
                    let log = (!r.attempt_log.is_empty())
                        .then(|| serde_json::to_string(&r.attempt_log).ok())
                        .flatten();
                    b.push_bind(jr.task_id)
                        .push_bind(jr.run)
                        .push_bind(r.words_count)
                        .push_bind(r.http_status_code)
                        .push_bind(r.error.clone())
                        .push_bind(r.timestamp)
                        .push_bind(r.final_url.clone())
                        .push_bind(r.content_type.clone())
                        .push_bind(r.charset.clone())
                        .push_bind(r.bytes_read)
                        .push_bind(r.truncated)
                        .push_bind(r.duration_ms)
                        .push_bind(r.attempts)
                        .push_bind(outcome.as_str())
                        .push_bind(r.charset_source.clone())
                        .push_bind(log)
                        .push_bind(
                            r.counts
                                .as_ref()
                                .and_then(|c| serde_json::to_string(c).ok()),
                        )
                        .push_bind(super::json_list(&r.redirects))
                        .push_bind(r.not_modified)
                        .push_bind(r.etag.clone())
                        .push_bind(r.last_modified.clone());
                });
                qb.push(" ON CONFLICT (task_id, run) DO NOTHING RETURNING task_id, run");
                for row in qb.build().fetch_all(&mut *tx).await? {
                    inserted.insert((row.try_get(0)?, row.try_get(1)?));
                }
            }
            // An earlier run's result that was already in history is a duplicate.
            for i in history_at {
                let jr = &results[i];
                if !inserted.contains(&(jr.task_id, jr.run)) {
                    verdicts[i] = StoreOutcome::Duplicate;
                }
            }
            for (outcome, ids) in &finish {
                for chunk in pow2_chunks(ids, PIECE) {
                    // Guarded: only an unfinished task moves (we hold the lock, so this is
                    // what we read; the guard keeps it true even if that ever changes).
                    let mut qb =
                        QueryBuilder::new("UPDATE task SET task_status = 'FINISHED', outcome = ");
                    qb.push_bind(outcome.as_str());
                    qb.push(", updated_at = ").push_bind(now);
                    if *outcome == Outcome::Ok {
                        // The validators a later run sends (DESIGN §16): the latest ok result's.
                        qb.push(TASK_VALIDATORS);
                    }
                    qb.push(" WHERE task_status <> 'FINISHED' AND id IN (");
                    push_ids(&mut qb, chunk);
                    qb.push(")");
                    qb.build().execute(&mut *tx).await?;
                }
            }
            for chunk in count_rows.chunks(super::task_counts::CHUNK) {
                super::task_counts::insert_query(chunk)
                    .build()
                    .execute(&mut *tx)
                    .await?;
            }
            if !found.is_empty() {
                discovered = extend_frontier!(
                    tx,
                    now,
                    &mut deltas,
                    &mut crawl,
                    found,
                    known.as_deref(),
                    &mut learned
                );
            }
            apply_deltas!(tx, &deltas, now);
            apply_crawl_deltas!(tx, &crawl);
            RecordRollups::record_rollups(&mut *tx, &rollup).await?;
            // Watching (DESIGN §16): changes against the previous run, and the batch's run
            // closed when this finished the batch — in this same transaction.
            let stored: Vec<StoredCount> = results
                .iter()
                .zip(&verdicts)
                .filter(|(jr, v)| {
                    **v == StoreOutcome::Stored && inserted.contains(&(jr.task_id, jr.run))
                })
                .map(|(jr, _)| StoredCount {
                    task_id: jr.task_id,
                    batch: current.get(&jr.task_id).and_then(|c| c.batch),
                    run: jr.run,
                    words_count: jr.result.words_count,
                    counts: jr.result.counts.as_ref(),
                })
                .collect();
            RecordChanges::record_changes(&mut *tx, &stored, now).await?;
            FinishRuns::finish_runs(&mut *tx, &super::changes::touched(&deltas)).await?;
            tx.commit().await?;
        });
        if let Some(k) = known {
            let mut by_batch: std::collections::BTreeMap<i64, Vec<String>> = Default::default();
            for (b, key) in learned {
                by_batch.entry(b).or_default().push(key);
            }
            for (b, keys) in by_batch {
                k.remember(b, keys);
            }
        }
        Ok(Written {
            verdicts,
            discovered,
        })
    }
}
