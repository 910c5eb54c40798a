//! Address search behind the task table (DB → **poll**): `?q=` finds tasks whose address
//! contains the term, case-insensitively, newest first and paged by keyset like every
//! other filter — at a cost that does not grow with the number of tasks.
//!
//! The predicate is always the plain one, `LOWER(address) LIKE '%term%' ESCAPE '\'`
//! (see [`like_pattern`]); what changes is how candidates are found, in two steps:
//!
//! 1. **A bounded walk**: the newest [`SEARCH_WALK`] tasks that pass the other filters,
//!    read through the id (or status, outcome, batch) index and tested one by one. A common
//!    term (`example`, a popular host) fills its page here in about a millisecond, where a
//!    trigram index would hand back a bitmap of most of the table to sort.
//! 2. **The trigram index**, only for what the walk did not cover (older ids) and only when
//!    the page is not full yet. On Postgres it is a `pg_trgm` GIN index on a narrow,
//!    never-updated table `task_search (id, address_lower)` (migration 0008). A GIN scan
//!    costs the length of every posting list it reads, and a term's common trigrams
//!    (`exa`, `sit`, `pag`) have one entry per address: so the index is asked only for
//!    the *rarest part* of the term ([`rarest_window`], from the trigram frequencies
//!    ANALYZE keeps), and the whole term is re-checked on each candidate by an expression
//!    the index cannot serve. Any substring of the term is implied by the term, so the
//!    results are those of the plain predicate whichever part is chosen.
//!
//!    On SQLite it is an FTS5 table with the `trigram` tokenizer, `task_fts` (migration
//!    0009), asked the same way: a phrase query for the rarest part of the term (from
//!    trigram frequencies sampled at random ids, [`fts_window`]), newest first
//!    and stopping at a full page, every candidate re-checked with the plain predicate.
//!    Terms shorter than three characters have no trigram and keep the plain query.
//!
//! Between the two, a **second walk** when the first one found the term often enough
//! that the rest of the page is expected within [`SEARCH_MORE_WALK`] more rows: a term in
//! 1% of the tasks has ~10,000 candidates in the index, each re-checked in its own heap
//! page (55–75 ms at 1M on Postgres), where walking on reads ~4,500 rows (~2 ms).
//!
//! With a status, outcome or batch filter the walks read that filter's `(column, id)`
//! index. Postgres preferred walking the id index and discarding the rows of other
//! statuses (18,000 rows read for 2,000 pending ones at 1M); the filter is written as a
//! range (`>= v AND <= v`) and the walk ordered by `(column, id)`, which only that index
//! returns without a sort.
//!
//! Tests compare every strategy with the plain query on the same data
//! ([`SearchIndex`], `tests/it/scale.rs`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use sqlx::{QueryBuilder, Row};

use super::{Store, StoreResult, TaskFilter, like_pattern};

/// Rows the first step of a search reads before the index takes over: a term found in at
/// least one address in 40 fills a page of 50 here. ~1 ms on either database.
pub const SEARCH_WALK: i64 = 2000;

/// Most rows the second walk reads (see the module docs): it runs when the first walk's
/// hit rate says the rest of the page lies within this many rows (with half as many again
/// to spare), i.e. for terms in more than ~0.5% of the tasks. ~4 ms on Postgres at 1M.
pub const SEARCH_MORE_WALK: i64 = 12_000;

/// How long a process trusts the trigram frequencies it read (they change only when
/// ANALYZE runs, i.e. after ~10% of the table changed).
const FREQ_TTL: Duration = Duration::from_secs(60);

/// How the second step (the rows the walk did not reach) finds its candidates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SearchIndex {
    /// The default: the rarest part of the term through the trigram index (the whole
    /// term when no trigram frequencies exist yet; on SQLite a scan for terms shorter than
    /// three characters).
    Auto,
    /// The whole term as the index condition (what search did before the walk).
    WholeTerm,
    /// No index: test every remaining row.
    Scan,
}

