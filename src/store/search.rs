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
//! SQLite has no trigram index: there the search is the plain query alone (its id walk
//! stops at a full page, so a common term is fast and a rare one scans), and the two
//! steps run only when tests ask for them.
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

/// How long a process trusts the trigram frequencies it read (they change only when
/// ANALYZE runs, i.e. after ~10% of the table changed).
const FREQ_TTL: Duration = Duration::from_secs(60);

/// How the second step (the rows the walk did not reach) finds its candidates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SearchIndex {
    /// The default: on Postgres the rarest part of the term through the trigram index
    /// (the whole term when no trigram statistics exist yet); on SQLite a scan.
    Auto,
    /// The whole term as the index condition (what search did before the walk).
    WholeTerm,
    /// No index: test every remaining row.
    Scan,
}

/// What the Postgres second step asks the trigram index for.
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
    pub index: SearchIndex,
}

impl Default for SearchTuning {
    fn default() -> Self {
        SearchTuning {
            walk: SEARCH_WALK,
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

/// When a database's frequencies were read, and what they were (`None`: no statistics).
type Cached = (Instant, Option<Arc<TrigramFreq>>);
/// `most_common_elem_freqs` as read.
type Freqs = Option<Vec<f32>>;

/// The trigram frequencies of one database, read at most once per [`FREQ_TTL`] per process
/// (reading them costs ~1 ms, a search ~1–3 ms). Keyed by server and database name, since
/// one process (tests, benches) may open several databases.
async fn trigram_freq(pool: &sqlx::PgPool) -> StoreResult<Option<Arc<TrigramFreq>>> {
    static CACHE: OnceLock<Mutex<HashMap<String, Cached>>> = OnceLock::new();
    let o = pool.connect_options();
    let key = format!(
        "{}:{}/{}",
        o.get_host(),
        o.get_port(),
        o.get_database().unwrap_or("")
    );
    let cache = CACHE.get_or_init(Default::default);
    if let Some((at, f)) = cache.lock().ok().and_then(|c| c.get(&key).cloned())
        && at.elapsed() < FREQ_TTL
    {
        return Ok(f);
    }
    // Only the table's owner (the application, which ran the migrations) can read these.
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
    if let Ok(mut c) = cache.lock() {
        c.insert(key, (Instant::now(), f.clone()));
    }
    Ok(f)
}

impl TaskFilter {
    /// Whether anything but the search and the id bounds narrows this filter.
    fn has_other_filters(&self) -> bool {
        self.status.is_some() || self.outcome.is_some() || self.batch.is_some()
    }
}

impl Store {
    /// The ids of up to `limit` tasks matching `f` (whose search is not empty), in id
    /// order (`ascending` or newest first), by the two steps of the module docs.
    pub(crate) async fn search_ids(
        &self,
        f: &TaskFilter,
        ascending: bool,
        limit: i64,
    ) -> StoreResult<Vec<i64>> {
        // SQLite walks the id index newest first and stops at a full page by itself, which
        // the walk (it tests all of its rows) only slows down: 0.1 vs 3 ms at 1M rows for a
        // common term; a rare term scans either way (no trigram index there).
        let tuning = match self {
            Store::Sqlite(_) => SearchTuning {
                walk: 0,
                index: SearchIndex::Scan,
            },
            Store::Postgres(_) => SearchTuning::default(),
        };
        self.search_ids_tuned(f, ascending, limit, tuning).await
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
        let pattern = like_pattern(q);
        let dir = if ascending { "ASC" } else { "DESC" };
        let limit = limit.max(1);
        let mut ids = Vec::new();
        // Where the walk stopped: the remaining rows are beyond this id.
        let mut edge = None;
        if tuning.walk > 0 {
            on_pool!(self, |pool| {
                // The walk's rows are numbered; the walk returns its hits and its last row
                // (k = walk), which says both whether more rows exist and where they start.
                let mut qb = QueryBuilder::new(
                    "SELECT id, hit, k FROM (SELECT w.id, CAST(CASE WHEN LOWER(w.address) LIKE ",
                );
                qb.push_bind(pattern.clone())
                    .push(" ESCAPE '\\' THEN 1 ELSE 0 END AS BIGINT) AS hit, ROW_NUMBER() OVER (ORDER BY w.id ")
                    .push(dir)
                    .push(") AS k FROM (SELECT t.id, t.address FROM task t WHERE 1 = 1");
                f.push_filters(&mut qb, "t");
                qb.push(" ORDER BY t.id ")
                    .push(dir)
                    .push(" LIMIT ")
                    .push_bind(tuning.walk)
                    .push(") w) x WHERE hit = 1 OR k = ")
                    .push_bind(tuning.walk)
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
                    if k == tuning.walk {
                        edge = Some(id);
                    }
                }
            });
            if ids.len() as i64 >= limit || edge.is_none() {
                return Ok(ids);
            }
        }
        let rest = limit - ids.len() as i64;
        let more = match self {
            Store::Sqlite(pool) => {
                let mut qb = QueryBuilder::new("SELECT t.id FROM task t WHERE 1 = 1");
                f.push_filters(&mut qb, "t");
                push_edge(&mut qb, "t", edge, ascending);
                qb.push(" AND LOWER(t.address) LIKE ")
                    .push_bind(pattern.clone())
                    .push(" ESCAPE '\\' ORDER BY t.id ")
                    .push(dir)
                    .push(" LIMIT ")
                    .push_bind(rest);
                let rows = qb.build().fetch_all(pool).await?;
                rows.iter()
                    .map(|r| r.try_get::<i64, _>(0))
                    .collect::<Result<Vec<_>, _>>()?
            }
            Store::Postgres(pool) => {
                let step = match tuning.index {
                    SearchIndex::Auto => match trigram_freq(pool).await? {
                        Some(freq) => match rarest_window(&q.to_lowercase(), &freq) {
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
                push_edge(&mut qb, "s", edge, ascending);
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
                    push_edge(&mut qb, "t", edge, ascending);
                    qb.push(" ORDER BY t.id ");
                } else {
                    qb.push(" ORDER BY s.id ");
                }
                qb.push(dir).push(" LIMIT ").push_bind(rest);
                let rows = qb.build().fetch_all(pool).await?;
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

/// `AND <t>.id < edge` (newest first) or `> edge` (ascending): the rows the walk covered are
/// not read again.
fn push_edge<'a, DB: sqlx::Database>(
    qb: &mut QueryBuilder<'a, DB>,
    t: &str,
    edge: Option<i64>,
    ascending: bool,
) where
    i64: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    if let Some(e) = edge {
        qb.push(format!(
            " AND {t}.id {} ",
            if ascending { ">" } else { "<" }
        ))
        .push_bind(e);
    }
}
