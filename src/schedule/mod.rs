//! Schedules and change rules (DESIGN §16), beside the flow: a due schedule starts a new
//! run of its batch, whose tasks go submit → queue → … → DB as any retry does; the
//! results of that run are compared with the previous run's in the DB writer's
//! transaction (`store::changes`). This module holds the pure parts — reading an interval,
//! a cron expression in a named time zone and a change rule, and computing the next tick —
//! and [`tick`] holds the loop that claims due ticks in the database.

pub mod tick;

use std::fmt;
use std::str::FromStr;

use chrono::{TimeZone, Utc};
use chrono_tz::Tz;

/// The shortest interval a person may set (the tests shorten it through the config).
pub const MIN_INTERVAL_MS: i64 = 60_000;
/// The longest interval: a year (anything longer is surely a typo).
pub const MAX_INTERVAL_MS: i64 = 366 * 86_400_000;
/// The most change rules on one batch.
pub const MAX_RULES: usize = 20;

/// Why a schedule or a rule was refused; each message says what would be accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error(
        "`every` must be a duration such as 15m, 6h, 1d or 1h30m (units s, m, h, d, w): {0:?} is not"
    )]
    BadInterval(String),
    #[error("`every` must be at least {min}: {given:?} is shorter")]
    TooShort { given: String, min: String },
    #[error("`every` must be at most 366d: {0:?} is longer")]
    TooLong(String),
    #[error("`cron` must be five fields (minute hour day-of-month month day-of-week): {0}")]
    BadCron(String),
    #[error("`timezone` must be an IANA time zone name such as UTC or Europe/Berlin: {0:?} is not")]
    BadTimeZone(String),
    #[error("give either `every` or `cron`, not both and not neither")]
    Cadence,
    #[error("`timezone` applies to `cron` only")]
    TimeZoneWithoutCron,
    #[error(
        "a rule must be \"> N\", \"< N\", \"becomes 0\" or \"becomes non-zero\" (N a whole number ≥ 0): {0:?} is not"
    )]
    BadRule(String),
    #[error("at most {MAX_RULES} rules")]
    TooManyRules,
    #[error("the cron expression {0:?} never fires")]
    Never(String),
}

/// How often a schedule ticks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cadence {
    /// Every so many milliseconds, counted from the last tick.
    Every(i64),
    /// On a five-field cron expression, read in the time zone `tz`.
    Cron { expr: String, tz: Tz },
}

impl Cadence {
    /// Reads what a person gave: exactly one of `every` and `cron`; `timezone` (cron only,
    /// default UTC). `min_ms` is the shortest interval allowed (MIN_INTERVAL_MS for people).
    pub fn parse(
        every: Option<&str>,
        cron: Option<&str>,
        timezone: Option<&str>,
        min_ms: i64,
    ) -> Result<Cadence, ScheduleError> {
        match (every, cron) {
            (Some(e), None) => {
                if timezone.is_some_and(|t| t != "UTC") {
                    return Err(ScheduleError::TimeZoneWithoutCron);
                }
                Ok(Cadence::Every(parse_interval(e, min_ms)?))
            }
            (None, Some(c)) => {
                let tz = parse_tz(timezone.unwrap_or("UTC"))?;
                let expr = c.split_whitespace().collect::<Vec<_>>().join(" ");
                check_cron(&expr)?;
                let cad = Cadence::Cron { expr, tz };
                // An expression that parses but never matches (31 February) is refused here
                // rather than leaving a schedule that never ticks.
                cad.next_after(Utc::now().timestamp_millis())?;
                Ok(cad)
            }
            _ => Err(ScheduleError::Cadence),
        }
    }

    /// The first tick strictly after `now_ms`. Computed from now, never by walking the
    /// ticks that were missed: missed ticks collapse into one.
    pub fn next_after(&self, now_ms: i64) -> Result<i64, ScheduleError> {
        match self {
            Cadence::Every(ms) => Ok(now_ms.saturating_add(*ms)),
            Cadence::Cron { expr, tz } => {
                let cron = croner::Cron::new(expr)
                    .parse()
                    .map_err(|e| ScheduleError::BadCron(e.to_string()))?;
                let now = Utc
                    .timestamp_millis_opt(now_ms)
                    .single()
                    .ok_or_else(|| ScheduleError::Never(expr.clone()))?
                    .with_timezone(tz);
                let next = cron
                    .find_next_occurrence(&now, false)
                    .map_err(|_| ScheduleError::Never(expr.clone()))?;
                Ok(next.timestamp_millis())
            }
        }
    }

    /// The interval in ms (None for cron).
    pub fn every_ms(&self) -> Option<i64> {
        match self {
            Cadence::Every(ms) => Some(*ms),
            Cadence::Cron { .. } => None,
        }
    }

    /// The cron expression (None for an interval).
    pub fn cron(&self) -> Option<&str> {
        match self {
            Cadence::Every(_) => None,
            Cadence::Cron { expr, .. } => Some(expr),
        }
    }

    /// The time zone's name ("UTC" for an interval).
    pub fn timezone(&self) -> &str {
        match self {
            Cadence::Every(_) => "UTC",
            Cadence::Cron { tz, .. } => tz.name(),
        }
    }