/// What the second step asks the trigram index (pg_trgm or FTS5) for.
enum Step {
    /// The whole term: no trigram statistics yet (a new or small table), or no part of
    /// the term that pg_trgm can index on its own; the planner decides.
    WholeTerm,
    /// This part of the term through the index, the whole term re-checked.
    Window(String),
    /// Nothing: every remaining row is tested.
    Scan,
}

/// The knobs of one search (tests and benchmarks; the application uses the default).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SearchTuning {
    /// Rows of the bounded walk (0 = skip it).
    pub walk: i64,
    /// Most rows of the second walk (0 = never).
    pub more_walk: i64,
    pub index: SearchIndex,
}

impl Default for SearchTuning {
    fn default() -> Self {
        SearchTuning {
            walk: SEARCH_WALK,
            more_walk: SEARCH_MORE_WALK,
            index: SearchIndex::Auto,
        }
    }
}

/// How often each trigram occurs in `task_search.address_lower` (fraction of rows), as
/// ANALYZE sampled it: the commonest ~10,000; any other is rarer than `floor`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TrigramFreq {
    pub freq: HashMap<String, f32>,
    pub floor: f32,
}

impl TrigramFreq {
    fn of(&self, t: &str) -> f64 {
        self.freq.get(t).copied().unwrap_or(self.floor / 2.0).into()
    }
}

/// Whether pg_trgm treats `c` as part of a word (alphanumerics; the rest separate words).
fn word_char(c: char) -> bool {
    c.is_alphanumeric()
}

