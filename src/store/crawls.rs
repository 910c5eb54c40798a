//! Crawls in the store (submit → … → NSQ → **DB**, DESIGN §15): a crawl's batch and seeds,
//! and the **frontier**: the links a stored result brings become new tasks of the crawl in
//! the DB writer's own transaction.
//!
//! Deduplication is the unique index `task_crawl_url (batch_id, url_key)`: the frontier
//! inserts a result batch's links with `ON CONFLICT DO NOTHING`, and what comes back is
//! what was new. Only when the links might not all fit under `max_pages` does it first ask
//! which of them the crawl has (one index probe per link), so that the new ones are kept
//! and only the rest counts over the limit. Its cost follows the number of links in the
//! results, never the size of the crawl. Between transactions the DB writer remembers a
//! bounded set of URLs its crawls have (`KnownUrls`), so that links seen again — most of a
//! real site's — skip the database. A redelivered result is judged a duplicate before it
//! gets here, and its links would be known anyway.
//!
//! Limits end with a counted reason, in the batch's row: links past `max_pages` or
//! `max_depth` (and sitemaps nested too deep) add to `over_limit`; the worker's report adds
//! its `out_of_scope` and `dropped` counts.

use std::collections::{BTreeMap, HashMap};

/// The hasher of the frontier's sets of URLs (hashbrown's; SipHash's resistance to chosen
/// keys is not needed for sets bounded per transaction or by [`KnownUrls::CAP`]).
pub(crate) type FastHash = foldhash::fast::RandomState;

use serde::Serialize;
use sqlx::{QueryBuilder, Row};

use std::str::FromStr;

use super::{Store, StoreError, StoreResult};
use crate::count::CountOptions;
use crate::crawl::rules::CrawlRules;
use crate::model::{CrawlJob, Job, Task, TaskRole, now_ms};

/// How deep sitemap indexes may nest (an index of indexes of sitemaps is depth 2).
pub const MAX_SITEMAP_NESTING: i32 = 3;

/// A crawl as stored with its batch: what was submitted, with the rules' defaults filled.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct StoredCrawl {
    pub start: Vec<String>,
    /// Sitemap addresses given, or `["auto"]`.
    pub sitemaps: Vec<String>,
    #[serde(flatten)]
    pub rules: CrawlRules,
}

/// A seed of a new crawl: a start page, a sitemap, or a robots.txt to read for sitemaps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seed {
    pub url: String,
    pub role: Option<TaskRole>,
}

/// A link to add to a crawl (the frontier's input, borrowed from the results of one write).
#[derive(Clone, Debug)]
pub(crate) struct Found<'a> {
    pub batch: i64,
    pub url: &'a str,
    pub depth: i32,
    pub found_on: Option<i64>,
    pub role: Option<TaskRole>,
}

/// URLs the DB writer knows its crawls have (committed rows), so that a link seen again
/// skips its index probe: on a real site most links of a page point to pages the crawl
/// found long ago (BENCHMARKS "Production-path crawl": 44 links a page, each probed, were
/// most of Postgres's work). Exact keys, never a hash: a false "known" would drop a page.
/// Bounded: at [`KnownUrls::CAP`] keys it starts over, and a forgotten key only costs its
/// probe again. One per DB writer (its database's batch ids); filled only after a commit.
#[derive(Debug, Default)]
pub struct KnownUrls {
    by_batch: std::collections::HashMap<i64, std::collections::HashSet<Box<str>, FastHash>>,
    len: usize,
}

impl KnownUrls {
    /// Keys kept at most (about 60 bytes each with the set's overhead: ~12 MiB).
    pub const CAP: usize = 200_000;

    pub fn contains(&self, batch: i64, key: &str) -> bool {
        self.by_batch.get(&batch).is_some_and(|s| s.contains(key))
    }

