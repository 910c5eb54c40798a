//! `wordtally schedule BATCH …` (a terminal → the schedule API; DESIGN §16): sets, pauses,
//! resumes or removes a batch's schedule — and optionally its change rules — through the
//! running server's JSON API, like `wordtally submit` (`--server`, `--token`), and prints
//! the schedule as the server stored it. Exit status 1 with the server's reason when it
//! refuses (a bad interval, cron expression or time zone: nothing is stored).

use std::time::Duration;

use anyhow::{Context, bail};
use clap::{ArgGroup, Args};
use serde_json::{Value, json};

/// Settings of `wordtally schedule`.
#[derive(Debug, Clone, Args)]
#[command(group(ArgGroup::new("action").required(true).args(["every", "cron", "pause", "resume", "remove", "show"])))]
pub struct ScheduleArgs {
    /// The server and its token (shared with the other API verbs).
    #[command(flatten)]
    pub api: super::ServerArg,
    /// The batch id.
    pub batch: i64,
    /// Run the batch again every interval: 15m, 6h, 1d, 1h30m (at least a minute).
    #[arg(long)]
    pub every: Option<String>,
    /// Run the batch on a five-field cron expression, e.g. "0 */6 * * *".
    #[arg(long)]
    pub cron: Option<String>,
    /// The time zone of --cron (IANA name, default UTC).
    #[arg(long)]
    pub timezone: Option<String>,
    /// Pause the schedule (it keeps its cadence).
    #[arg(long)]
    pub pause: bool,
    /// Resume a paused schedule (the next run is computed from now).
    #[arg(long)]
    pub resume: bool,
    /// Remove the schedule (runs and changes so far stay).
    #[arg(long)]
    pub remove: bool,
    /// Print the schedule only.
    #[arg(long)]
    pub show: bool,
    /// Change rules to set too, e.g. --rule "> 10" --rule "becomes 0".
    #[arg(long = "rule")]
    pub rules: Vec<String>,
}

/// The JSON body of the PUT for these arguments (None: not a PUT).
pub fn body(args: &ScheduleArgs) -> Option<Value> {
    let mut b = if let Some(e) = &args.every {
        // A --timezone given with --every is sent along, so the server says why it is wrong.
        match &args.timezone {
            Some(tz) => json!({ "every": e, "timezone": tz }),
            None => json!({ "every": e }),
        }
    } else if let Some(c) = &args.cron {
        let mut b = json!({ "cron": c });
        if let Some(tz) = &args.timezone {
            b["timezone"] = json!(tz);
        }
        b
    } else if args.pause {
        json!({ "paused": true })
    } else if args.resume {
        json!({ "paused": false })
    } else {
        return None;
    };
    if !args.rules.is_empty() {
        b["rules"] = json!(args.rules);
    }
    Some(b)
}

/// A schedule as one line for a person.
pub fn describe(batch: i64, s: &Value) -> String {
    let what = match (s["every"].as_str(), s["cron"].as_str()) {
        (Some(e), _) => format!("every {e}"),
        (_, Some(c)) => format!("on \"{c}\" ({})", s["timezone"].as_str().unwrap_or("UTC")),
        _ => "?".into(),
    };
    let state = if s["paused"].as_bool() == Some(true) {
        "paused".to_string()
    } else {
        format!(
            "next run at {}",
            s["next_run_at"]
                .as_i64()
                .map(crate::http::utc)
                .unwrap_or_default()
        )
    };
    format!("batch {batch}: runs {what}, {state}")
}

pub async fn run(args: ScheduleArgs) -> anyhow::Result<()> {
    let server = args.api.base();
    let client = args.api.client(Some(Duration::from_secs(60)))?;
    let auth = |rb: reqwest::RequestBuilder| args.api.auth(rb);
    let url = format!("{server}/api/batches/{}/schedule", args.batch);
    let req = if args.remove {
        client.delete(&url)
    } else if args.show {
        client.get(&url)
    } else {
        let Some(b) = body(&args) else {
            bail!("give one of --every, --cron, --pause, --resume, --remove, --show");
        };
        client
            .put(&url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(b.to_string())
    };
    let res = auth(req)
        .send()
        .await
        .with_context(|| format!("cannot reach the server at {server}"))?;
    let status = res.status();
    let text = res.text().await.context("the server's answer broke off")?;
    if !status.is_success() {
        bail!("{}", super::refusal(status, &text));
    }
    if args.remove {
        println!("batch {}: schedule removed", args.batch);
        return Ok(());
    }
    let v: Value = serde_json::from_str(&text).context("the server's answer is not JSON")?;
    println!("{}", describe(args.batch, &v));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        a: ScheduleArgs,
    }

    fn parse(args: &[&str]) -> Result<ScheduleArgs, clap::Error> {
        T::try_parse_from(std::iter::once("t").chain(args.iter().copied())).map(|t| t.a)
    }

    #[test]
    fn bodies() {
        let a = parse(&["7", "--every", "1h"]).expect("args");
        assert_eq!(body(&a), Some(json!({"every": "1h"})));
        let a =
            parse(&["7", "--cron", "0 */6 * * *", "--timezone", "Europe/Berlin"]).expect("args");
        assert_eq!(
            body(&a),
            Some(json!({"cron": "0 */6 * * *", "timezone": "Europe/Berlin"}))
        );
        let a = parse(&["7", "--pause"]).expect("args");
        assert_eq!(body(&a), Some(json!({"paused": true})));
        let a = parse(&["7", "--resume", "--rule", "> 3"]).expect("args");
        assert_eq!(body(&a), Some(json!({"paused": false, "rules": ["> 3"]})));
        assert!(parse(&["7"]).is_err(), "an action is required");
        assert!(
            parse(&["7", "--every", "1h", "--pause"]).is_err(),
            "one action"
        );
        let a = parse(&["7", "--every", "1h", "--timezone", "Europe/Berlin"]).expect("args");
        assert_eq!(
            body(&a),
            Some(json!({"every": "1h", "timezone": "Europe/Berlin"})),
            "sent along for the server to refuse with its reason"
        );
    }
}