/// The trigrams pg_trgm extracts from the LIKE pattern `%w%` (`w` literal, lowercase):
/// each run of word characters, padded with two spaces before and one after where it is
/// bounded by a non-word character rather than by the pattern's `%` (pg_trgm's
/// `generate_wildcard_trgm`), cut into its three-character windows.
pub fn like_trigrams(w: &str) -> Vec<String> {
    let chars: Vec<char> = w.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        if !word_char(chars[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < chars.len() && word_char(chars[i]) {
            i += 1;
        }
        let mut padded = Vec::with_capacity(i - start + 3);
        if start > 0 {
            padded.extend([' ', ' ']);
        }
        padded.extend_from_slice(&chars[start..i]);
        if i < chars.len() {
            padded.push(' ');
        }
        for t in padded.windows(3) {
            let t: String = t.iter().collect();
            if !out.contains(&t) {
                out.push(t);
            }
        }
    }
    out
}

/// Relative cost of re-checking one candidate row against reading one posting-list entry
/// (measured at 1M tasks: ~0.5 µs per candidate, ~5 ns per entry).
const RECHECK_COST: f64 = 100.0;

/// The part of the (lowercase) term `q` to ask the trigram index for: the substring whose
/// trigrams cost least to read (the sum of their frequencies: posting-list lengths) plus
/// to re-check (their product: the estimated candidates). `None` when no part of the term
/// has trigrams pg_trgm can use (shorter than three word characters, or not ASCII: pg_trgm
/// hashes other trigrams, and ANALYZE's names for them are not ours).
pub fn rarest_window(q: &str, freq: &TrigramFreq) -> Option<String> {
    let chars: Vec<char> = q.chars().collect();
    let mut best: Option<(f64, String)> = None;
    for start in 0..chars.len() {
        for end in (start + 3)..=(start + 12).min(chars.len()) {
            let w = &chars[start..end];
            if !w.iter().all(char::is_ascii) {
                break;
            }
            let w: String = w.iter().collect();
            let trigrams = like_trigrams(&w);
            if trigrams.is_empty() {
                continue;
            }
            let (sum, product) = trigrams.iter().fold((0.0, 1.0), |(s, p), t| {
                let f = freq.of(t);
                (s + f, p * f)
            });
            let cost = sum + RECHECK_COST * product;
            if best.as_ref().is_none_or(|(c, _)| cost < *c) {
                best = Some((cost, w));
            }
        }
    }
    best.map(|(_, w)| w)
}

/// The part of the (lowercase) term `q` to ask SQLite's FTS5 trigram index for, by the
/// cost of [`rarest_window`]: FTS5's trigrams are every three characters of the text
/// (case folded, no word boundaries, any script), so every substring of at least three
/// characters is a candidate. `None` when `q` is shorter than three characters.
pub fn fts_window(q: &str, freq: &TrigramFreq) -> Option<String> {
    let chars: Vec<char> = q.chars().collect();
    let mut best: Option<(f64, String)> = None;
    for start in 0..chars.len() {
        for end in (start + 3)..=(start + 12).min(chars.len()) {
            let w = &chars[start..end];
            let (sum, product) = w.windows(3).fold((0.0, 1.0), |(s, p), t| {
                let f = freq.of(&t.iter().collect::<String>());
                (s + f, p * f)
            });
            let cost = sum + RECHECK_COST * product;
            if best.as_ref().is_none_or(|(c, _)| cost < *c) {
                best = Some((cost, w.iter().collect()));
            }
        }
    }
    best.map(|(_, w)| w)
}

/// An FTS5 query for the text `w` itself: one phrase (double quotes doubled), so that no
/// character of an address is read as query syntax.
fn fts_phrase(w: &str) -> String {
    format!("\"{}\"", w.replace('"', "\"\""))
}

/// When a database's frequencies were read, and what they were (`None`: no statistics).
type Cached = (Instant, Option<Arc<TrigramFreq>>);
/// `most_common_elem_freqs` as read.
type Freqs = Option<Vec<f32>>;

/// The trigram frequencies of the database `key` (server and database name, or SQLite
/// file: one process, tests and benches, may open several), loaded by `load` at most once
/// per [`FREQ_TTL`] per process. Only the first search waits for them: later ones use the
/// frequencies they have while a background task reads new ones, so reading them (~1–6 ms,
/// as much as a search) never adds to a search's latency.
async fn cached_freq<L>(key: String, load: L) -> StoreResult<Option<Arc<TrigramFreq>>>
where
    L: std::future::Future<Output = StoreResult<Option<Arc<TrigramFreq>>>> + Send + 'static,
{
    static CACHE: OnceLock<Mutex<HashMap<String, Cached>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let stale = match cache.lock().ok().as_mut().and_then(|c| c.get_mut(&key)) {
        Some((at, f)) if at.elapsed() < FREQ_TTL => return Ok(f.clone()),
        // Claimed for one refresh: the searches until it lands use `f`.
        Some((at, f)) => {
            *at = Instant::now();
            Some(f.clone())
        }
        None => None,
    };
    let store = move |f: Option<Arc<TrigramFreq>>| {
        if let Ok(mut c) = cache.lock() {
            c.insert(key, (Instant::now(), f));
        }
    };
    match stale {
        Some(f) => {
            tokio::spawn(async move {
                if let Ok(new) = load.await {
                    store(new);
                }
            });
            Ok(f)
        }
        None => {
            let f = load.await?;
            store(f.clone());
            Ok(f)
        }
    }
}

/// The trigram frequencies ANALYZE keeps for `task_search` (see [`cached_freq`]).
async fn trigram_freq(pool: &sqlx::PgPool) -> StoreResult<Option<Arc<TrigramFreq>>> {
    let o = pool.connect_options();
    let key = format!(
        "{}:{}/{}",
        o.get_host(),
        o.get_port(),
        o.get_database().unwrap_or("")
    );
    let pool = pool.clone();
    cached_freq(key, async move { read_trigram_freq(&pool).await }).await
}

/// Addresses [`sampled_freq`] reads: enough to tell a trigram in every address from one in
/// a few percent of them, ~2 ms.
const FREQ_SAMPLE: u64 = 2000;

/// SQLite keeps no statistics of FTS5 trigrams (`fts5vocab` counts a trigram by reading
/// its whole posting list: 20 ms for one in every address at 1M), so their frequencies are
/// sampled from [`FREQ_SAMPLE`] tasks at random ids (see [`cached_freq`]); a trigram not
/// seen there is rarer than one in the sample. At random rather than the newest: those
/// share their id digits (`page/998…`), and a term's `/33` then looked rarer than it is (a
/// window in 11% of the tasks chosen for a term in one). `None` on an empty table.
async fn sampled_freq(pool: &sqlx::SqlitePool) -> StoreResult<Option<Arc<TrigramFreq>>> {
    let key = format!("sqlite:{}", pool.connect_options().get_filename().display());
    let pool = pool.clone();
    cached_freq(key, async move {
        let (lo, hi): (Option<i64>, Option<i64>) =
            sqlx::query_as("SELECT MIN(id), MAX(id) FROM task")
                .fetch_one(&pool)
                .await?;
        let (Some(lo), Some(hi)) = (lo, hi) else {
            return Ok(None);
        };
        // xorshift64, seeded by the clock: no two refreshes sample the same ids.
        let mut x = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
            | 1;
        let span = (hi - lo) as u64 + 1;
        let ids: Vec<String> = (0..FREQ_SAMPLE)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (lo + (x % span) as i64).to_string()
            })
            .collect();
        let rows: Vec<String> = sqlx::query_scalar(&format!(
            "SELECT address FROM task WHERE id IN ({})",
            ids.join(",")
        ))
        .fetch_all(&pool)
        .await?;
        Ok(trigram_sample(&rows).map(Arc::new))
    })
    .await
}

