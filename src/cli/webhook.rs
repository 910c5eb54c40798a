//! `wordtally webhook create|list|deliveries|test|remove` (a terminal → the webhook API;
//! DB → **notify**, DESIGN §16): subscribes a URL to a batch's events, lists a batch's
//! webhooks, prints a webhook's delivery log, queues a test event and waits for its first
//! attempt, or removes a webhook — through the running server's JSON API, like `wordtally
//! schedule` (`--server`, `--token`).
//!
//! `create` prints the new webhook's signing secret on standard output once: the server
//! never shows it again. Exit status 1 with the server's reason when it refuses (a bad
//! URL, an unknown event, a target the SSRF guard refuses, no such batch or webhook:
//! nothing is stored), and for `test` when the receiver did not take the event.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use serde_json::{Value, json};

use super::{ServerArg, refusal};
use crate::http::utc;

/// Settings of `wordtally webhook`.
#[derive(Debug, Clone, Args)]
pub struct WebhookArgs {
    /// The server and its token (shared with the other API verbs).
    #[command(flatten)]
    pub api: ServerArg,
    #[command(subcommand)]
    pub action: WebhookAction,
}

#[derive(Debug, Clone, Subcommand)]
pub enum WebhookAction {
    /// Send a batch's events to a URL; prints the webhook's id and its signing secret
    /// (shown this once).
    Create {
        /// The batch id.
        batch: i64,
        /// Where to POST the events: an http(s) URL the server's SSRF guard lets through.
        #[arg(long)]
        url: String,
        /// An event to send: batch.finished (a run of the batch ended) or task.changed (a
        /// count changed); repeat for both.
        #[arg(long = "event", value_name = "EVENT", required = true)]
        events: Vec<String>,
    },
    /// List a batch's webhooks (without their secrets).
    List {
        /// The batch id.
        batch: i64,
    },
    /// Print a webhook's delivery log, newest first: time, event, state, attempts, last
    /// status and last error.
    Deliveries {
        /// The webhook id.
        webhook: i64,
        /// Deliveries shown at most (1–500).
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(i64).range(1..=500))]
        limit: i64,
    },
    /// Queue a `webhook.test` event and wait for its first attempt; exit status 1 when the
    /// receiver did not answer 2xx (the server retries it later as any other delivery).
    Test {
        /// The webhook id.
        webhook: i64,
        /// Queue it and return at once.
        #[arg(long)]
        no_wait: bool,
        /// Give up waiting after this many seconds.
        #[arg(long, default_value_t = 30)]
        timeout_secs: u64,
    },
    /// Remove a webhook and its delivery log (deliveries not yet sent are dropped).
    Remove {
        /// The webhook id.
        webhook: i64,
    },
}

/// The `POST /api/batches/{id}/webhooks` body. Events go as given: the server names the
/// unknown ones.
pub fn create_body(url: &str, events: &[String]) -> Value {
    json!({ "url": url, "events": events })
}

/// A delivery's state as the batch page words it.
fn state(d: &Value) -> String {
    match (d["state"].as_str().unwrap_or("?"), d["attempts"].as_i64()) {
        ("failed", _) => "gave up".into(),
        ("pending", Some(n)) if n > 0 => "retrying".into(),
        (other, _) => other.to_owned(),
    }
}

/// One line of the delivery log (tab-separated, like `wordtally token list`).
pub fn delivery_line(d: &Value) -> String {
    let opt = |v: &Value| match v {
        Value::Null => "-".to_string(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let mut line = format!(
        "{}\t{}\t{}\t{}\tattempts {}\tstatus {}\terror {}",
        d["id"],
        d["created_at"].as_i64().map(utc).unwrap_or_default(),
        d["event"].as_str().unwrap_or("?"),
        state(d),
        d["attempts"],
        opt(&d["last_status"]),
        opt(&d["last_error"]),
    );
    if d["state"] == "pending"
        && let Some(t) = d["next_attempt_at"].as_i64()
    {
        line.push_str(&format!("\tnext attempt {}", utc(t)));
    }
    line
}

/// A webhook as one line: id, URL, events, creation time.
pub fn webhook_line(h: &Value) -> String {
    let events: Vec<&str> = h["events"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    format!(
        "{}\t{}\t{}\tcreated {}",
        h["id"],
        h["url"].as_str().unwrap_or("?"),
        events.join(","),
        h["created_at"].as_i64().map(utc).unwrap_or_default()
    )
}

/// Talks to the server for one verb: each call returns the status and body, or the
/// reason it could not reach the server.
struct Api<'a> {
    arg: &'a ServerArg,
    base: String,
    client: reqwest::Client,
}

impl Api<'_> {
    /// Sends `method path` (with a JSON `body`); a non-2xx answer is the error, worded
    /// with the server's reason.
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Value> {
        let mut req = self
            .arg
            .auth(self.client.request(method, format!("{}{path}", self.base)));
        if let Some(b) = body {
            req = req
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(b.to_string());
        }
        let res = req
            .send()
            .await
            .with_context(|| format!("cannot reach the server at {}", self.base))?;
        let status = res.status();
        let text = res.text().await.context("the server's answer broke off")?;
        if !status.is_success() {
            bail!("{}", refusal(status, &text));
        }
        if text.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text).context("the server's answer is not JSON")
    }
}

