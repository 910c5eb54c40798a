//! Command-line verbs beside `serve` and `worker` (outside the submit → … → poll flow: they
//! manage who may use it, or drive it from a terminal). One file per verb: `submit.rs`
//! (`wordtally submit`), `crawl.rs` (`wordtally crawl`), `schedule.rs` (`wordtally
//! schedule`), `webhook.rs` (`wordtally webhook …`), `users.rs` (`wordtally user …`) and
//! `tokens.rs` (`wordtally token …`). `user` and `token` open the same database as `serve`
//! (`DATABASE_URL`, [`DbArg`]); the others talk to a running server's JSON API
//! ([`ServerArg`]). None prints a secret except the one just created (a token, a
//! webhook's signing secret).

pub mod crawl;
pub mod schedule;
pub mod submit;
pub mod tokens;
pub mod users;
pub mod webhook;

use std::time::Duration;

use anyhow::Context;
use clap::Args;

/// The database the verbs work on (the same setting as `serve`).
#[derive(Debug, Clone, Args)]
pub struct DbArg {
    /// Database: `sqlite://PATH` or `postgres://USER@HOST/DB` (as for `serve`).
    #[arg(long, env = "DATABASE_URL", default_value = "sqlite://wordtally.db")]
    pub database_url: String,
}

impl DbArg {
    pub async fn open(&self) -> anyhow::Result<crate::store::Store> {
        use anyhow::Context;
        crate::store::Store::connect(&self.database_url)
            .await
            .with_context(|| {
                format!(
                    "cannot open the database {}",
                    crate::app::redact(&self.database_url)
                )
            })
    }
}

/// The heading `--server` and `--token` sit under in each API verb's `--help`.
pub const SERVER_HEADING: &str = "Server";

/// The running server the API verbs talk to, and the token they show it: the same two
/// options (and environment variables) on `submit`, `crawl`, `schedule` and `webhook`,
/// listed under their own heading in each verb's `--help`. (A heading per argument, not
/// `next_help_heading` on the struct: that would carry over to the verb's own options.)
#[derive(Debug, Clone, Args)]
pub struct ServerArg {
    /// The wordtally server.
    #[arg(
        long,
        env = "WORDTALLY_SERVER",
        default_value = "http://127.0.0.1:5000",
        global = true,
        help_heading = SERVER_HEADING
    )]
    pub server: String,
    /// API token (`Authorization: Bearer …`) when the server has accounts.
    #[arg(
        long,
        env = "WORDTALLY_TOKEN",
        hide_env_values = true,
        global = true,
        help_heading = SERVER_HEADING
    )]
    pub token: Option<String>,
}

impl ServerArg {
    /// The server's base URL without a trailing slash (paths are appended to it).
    pub fn base(&self) -> String {
        self.server.trim_end_matches('/').to_string()
    }

    /// An HTTP client for short API calls (`timeout`: the longest one call may take; None
    /// for calls that stream, such as an export).
    pub fn client(&self, timeout: Option<Duration>) -> anyhow::Result<reqwest::Client> {
        crate::fetch::install_crypto_provider();
        let mut b = reqwest::Client::builder().connect_timeout(Duration::from_secs(10));
        if let Some(t) = timeout {
            b = b.timeout(t);
        }
        b.build().context("cannot build the HTTP client")
    }

    /// Adds the bearer token, when there is one.
    pub fn auth(&self, rb: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.token {
            Some(t) => rb.bearer_auth(t),
            None => rb,
        }
    }
}

/// The one line printed when the server refuses a request: its status and the sentence of
/// its `{"error": …}` body (or the start of whatever else it sent).
pub fn refusal(status: reqwest::StatusCode, body: &str) -> String {
    let reason = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["error"].as_str().map(String::from))
        .unwrap_or_else(|| body.chars().take(200).collect());
    format!("the server refused ({status}): {reason}")
}

/// A name for an account or a token: 1–64 characters, no blanks or control characters
/// (it appears in logs and listings).
pub fn check_name(what: &str, name: &str) -> anyhow::Result<()> {
    let n = name.chars().count();
    if n == 0 || n > 64 || name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        anyhow::bail!("{what} names are 1 to 64 characters without spaces: {name:?} is not");
    }
    Ok(())
}