/// The fraction of `addresses` (lowercased) holding each three-character window; `None`
/// for no addresses.
pub fn trigram_sample(addresses: &[String]) -> Option<TrigramFreq> {
    if addresses.is_empty() {
        return None;
    }
    let mut count: HashMap<String, u32> = HashMap::new();
    let mut seen = std::collections::HashSet::new();
    for a in addresses {
        let chars: Vec<char> = a.to_lowercase().chars().collect();
        seen.clear();
        for t in chars.windows(3) {
            let t: String = t.iter().collect();
            if seen.insert(t.clone()) {
                *count.entry(t).or_default() += 1;
            }
        }
    }
    let n = addresses.len() as f32;
    Some(TrigramFreq {
        freq: count.into_iter().map(|(t, c)| (t, c as f32 / n)).collect(),
        floor: 1.0 / n,
    })
}

/// Reads `task_search`'s trigram statistics (only the table's owner, the application that
/// ran the migrations, can).
async fn read_trigram_freq(pool: &sqlx::PgPool) -> StoreResult<Option<Arc<TrigramFreq>>> {
    let row: Option<(Option<Vec<String>>, Freqs)> = sqlx::query_as(
        "SELECT most_common_elems::text::text[], most_common_elem_freqs FROM pg_stats_ext_exprs \
         WHERE statistics_name = 'task_search_trgm_freq' AND tablename = 'task_search' \
         AND statistics_schemaname = current_schema() LIMIT 1",
    )
    .fetch_optional(pool)
    .await?;
    let f = match row {
        Some((Some(elems), Some(freqs))) if freqs.len() > elems.len() => {
            // After one frequency per element come the minimum, the maximum and the null
            // fraction (pg_stats docs).
            let floor = freqs[elems.len()];
            Some(Arc::new(TrigramFreq {
                freq: elems.into_iter().zip(freqs).collect(),
                floor,
            }))
        }
        _ => None,
    };
    Ok(f)
}

impl TaskFilter {
    /// Whether anything but the search and the id bounds narrows this filter.
    fn has_other_filters(&self) -> bool {
        self.status.is_some() || self.outcome.is_some() || self.batch.is_some()
    }

