//! Changes and run history in the store (… → NSQ → **DB** → poll; DESIGN §16). The DB
//! writer calls [`RecordChanges::record_changes`] in the transaction that stores a run's
//! results, so a change row exists exactly when its result does; the batch's run row is
//! closed with the batch's totals in the transaction that finishes the batch
//! ([`FinishRuns::finish_runs`]). Reads: the change list (newest first, keyset paged), a
//! task's runs, and every run of a batch for the export.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;
use sqlx::{QueryBuilder, Row};

use super::{Store, StoreResult, pow2_chunks, push_ids};
use crate::schedule::Rule;

/// A stored change event (the JSON of `GET /api/changes`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Change {
    pub id: i64,
    pub task_id: i64,
    #[schema(required = true)]
    pub batch_id: Option<i64>,
    /// The task's run whose result changed.
    pub run: i32,
    pub word: String,
    /// The count in run `run - 1`.
    pub before: i64,
    /// The count in run `run`.
    pub after: i64,
    /// When the change was stored (epoch ms).
    pub at: i64,
    /// The batch rule it crossed (None: a plain difference).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// The task's address (for pages and the feed).
    #[serde(skip)]
    pub address: String,
}

/// A newly stored current-run result, as change detection needs it.
pub(crate) struct StoredCount<'a> {
    pub task_id: i64,
    pub batch: Option<i64>,
    pub run: i32,
    pub words_count: Option<i64>,
    pub counts: Option<&'a BTreeMap<String, i64>>,
}

/// One run of a task, as `GET /api/tasks/{id}/history` and the trend show it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct TaskRun {
    pub run: i32,
    /// When its result was stored (the result's timestamp).
    pub finished_at: i64,
    pub counts: BTreeMap<String, i64>,
    #[schema(required = true)]
    pub words_count: Option<i64>,
    #[schema(required = true)]
    pub http_status_code: Option<i32>,
    #[schema(required = true)]
    pub outcome: Option<String>,
    /// The page answered 304 Not Modified and the previous counts were kept.
    pub not_modified: bool,
}

/// One row of the runs export: a task's run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RunRow {
    pub task_id: i64,
    pub address: String,
    pub run: i32,
    pub finished_at: i64,
    pub words_count: Option<i64>,
    pub counts: BTreeMap<String, i64>,
    pub http_status_code: Option<i32>,
    pub outcome: Option<String>,
}

/// The counts of a result: its per-word map, or just its first word's count.
fn count_map(
    word: &str,
    words_count: Option<i64>,
    counts: Option<BTreeMap<String, i64>>,
) -> Option<BTreeMap<String, i64>> {
    match counts {
        Some(c) if !c.is_empty() => Some(c),
        _ => words_count.map(|n| BTreeMap::from([(word.to_string(), n)])),
    }
}

/// The change rows a result implies against its previous run. Without rules every word
/// whose count differs is a change; with rules only a crossing is (rules narrow the
/// alerts to what the person asked for), named by the first rule crossed. A run without a
/// count on either side (a failed fetch) implies no change: "the page failed" is an
/// outcome, not a count.
pub(crate) fn diff(
    before: &BTreeMap<String, i64>,
    after: &BTreeMap<String, i64>,
    rules: &[Rule],
) -> Vec<(String, i64, i64, Option<String>)> {
    let mut out = Vec::new();
    for (word, &a) in after {
        let Some(&b) = before.get(word) else { continue };
        if rules.is_empty() {
            if a != b {
                out.push((word.clone(), b, a, None));
            }
        } else if let Some(r) = rules.iter().find(|r| r.crossed(b, a)) {
            out.push((word.clone(), b, a, Some(r.to_string())));
        }
    }
    out
}

