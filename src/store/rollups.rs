//! Per-minute rollups of finished tasks (… → NSQ → **DB** → poll): one `rollup_minute` row
//! per minute with tasks finished by outcome, bytes read and a fetch-duration histogram,
//! upserted in the same transaction as the results it counts. The charts read only this
//! table, so drawing the last day costs ≤ 1,440 small rows however many results exist.
//!
//! Histogram: fixed upper bounds [`BOUNDS_MS`] (≤ 50 ms, ≤ 100 ms, … ≤ 30 s, and > 30 s);
//! p50/p95 are estimated by linear interpolation inside the bucket holding the rank, so
//! they are exact to within one bucket's width. Cancelled tasks count in `cancelled` but
//! not in the histogram (nothing was fetched).

use std::collections::BTreeMap;

use serde::Serialize;
use sqlx::Row;

use super::{Store, StoreResult};
use crate::outcome::Outcome;

/// Upper bounds (inclusive, ms) of the duration buckets `h0..h8`; `h9` holds the rest.
pub const BOUNDS_MS: [i64; 9] = [50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 30_000];
/// Number of histogram buckets (the bounds plus "longer").
pub const BUCKETS: usize = BOUNDS_MS.len() + 1;

const MINUTE_MS: i64 = 60_000;

/// One newly stored finished task, as the writer hands it over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RollupRow {
    /// When it finished (epoch ms); its minute is the rollup bucket.
    pub at_ms: i64,
    pub outcome: Outcome,
    pub duration_ms: i64,
    pub bytes: i64,
}

/// The histogram bucket of a fetch duration.
pub fn bucket_of(duration_ms: i64) -> usize {
    BOUNDS_MS
        .iter()
        .position(|b| duration_ms <= *b)
        .unwrap_or(BOUNDS_MS.len())
}

/// Totals of one minute (or of several, summed).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub ok: i64,
    pub http_error: i64,
    pub failed: i64,
    pub truncated: i64,
    pub cancelled: i64,
    /// Crawl pages robots.txt disallowed (never fetched, so not in the histogram).
    pub skipped: i64,
    pub bytes: i64,
    pub duration_sum: i64,
    pub hist: [i64; BUCKETS],
}

impl Tally {
    fn add_row(&mut self, r: &RollupRow) {
        match r.outcome {
            Outcome::Ok => self.ok += 1,
            Outcome::HttpError => self.http_error += 1,
            Outcome::Failed => self.failed += 1,
            Outcome::Truncated => self.truncated += 1,
            Outcome::Cancelled => self.cancelled += 1,
            Outcome::Skipped => self.skipped += 1,
        }
        self.bytes += r.bytes;
        if !matches!(r.outcome, Outcome::Cancelled | Outcome::Skipped) {
            self.duration_sum += r.duration_ms.max(0);
            self.hist[bucket_of(r.duration_ms)] += 1;
        }
    }

    /// Adds another tally (summing minutes into a chart bucket).
    pub fn add(&mut self, o: &Tally) {
        self.ok += o.ok;
        self.http_error += o.http_error;
        self.failed += o.failed;
        self.truncated += o.truncated;
        self.cancelled += o.cancelled;
        self.skipped += o.skipped;
        self.bytes += o.bytes;
        self.duration_sum += o.duration_sum;
        for (a, b) in self.hist.iter_mut().zip(o.hist) {
            *a += b;
        }
    }

    pub fn finished(&self) -> i64 {
        self.ok + self.http_error + self.failed + self.truncated + self.cancelled + self.skipped
    }