    /// Rebuilds a cadence from its stored columns.
    pub fn from_columns(
        every_ms: Option<i64>,
        cron: Option<&str>,
        timezone: &str,
    ) -> Result<Cadence, ScheduleError> {
        match (every_ms, cron) {
            (Some(ms), None) if ms > 0 => Ok(Cadence::Every(ms)),
            (None, Some(c)) => Ok(Cadence::Cron {
                expr: c.to_string(),
                tz: parse_tz(timezone)?,
            }),
            _ => Err(ScheduleError::Cadence),
        }
    }
}

/// `15m`, `6h`, `1d`, `1h30m`, `90s`, `2w` → milliseconds, at least `min_ms`.
pub fn parse_interval(s: &str, min_ms: i64) -> Result<i64, ScheduleError> {
    let bad = || ScheduleError::BadInterval(truncate(s));
    let t = s.trim();
    if t.is_empty() || t.len() > 32 {
        return Err(bad());
    }
    let mut total: i64 = 0;
    let mut rest = t;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 || digits > 9 {
            return Err(bad());
        }
        let n: i64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = rest[digits..].trim_start();
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit = match &rest[..unit_len] {
            "s" | "sec" | "secs" => 1_000,
            "m" | "min" | "mins" => 60_000,
            "h" | "hr" | "hrs" => 3_600_000,
            "d" | "day" | "days" => 86_400_000,
            "w" | "week" | "weeks" => 7 * 86_400_000,
            _ => return Err(bad()),
        };
        rest = rest[unit_len..].trim_start();
        total = total
            .checked_add(n.checked_mul(unit).ok_or_else(bad)?)
            .ok_or_else(bad)?;
    }
    if total > MAX_INTERVAL_MS {
        return Err(ScheduleError::TooLong(truncate(s)));
    }
    if total < min_ms {
        return Err(ScheduleError::TooShort {
            given: truncate(s),
            min: format_interval(min_ms),
        });
    }
    Ok(total)
}

/// Milliseconds as the shortest spelling `parse_interval` reads back (`1h30m`, `45s`).
pub fn format_interval(ms: i64) -> String {
    let mut out = String::new();
    let mut rest = ms;
    for (unit, n) in [
        ("w", 7 * 86_400_000),
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
    ] {
        if rest >= n {
            out.push_str(&format!("{}{unit}", rest / n));
            rest %= n;
        }
    }
    if out.is_empty() || rest > 0 {
        out.push_str(&format!("{rest}ms"));
    }
    out
}

/// A named time zone (IANA), e.g. `Europe/Berlin`.
pub fn parse_tz(s: &str) -> Result<Tz, ScheduleError> {
    Tz::from_str(s.trim()).map_err(|_| ScheduleError::BadTimeZone(truncate(s)))
}

/// Exactly five fields, each made of cron characters, and croner accepts it. Six-field
/// (seconds) expressions are refused: nothing ticks more often than once a minute.
fn check_cron(expr: &str) -> Result<(), ScheduleError> {
    if expr.len() > 200 {
        return Err(ScheduleError::BadCron("longer than 200 characters".into()));
    }
    let fields = expr.split(' ').count();
    if fields != 5 {
        return Err(ScheduleError::BadCron(format!(
            "{:?} has {fields} fields",
            truncate(expr)
        )));
    }
    croner::Cron::new(expr)
        .parse()
        .map(|_| ())
        .map_err(|e| ScheduleError::BadCron(format!("{:?}: {e}", truncate(expr))))
}

fn truncate(s: &str) -> String {
    s.chars().take(64).collect()
}

/// A rule on a batch's counts: a change is stored when a count crosses it (DESIGN §16).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rule {
    /// From ≤ N to > N.
    Above(i64),
    /// From ≥ N to < N.
    Below(i64),
    /// From non-zero to 0.
    BecomesZero,
    /// From 0 to non-zero.
    BecomesNonZero,
}

impl Rule {
    /// Whether going from `before` to `after` crosses this rule.
    pub fn crossed(self, before: i64, after: i64) -> bool {
        match self {
            Rule::Above(n) => before <= n && after > n,
            Rule::Below(n) => before >= n && after < n,
            Rule::BecomesZero => before != 0 && after == 0,
            Rule::BecomesNonZero => before == 0 && after != 0,
        }
    }

    /// Reads a list of rules (at most MAX_RULES, duplicates dropped).
    pub fn parse_list<S: AsRef<str>>(items: &[S]) -> Result<Vec<Rule>, ScheduleError> {
        if items.len() > MAX_RULES {
            return Err(ScheduleError::TooManyRules);
        }
        let mut out: Vec<Rule> = Vec::with_capacity(items.len());
        for s in items {
            let r: Rule = s.as_ref().parse()?;
            if !out.contains(&r) {
                out.push(r);
            }
        }
        Ok(out)
    }
}