/// Runs the verb; `Err` is printed as one line by `main`.
pub async fn run(args: WebhookArgs) -> anyhow::Result<()> {
    let api = Api {
        arg: &args.api,
        base: args.api.base(),
        client: args.api.client(Some(Duration::from_secs(60)))?,
    };
    use reqwest::Method;
    match args.action {
        WebhookAction::Create { batch, url, events } => {
            let body = create_body(&url, &events);
            let v = api
                .call(
                    Method::POST,
                    &format!("/api/batches/{batch}/webhooks"),
                    Some(&body),
                )
                .await
                .with_context(|| format!("cannot add the webhook to batch {batch}"))?;
            let (Some(id), Some(secret)) = (v["id"].as_i64(), v["secret"].as_str()) else {
                bail!("the server's answer has no webhook id and secret: {v}");
            };
            let events: Vec<&str> = v["webhook"]["events"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            println!(
                "webhook {id} for batch {batch}: {} ({})",
                v["webhook"]["url"].as_str().unwrap_or(&url),
                events.join(", ")
            );
            println!("secret {secret}");
            eprintln!(
                "Keep the secret now: it verifies the X-Wordtally-Signature of every \
                 delivery, and it won't be shown again."
            );
        }
        WebhookAction::List { batch } => {
            let v = api
                .call(Method::GET, &format!("/api/batches/{batch}/webhooks"), None)
                .await
                .with_context(|| format!("cannot list the webhooks of batch {batch}"))?;
            let hooks = v["webhooks"].as_array().cloned().unwrap_or_default();
            if hooks.is_empty() {
                println!(
                    "batch {batch} has no webhooks; add one with \
                     `wordtally webhook create {batch} --url URL --event batch.finished`"
                );
            }
            for h in &hooks {
                println!("{}", webhook_line(h));
            }
        }
        WebhookAction::Deliveries { webhook, limit } => {
            let v = api
                .call(
                    Method::GET,
                    &format!("/api/webhooks/{webhook}/deliveries?limit={limit}"),
                    None,
                )
                .await
                .with_context(|| format!("cannot read the deliveries of webhook {webhook}"))?;
            let log = v["deliveries"].as_array().cloned().unwrap_or_default();
            if log.is_empty() {
                println!(
                    "webhook {webhook} has no deliveries yet; send one with \
                     `wordtally webhook test {webhook}`"
                );
            }
            for d in &log {
                println!("{}", delivery_line(d));
            }
        }
        WebhookAction::Test {
            webhook,
            no_wait,
            timeout_secs,
        } => {
            let d = api
                .call(Method::POST, &format!("/api/webhooks/{webhook}/test"), None)
                .await
                .with_context(|| format!("cannot send a test event to webhook {webhook}"))?;
            let Some(delivery) = d["id"].as_i64() else {
                bail!("the server's answer has no delivery id: {d}");
            };
            eprintln!(
                "webhook {webhook}: test event {} queued as delivery {delivery}",
                d["event_id"].as_str().unwrap_or("?")
            );
            if no_wait {
                println!("{}", delivery_line(&d));
                return Ok(());
            }
            let d = first_attempt(&api, webhook, delivery, timeout_secs).await?;
            println!("{}", delivery_line(&d));
            if d["state"] != "delivered" {
                bail!(
                    "the receiver did not take the test event (status {}, {}); \
                     see `wordtally webhook deliveries {webhook}`",
                    d["last_status"],
                    d["last_error"].as_str().unwrap_or("no error text")
                );
            }
        }
        WebhookAction::Remove { webhook } => {
            api.call(Method::DELETE, &format!("/api/webhooks/{webhook}"), None)
                .await
                .with_context(|| format!("cannot remove webhook {webhook}"))?;
            println!("webhook {webhook} removed");
        }
    }
    Ok(())
}

/// Polls the delivery log until `delivery` has had an attempt (or is gone), at most
/// `timeout_secs`.
async fn first_attempt(
    api: &Api<'_>,
    webhook: i64,
    delivery: i64,
    timeout_secs: u64,
) -> anyhow::Result<Value> {
    let started = Instant::now();
    loop {
        // Keyset paging from just above the delivery's id: its row comes first.
        let v = api
            .call(
                reqwest::Method::GET,
                &format!(
                    "/api/webhooks/{webhook}/deliveries?before={}&limit=1",
                    delivery + 1
                ),
                None,
            )
            .await
            .with_context(|| format!("cannot read the deliveries of webhook {webhook}"))?;
        match v["deliveries"].get(0) {
            Some(d) if d["id"] == delivery => {
                if d["attempts"].as_i64().unwrap_or(0) > 0 {
                    return Ok(d.clone());
                }
            }
            _ => bail!("delivery {delivery} is gone (was webhook {webhook} removed?)"),
        }
        if started.elapsed() >= Duration::from_secs(timeout_secs) {
            bail!(
                "no attempt within {timeout_secs} s (it stays queued; see \
                 `wordtally webhook deliveries {webhook}`)"
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::config::{Cli, Command};

    fn parse(args: &[&str]) -> Result<WebhookArgs, clap::Error> {
        let mut v = vec!["wordtally", "webhook"];
        v.extend_from_slice(args);
        match Cli::try_parse_from(v)?.command {
            Some(Command::Webhook(a)) => Ok(a),
            _ => panic!("not webhook"),
        }
    }

    #[test]
    fn create_sends_the_events_as_given() {
        let a = parse(&[
            "create",
            "7",
            "--url",
            "http://h.test/hook",
            "--event",
            "batch.finished",
            "--event",
            "batch.started",
            "--server",
            "http://127.0.0.1:9",
        ])
        .expect("parses");
        assert_eq!(
            a.api.server, "http://127.0.0.1:9",
            "--server after the verb"
        );
        let WebhookAction::Create { batch, url, events } = a.action else {
            panic!("not create");
        };
        assert_eq!(batch, 7);
        assert_eq!(
            create_body(&url, &events),
            json!({"url": "http://h.test/hook", "events": ["batch.finished", "batch.started"]})
        );
    }

    #[test]
    fn usage_errors() {
        assert!(
            parse(&["create", "7", "--url", "http://h.test/"]).is_err(),
            "an event is required"
        );
        assert!(parse(&["create", "x", "--url", "u", "--event", "e"]).is_err());
        assert!(parse(&["deliveries", "3", "--limit", "0"]).is_err());
        assert!(parse(&["deliveries", "3", "--limit", "501"]).is_err());
        assert!(parse(&["list"]).is_err(), "a batch id is required");
        assert!(parse(&[]).is_err(), "an action is required");
    }

    #[test]
    fn delivery_lines_say_state_attempts_status_and_error() {
        let d = json!({"id": 12, "webhook_id": 3, "event": "webhook.test", "event_id": "evt_1",
            "state": "pending", "attempts": 2, "created_at": 0, "next_attempt_at": 60_000,
            "last_attempt_at": 1000, "last_status": 500, "last_error": "HTTP 500",
            "delivered_at": null});
        assert_eq!(
            delivery_line(&d),
            "12\t1970-01-01 00:00:00 UTC\twebhook.test\tretrying\tattempts 2\tstatus 500\t\
             error HTTP 500\tnext attempt 1970-01-01 00:01:00 UTC"
        );
        let d = json!({"id": 13, "event": "batch.finished", "state": "delivered",
            "attempts": 1, "created_at": 0, "next_attempt_at": null, "last_status": 204,
            "last_error": null});
        assert_eq!(
            delivery_line(&d),
            "13\t1970-01-01 00:00:00 UTC\tbatch.finished\tdelivered\tattempts 1\tstatus 204\terror -"
        );
        let d = json!({"id": 14, "event": "task.changed", "state": "failed", "attempts": 8,
            "created_at": 0, "last_status": null, "last_error": "connection refused"});
        assert!(delivery_line(&d).contains("\tgave up\t"));
        assert!(delivery_line(&d).contains("status -\terror connection refused"));
    }
}
