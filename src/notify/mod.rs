//! Notifications (submit → … → DB → **notify**, DESIGN §16): signed webhooks for a batch's
//! events, delivered at least once from the `delivery` outbox in the database.
//!
//! * [`sign`] — `X-Wordtally-Signature: t=…,v1=…` (HMAC-SHA256 over `TIMESTAMP.BODY`).
//! * [`webhook`] — one POST through the SSRF guard.
//! * this file — what a person may subscribe to (validation at creation) and the
//!   dispatcher loop that `serve` runs: claim due deliveries (a conditional update in the
//!   database, safe with any number of `serve` processes), send them, record the outcome,
//!   and schedule retries with exponential back-off and jitter for about 27 hours (Svix's
//!   schedule) before giving up. Rows, not memory: deliveries survive restarts.

pub mod sign;
pub mod webhook;

use std::time::Duration;

use clap::Args;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use url::Url;

use crate::model::now_ms;
use crate::store::Store;
use crate::store::deliveries::{AttemptEnd, DueDelivery, EVENTS};

pub use webhook::Sender;

/// Waits after the failed attempt number `i + 1` (seconds, before scaling): Svix's schedule,
/// 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h — 8 attempts over ~27.6 h, then give up.
pub const RETRY_SCHEDULE_S: [u64; 7] = [5, 300, 1_800, 7_200, 18_000, 36_000, 36_000];

/// Longest webhook URL accepted.
pub const MAX_URL_LEN: usize = 2048;

/// Deliveries claimed per round of the dispatcher (sent concurrently).
const CLAIM: i64 = 32;

/// Webhook delivery settings of `serve`.
#[derive(Debug, Clone, Args)]
pub struct WebhookArgs {
    /// How often the webhook dispatcher looks for due deliveries, in ms.
    #[arg(long, env = "WEBHOOK_POLL_MS", help_heading = crate::config::heading::WEB, default_value_t = 1000)]
    pub webhook_poll_ms: u64,

    /// Time limit of one webhook POST (connect + answer), in ms.
    #[arg(long, env = "WEBHOOK_TIMEOUT_MS", help_heading = crate::config::heading::WEB, default_value_t = 10_000)]
    pub webhook_timeout_ms: u64,

    /// Length in ms of one "second" of the retry schedule (5 s, 5 min, 30 min, 2 h, 5 h,
    /// 10 h, 10 h). 1000 in production; tests shorten it.
    #[arg(long, env = "WEBHOOK_RETRY_UNIT_MS", help_heading = crate::config::heading::WEB, default_value_t = 1000)]
    pub webhook_retry_unit_ms: u64,
}

impl Default for WebhookArgs {
    fn default() -> Self {
        WebhookArgs {
            webhook_poll_ms: 1000,
            webhook_timeout_ms: 10_000,
            webhook_retry_unit_ms: 1000,
        }
    }
}

/// A webhook as a person asked for it, checked: an absolute http(s) URL without
/// credentials and one or more known events (deduplicated, in a fixed order).
pub fn validate(url: &str, events: &[String]) -> Result<(Url, Vec<String>), String> {
    if url.len() > MAX_URL_LEN {
        return Err(format!("the URL is longer than {MAX_URL_LEN} characters"));
    }
    let parsed = Url::parse(url.trim()).map_err(|e| format!("the URL is not valid: {e}"))?;
    if parsed.scheme() != "http" && parsed.scheme() != "https" {
        return Err("the URL must start with http:// or https://".into());
    }
    if parsed.host().is_none() {
        return Err("the URL has no host".into());
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(
            "the URL must not carry a user name or password (the signature authenticates)".into(),
        );
    }
    if events.is_empty() {
        return Err(format!(
            "`events` must name at least one of {}",
            EVENTS.join(", ")
        ));
    }
    for e in events {
        if !EVENTS.contains(&e.as_str()) {
            let shown: String = e.chars().take(40).collect();
            return Err(format!(
                "unknown event {shown:?}: use {}",
                EVENTS.join(", ")
            ));
        }
    }
    let chosen = EVENTS
        .iter()
        .filter(|e| events.iter().any(|x| x == *e))
        .map(|e| e.to_string())
        .collect();
    Ok((parsed, chosen))
}

/// When to try again after `attempts` failed attempts (None: give up), with ±20% jitter
/// so that receivers coming back are not hit by every sender at once.
pub fn next_attempt_delay(attempts: i32, unit_ms: u64) -> Option<Duration> {
    let i = usize::try_from(attempts).ok()?.checked_sub(1)?;
    let base_ms = RETRY_SCHEDULE_S.get(i)?.saturating_mul(unit_ms.max(1));
    let jitter = 0.8 + fastrand::f64() * 0.4;
    Some(Duration::from_millis((base_ms as f64 * jitter) as u64))
}

/// The running dispatcher loop; `stop` ends it after the round in progress.
pub struct Dispatcher {
    stop: watch::Sender<bool>,
    handle: JoinHandle<()>,
}

impl Dispatcher {
    /// Starts the loop on the runtime.
    pub fn spawn(store: Store, sender: Sender, args: &WebhookArgs) -> Dispatcher {
        let (stop, rx) = watch::channel(false);
        let poll = Duration::from_millis(args.webhook_poll_ms.max(10));
        let lease_ms = i64::try_from(args.webhook_timeout_ms).unwrap_or(i64::MAX / 4) + 30_000;
        let unit = args.webhook_retry_unit_ms;
        let handle = tokio::spawn(dispatch(store, sender, poll, lease_ms, unit, rx));
        Dispatcher { stop, handle }
    }