/// The `task.changed` webhook data of an inserted `change` row: the row as
/// `GET /api/changes` shows it (crate::store::deliveries is the outbox).
macro_rules! change_data {
    ($row:expr) => {{
        let row = &$row;
        serde_json::json!({
            "change": {
                "id": row.try_get::<i64, _>("id")?,
                "task_id": row.try_get::<i64, _>("task_id")?,
                "batch_id": row.try_get::<Option<i64>, _>("batch_id")?,
                "run": row.try_get::<i32, _>("run")?,
                "word": row.try_get::<String, _>("word")?,
                "before": row.try_get::<Option<i64>, _>("before")?,
                "after": row.try_get::<Option<i64>, _>("after")?,
                "at": row.try_get::<i64, _>("at")?,
                "rule": row.try_get::<Option<String>, _>("rule")?,
            }
        })
    }};
}

/// Records the changes of newly stored results inside the writer's open transaction.
macro_rules! record_changes_on {
    ($conn:expr, $stored:expr, $now:expr) => {{
        let stored: &[StoredCount] = $stored;
        let now: i64 = $now;
        let later: Vec<&StoredCount> = stored.iter().filter(|s| s.run >= 2).collect();
        if later.is_empty() {
            return Ok(());
        }
        let ids: Vec<i64> = {
            let mut v: Vec<i64> = later.iter().map(|s| s.task_id).collect();
            v.sort_unstable();
            v.dedup();
            v
        };
        // The previous run of each task (the task's current run is the stored one).
        let mut prev: HashMap<i64, (String, BTreeMap<String, i64>)> = HashMap::new();
        let mut words: HashMap<i64, String> = HashMap::new();
        for chunk in pow2_chunks(&ids, 512) {
            let mut qb = QueryBuilder::new(
                "SELECT t.id, t.word, r.words_count, r.counts FROM task t \
                 LEFT JOIN result r ON r.task_id = t.id AND r.run = t.run - 1 WHERE t.id IN (",
            );
            push_ids(&mut qb, chunk);
            qb.push(")");
            for row in qb.build().fetch_all(&mut *$conn).await? {
                let id: i64 = row.try_get("id")?;
                let word: String = row.try_get("word")?;
                let counts = super::json_column(row.try_get("counts")?, "counts")?;
                if let Some(m) = count_map(&word, row.try_get("words_count")?, counts) {
                    prev.insert(id, (word.clone(), m));
                }
                words.insert(id, word);
            }
        }
        let mut batches: Vec<i64> = later.iter().filter_map(|s| s.batch).collect();
        batches.sort_unstable();
        batches.dedup();
        let mut rules: HashMap<i64, Vec<Rule>> = HashMap::new();
        for chunk in pow2_chunks(&batches, 512) {
            let mut qb = QueryBuilder::new(
                "SELECT id, change_rules FROM batch WHERE change_rules IS NOT NULL AND id IN (",
            );
            push_ids(&mut qb, chunk);
            qb.push(")");
            for row in qb.build().fetch_all(&mut *$conn).await? {
                let list: Vec<String> =
                    super::json_column(row.try_get("change_rules")?, "change_rules")?
                        .unwrap_or_default();
                // Rules were checked when set; one that no longer reads is ignored.
                let parsed: Vec<Rule> = list.iter().filter_map(|r| r.parse().ok()).collect();
                rules.insert(row.try_get("id")?, parsed);
            }
        }
        let mut rows: Vec<(i64, Option<i64>, i32, String, i64, i64, Option<String>)> = Vec::new();
        for s in later {
            let Some((_, before)) = prev.get(&s.task_id) else {
                continue;
            };
            let Some(word) = words.get(&s.task_id) else {
                continue;
            };
            let Some(after) = count_map(word, s.words_count, s.counts.cloned()) else {
                continue;
            };
            let r = s
                .batch
                .and_then(|b| rules.get(&b))
                .map(Vec::as_slice)
                .unwrap_or(&[]);
            for (w, b, a, rule) in diff(before, &after, r) {
                rows.push((s.task_id, s.batch, s.run, w, b, a, rule));
            }
        }
        // The `task.changed` events of the rows, for the webhook outbox (same transaction).
        let mut events: Vec<(i64, serde_json::Value)> = Vec::new();
        for chunk in pow2_chunks(&rows, 256) {
            let mut qb = QueryBuilder::new(
                "INSERT INTO change (task_id, batch_id, run, word, before, after, at, rule) ",
            );
            qb.push_values(chunk, |mut b, r| {
                b.push_bind(r.0)
                    .push_bind(r.1)
                    .push_bind(r.2)
                    .push_bind(r.3.clone())
                    .push_bind(r.4)
                    .push_bind(r.5)
                    .push_bind(now)
                    .push_bind(r.6.clone());
            });
            qb.push(" RETURNING id, task_id, batch_id, run, word, before, after, at, rule");
            for row in qb.build().fetch_all(&mut *$conn).await? {
                if let Some(batch) = row.try_get::<Option<i64>, _>("batch_id")? {
                    events.push((batch, change_data!(row)));
                }
            }
        }
        super::deliveries::Outbox::task_changes(&mut *$conn, &events, now).await?;
        if !rows.is_empty() {
            metrics::counter!("wordtally_changes_total").increment(rows.len() as u64);
        }
        Ok(())
    }};
}

