//! What the templates show: tasks turned into display rows (numbers formatted, times in
//! UTC), so templates stay free of logic. Askama escapes every string field.

use crate::count::Scope;
use crate::model::{Stats, TaskStatus, TaskView};
use crate::outcome::Outcome;

/// One row of the task table.
pub struct Row {
    pub id: i64,
    pub address: String,
    pub status: &'static str,
    /// The outcome's spelling, "" while unfinished.
    pub outcome: &'static str,
    pub status_class: &'static str,
    pub status_label: String,
    pub what: String,
    pub count: String,
    pub http: String,
    /// "http-error" for 4xx/5xx, so the number stands out.
    pub http_class: &'static str,
    pub error: String,
    pub truncated: bool,
    pub submitted: String,
    pub details: String,
}

impl Row {
    pub fn from_view(v: &TaskView) -> Row {
        let t = &v.task;
        let o = &t.options;
        let mut what = o
            .word_list()
            .iter()
            .map(|w| format!("“{w}”"))
            .collect::<Vec<_>>()
            .join(", ");
        what.push_str(if o.whole_word {
            " · whole word"
        } else {
            " · substring"
        });
        what.push_str(if o.case_sensitive {
            " · case-sensitive"
        } else {
            ""
        });
        if o.scope == Scope::Raw {
            what.push_str(" · raw HTML");
        }
        let (status_class, status_label) = match t.status {
            TaskStatus::NotStarted => ("not-started", "waiting for queue".to_string()),
            TaskStatus::Pending if t.attempts > 1 => {
                ("pending", format!("pending · retry {}", t.attempts - 1))
            }
            TaskStatus::Pending => ("pending", "pending".to_string()),
            TaskStatus::Finished => match t.outcome {
                Some(Outcome::Ok) | None => ("finished", "finished".to_string()),
                Some(Outcome::HttpError) => ("http-error", "HTTP error".to_string()),
                Some(Outcome::Failed) => ("failed", "failed".to_string()),
                Some(Outcome::Truncated) => ("truncated", "truncated".to_string()),
                Some(Outcome::Cancelled) => ("cancelled", "cancelled".to_string()),
                Some(Outcome::Skipped) => ("skipped", "skipped".to_string()),
            },
        };
        let status_label = if t.run > 1 {
            format!("{status_label} · run {}", t.run)
        } else {
            status_label
        };
        let (count, http, error, truncated, details) = match &v.result {
            None => (
                "—".to_string(),
                String::new(),
                String::new(),
                false,
                String::new(),
            ),
            Some(r) => {
                let mut d = Vec::new();
                if let Some(u) = &r.final_url
                    && u != &t.address
                {
                    d.push(format!("final URL {u}"));
                }
                if let Some(c) = &r.content_type {
                    // The media type only: the charset actually used is shown next.
                    d.push(c.split(';').next().unwrap_or(c).trim().to_string());
                }
                if let Some(c) = &r.charset {
                    d.push(format!("charset {c}"));
                }
                d.push(human_bytes(r.bytes_read));
                d.push(format!("{} ms", r.duration_ms));
                if r.attempts > 1 {
                    d.push(format!("{} fetch attempts", r.attempts));
                }
                (
                    match (&r.counts, o.count_keys().len() > 1) {
                        // Several words (or patterns): each one's count, in the task's order.
                        (Some(c), true) => o
                            .count_keys()
                            .iter()
                            .map(|w| format!("{w} {}", c.get(w).copied().unwrap_or(0)))
                            .collect::<Vec<_>>()
                            .join(" · "),
                        _ => r
                            .words_count
                            .map(|n| n.to_string())
                            .unwrap_or_else(|| "—".into()),
                    },
                    r.http_status_code
                        .map(|c| c.to_string())
                        .unwrap_or_default(),
                    r.error.clone().unwrap_or_default(),
                    r.truncated,
                    d.join(" · "),
                )
            }
        };
        let http_class = match v.result.as_ref().and_then(|r| r.http_status_code) {
            Some(c) if c >= 400 => "http-error",
            _ => "",
        };
        Row {
            id: t.id,
            address: t.address.clone(),
            outcome: t.outcome.map(Outcome::as_str).unwrap_or(""),
            status: t.status.as_str(),
            status_class,
            status_label,
            what,
            count,
            http,
            http_class,
            error,
            truncated,
            submitted: utc(t.timestamp),
            details,
        }
    }
}

/// Counters shown above the table.
pub struct Counters {
    pub total: i64,
    pub not_started: i64,
    pub pending: i64,
    pub finished: i64,
    /// (outcome spelling, label, count) for each outcome, in `Outcome::ALL` order.
    pub outcomes: Vec<(&'static str, &'static str, i64)>,
}

/// How each outcome is named on the pages.
pub fn outcome_label(o: Outcome) -> &'static str {
    match o {
        Outcome::Ok => "ok",
        Outcome::HttpError => "HTTP error",
        Outcome::Failed => "failed",
        Outcome::Truncated => "truncated",
        Outcome::Cancelled => "cancelled",
        Outcome::Skipped => "skipped",
    }
}

impl From<Stats> for Counters {
    fn from(s: Stats) -> Self {
        let n = |o: Outcome| match o {
            Outcome::Ok => s.ok,
            Outcome::HttpError => s.http_error,
            Outcome::Failed => s.failed,
            Outcome::Truncated => s.truncated,
            Outcome::Cancelled => s.cancelled,
            Outcome::Skipped => s.skipped,
        };
        Counters {
            total: s.total(),
            not_started: s.not_started,
            pending: s.pending,
            finished: s.finished,
            outcomes: Outcome::ALL
                .into_iter()
                .map(|o| (o.as_str(), outcome_label(o), n(o)))
                .collect(),
        }
    }
}

/// "3 minutes ago"-style age of an epoch-ms instant, relative to `now`.
pub fn age(ms: i64, now: i64) -> String {
    let s = ((now - ms) / 1000).max(0);
    match s {
        0..=59 => format!("{s} s ago"),
        60..=3599 => format!("{} min ago", s / 60),
        3600..=86_399 => format!("{} h ago", s / 3600),
        _ => format!("{} days ago", s / 86_400),
    }
}

pub fn human_bytes(n: i64) -> String {
    const K: f64 = 1024.0;
    let f = n as f64;
    if f < K {
        format!("{n} B")
    } else if f < K * K {
        format!("{:.1} KiB", f / K)
    } else {
        format!("{:.1} MiB", f / K / K)
    }
}

/// Epoch milliseconds as `YYYY-MM-DD HH:MM:SS UTC` (civil-from-days, no time crate needed).
pub fn utc(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_formats_known_instants() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(951_782_400_000), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc(1_795_900_000_000), "2026-11-28 21:06:40 UTC");
    }

    #[test]
    fn bytes_are_human() {
        assert_eq!(human_bytes(10), "10 B");
        assert_eq!(human_bytes(2048), "2.0 KiB");
        assert_eq!(human_bytes(10 * 1024 * 1024), "10.0 MiB");
    }
}