    /// The `q` quantile (0..=1) of fetch durations, estimated from the histogram; None
    /// when nothing was fetched.
    pub fn quantile_ms(&self, q: f64) -> Option<i64> {
        let n: i64 = self.hist.iter().sum();
        if n == 0 {
            return None;
        }
        let rank = (q.clamp(0.0, 1.0) * n as f64).max(1.0);
        let mut seen = 0.0;
        for (i, c) in self.hist.iter().enumerate() {
            let c = *c as f64;
            if c > 0.0 && seen + c >= rank {
                let lo = if i == 0 { 0 } else { BOUNDS_MS[i - 1] } as f64;
                // "Longer than the last bound" has no upper end: report its lower bound.
                let Some(hi) = BOUNDS_MS.get(i) else {
                    return Some(lo as i64);
                };
                let frac = (rank - seen) / c;
                return Some((lo + frac * (*hi as f64 - lo)).round() as i64);
            }
            seen += c;
        }
        Some(BOUNDS_MS[BOUNDS_MS.len() - 1])
    }
}

const UPSERT: &str = "INSERT INTO rollup_minute (minute, ok, http_error, failed, truncated, \
     cancelled, bytes, duration_ms_sum, h0, h1, h2, h3, h4, h5, h6, h7, h8, h9, skipped) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, \
     $19) \
     ON CONFLICT (minute) DO UPDATE SET \
     ok = rollup_minute.ok + excluded.ok, \
     http_error = rollup_minute.http_error + excluded.http_error, \
     failed = rollup_minute.failed + excluded.failed, \
     truncated = rollup_minute.truncated + excluded.truncated, \
     cancelled = rollup_minute.cancelled + excluded.cancelled, \
     skipped = rollup_minute.skipped + excluded.skipped, \
     bytes = rollup_minute.bytes + excluded.bytes, \
     duration_ms_sum = rollup_minute.duration_ms_sum + excluded.duration_ms_sum, \
     h0 = rollup_minute.h0 + excluded.h0, h1 = rollup_minute.h1 + excluded.h1, \
     h2 = rollup_minute.h2 + excluded.h2, h3 = rollup_minute.h3 + excluded.h3, \
     h4 = rollup_minute.h4 + excluded.h4, h5 = rollup_minute.h5 + excluded.h5, \
     h6 = rollup_minute.h6 + excluded.h6, h7 = rollup_minute.h7 + excluded.h7, \
     h8 = rollup_minute.h8 + excluded.h8, h9 = rollup_minute.h9 + excluded.h9";

/// Sums rows by minute (one upsert per minute touched).
fn by_minute(rows: &[RollupRow]) -> BTreeMap<i64, Tally> {
    let mut m: BTreeMap<i64, Tally> = BTreeMap::new();
    for r in rows {
        m.entry(r.at_ms.div_euclid(MINUTE_MS) * MINUTE_MS)
            .or_default()
            .add_row(r);
    }
    m
}

/// Writes rollups through a connection of either database (the upsert is the same SQL).
macro_rules! record_on {
    ($conn:expr, $rows:expr) => {{
        for (minute, t) in by_minute($rows) {
            let mut q = sqlx::query(UPSERT)
                .bind(minute)
                .bind(t.ok)
                .bind(t.http_error)
                .bind(t.failed)
                .bind(t.truncated)
                .bind(t.cancelled)
                .bind(t.bytes)
                .bind(t.duration_sum);
            for h in t.hist {
                q = q.bind(h);
            }
            q = q.bind(t.skipped);
            q.execute(&mut *$conn).await?;
        }
        Ok(())
    }};
}

/// Records newly stored results inside the writer's open Postgres transaction. Call it
/// once per transaction with only the rows that were really stored (not duplicates).
pub(crate) async fn record_pg(tx: &mut sqlx::PgConnection, rows: &[RollupRow]) -> StoreResult<()> {
    record_on!(tx, rows)
}

/// The same for SQLite.
pub(crate) async fn record_sqlite(
    tx: &mut sqlx::SqliteConnection,
    rows: &[RollupRow],
) -> StoreResult<()> {
    record_on!(tx, rows)
}

/// Lets `on_pool!` bodies call one name for both databases.
pub(crate) trait RecordRollups {
    async fn record_rollups(&mut self, rows: &[RollupRow]) -> StoreResult<()>;
}

impl RecordRollups for sqlx::PgConnection {
    async fn record_rollups(&mut self, rows: &[RollupRow]) -> StoreResult<()> {
        record_pg(self, rows).await
    }
}