/// Closes the current run of each of `batches` that just finished: its finish time and
/// the batch's totals (creating the row of a submitted batch's first run). A run whose
/// tasks are still being handed their new run (cursor set) is not finished yet.
macro_rules! finish_runs_on {
    ($conn:expr, $batches:expr) => {{
        let batches: &[i64] = $batches;
        for chunk in pow2_chunks(batches, 512) {
            let mut qb = QueryBuilder::new(
                "INSERT INTO batch_run (batch_id, run, trigger, started_at, finished_at, \
                 words_total, word_totals) SELECT id, run, 'submit', created_at, finished_at, \
                 words_total, word_totals FROM batch WHERE finished_at IS NOT NULL AND id IN (",
            );
            push_ids(&mut qb, chunk);
            qb.push(
                ") ON CONFLICT (batch_id, run) DO UPDATE SET finished_at = excluded.finished_at, \
                 words_total = excluded.words_total, word_totals = excluded.word_totals \
                 WHERE batch_run.finished_at IS NULL AND batch_run.cursor IS NULL",
            );
            qb.build().execute(&mut *$conn).await?;
        }
        Ok(())
    }};
}

/// Opens a 'retry' run for each of `batches` that had finished (a person retried some of
/// its tasks): the batch's next run, so the trend shows the total after the retry.
macro_rules! open_retry_runs_on {
    ($conn:expr, $batches:expr, $now:expr) => {{
        let batches: &[i64] = $batches;
        let now: i64 = $now;
        for chunk in pow2_chunks(batches, 512) {
            let mut qb = QueryBuilder::new(
                "UPDATE batch SET run = run + 1 WHERE finished_at IS NOT NULL AND id IN (",
            );
            push_ids(&mut qb, chunk);
            qb.push(") RETURNING id, run");
            let opened: Vec<(i64, i32)> = qb
                .build()
                .fetch_all(&mut *$conn)
                .await?
                .iter()
                .map(|r| Ok::<_, sqlx::Error>((r.try_get(0)?, r.try_get(1)?)))
                .collect::<Result<_, _>>()?;
            if opened.is_empty() {
                continue;
            }
            let mut qb =
                QueryBuilder::new("INSERT INTO batch_run (batch_id, run, trigger, started_at) ");
            qb.push_values(&opened, |mut b, (batch, run)| {
                b.push_bind(*batch)
                    .push_bind(*run)
                    .push_bind("retry")
                    .push_bind(now);
            });
            qb.push(" ON CONFLICT (batch_id, run) DO NOTHING");
            qb.build().execute(&mut *$conn).await?;
        }
        Ok(())
    }};
}