    /// The filters of a walk (on `task t`, after a `WHERE 1 = 1`); the ORDER BY the walk
    /// reads in. The most selective of batch, outcome and status leads: written as a range
    /// and first in the ORDER BY, so that its `(column, id)` index is the one plan that
    /// needs no sort (Postgres would otherwise walk the id index and drop the rows of
    /// other statuses: 18,000 read for 2,000 pending ones at 1M). Not also as `=`: the
    /// planner would then know the column constant and drop it from the ORDER BY.
    fn push_walk_filters<'a, DB: sqlx::Database>(
        &'a self,
        qb: &mut QueryBuilder<'a, DB>,
        dir: &str,
    ) -> String
    where
        i64: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
        &'a str: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    {
        let mut lead = None;
        if let Some(b) = self.batch {
            qb.push(" AND t.batch_id >= ")
                .push_bind(b)
                .push(" AND t.batch_id <= ")
                .push_bind(b);
            lead = Some("batch_id");
        }
        for (col, v) in [
            ("outcome", self.outcome.map(|o| o.as_str())),
            ("task_status", self.status.map(|s| s.as_str())),
        ] {
            let Some(v) = v else { continue };
            if lead.is_none() {
                qb.push(format!(" AND t.{col} >= "))
                    .push_bind(v)
                    .push(format!(" AND t.{col} <= "))
                    .push_bind(v);
                lead = Some(col);
            } else {
                qb.push(format!(" AND t.{col} = ")).push_bind(v);
            }
        }
        self.push_bounds(qb, "t");
        match lead {
            Some(col) => format!(" ORDER BY t.{col} {dir}, t.id {dir}"),
            None => format!(" ORDER BY t.id {dir}"),
        }
    }
}

impl Store {
    /// The ids of up to `limit` tasks matching `f` (whose search is not empty), in id
    /// order (`ascending` or newest first), by the steps of the module docs.
    pub(crate) async fn search_ids(
        &self,
        f: &TaskFilter,
        ascending: bool,
        limit: i64,
    ) -> StoreResult<Vec<i64>> {
        // Without other filters SQLite needs no walk: FTS5 hands back the candidates
        // newest first and the query stops at a full page, so a common term costs what a
        // rare one does (0.1–3 ms at 1M). A filter (a batch of 1,000 tasks, a term in every
        // address) could make it read every candidate: its index is walked first.
        let tuning = match self {
            Store::Sqlite(_) if !f.has_other_filters() => SearchTuning {
                walk: 0,
                more_walk: 0,
                index: SearchIndex::Auto,
            },
            Store::Sqlite(_) => SearchTuning {
                more_walk: 0,
                ..SearchTuning::default()
            },
            Store::Postgres(_) => SearchTuning::default(),
        };
        self.search_ids_tuned(f, ascending, limit, tuning).await
    }

    /// One walk: up to `rows` tasks passing `f`'s other filters beyond `edge`, read in id
    /// order and tested one by one. Their hits (at most `limit`) and the last row read,
    /// if the walk read all `rows` (more may follow).
    #[allow(clippy::too_many_arguments)]
    async fn walk(
        &self,
        f: &TaskFilter,
        pattern: &str,
        ascending: bool,
        edge: Option<i64>,
        rows: i64,
        limit: i64,
    ) -> StoreResult<(Vec<i64>, Option<i64>)> {
        let dir = if ascending { "ASC" } else { "DESC" };
        let mut ids = Vec::new();
        let mut last = None;
        on_pool!(self, |pool| {
            // The walk's rows are numbered; the walk returns its hits and its last row
            // (k = rows), which says both whether more rows exist and where they start.
            let mut qb = QueryBuilder::new(
                "SELECT id, hit, k FROM (SELECT w.id, CAST(CASE WHEN LOWER(w.address) LIKE ",
            );
            qb.push_bind(pattern.to_string())
                .push(" ESCAPE '\\' THEN 1 ELSE 0 END AS BIGINT) AS hit, ROW_NUMBER() OVER (ORDER BY w.id ")
                .push(dir)
                .push(") AS k FROM (SELECT t.id, t.address FROM task t WHERE 1 = 1");
            push_edge(&mut qb, "t.id", edge, ascending);
            let order = f.push_walk_filters(&mut qb, dir);
            qb.push(order)
                .push(" LIMIT ")
                .push_bind(rows)
                .push(") w) x WHERE hit = 1 OR k = ")
                .push_bind(rows)
                .push(" ORDER BY id ")
                .push(dir)
                .push(" LIMIT ")
                .push_bind(limit + 1);
            for row in qb.build().fetch_all(pool).await? {
                let id: i64 = row.try_get(0)?;
                let hit: i64 = row.try_get(1)?;
                let k: i64 = row.try_get(2)?;
                if hit == 1 && (ids.len() as i64) < limit {
                    ids.push(id);
                }
                if k == rows {
                    last = Some(id);
                }
            }
        });
        Ok((ids, last))
    }

