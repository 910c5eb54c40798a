//! Batches in the store (submit → … → DB → **poll**): every submission's totals, kept in
//! the same transactions as its tasks (see `apply_deltas!`), so the list and a batch's
//! progress are one row each; deletion and retention in bounded chunks, with the totals
//! (the batch's and `task_stats`) following every chunk.

use std::str::FromStr;

use serde::Serialize;
use sqlx::{QueryBuilder, Row};

use super::{CHUNK, Deltas, Store, StoreError, StoreResult, tasks::parse_outcome};
use crate::count::{CountOptions, Scope};
use crate::model::{TaskStatus, now_ms};

/// A batch as the pages and the API show it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Batch {
    pub id: i64,
    #[schema(required = true)]
    pub label: Option<String>,
    pub created_at: i64,
    #[serde(skip)]
    pub options: CountOptions,
    pub total: i64,
    pub not_started: i64,
    pub pending: i64,
    pub finished: i64,
    pub ok: i64,
    pub http_error: i64,
    pub failed: i64,
    pub truncated: i64,
    pub cancelled: i64,
    /// Crawl pages robots.txt disallowed (outcome `skipped`).
    pub skipped: i64,
    pub words_total: i64,
    /// Change counter (polls answer 204 while it is unchanged).
    #[serde(skip)]
    pub version: i64,
    pub updated_at: i64,
    /// When its last unfinished task finished; None while any is unfinished.
    #[schema(required = true)]
    pub finished_at: Option<i64>,
    /// Who submitted it ("account NAME", "token NAME", "anonymous (ADDRESS)").
    pub created_by: Option<String>,
    /// Sum of the current runs' counts per word (DESIGN §14).
    pub word_totals: std::collections::BTreeMap<String, i64>,
    /// `list` (the addresses a person gave) or `crawl` (DESIGN §15).
    #[schema(value_type = String, example = "list")]
    pub kind: &'static str,
    /// A crawl's progress and rules; absent for a list.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crawl: Option<CrawlSummary>,
}

/// What a crawl found so far (kept in the same transactions as its tasks, never counted).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct CrawlSummary {
    /// URLs the crawl stored as tasks (starts, sitemap seeds and links found).
    pub discovered: i64,
    /// Tasks that were fetched (ok, HTTP error, failed, truncated).
    pub fetched: i64,
    /// Pages robots.txt disallowed (never fetched).
    pub skipped: i64,
    /// Links outside the crawl's scope, summed over the pages (distinct per page).
    pub out_of_scope: i64,
    /// Links left out by a limit: max_pages, max_depth, links per page, URL length.
    pub over_limit: i64,
    pub max_depth_seen: i64,
    /// Pages stored per depth (`"0"`, `"1"`, …).
    pub pages_per_depth: std::collections::BTreeMap<String, i64>,
    /// The crawl as submitted (start, sitemaps) with its rules, defaults filled in.
    #[schema(value_type = Object)]
    pub rules: serde_json::Value,
}

impl Batch {
    /// Finished share in whole percent (100 only when everything finished).
    pub fn percent(&self) -> i64 {
        if self.total == 0 {
            return 100;
        }
        let p = self.finished * 100 / self.total;
        if self.finished < self.total {
            p.min(99)
        } else {
            p
        }
    }
    pub fn unfinished(&self) -> i64 {
        self.not_started + self.pending
    }
}

/// A page of the batch list, newest first (keyset paging by id).
#[derive(Clone, Debug, Default)]
pub struct BatchFilter {
    pub before: Option<i64>,
    pub limit: i64,
}

/// The shape of a batch's current counts, read from its own rows only (bounded by the
/// batch's size, through the `task_batch_id` index).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct BatchDistribution {
    pub counted: i64,
    pub min: Option<i64>,
    pub median: Option<i64>,
    pub max: Option<i64>,
    /// (HTTP status or None for no response, tasks), most frequent first.
    pub http_statuses: Vec<(Option<i32>, i64)>,
}

const BATCH_COLUMNS: &str = "id, label, created_at, word, case_sensitive, whole_word, scope, \
     total, not_started, pending, finished, ok, http_error, failed, truncated, cancelled, \
     skipped, words_total, version, updated_at, finished_at, created_by, words, word_totals, \
     kind, crawl_rules, out_of_scope, over_limit, max_depth_seen, depth_counts, regions_patterns";