/// Lets `on_pool!` bodies call one name for both databases.
pub(crate) trait RecordChanges {
    async fn record_changes(&mut self, stored: &[StoredCount<'_>], now: i64) -> StoreResult<()>;
}

impl RecordChanges for sqlx::PgConnection {
    async fn record_changes(&mut self, stored: &[StoredCount<'_>], now: i64) -> StoreResult<()> {
        record_changes_on!(self, stored, now)
    }
}

impl RecordChanges for sqlx::SqliteConnection {
    async fn record_changes(&mut self, stored: &[StoredCount<'_>], now: i64) -> StoreResult<()> {
        record_changes_on!(self, stored, now)
    }
}

/// Closing and opening batch runs, for both databases.
pub(crate) trait FinishRuns {
    async fn finish_runs(&mut self, batches: &[i64]) -> StoreResult<()>;
    async fn open_retry_runs(&mut self, batches: &[i64], now: i64) -> StoreResult<()>;
}

impl FinishRuns for sqlx::PgConnection {
    async fn finish_runs(&mut self, batches: &[i64]) -> StoreResult<()> {
        finish_runs_on!(self, batches)
    }
    async fn open_retry_runs(&mut self, batches: &[i64], now: i64) -> StoreResult<()> {
        open_retry_runs_on!(self, batches, now)
    }
}

impl FinishRuns for sqlx::SqliteConnection {
    async fn finish_runs(&mut self, batches: &[i64]) -> StoreResult<()> {
        finish_runs_on!(self, batches)
    }
    async fn open_retry_runs(&mut self, batches: &[i64], now: i64) -> StoreResult<()> {
        open_retry_runs_on!(self, batches, now)
    }
}

/// The batches a transaction's deltas touched (for `finish_runs`).
pub(crate) fn touched(deltas: &super::Deltas) -> Vec<i64> {
    deltas
        .by_batch
        .iter()
        .filter(|(b, d)| b.is_some() && d.finished > 0)
        .filter_map(|(b, _)| *b)
        .collect()
}

impl Store {
    /// Changes newest first: of one batch or all, older than `before` (an id), at most
    /// `limit`.
    pub async fn list_changes(
        &self,
        batch: Option<i64>,
        before: Option<i64>,
        limit: i64,
    ) -> StoreResult<Vec<Change>> {
        let mut sql = String::from(
            "SELECT c.id, c.task_id, c.batch_id, c.run, c.word, c.before, c.after, c.at, \
             c.rule, t.address FROM change c JOIN task t ON t.id = c.task_id WHERE 1 = 1",
        );
        if batch.is_some() {
            sql.push_str(" AND c.batch_id = $1");
        } else {
            sql.push_str(" AND ($1 IS NULL OR c.batch_id = $1)");
        }
        sql.push_str(" AND c.id < $2 ORDER BY c.id DESC LIMIT $3");
        on_pool!(self, |pool| {
            let rows = sqlx::query(&sql)
                .bind(batch)
                .bind(before.unwrap_or(i64::MAX))
                .bind(limit)
                .fetch_all(pool)
                .await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in &rows {
                out.push(Change {
                    id: r.try_get("id")?,
                    task_id: r.try_get("task_id")?,
                    batch_id: r.try_get("batch_id")?,
                    run: r.try_get("run")?,
                    word: r.try_get("word")?,
                    before: r.try_get("before")?,
                    after: r.try_get("after")?,
                    at: r.try_get("at")?,
                    rule: r.try_get("rule")?,
                    address: r.try_get("address")?,
                });
            }
            Ok(out)
        })
    }

    /// The newest change id (of a batch or all): the change pages' poll version.
    pub async fn latest_change(&self, batch: Option<i64>) -> StoreResult<i64> {
        on_pool!(self, |pool| {
            let v: Option<i64> = sqlx::query_scalar(
                "SELECT MAX(id) FROM change WHERE ($1 IS NULL OR batch_id = $1)",
            )
            .bind(batch)
            .fetch_one(pool)
            .await?;
            Ok(v.unwrap_or(0))
        })
    }

    /// Every run of a task that has a result, oldest first (at most the last 500).
    pub async fn task_runs(&self, task_id: i64) -> StoreResult<Vec<TaskRun>> {
        on_pool!(self, |pool| {
            let rows = sqlx::query(
                "SELECT r.run, r.timestamp, r.words_count, r.counts, r.http_status_code, \
                 r.outcome, r.not_modified, t.word FROM result r JOIN task t ON t.id = r.task_id \
                 WHERE r.task_id = $1 ORDER BY r.run DESC LIMIT 500",
            )
            .bind(task_id)
            .fetch_all(pool)
            .await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in rows.iter().rev() {
                let word: String = r.try_get("word")?;
                let words_count: Option<i64> = r.try_get("words_count")?;
                let counts = super::json_column(r.try_get("counts")?, "counts")?;
                out.push(TaskRun {
                    run: r.try_get("run")?,
                    finished_at: r.try_get("timestamp")?,
                    counts: count_map(&word, words_count, counts).unwrap_or_default(),
                    words_count,
                    http_status_code: r.try_get("http_status_code")?,
                    outcome: r.try_get("outcome")?,
                    // A 304 whose counts were carried over (conditional request, §16).
                    not_modified: r.try_get("not_modified")?,
                });
            }
            Ok(out)
        })
    }

    /// A page of a batch's results over every run, by (task id, run), after `after`
    /// (task id, run): the runs export walks these.
    pub async fn batch_run_rows(
        &self,
        batch_id: i64,
        after: (i64, i32),
        limit: i64,
    ) -> StoreResult<Vec<RunRow>> {
        on_pool!(self, |pool| {
            let rows = sqlx::query(
                "SELECT t.id, t.address, t.word, r.run, r.timestamp, r.words_count, r.counts, \
                 r.http_status_code, r.outcome FROM task t JOIN result r ON r.task_id = t.id \
                 WHERE t.batch_id = $1 AND (t.id > $2 OR (t.id = $2 AND r.run > $3)) \
                 ORDER BY t.id, r.run LIMIT $4",
            )
            .bind(batch_id)
            .bind(after.0)
            .bind(after.1)
            .bind(limit)
            .fetch_all(pool)
            .await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in &rows {
                let word: String = r.try_get("word")?;
                let words_count: Option<i64> = r.try_get("words_count")?;
                let counts = super::json_column(r.try_get("counts")?, "counts")?;
                out.push(RunRow {
                    task_id: r.try_get("id")?,
                    address: r.try_get("address")?,
                    run: r.try_get("run")?,
                    finished_at: r.try_get("timestamp")?,
                    counts: count_map(&word, words_count, counts).unwrap_or_default(),
                    words_count,
                    http_status_code: r.try_get("http_status_code")?,
                    outcome: r.try_get("outcome")?,
                });
            }
            Ok(out)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(v: &[(&str, i64)]) -> BTreeMap<String, i64> {
        v.iter().map(|(w, n)| (w.to_string(), *n)).collect()
    }

    #[test]
    fn differences_without_rules() {
        let d = diff(&m(&[("a", 1), ("b", 2)]), &m(&[("a", 1), ("b", 3)]), &[]);
        assert_eq!(d, vec![("b".to_string(), 2, 3, None)]);
    }

    #[test]
    fn rules_narrow_to_crossings() {
        let rules = [Rule::Above(10), Rule::BecomesZero];
        let d = diff(
            &m(&[("a", 5), ("b", 3), ("c", 11)]),
            &m(&[("a", 12), ("b", 0), ("c", 20)]),
            &rules,
        );
        assert_eq!(
            d,
            vec![
                ("a".to_string(), 5, 12, Some("> 10".to_string())),
                ("b".to_string(), 3, 0, Some("becomes 0".to_string())),
            ]
        );
    }
}
