//! `wordtally token create|list|revoke`: API tokens for scripts (`Authorization: Bearer`).
//! `create` prints the token, and only it, on standard output — once: only its SHA-256 is
//! stored, so it cannot be shown again.

use std::io::Write;

use anyhow::bail;
use clap::{Args, Subcommand};

use super::{DbArg, check_name};
use crate::auth::token;
use crate::model::now_ms;
use crate::store::Store;

#[derive(Debug, Clone, Args)]
pub struct TokenArgs {
    #[command(flatten)]
    pub db: DbArg,
    #[command(subcommand)]
    pub action: TokenAction,
}

#[derive(Debug, Clone, Subcommand)]
pub enum TokenAction {
    /// Create a token and print it (only it) on standard output.
    Create {
        name: String,
        /// The account the token acts for (removed with it).
        #[arg(long)]
        user: Option<String>,
    },
    /// List tokens (names and dates; the secrets are not stored).
    List,
    /// Revoke a token: requests with it get 401 from then on.
    Revoke { name: String },
}

pub async fn run(args: TokenArgs) -> anyhow::Result<()> {
    let store = args.db.open().await?;
    let out = &mut std::io::stdout();
    let result = match args.action {
        TokenAction::Create { name, user } => match create(&store, &name, user.as_deref()).await {
            Ok(t) => writeln!(out, "{t}").map_err(Into::into),
            Err(e) => Err(e),
        },
        TokenAction::List => list(&store, out).await,
        TokenAction::Revoke { name } => match revoke(&store, &name).await {
            // Status on stderr: stdout of this tool carries only tokens.
            Ok(()) => {
                eprintln!("token {name} revoked");
                Ok(())
            }
            Err(e) => Err(e),
        },
    };
    store.close().await;
    result
}

/// Creates a token named `name` (for account `user`, if given) and returns the secret.
pub async fn create(store: &Store, name: &str, user: Option<&str>) -> anyhow::Result<String> {
    check_name("token", name)?;
    let account = match user {
        Some(u) => match store.account_id(u).await? {
            Some(id) => Some(id),
            None => bail!("there is no account named {u}"),
        },
        None => None,
    };
    let secret = token::new_token();
    match store
        .create_token(name, &token::digest(&secret), account, now_ms())
        .await?
    {
        Some(_) => Ok(secret),
        None => bail!("a token named {name} already exists"),
    }
}

pub async fn list(store: &Store, out: &mut impl Write) -> anyhow::Result<()> {
    let tokens = store.list_tokens().await?;
    if tokens.is_empty() {
        writeln!(
            out,
            "no tokens; create one with `wordtally token create NAME`"
        )?;
    }
    for t in tokens {
        let state = match t.revoked_at {
            Some(r) => format!("revoked {}", crate::http::utc(r)),
            None => "active".to_string(),
        };
        let used = t
            .last_used_at
            .map(crate::http::utc)
            .unwrap_or_else(|| "never".into());
        writeln!(
            out,
            "{}\t{}\tuser {}\tcreated {}\tlast used {}",
            t.name,
            state,
            t.account.as_deref().unwrap_or("-"),
            crate::http::utc(t.created_at),
            used
        )?;
    }
    Ok(())
}

pub async fn revoke(store: &Store, name: &str) -> anyhow::Result<()> {
    if !store.revoke_token(name, now_ms()).await? {
        bail!("there is no active token named {name}");
    }
    Ok(())
}
