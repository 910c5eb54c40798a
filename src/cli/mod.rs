//! Command-line verbs beside `serve` and `worker` (outside the submit → … → poll flow: they
//! manage who may use it, or drive it from a terminal). One file per verb: `submit.rs` (`wordtally submit`), `crawl.rs` (`wordtally crawl`), `users.rs` (`wordtally user …`) and
//! `tokens.rs` (`wordtally token …`). They open the same database as `serve`
//! (`DATABASE_URL`) and never print a secret except the one new token.

pub mod crawl;
pub mod submit;
pub mod tokens;
pub mod users;

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

/// A name for an account or a token: 1–64 characters, no blanks or control characters
/// (it appears in logs and listings).
pub fn check_name(what: &str, name: &str) -> anyhow::Result<()> {
    let n = name.chars().count();
    if n == 0 || n > 64 || name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        anyhow::bail!("{what} names are 1 to 64 characters without spaces: {name:?} is not");
    }
    Ok(())
}