    /// Stops taking deliveries and waits for the round in progress (sends are bounded by
    /// the POST time limit; a send cut short is claimed again after its lease).
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        if tokio::time::timeout(Duration::from_secs(15), self.handle)
            .await
            .is_err()
        {
            tracing::warn!("webhook dispatcher still sending after 15 s; leaving it");
        }
    }
}

/// The dispatcher loop: claim, send concurrently, record; back off while the database is
/// unreachable. Random jitter on the poll spreads several processes' claims.
async fn dispatch(
    store: Store,
    sender: Sender,
    poll: Duration,
    lease_ms: i64,
    unit_ms: u64,
    mut stop: watch::Receiver<bool>,
) {
    let mut db_down = false;
    loop {
        let wait = poll.mul_f64(0.75 + fastrand::f64() * 0.5);
        tokio::select! {
            _ = stop.wait_for(|s| *s) => break,
            _ = tokio::time::sleep(wait) => {}
        }
        // Keep going while a full round came back: a backlog drains at full speed.
        loop {
            let due = match store.claim_deliveries(now_ms(), lease_ms, CLAIM).await {
                Ok(d) => {
                    if db_down {
                        tracing::info!("webhook dispatcher reaches the database again");
                        db_down = false;
                    }
                    d
                }
                Err(e) => {
                    if !db_down {
                        tracing::warn!(error = %e, "webhook dispatcher cannot claim deliveries");
                        db_down = true;
                    }
                    break;
                }
            };
            let n = due.len();
            futures_util::future::join_all(
                due.iter().map(|d| deliver_one(&store, &sender, d, unit_ms)),
            )
            .await;
            if (n as i64) < CLAIM || *stop.borrow() {
                break;
            }
        }
    }
}

/// Sends one claimed delivery and records the outcome.
async fn deliver_one(store: &Store, sender: &Sender, d: &DueDelivery, unit_ms: u64) {
    let sent = sender.send(d, now_ms()).await;
    let at = now_ms();
    let attempts = d.attempts + 1;
    let end = match (&sent.error, sent.status) {
        (None, Some(s)) => AttemptEnd::Delivered {
            status: i32::from(s),
        },
        (error, status) => {
            let error = error.clone().unwrap_or_else(|| "no answer".into());
            let status = status.map(i32::from);
            match next_attempt_delay(attempts, unit_ms).filter(|_| !sent.permanent) {
                Some(delay) => AttemptEnd::Retry {
                    status,
                    error,
                    next_at: at + i64::try_from(delay.as_millis()).unwrap_or(i64::MAX / 4),
                },
                None => AttemptEnd::GiveUp { status, error },
            }
        }
    };
    metrics::counter!("wordtally_webhook_attempts_total", "result" => match &end {
        AttemptEnd::Delivered { .. } => "delivered",
        AttemptEnd::Retry { .. } => "retry",
        AttemptEnd::GiveUp { .. } => "gave_up",
    })
    .increment(1);
    match &end {
        AttemptEnd::Delivered { .. } => {}
        AttemptEnd::Retry { error, next_at, .. } => tracing::info!(
            delivery = d.id, webhook = d.webhook_id, event = %d.event, attempts, error = %error,
            retry_in_ms = next_at - at, "webhook delivery failed; will retry"
        ),
        AttemptEnd::GiveUp { error, .. } => tracing::warn!(
            delivery = d.id, webhook = d.webhook_id, event = %d.event, attempts, error = %error,
            "webhook delivery failed; giving up"
        ),
    }
    if let Err(e) = store.record_attempt(d.id, at, &end).await {
        // Not recorded: the lease ends and the delivery is sent again (at-least-once; the
        // receiver drops the duplicate by its X-Wordtally-Delivery id).
        tracing::warn!(delivery = d.id, error = %e, "could not record a webhook attempt");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_covers_a_day_then_gives_up() {
        let total: u64 = RETRY_SCHEDULE_S.iter().sum();
        assert!(total >= 24 * 3600, "{total}");
        assert_eq!(next_attempt_delay(0, 1000), None);
        let first = next_attempt_delay(1, 1000).expect("retry");
        assert!((4_000..=6_000).contains(&first.as_millis()), "{first:?}");
        assert!(next_attempt_delay(7, 1000).is_some());
        assert_eq!(
            next_attempt_delay(8, 1000),
            None,
            "8 attempts, then give up"
        );
        let short = next_attempt_delay(2, 1).expect("retry");
        assert!(
            short.as_millis() <= 360,
            "tests shorten the unit: {short:?}"
        );
    }

    #[test]
    fn validation_refuses_what_cannot_be_a_receiver() {
        let ev = |e: &[&str]| e.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let (u, e) = validate(
            "https://hooks.example/x",
            &ev(&["task.changed", "batch.finished", "task.changed"]),
        )
        .expect("valid");
        assert_eq!(u.as_str(), "https://hooks.example/x");
        assert_eq!(e, ev(&["batch.finished", "task.changed"]));
        for (url, events) in [
            ("ftp://x.example/", ev(&["batch.finished"])),
            ("not a url", ev(&["batch.finished"])),
            ("https://u:p@x.example/", ev(&["batch.finished"])),
            ("https://x.example/", ev(&[])),
            ("https://x.example/", ev(&["batch.started"])),
        ] {
            assert!(validate(url, &events).is_err(), "{url} {events:?}");
        }
        let long = format!("https://x.example/{}", "a".repeat(MAX_URL_LEN));
        assert!(validate(&long, &ev(&["batch.finished"])).is_err());
    }
}