impl RecordRollups for sqlx::SqliteConnection {
    async fn record_rollups(&mut self, rows: &[RollupRow]) -> StoreResult<()> {
        record_sqlite(self, rows).await
    }
}

/// The span a chart covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Window {
    /// The last hour, per minute (60 buckets).
    Hour,
    /// The last 24 hours, per 15 minutes (96 buckets).
    Day,
}

impl Window {
    /// Parses `1h` / `24h` (the API's spelling).
    pub fn parse(s: &str) -> Result<Window, String> {
        match s {
            "1h" => Ok(Window::Hour),
            "24h" => Ok(Window::Day),
            _ => Err("`window` must be 1h or 24h".into()),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Window::Hour => "1h",
            Window::Day => "24h",
        }
    }

    /// Width of one bucket (ms).
    pub fn step_ms(self) -> i64 {
        match self {
            Window::Hour => MINUTE_MS,
            Window::Day => 15 * MINUTE_MS,
        }
    }

    pub fn buckets(self) -> usize {
        match self {
            Window::Hour => 60,
            Window::Day => 96,
        }
    }

    /// Start of the first bucket, for a chart ending with the bucket holding `now`.
    pub fn first_start(self, now: i64) -> i64 {
        let step = self.step_ms();
        now.div_euclid(step) * step - (self.buckets() as i64 - 1) * step
    }
}

/// One bar of a chart: the API's `{"start", "ok", …, "p50_ms", "p95_ms"}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Bucket {
    /// Start of the bucket (epoch ms).
    pub start: i64,
    pub ok: i64,
    pub http_error: i64,
    pub failed: i64,
    pub truncated: i64,
    pub cancelled: i64,
    #[schema(required = true)]
    pub p50_ms: Option<i64>,
    #[schema(required = true)]
    pub p95_ms: Option<i64>,
}

/// Groups minute tallies (`(minute, tally)`, any order) into the window's buckets; every
/// bucket is present, empty ones as zeros.
pub fn bucketize(window: Window, now: i64, minutes: &[(i64, Tally)]) -> Vec<Bucket> {
    let first = window.first_start(now);
    let step = window.step_ms();
    let mut sums = vec![Tally::default(); window.buckets()];
    for (minute, t) in minutes {
        let i = (minute - first).div_euclid(step);
        if (0..sums.len() as i64).contains(&i) {
            sums[i as usize].add(t);
        }
    }
    sums.iter()
        .enumerate()
        .map(|(i, t)| Bucket {
            start: first + i as i64 * step,
            ok: t.ok,
            http_error: t.http_error,
            failed: t.failed,
            truncated: t.truncated,
            cancelled: t.cancelled,
            p50_ms: t.quantile_ms(0.50),
            p95_ms: t.quantile_ms(0.95),
        })
        .collect()
}

const SELECT: &str = "SELECT minute, ok, http_error, failed, truncated, cancelled, skipped, bytes, \
     duration_ms_sum, h0, h1, h2, h3, h4, h5, h6, h7, h8, h9 FROM rollup_minute";

macro_rules! tally_from_row {
    ($row:expr) => {{
        let row = $row;
        let mut hist = [0i64; BUCKETS];
        for (i, h) in hist.iter_mut().enumerate() {
            *h = row.try_get(format!("h{i}").as_str())?;
        }
        let minute: i64 = row.try_get("minute")?;
        (
            minute,
            Tally {
                ok: row.try_get("ok")?,
                http_error: row.try_get("http_error")?,
                failed: row.try_get("failed")?,
                truncated: row.try_get("truncated")?,
                cancelled: row.try_get("cancelled")?,
                skipped: row.try_get("skipped")?,
                bytes: row.try_get("bytes")?,
                duration_sum: row.try_get("duration_ms_sum")?,
                hist,
            },
        )
    }};
}