macro_rules! batch_from_row {
    ($row:expr) => {{
        let row = $row;
        let scope: String = row.try_get("scope")?;
        let extra = super::RegionsPatterns::read(row.try_get("regions_patterns")?)?;
        let mut b = Batch {
            id: row.try_get("id")?,
            label: row.try_get("label")?,
            created_at: row.try_get("created_at")?,
            options: CountOptions {
                word: row.try_get("word")?,
                case_sensitive: row.try_get("case_sensitive")?,
                whole_word: row.try_get("whole_word")?,
                scope: Scope::from_str(&scope).map_err(StoreError::Corrupt)?,
                words: super::json_column(row.try_get("words")?, "words")?.unwrap_or_default(),
                within: extra.within,
                outside: extra.outside,
                patterns: extra.patterns,
            },
            total: row.try_get("total")?,
            not_started: row.try_get("not_started")?,
            pending: row.try_get("pending")?,
            finished: row.try_get("finished")?,
            ok: row.try_get("ok")?,
            http_error: row.try_get("http_error")?,
            failed: row.try_get("failed")?,
            truncated: row.try_get("truncated")?,
            cancelled: row.try_get("cancelled")?,
            skipped: row.try_get("skipped")?,
            words_total: row.try_get("words_total")?,
            version: row.try_get("version")?,
            updated_at: row.try_get("updated_at")?,
            finished_at: row.try_get("finished_at")?,
            created_by: row.try_get("created_by")?,
            word_totals: super::json_column(row.try_get("word_totals")?, "word_totals")?
                .unwrap_or_default(),
            kind: if row.try_get::<String, _>("kind")? == "crawl" {
                "crawl"
            } else {
                "list"
            },
            crawl: None,
        };
        if b.kind == "crawl" {
            let fetched = b.ok + b.http_error + b.failed + b.truncated;
            b.crawl = Some(CrawlSummary {
                discovered: b.total,
                fetched,
                skipped: b.skipped,
                out_of_scope: row.try_get("out_of_scope")?,
                over_limit: row.try_get("over_limit")?,
                max_depth_seen: row.try_get::<i32, _>("max_depth_seen")? as i64,
                pages_per_depth: super::json_column(row.try_get("depth_counts")?, "depth_counts")?
                    .unwrap_or_default(),
                rules: super::json_column(row.try_get("crawl_rules")?, "crawl_rules")?
                    .unwrap_or(serde_json::Value::Null),
            });
        }
        b
    }};
}

impl Store {
    /// One batch (one row).
    pub async fn get_batch(&self, id: i64) -> StoreResult<Option<Batch>> {
        let sql = format!("SELECT {BATCH_COLUMNS} FROM batch WHERE id = $1");
        on_pool!(self, |pool| {
            match sqlx::query(&sql).bind(id).fetch_optional(pool).await? {
                None => Ok(None),
                Some(row) => Ok(Some(batch_from_row!(&row))),
            }
        })
    }

    /// A page of batches, newest first.
    pub async fn list_batches(&self, f: &BatchFilter) -> StoreResult<Vec<Batch>> {
        let limit = f.limit.clamp(1, 500);
        on_pool!(self, |pool| {
            let mut qb =
                QueryBuilder::new(format!("SELECT {BATCH_COLUMNS} FROM batch WHERE 1 = 1"));
            if let Some(b) = f.before {
                qb.push(" AND id < ").push_bind(b);
            }
            qb.push(" ORDER BY id DESC LIMIT ").push_bind(limit);
            let rows = qb.build().fetch_all(pool).await?;
            let mut out = Vec::with_capacity(rows.len());
            for row in &rows {
                out.push(batch_from_row!(row));
            }
            Ok(out)
        })
    }

