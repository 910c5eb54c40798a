//! How a finished task ended (DESIGN §11), derived from its result on the way into the
//! store (… → NSQ → **DB**) and shown, filtered and totalled on every page (→ poll).
//!
//! The outcome is stored beside the status so that filters and totals never recompute it.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::model::ResultRecord;

/// The end of a run. `Cancelled` comes from a person, every other one from a result.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// A 2xx/3xx response whose whole body was counted.
    Ok,
    /// The server answered with a status of 400 or more (the body may still be counted).
    HttpError,
    /// No usable response: DNS, connect, TLS, timeout, refused by the SSRF guard, not a
    /// text document, too many deliveries.
    Failed,
    /// Counted, but the body was longer than the limit: the count covers what was read.
    Truncated,
    /// Ended by a person before its result arrived.
    Cancelled,
    /// Found by a crawl but not fetched: robots.txt disallows it (DESIGN §15).
    Skipped,
}

impl Outcome {
    pub const ALL: [Outcome; 6] = [
        Self::Ok,
        Self::HttpError,
        Self::Failed,
        Self::Truncated,
        Self::Cancelled,
        Self::Skipped,
    ];

    /// The spelling used in the database, the API, the page and exports.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::HttpError => "http_error",
            Self::Failed => "failed",
            Self::Truncated => "truncated",
            Self::Cancelled => "cancelled",
            Self::Skipped => "skipped",
        }
    }

    /// The outcome a worker's result stands for. An HTTP error status wins over every
    /// other trait (a 404 page may be counted, but it is not the page that was asked
    /// for); then a missing count or an error (nothing usable); then truncation.
    pub fn of(r: &ResultRecord) -> Outcome {
        if r.skipped {
            return Self::Skipped;
        }
        match r.http_status_code {
            Some(s) if s >= 400 => Self::HttpError,
            _ if r.error.is_some() || r.words_count.is_none() => Self::Failed,
            _ if r.truncated => Self::Truncated,
            _ => Self::Ok,
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Outcome {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim().to_ascii_lowercase();
        Self::ALL
            .into_iter()
            .find(|o| o.as_str() == t)
            .ok_or_else(|| {
                format!("unknown outcome {s:?}: use ok, http_error, failed, truncated, cancelled or skipped")
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(
        status: Option<i32>,
        count: Option<i64>,
        error: Option<&str>,
        trunc: bool,
    ) -> ResultRecord {
        ResultRecord {
            words_count: count,
            http_status_code: status,
            error: error.map(str::to_owned),
            timestamp: 0,
            final_url: None,
            content_type: None,
            charset: None,
            bytes_read: 0,
            truncated: trunc,
            duration_ms: 0,
            attempts: 1,
            charset_source: None,
            attempt_log: Vec::new(),
            counts: None,
            redirects: Vec::new(),
            skipped: false,
            crawl: None,
        }
    }

    #[test]
    fn outcome_of_a_result() {
        assert_eq!(
            Outcome::of(&record(Some(200), Some(3), None, false)),
            Outcome::Ok
        );
        assert_eq!(
            Outcome::of(&record(Some(200), Some(3), None, true)),
            Outcome::Truncated
        );
        assert_eq!(
            Outcome::of(&record(Some(404), Some(1), None, false)),
            Outcome::HttpError
        );
        assert_eq!(
            Outcome::of(&record(Some(503), None, Some("x"), false)),
            Outcome::HttpError
        );
        assert_eq!(
            Outcome::of(&record(None, None, Some("dns"), false)),
            Outcome::Failed
        );
        assert_eq!(
            Outcome::of(&record(Some(200), None, Some("image/png"), false)),
            Outcome::Failed
        );
    }

    #[test]
    fn outcome_round_trips() {
        for o in Outcome::ALL {
            assert_eq!(o.as_str().parse::<Outcome>(), Ok(o));
            assert_eq!(serde_json::to_value(o).unwrap(), o.as_str());
        }
        assert!("done".parse::<Outcome>().is_err());
    }
}