    /// Records committed keys of `batch`.
    pub fn remember(&mut self, batch: i64, keys: impl IntoIterator<Item = String>) {
        for k in keys {
            if self.len >= Self::CAP {
                self.by_batch.clear();
                self.len = 0;
            }
            if self
                .by_batch
                .entry(batch)
                .or_default()
                .insert(k.into_boxed_str())
            {
                self.len += 1;
            }
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Per-batch counters the frontier adds (beside the task totals in `Deltas`).
#[derive(Clone, Debug, Default)]
pub(crate) struct CrawlDelta {
    pub out_of_scope: i64,
    pub over_limit: i64,
    pub max_depth: i32,
    pub depths: BTreeMap<String, i64>,
}

/// A crawl task to insert: `(url, depth, found_on, role)`; the URL is its key too.
pub(crate) type CrawlRow<'a> = (&'a str, i32, Option<i64>, Option<TaskRole>);

/// The frontier's two statements, written per database like `tasks::Bulk`: Postgres binds
/// whole columns as arrays (`UNNEST`: one parse and a handful of binds for a thousand
/// links, where a multi-row VALUES of 17 binds a row spent the writer's time parsing and
/// binding 4,352 parameters per 256 rows, BENCHMARKS "Production-path crawl"); SQLite,
/// which has no arrays, takes multi-row VALUES in a few statement shapes.
pub(crate) trait FrontierSql: sqlx::Database {
    /// Which of `keys` the crawl `batch` has (any order).
    ///
    /// Written as a correlated subquery per key on purpose: `batch_id = $1 AND url_key IN
    /// (…)` let Postgres plan `batch_id` alone as the index condition and test `url_key` as
    /// a filter when the table was small or not analysed yet (a fresh database), and the
    /// prepared statement kept that plan — every probe then read the whole crawl (1.7 s
    /// per 512 links at 60,000 tasks, BENCHMARKS "Production-path crawl"). A subquery with
    /// both columns equal can only be the unique index.
    async fn known_keys(
        tx: &mut sqlx::Transaction<'_, Self>,
        batch: i64,
        keys: &[&str],
    ) -> Result<Vec<String>, sqlx::Error>;

    /// Inserts `rows` as NOT_STARTED tasks of `batch` counting `options`, skipping URLs the
    /// crawl has (insert-or-ignore on `task_crawl_url`); `(id, url_key)` of the new ones.
    async fn insert_new(
        tx: &mut sqlx::Transaction<'_, Self>,
        now: i64,
        batch: i64,
        options: &CountOptions,
        rows: &[CrawlRow<'_>],
    ) -> Result<Vec<(i64, String)>, sqlx::Error>;
}

impl FrontierSql for sqlx::Postgres {
    async fn known_keys(
        tx: &mut sqlx::Transaction<'_, Self>,
        batch: i64,
        keys: &[&str],
    ) -> Result<Vec<String>, sqlx::Error> {
        let mut out = Vec::new();
        for chunk in keys.chunks(super::CHUNK) {
            let rows: Vec<Option<String>> = sqlx::query_scalar(
                "SELECT (SELECT t.url_key FROM task t WHERE t.batch_id = $1 AND t.url_key = u.k) \
                 FROM UNNEST($2::text[]) AS u (k)",
            )
            .bind(batch)
            .bind(chunk)
            .fetch_all(&mut **tx)
            .await?;
            out.extend(rows.into_iter().flatten());
        }
        Ok(out)
    }

    async fn insert_new(
        tx: &mut sqlx::Transaction<'_, Self>,
        now: i64,
        batch: i64,
        options: &CountOptions,
        rows: &[CrawlRow<'_>],
    ) -> Result<Vec<(i64, String)>, sqlx::Error> {
        let mut out = Vec::with_capacity(rows.len());
        for chunk in rows.chunks(super::CHUNK) {
            let url: Vec<&str> = chunk.iter().map(|r| r.0).collect();
            let depth: Vec<i32> = chunk.iter().map(|r| r.1).collect();
            let found_on: Vec<Option<i64>> = chunk.iter().map(|r| r.2).collect();
            let role: Vec<Option<&str>> = chunk.iter().map(|r| r.3.map(TaskRole::as_str)).collect();
            let new: Vec<(i64, String)> = sqlx::query_as(
                "INSERT INTO task (address, timestamp, task_status, word, case_sensitive, \
                 whole_word, scope, attempts, updated_at, batch_id, run, words, depth, found_on, \
                 url_key, role, regions_patterns) \
                 SELECT u.a, $1, 'NOT_STARTED', $3, $4, $5, $6, 0, $1, $2, 1, $7, u.d, u.f, u.a, \
                 u.r, $8 \
                 FROM UNNEST($9::text[], $10::int4[], $11::int8[], $12::text[]) WITH ORDINALITY \
                 AS u (a, d, f, r, ord) ORDER BY ord \
                 ON CONFLICT (batch_id, url_key) DO NOTHING RETURNING id, url_key",
            )
            .bind(now)
            .bind(batch)
            .bind(options.word.as_str())
            .bind(options.case_sensitive)
            .bind(options.whole_word)
            .bind(options.scope.as_str())
            .bind(super::json_list(&options.words))
            .bind(super::RegionsPatterns::column(options))
            .bind(url)
            .bind(depth)
            .bind(found_on)
            .bind(role)
            .fetch_all(&mut **tx)
            .await?;
            out.extend(new);
        }
        Ok(out)
    }
}

impl FrontierSql for sqlx::Sqlite {
    async fn known_keys(
        tx: &mut sqlx::Transaction<'_, Self>,
        batch: i64,
        keys: &[&str],
    ) -> Result<Vec<String>, sqlx::Error> {
        let mut out = Vec::new();
        for chunk in super::pow2_chunks(keys, 512) {
            let mut qb =
                QueryBuilder::new("SELECT (SELECT t.url_key FROM task t WHERE t.batch_id = ");
            qb.push_bind(batch);
            qb.push(" AND t.url_key = v.column1) FROM (VALUES ");
            let mut sep = qb.separated(", ");
            for k in chunk {
                sep.push("(");
                sep.push_bind_unseparated(*k);
                sep.push_unseparated(")");
            }
            qb.push(") AS v");
            for row in qb.build().fetch_all(&mut **tx).await? {
                if let Some(k) = row.try_get::<Option<String>, _>(0)? {
                    out.push(k);
                }
            }
        }
        Ok(out)
    }

    async fn insert_new(
        tx: &mut sqlx::Transaction<'_, Self>,
        now: i64,
        batch: i64,
        options: &CountOptions,
        rows: &[CrawlRow<'_>],
    ) -> Result<Vec<(i64, String)>, sqlx::Error> {
        let mut out = Vec::with_capacity(rows.len());
        for chunk in super::pow2_chunks(rows, 256) {
            let mut qb = QueryBuilder::new(
                "INSERT INTO task (address, timestamp, task_status, word, case_sensitive, \
                 whole_word, scope, attempts, updated_at, batch_id, run, words, depth, \
                 found_on, url_key, role, regions_patterns) ",
            );
            qb.push_values(chunk, |mut b, (url, depth, found_on, role)| {
                b.push_bind(*url)
                    .push_bind(now)
                    .push_bind("NOT_STARTED")
                    .push_bind(options.word.as_str())
                    .push_bind(options.case_sensitive)
                    .push_bind(options.whole_word)
                    .push_bind(options.scope.as_str())
                    .push_bind(0i32)
                    .push_bind(now)
                    .push_bind(batch)
                    .push_bind(1i32)
                    .push_bind(super::json_list(&options.words))
                    .push_bind(*depth)
                    .push_bind(*found_on)
                    .push_bind(*url)
                    .push_bind(role.map(TaskRole::as_str))
                    .push_bind(super::RegionsPatterns::column(options));
            });
            qb.push(" ON CONFLICT (batch_id, url_key) DO NOTHING RETURNING id, url_key");
            for row in qb.build().fetch_all(&mut **tx).await? {
                out.push((row.try_get(0)?, row.try_get(1)?));
            }
        }
        Ok(out)
    }
}

/// Reads what the frontier needs of a crawl batch: its options, rules and size.
macro_rules! crawl_batch {
    ($tx:expr, $batch:expr) => {{
        let row = sqlx::query(
            "SELECT kind, crawl_rules, total, word, case_sensitive, whole_word, scope, words, \
             regions_patterns FROM batch WHERE id = $1",
        )
        .bind($batch)
        .fetch_optional(&mut *$tx)
        .await?;
        match row {
            None => None,
            Some(row) => {
                let kind: String = row.try_get("kind")?;
                let rules: Option<crate::store::crawls::StoredCrawl> =
                    crate::store::json_column(row.try_get("crawl_rules")?, "crawl_rules")?;
                match (kind.as_str(), rules) {
                    ("crawl", Some(c)) => {
                        let scope: String = row.try_get("scope")?;
                        let total: i64 = row.try_get("total")?;
                        // Discovered pages count what the crawl counts (DESIGN §17 too).
                        let extra =
                            crate::store::RegionsPatterns::read(row.try_get("regions_patterns")?)?;
                        let options = crate::count::CountOptions {
                            word: row.try_get("word")?,
                            case_sensitive: row.try_get("case_sensitive")?,
                            whole_word: row.try_get("whole_word")?,
                            scope: <crate::count::Scope as std::str::FromStr>::from_str(&scope)
                                .map_err(crate::store::StoreError::Corrupt)?,
                            words: crate::store::json_column(row.try_get("words")?, "words")?
                                .unwrap_or_default(),
                            within: extra.within,
                            outside: extra.outside,
                            patterns: extra.patterns,
                        };
                        Some((c.rules, total, options))
                    }
                    _ => None,
                }
            }
        }
    }};
}

/// Inserts crawl tasks (`$rows`: `&[(url, depth, found_on, role)]`) of batch `$batch` with
/// `$options`, skipping URLs the crawl has; evaluates to the new tasks.
macro_rules! insert_crawl_tasks {
    ($tx:expr, $now:expr, $batch:expr, $options:expr, $rows:expr) => {{
        let rows: &[crate::store::crawls::CrawlRow<'_>] = $rows;
        let options: &crate::count::CountOptions = $options;
        let mut by_url: std::collections::HashMap<&str, &crate::store::crawls::CrawlRow<'_>> =
            rows.iter().map(|r| (r.0, r)).collect();
        let mut tasks: Vec<crate::model::Task> = Vec::new();
        for (id, key) in
            crate::store::crawls::FrontierSql::insert_new(&mut $tx, $now, $batch, options, rows)
                .await?
        {
            let Some((url, depth, found_on, role)) = by_url.remove(key.as_str()) else {
                continue;
            };
            tasks.push(crate::model::Task {
                id,
                address: (*url).to_owned(),
                timestamp: $now,
                status: crate::model::TaskStatus::NotStarted,
                options: options.clone(),
                attempts: 0,
                queued_at: None,
                updated_at: $now,
                batch_id: Some($batch),
                run: 1,
                outcome: None,
                etag: None,
                last_modified: None,
                depth: Some(*depth),
                found_on: *found_on,
                role: *role,
            });
        }
        tasks.sort_by_key(|t| t.id);
        tasks
    }};
}

/// The frontier step inside the DB writer's transaction: adds the unseen links of `$found`
/// (in order; the first finder of a URL wins) as tasks, within each crawl's limits, and
/// records the counts in `$deltas` / `$crawl`. Evaluates to the new tasks.
macro_rules! extend_frontier {
    ($tx:expr, $now:expr, $deltas:expr, $crawl:expr, $found:expr, $known:expr, $learned:expr) => {{
        let known_urls: Option<&crate::store::crawls::KnownUrls> = $known;
        let learned: &mut Vec<(i64, String)> = $learned;
        let found: Vec<crate::store::crawls::Found<'_>> = $found;
        let deltas: &mut crate::store::Deltas = $deltas;
        let crawl: &mut std::collections::BTreeMap<i64, crate::store::crawls::CrawlDelta> = $crawl;
        let mut by_batch: std::collections::BTreeMap<i64, Vec<crate::store::crawls::Found<'_>>> =
            std::collections::BTreeMap::new();
        for f in found {
            by_batch.entry(f.batch).or_default().push(f);
        }
        let mut new_tasks: Vec<crate::model::Task> = Vec::new();
        for (batch, links) in by_batch {
            let Some((rules, total, options)) = crawl_batch!($tx, batch) else {
                continue;
            };
            let cd = crawl.entry(batch).or_default();
            // Distinct URLs, first finder first; over max_depth / sitemap nesting.
            let mut seen: std::collections::HashSet<&str, crate::store::crawls::FastHash> =
                Default::default();
            let mut cand: Vec<crate::store::crawls::CrawlRow<'_>> = Vec::new();
            for f in links {
                let too_deep = match f.role {
                    Some(crate::model::TaskRole::Sitemap) => {
                        f.depth > crate::store::crawls::MAX_SITEMAP_NESTING
                    }
                    Some(crate::model::TaskRole::Robots) => false,
                    None => rules.max_depth.is_some_and(|m| f.depth > m as i32),
                };
                if !seen.insert(f.url) {
                    continue;
                }
                if too_deep {
                    cd.over_limit += 1;
                    continue;
                }
                if known_urls.is_some_and(|k| k.contains(batch, f.url)) {
                    continue;
                }
                cand.push((f.url, f.depth, f.found_on, f.role));
            }
            let room = (rules.max_pages as i64 - total - deltas.of(Some(batch)).total).max(0);
            // Which of them the crawl has, asked only when they might not all fit under
            // `max_pages` (the new ones are kept, in order, and only the rest is over the
            // limit): one probe of the unique index each (`FrontierSql::known_keys`).
            // Otherwise the insert-or-ignore alone tells, in the same index lookup — a
            // probe first doubled it for every new link (BENCHMARKS "Production-path
            // crawl").
            if cand.len() as i64 > room {
                let keys: Vec<&str> = cand.iter().map(|c| c.0).collect();
                let known: std::collections::HashSet<String> =
                    crate::store::crawls::FrontierSql::known_keys(&mut $tx, batch, &keys)
                        .await?
                        .into_iter()
                        .collect();
                cand.retain(|c| !known.contains(c.0));
                learned.extend(known.into_iter().map(|k| (batch, k)));
            }
            if cand.len() as i64 > room {
                cd.over_limit += cand.len() as i64 - room;
                cand.truncate(room as usize);
            }
            if cand.is_empty() {
                continue;
            }
            let tasks = insert_crawl_tasks!($tx, $now, batch, &options, &cand);
            // Inserted here, or by a concurrent writer first (insert-or-ignore): either way
            // the crawl has them once this commits.
            learned.extend(cand.iter().map(|c| (batch, c.0.to_owned())));
            let d = deltas.of(Some(batch));
            d.total += tasks.len() as i64;
            d.not_started += tasks.len() as i64;
            for t in &tasks {
                let depth = t.depth.unwrap_or(0);
                if t.role.is_none() {
                    cd.max_depth = cd.max_depth.max(depth);
                    *cd.depths.entry(depth.to_string()).or_default() += 1;
                }
            }
            new_tasks.extend(tasks);
        }
        new_tasks
    }};
}

/// Applies the crawl counters of one transaction to their batches' rows.
macro_rules! apply_crawl_deltas {
    ($tx:expr, $crawl:expr) => {{
        let crawl: &std::collections::BTreeMap<i64, crate::store::crawls::CrawlDelta> = $crawl;
        for (batch, cd) in crawl {
            if cd.depths.is_empty() && cd.out_of_scope == 0 && cd.over_limit == 0 {
                continue;
            }
            let mut depths: std::collections::BTreeMap<String, i64> = if cd.depths.is_empty() {
                std::collections::BTreeMap::new()
            } else {
                // Read-modify-write is safe: every writer holds the task_stats lock.
                let old: Option<String> =
                    sqlx::query_scalar("SELECT depth_counts FROM batch WHERE id = $1")
                        .bind(*batch)
                        .fetch_optional(&mut *$tx)
                        .await?
                        .flatten();
                crate::store::json_column(old, "depth_counts")?.unwrap_or_default()
            };
            for (d, n) in &cd.depths {
                *depths.entry(d.clone()).or_default() += n;
            }
            sqlx::query(
                "UPDATE batch SET out_of_scope = out_of_scope + $1, \
                 over_limit = over_limit + $2, \
                 max_depth_seen = CASE WHEN max_depth_seen < $3 THEN $3 ELSE max_depth_seen END, \
                 depth_counts = COALESCE($4, depth_counts), version = version + 1 WHERE id = $5",
            )
            .bind(cd.out_of_scope)
            .bind(cd.over_limit)
            .bind(cd.max_depth)
            .bind(
                (!cd.depths.is_empty()).then(|| serde_json::to_string(&depths).unwrap_or_default()),
            )
            .bind(*batch)
            .execute(&mut *$tx)
            .await?;
        }
    }};
}

impl Store {
    /// Stores a new crawl: its batch (kind `crawl`, with its rules) and its seeds as
    /// depth-0 tasks, in one transaction, before anything is queued.
    pub async fn insert_crawl(
        &self,
        label: Option<&str>,
        created_by: Option<&str>,
        options: &CountOptions,
        crawl: &StoredCrawl,
        seeds: &[Seed],
    ) -> StoreResult<(i64, Vec<Task>)> {
        let now = now_ms();
        let rules_json = serde_json::to_string(crawl).unwrap_or_default();
        let out = on_pool!(self, |pool| {
            let mut tx = begin_write!(pool);
            let batch: i64 = sqlx::query_scalar(
                "INSERT INTO batch (label, created_at, word, case_sensitive, whole_word, scope, \
                 updated_at, created_by, words, kind, crawl_rules, regions_patterns) \
                 VALUES ($1, $2, $3, $4, $5, $6, $2, $7, $8, 'crawl', $9, $10) RETURNING id",
            )
            .bind(label)
            .bind(now)
            .bind(&options.word)
            .bind(options.case_sensitive)
            .bind(options.whole_word)
            .bind(options.scope.as_str())
            .bind(created_by)
            .bind(super::json_list(&options.words))
            .bind(&rules_json)
            .bind(super::RegionsPatterns::column(options))
            .fetch_one(&mut *tx)
            .await?;
            let mut seen = std::collections::HashSet::new();
            let rows: Vec<CrawlRow<'_>> = seeds
                .iter()
                .filter(|s| seen.insert(s.url.as_str()))
                .take(crawl.rules.max_pages as usize)
                .map(|s| (s.url.as_str(), 0, None, s.role))
                .collect();
            let tasks = insert_crawl_tasks!(tx, now, batch, options, &rows);
            let mut deltas = super::Deltas::default();
            let d = deltas.of(Some(batch));
            d.total = tasks.len() as i64;
            d.not_started = tasks.len() as i64;
            let mut crawl_d = BTreeMap::new();
            let pages = tasks.iter().filter(|t| t.role.is_none()).count() as i64;
            if pages > 0 {
                let cd: &mut CrawlDelta = crawl_d.entry(batch).or_default();
                cd.depths.insert("0".into(), pages);
            }
            apply_deltas!(tx, &deltas, now);
            apply_crawl_deltas!(tx, &crawl_d);
            tx.commit().await?;
            (batch, tasks)
        });
        Ok(out)
    }

    /// A page of one batch's tasks sorted by their current count (most first unless
    /// `ascending`; tasks without a count last), then by id. Reads only the batch's rows.
    pub async fn batch_tasks_by_count(
        &self,
        batch: i64,
        ascending: bool,
        offset: i64,
        limit: i64,
    ) -> StoreResult<Vec<crate::model::TaskView>> {
        let sql = format!(
            "SELECT {}, {} FROM task t LEFT JOIN result r ON r.task_id = t.id AND r.run = t.run \
             WHERE t.batch_id = $1 ORDER BY (r.words_count IS NULL), r.words_count {}, t.id \
             LIMIT $2 OFFSET $3",
            super::TASK_COLUMNS,
            super::RESULT_COLUMNS,
            if ascending { "ASC" } else { "DESC" }
        );
        let mut out = Vec::new();
        on_pool!(self, |pool| {
            let rows = sqlx::query(&sql)
                .bind(batch)
                .bind(limit.clamp(1, 1_000))
                .bind(offset.max(0))
                .fetch_all(pool)
                .await?;
            for row in &rows {
                out.push(crate::model::TaskView {
                    task: task_from_row!(row),
                    result: result_from_row!(row),
                });
            }
        });
        Ok(out)
    }

    /// The rules of these crawls (batches of another kind are left out).
    pub async fn crawl_rules(&self, batches: &[i64]) -> StoreResult<HashMap<i64, CrawlRules>> {
        let mut out = HashMap::new();
        if batches.is_empty() {
            return Ok(out);
        }
        on_pool!(self, |pool| {
            let mut qb = QueryBuilder::new(
                "SELECT id, crawl_rules FROM batch WHERE kind = 'crawl' AND id IN (",
            );
            super::push_ids(&mut qb, batches);
            qb.push(")");
            for row in qb.build().fetch_all(pool).await? {
                let id: i64 = row.try_get(0)?;
                if let Some(c) = super::json_column::<StoredCrawl>(row.try_get(1)?, "crawl_rules")?
                {
                    out.insert(id, c.rules);
                }
            }
        });
        Ok(out)
    }
}

/// The job of a task, with its crawl part when it belongs to one of `rules`' crawls.
pub fn job_of(task: &Task, rules: &HashMap<i64, CrawlRules>) -> Job {
    let mut job = task.job();
    if let (Some(depth), Some(batch)) = (task.depth, task.batch_id)
        && let Some(r) = rules.get(&batch)
    {
        job.crawl = Some(CrawlJob {
            batch,
            depth: depth.max(0) as u32,
            role: task.role,
            rules: r.clone(),
        });
    }
    job
}

#[cfg(test)]
mod tests {
    use super::KnownUrls;

    #[test]
    fn known_urls_are_exact_per_batch_and_bounded() {
        let mut k = KnownUrls::default();
        k.remember(
            1,
            ["http://h.test/a".to_owned(), "http://h.test/b".to_owned()],
        );
        k.remember(1, ["http://h.test/a".to_owned()]);
        assert_eq!(k.len(), 2);
        assert!(k.contains(1, "http://h.test/a"));
        // Another crawl, another spelling, a prefix: not known.
        assert!(!k.contains(2, "http://h.test/a"));
        assert!(!k.contains(1, "http://h.test/A"));
        assert!(!k.contains(1, "http://h.test/"));
        // Full: it starts over rather than grow.
        k.remember(3, (0..KnownUrls::CAP).map(|i| format!("http://h.test/{i}")));
        assert!(k.len() <= KnownUrls::CAP);
        assert!(!k.contains(1, "http://h.test/a"));
        k.remember(3, ["http://h.test/last".to_owned()]);
        assert!(k.len() <= KnownUrls::CAP && k.contains(3, "http://h.test/last"));
    }
}