    /// Min / median / max of the batch's current counts and its HTTP status breakdown.
    pub async fn distribution(&self, batch: i64) -> StoreResult<BatchDistribution> {
        let mut d = BatchDistribution::default();
        on_pool!(self, |pool| {
            let row = sqlx::query(
                "SELECT COUNT(r.words_count) AS n, MIN(r.words_count) AS lo, \
                 MAX(r.words_count) AS hi FROM task t \
                 JOIN result r ON r.task_id = t.id AND r.run = t.run \
                 WHERE t.batch_id = $1",
            )
            .bind(batch)
            .fetch_one(pool)
            .await?;
            d.counted = row.try_get("n")?;
            d.min = row.try_get("lo")?;
            d.max = row.try_get("hi")?;
            if d.counted > 0 {
                // The lower median, by offset: portable and bounded by the batch.
                d.median = sqlx::query_scalar(
                    "SELECT r.words_count FROM task t \
                     JOIN result r ON r.task_id = t.id AND r.run = t.run \
                     WHERE t.batch_id = $1 AND r.words_count IS NOT NULL \
                     ORDER BY r.words_count LIMIT 1 OFFSET $2",
                )
                .bind(batch)
                .bind((d.counted - 1) / 2)
                .fetch_optional(pool)
                .await?;
            }
            let rows = sqlx::query(
                "SELECT r.http_status_code AS code, COUNT(*) AS n FROM task t \
                 JOIN result r ON r.task_id = t.id AND r.run = t.run \
                 WHERE t.batch_id = $1 GROUP BY r.http_status_code ORDER BY n DESC, code",
            )
            .bind(batch)
            .fetch_all(pool)
            .await?;
            for row in rows {
                d.http_statuses
                    .push((row.try_get("code")?, row.try_get("n")?));
            }
        });
        Ok(d)
    }

    /// Deletes a batch with its tasks and results, a thousand tasks per transaction so the
    /// database is never locked for long; the totals follow each chunk. Returns false if
    /// there was no such batch.
    pub async fn delete_batch(&self, id: i64) -> StoreResult<bool> {
        self.delete_batch_by(id, "system").await
    }

    /// `delete_batch`, recording who deleted it in the audit log (which outlives it).
    pub async fn delete_batch_by(&self, id: i64, who: &str) -> StoreResult<bool> {
        if self.get_batch(id).await?.is_none() {
            return Ok(false);
        }
        loop {
            let now = now_ms();
            let deleted = on_pool!(self, |pool| {
                let mut tx = begin_write!(pool);
                let rows = sqlx::query(
                    "DELETE FROM task WHERE id IN \
                     (SELECT id FROM task WHERE batch_id = $1 ORDER BY id LIMIT $2) \
                     RETURNING task_status, outcome, run, id",
                )
                .bind(id)
                .bind(CHUNK as i64)
                .fetch_all(&mut *tx)
                .await?;
                let mut deltas = Deltas::default();
                for row in &rows {
                    let status: String = row.try_get("task_status")?;
                    let status = TaskStatus::from_str(&status).map_err(StoreError::Corrupt)?;
                    let d = deltas.of(Some(id));
                    *d.slot(status) -= 1;
                    d.total -= 1;
                    if let Some(o) = parse_outcome(row.try_get("outcome")?)? {
                        *d.outcome(o) -= 1;
                    }
                }
                apply_deltas!(tx, &deltas, now);
                tx.commit().await?;
                rows.len()
            });
            if deleted < CHUNK {
                break;
            }
        }
        on_pool!(self, |pool| {
            let mut tx = begin_write!(pool);
            sqlx::query("DELETE FROM batch WHERE id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "INSERT INTO audit (at, who, action, batch_id) VALUES ($1, $2, 'delete', $3)",
            )
            .bind(now_ms())
            .bind(who)
            .bind(id)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
        });
        Ok(true)
    }

    /// Up to `limit` batches that finished before `cutoff` (epoch ms), oldest first.
    pub async fn batches_finished_before(&self, cutoff: i64, limit: i64) -> StoreResult<Vec<i64>> {
        on_pool!(self, |pool| {
            let ids: Vec<i64> = sqlx::query_scalar(
                "SELECT id FROM batch WHERE finished_at IS NOT NULL AND finished_at < $1 \
                 ORDER BY finished_at LIMIT $2",
            )
            .bind(cutoff)
            .bind(limit)
            .fetch_all(pool)
            .await?;
            Ok(ids)
        })
    }
}