    /// `search_ids` with explicit knobs: benchmarks and the differential tests compare
    /// strategies on the same data.
    #[doc(hidden)]
    pub async fn search_ids_tuned(
        &self,
        f: &TaskFilter,
        ascending: bool,
        limit: i64,
        tuning: SearchTuning,
    ) -> StoreResult<Vec<i64>> {
        let q = f.search.as_deref().unwrap_or_default();
        // The text the LIKE pattern matches (any part of it is implied by the term).
        let lower = q.to_lowercase();
        let pattern = like_pattern(q);
        let dir = if ascending { "ASC" } else { "DESC" };
        let limit = limit.max(1);
        let mut ids = Vec::new();
        // Where the walks stopped: the remaining rows are beyond this id.
        let mut edge = None;
        if tuning.walk > 0 {
            let (hits, last) = self
                .walk(f, &pattern, ascending, None, tuning.walk, limit)
                .await?;
            ids = hits;
            edge = last;
            if ids.len() as i64 >= limit || edge.is_none() {
                return Ok(ids);
            }
            // The first walk's hit rate says how far the rest of the page is.
            if tuning.more_walk > 0 && !ids.is_empty() {
                let rest = limit - ids.len() as i64;
                let rows = (1.5 * (rest * tuning.walk) as f64 / ids.len() as f64).ceil() as i64;
                if rows <= tuning.more_walk {
                    let (hits, last) = self.walk(f, &pattern, ascending, edge, rows, rest).await?;
                    ids.extend(hits);
                    edge = last;
                    if ids.len() as i64 >= limit || edge.is_none() {
                        return Ok(ids);
                    }
                }
            }
        }
        let rest = limit - ids.len() as i64;
        let more = match self {
            Store::Sqlite(pool) => {
                let step = match tuning.index {
                    _ if lower.chars().count() < 3 => Step::Scan,
                    SearchIndex::Auto => match sampled_freq(pool).await? {
                        Some(freq) => match fts_window(&lower, &freq) {
                            Some(w) => Step::Window(w),
                            None => Step::WholeTerm,
                        },
                        None => Step::WholeTerm,
                    },
                    SearchIndex::WholeTerm => Step::WholeTerm,
                    SearchIndex::Scan => Step::Scan,
                };
                let mut qb = QueryBuilder::new("");
                let key = match step {
                    Step::Scan => {
                        qb.push("SELECT t.id FROM task t WHERE 1 = 1");
                        "t.id"
                    }
                    Step::WholeTerm | Step::Window(_) => {
                        let w = match step {
                            Step::Window(w) => w,
                            _ => lower.clone(),
                        };
                        // FTS5 first (CROSS JOIN keeps the order): it reads its candidates
                        // in rowid order, within the bounds given on `f.rowid`, and the
                        // query stops at a full page.
                        qb.push("SELECT t.id FROM task_fts(")
                            .push_bind(fts_phrase(&w))
                            .push(") f CROSS JOIN task t ON t.id = f.rowid WHERE 1 = 1");
                        if let Some(b) = f.before {
                            qb.push(" AND f.rowid < ").push_bind(b);
                        }
                        if let Some(a) = f.after {
                            qb.push(" AND f.rowid > ").push_bind(a);
                        }
                        push_edge(&mut qb, "f.rowid", edge, ascending);
                        "f.rowid"
                    }
                };
                f.push_filters(&mut qb, "t");
                push_edge(&mut qb, "t.id", edge, ascending);
                qb.push(" AND LOWER(t.address) LIKE ")
                    .push_bind(pattern.clone())
                    .push(format!(" ESCAPE '\\' ORDER BY {key} {dir} LIMIT "))
                    .push_bind(rest);
                let rows = qb.build().fetch_all(pool).await?;
                rows.iter()
                    .map(|r| r.try_get::<i64, _>(0))
                    .collect::<Result<Vec<_>, _>>()?
            }
            Store::Postgres(pool) => {
                let step = match tuning.index {
                    SearchIndex::Auto => match trigram_freq(pool).await? {
                        Some(freq) => match rarest_window(&lower, &freq) {
                            Some(w) => Step::Window(w),
                            None => Step::WholeTerm,
                        },
                        None => Step::WholeTerm,
                    },
                    SearchIndex::WholeTerm => Step::WholeTerm,
                    SearchIndex::Scan => Step::Scan,
                };
                let mut qb = QueryBuilder::new("");
                let other = f.has_other_filters();
                if other {
                    qb.push("SELECT t.id FROM task t WHERE t.id IN (");
                }
                qb.push("SELECT s.id FROM task_search s WHERE 1 = 1");
                f.push_bounds(&mut qb, "s");
                push_edge(&mut qb, "s.id", edge, ascending);
                // `|| ''` keeps a condition out of the index scan: with a window, the whole
                // term's common trigrams are what made the old query slow.
                match &step {
                    Step::WholeTerm => {
                        qb.push(" AND s.address_lower LIKE ");
                    }
                    Step::Window(w) => {
                        qb.push(" AND s.address_lower LIKE ")
                            .push_bind(like_pattern(w))
                            .push(" ESCAPE '\\' AND (s.address_lower || '') LIKE ");
                    }
                    Step::Scan => {
                        qb.push(" AND (s.address_lower || '') LIKE ");
                    }
                }
                qb.push_bind(pattern.clone()).push(" ESCAPE '\\'");
                if other {
                    qb.push(")");
                    f.push_filters(&mut qb, "t");
                    push_edge(&mut qb, "t.id", edge, ascending);
                    qb.push(" ORDER BY t.id ");
                } else {
                    qb.push(" ORDER BY s.id ");
                }
                qb.push(dir).push(" LIMIT ").push_bind(rest);
                // Not a prepared statement: after five runs Postgres may plan it once for
                // any pattern (a generic plan), which walks the id index backwards testing
                // every row (668 ms against 107 for the same search, cold, at 1M); the
                // "API, one host" bench row ran that way at 40–65 ms p50 before search4.
                // Unnamed, it is planned for this window each time (~0.1 ms).
                let rows = qb.build().persistent(false).fetch_all(pool).await?;
                rows.iter()
                    .map(|r| r.try_get::<i64, _>(0))
                    .collect::<Result<Vec<_>, _>>()?
            }
        };
        ids.extend(more);
        Ok(ids)
    }