impl FromStr for Rule {
    type Err = ScheduleError;
    fn from_str(s: &str) -> Result<Rule, ScheduleError> {
        let t = s.split_whitespace().collect::<Vec<_>>().join(" ");
        let bad = || ScheduleError::BadRule(truncate(s));
        let number = |n: &str| -> Result<i64, ScheduleError> {
            let n = n.trim();
            if n.is_empty() || n.len() > 15 || !n.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            n.parse().map_err(|_| bad())
        };
        match t.to_ascii_lowercase().as_str() {
            "becomes 0" | "becomes zero" => Ok(Rule::BecomesZero),
            "becomes non-zero" | "becomes nonzero" => Ok(Rule::BecomesNonZero),
            x if x.starts_with('>') => Ok(Rule::Above(number(&x[1..])?)),
            x if x.starts_with('<') => Ok(Rule::Below(number(&x[1..])?)),
            _ => Err(bad()),
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rule::Above(n) => write!(f, "> {n}"),
            Rule::Below(n) => write!(f, "< {n}"),
            Rule::BecomesZero => f.write_str("becomes 0"),
            Rule::BecomesNonZero => f.write_str("becomes non-zero"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals() {
        assert_eq!(parse_interval("15m", MIN_INTERVAL_MS), Ok(900_000));
        assert_eq!(parse_interval("6h", MIN_INTERVAL_MS), Ok(21_600_000));
        assert_eq!(parse_interval("1d", MIN_INTERVAL_MS), Ok(86_400_000));
        assert_eq!(parse_interval("1h30m", MIN_INTERVAL_MS), Ok(5_400_000));
        assert_eq!(parse_interval(" 2 w ", MIN_INTERVAL_MS), Ok(1_209_600_000));
        assert_eq!(parse_interval("1s", 1_000), Ok(1_000));
        for bad in [
            "",
            "h",
            "1",
            "1x",
            "-1h",
            "1.5h",
            "1h-",
            "99999999999d",
            "1m1",
        ] {
            assert!(
                matches!(
                    parse_interval(bad, MIN_INTERVAL_MS),
                    Err(ScheduleError::BadInterval(_))
                ),
                "{bad:?}"
            );
        }
        assert!(matches!(
            parse_interval("59s", MIN_INTERVAL_MS),
            Err(ScheduleError::TooShort { .. })
        ));
        assert!(matches!(
            parse_interval("400d", MIN_INTERVAL_MS),
            Err(ScheduleError::TooLong(_))
        ));
        assert_eq!(format_interval(5_400_000), "1h30m");
        assert_eq!(format_interval(60_000), "1m");
    }

    #[test]
    fn cron_in_a_time_zone() {
        let c =
            Cadence::parse(None, Some("0 */6 * * *"), Some("Europe/Berlin"), 60_000).expect("cron");
        // 2026-01-01T00:30:00Z = 01:30 in Berlin (CET, +1): next 06:00 Berlin = 05:00Z.
        let now = 1_767_227_400_000;
        assert_eq!(c.next_after(now), Ok(1_767_243_600_000));
        let utc = Cadence::parse(None, Some("0 */6 * * *"), None, 60_000).expect("cron");
        assert_eq!(utc.next_after(now), Ok(1_767_247_200_000));
        assert!(matches!(
            Cadence::parse(None, Some("* * * * * *"), None, 60_000),
            Err(ScheduleError::BadCron(_))
        ));
        assert!(matches!(
            Cadence::parse(None, Some("61 * * * *"), None, 60_000),
            Err(ScheduleError::BadCron(_))
        ));
        assert!(matches!(
            Cadence::parse(None, Some("0 0 * * *"), Some("Mars/Olympus"), 60_000),
            Err(ScheduleError::BadTimeZone(_))
        ));
        assert!(matches!(
            Cadence::parse(Some("1h"), Some("0 0 * * *"), None, 60_000),
            Err(ScheduleError::Cadence)
        ));
        assert!(matches!(
            Cadence::parse(None, None, None, 60_000),
            Err(ScheduleError::Cadence)
        ));
    }

    #[test]
    fn missed_ticks_collapse() {
        let c = Cadence::Every(60_000);
        // However long ago the last tick was, the next is one interval after now.
        assert_eq!(c.next_after(10_000_000), Ok(10_060_000));
    }

    #[test]
    fn rules() {
        let r = Rule::parse_list(&["> 10", "<3", "becomes 0", "Becomes Non-Zero", "> 10"])
            .expect("rules");
        assert_eq!(
            r,
            vec![
                Rule::Above(10),
                Rule::Below(3),
                Rule::BecomesZero,
                Rule::BecomesNonZero
            ]
        );
        assert!(Rule::Above(10).crossed(10, 11));
        assert!(!Rule::Above(10).crossed(11, 12));
        assert!(Rule::Below(3).crossed(3, 2));
        assert!(Rule::BecomesZero.crossed(4, 0));
        assert!(Rule::BecomesNonZero.crossed(0, 1));
        assert!(!Rule::BecomesNonZero.crossed(1, 2));
        for bad in [">", "> -1", "= 3", "> 1e3", "becomes 1", ""] {
            assert!(bad.parse::<Rule>().is_err(), "{bad:?}");
        }
        assert_eq!(Rule::Above(5).to_string(), "> 5");
    }
}