impl Store {
    /// Minute tallies from `from` (epoch ms, inclusive) on: a primary-key range read.
    pub async fn rollup_minutes(&self, from: i64) -> StoreResult<Vec<(i64, Tally)>> {
        let sql = format!("{SELECT} WHERE minute >= $1 ORDER BY minute");
        let mut out = Vec::new();
        on_pool!(self, |pool| {
            let rows = sqlx::query(&sql).bind(from).fetch_all(pool).await?;
            for row in &rows {
                out.push(tally_from_row!(row));
            }
        });
        Ok(out)
    }

    /// Every minute ever rolled up, summed (tests compare it with a recount).
    pub async fn rollup_total(&self) -> StoreResult<Tally> {
        let mut total = Tally::default();
        for (_, t) in self.rollup_minutes(i64::MIN).await? {
            total.add(&t);
        }
        Ok(total)
    }

    /// The chart data of `window` ending now.
    pub async fn throughput(&self, window: Window, now: i64) -> StoreResult<Vec<Bucket>> {
        let minutes = self.rollup_minutes(window.first_start(now)).await?;
        Ok(bucketize(window, now, &minutes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(at_ms: i64, outcome: Outcome, duration_ms: i64) -> RollupRow {
        RollupRow {
            at_ms,
            outcome,
            duration_ms,
            bytes: 10,
        }
    }

    #[test]
    fn buckets_by_bound() {
        assert_eq!(bucket_of(0), 0);
        assert_eq!(bucket_of(50), 0);
        assert_eq!(bucket_of(51), 1);
        assert_eq!(bucket_of(30_000), 8);
        assert_eq!(bucket_of(30_001), 9);
    }

    #[test]
    fn quantiles_interpolate_inside_a_bucket() {
        let mut t = Tally::default();
        assert_eq!(t.quantile_ms(0.5), None);
        // 10 fetches in (100, 250]: the median is half-way through the bucket.
        t.hist[2] = 10;
        assert_eq!(t.quantile_ms(0.5), Some(175));
        assert_eq!(t.quantile_ms(0.95), Some(243));
        // One slow outlier beyond 30 s moves p95 only if it holds the rank.
        t.hist[9] = 1;
        assert_eq!(t.quantile_ms(0.5), Some(183));
        assert_eq!(t.quantile_ms(1.0), Some(30_000));
    }

    #[test]
    fn rows_sum_per_minute_and_cancelled_skips_the_histogram() {
        let rows = [
            row(60_000, Outcome::Ok, 40),
            row(119_999, Outcome::HttpError, 300),
            row(120_000, Outcome::Cancelled, 0),
        ];
        let m = by_minute(&rows);
        assert_eq!(m.len(), 2);
        let a = m[&60_000];
        assert_eq!((a.ok, a.http_error, a.bytes), (1, 1, 20));
        assert_eq!((a.hist[0], a.hist[3]), (1, 1));
        let b = m[&120_000];
        assert_eq!((b.cancelled, b.hist.iter().sum::<i64>()), (1, 0));
    }

    #[test]
    fn windows_cover_the_last_hour_and_day() {
        let now = 10 * 86_400_000 + 12_345;
        let h = bucketize(Window::Hour, now, &[]);
        assert_eq!(h.len(), 60);
        assert_eq!(h[59].start, 10 * 86_400_000);
        assert_eq!(h[0].start, 10 * 86_400_000 - 59 * 60_000);
        let d = bucketize(Window::Day, now, &[]);
        assert_eq!(d.len(), 96);
        assert_eq!(d[95].start, 10 * 86_400_000);
        // Minutes out of the window are left out; those inside land in their bucket.
        let t = Tally {
            ok: 3,
            ..Tally::default()
        };
        let d = bucketize(
            Window::Day,
            now,
            &[(now - 30 * 60_000, t), (now - 25 * 3_600_000, t)],
        );
        assert_eq!(d.iter().map(|b| b.ok).sum::<i64>(), 3);
        assert_eq!(d[93].ok, 3);
        assert_eq!(Window::parse("24h"), Ok(Window::Day));
        assert!(Window::parse("7d").is_err());
    }
}