    /// The plain query (one `LIKE` over the task table, no walk, no trigram choice): the
    /// oracle the differential tests compare every strategy with.
    #[doc(hidden)]
    pub async fn search_ids_plain(
        &self,
        f: &TaskFilter,
        ascending: bool,
        limit: i64,
    ) -> StoreResult<Vec<i64>> {
        let pattern = like_pattern(f.search.as_deref().unwrap_or_default());
        on_pool!(self, |pool| {
            let mut qb = QueryBuilder::new("SELECT t.id FROM task t WHERE 1 = 1");
            f.push_filters(&mut qb, "t");
            qb.push(" AND LOWER(t.address) LIKE ")
                .push_bind(pattern.clone())
                .push(" ESCAPE '\\' ORDER BY t.id ")
                .push(if ascending { "ASC" } else { "DESC" })
                .push(" LIMIT ")
                .push_bind(limit.max(1));
            let rows = qb.build().fetch_all(pool).await?;
            Ok(rows
                .iter()
                .map(|r| r.try_get::<i64, _>(0))
                .collect::<Result<Vec<_>, _>>()?)
        })
    }
}

/// `AND <id> < edge` (newest first) or `> edge` (ascending), `id` being the id column of
/// the table read (`t.id`, or `f.rowid` for FTS5, which then reads only those rows): the
/// rows the walks covered are not read again.
fn push_edge<'a, DB: sqlx::Database>(
    qb: &mut QueryBuilder<'a, DB>,
    id: &str,
    edge: Option<i64>,
    ascending: bool,
) where
    i64: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    if let Some(e) = edge {
        qb.push(format!(" AND {id} {} ", if ascending { ">" } else { "<" }))
            .push_bind(e);
    }
}
