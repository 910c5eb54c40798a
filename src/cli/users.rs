//! `wordtally user add|list|remove|passwd`: accounts that sign in on the web page. The
//! password is read from the terminal (twice, not echoed) or, with `--password-stdin`,
//! from the first line of standard input (scripts, docker secrets).

use std::io::{BufRead, IsTerminal, Write};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};

use super::{DbArg, check_name};
use crate::auth::password;
use crate::model::now_ms;
use crate::store::Store;

#[derive(Debug, Clone, Args)]
pub struct UserArgs {
    #[command(flatten)]
    pub db: DbArg,
    #[command(subcommand)]
    pub action: UserAction,
}

#[derive(Debug, Clone, Subcommand)]
pub enum UserAction {
    /// Create an account (sign-in is then required by `serve`).
    Add {
        name: String,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// List accounts.
    List,
    /// Remove an account, its sessions and its tokens.
    Remove { name: String },
    /// Change an account's password (signs it out everywhere).
    Passwd {
        name: String,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
}

pub async fn run(args: UserArgs) -> anyhow::Result<()> {
    let store = args.db.open().await?;
    let out = &mut std::io::stdout();
    let result = match args.action {
        UserAction::Add {
            name,
            password_stdin,
        } => {
            check_name("account", &name)?;
            let pw = read_password(password_stdin)?;
            add(&store, &name, &pw).await?;
            writeln!(out, "account {name} created")?;
            Ok(())
        }
        UserAction::List => list(&store, out).await,
        UserAction::Remove { name } => {
            remove(&store, &name).await?;
            writeln!(out, "account {name} removed")?;
            Ok(())
        }
        UserAction::Passwd {
            name,
            password_stdin,
        } => {
            let pw = read_password(password_stdin)?;
            passwd(&store, &name, &pw).await?;
            writeln!(out, "password of {name} changed; its sessions ended")?;
            Ok(())
        }
    };
    store.close().await;
    result
}

async fn hash(pw: &str) -> anyhow::Result<String> {
    let pw = pw.to_string();
    Ok(tokio::task::spawn_blocking(move || password::hash(&pw)).await??)
}

pub async fn add(store: &Store, name: &str, pw: &str) -> anyhow::Result<()> {
    check_name("account", name)?;
    let h = hash(pw).await?;
    match store.create_account(name, &h, now_ms()).await? {
        Some(_) => Ok(()),
        None => bail!("an account named {name} already exists"),
    }
}

pub async fn list(store: &Store, out: &mut impl Write) -> anyhow::Result<()> {
    let accounts = store.list_accounts().await?;
    if accounts.is_empty() {
        writeln!(
            out,
            "no accounts (serve is open on loopback only); add one with `wordtally user add NAME`"
        )?;
    }
    for a in accounts {
        writeln!(
            out,
            "{}\tcreated {}",
            a.name,
            crate::http::utc(a.created_at)
        )?;
    }
    Ok(())
}

pub async fn remove(store: &Store, name: &str) -> anyhow::Result<()> {
    if !store.remove_account(name).await? {
        bail!("there is no account named {name}");
    }
    Ok(())
}

pub async fn passwd(store: &Store, name: &str, pw: &str) -> anyhow::Result<()> {
    let h = hash(pw).await?;
    if !store.set_password(name, &h).await? {
        bail!("there is no account named {name}");
    }
    Ok(())
}

/// The new password: stdin's first line, or typed twice at the terminal without echo.
fn read_password(from_stdin: bool) -> anyhow::Result<String> {
    if from_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("reading the password from standard input")?;
        let pw = line.trim_end_matches(['\n', '\r']).to_string();
        if pw.is_empty() {
            bail!("no password on standard input");
        }
        return Ok(pw);
    }
    if !std::io::stdin().is_terminal() {
        bail!("no terminal to ask for the password: pipe it in with --password-stdin");
    }
    let first = prompt("Password: ")?;
    let second = prompt("Again: ")?;
    if first != second {
        bail!("the two passwords differ");
    }
    Ok(first)
}

/// Reads one line from the terminal with echo off (`stty`, restored afterwards).
fn prompt(label: &str) -> anyhow::Result<String> {
    let tty = || std::fs::File::open("/dev/tty");
    let stty = |arg: &str| {
        tty().ok().map(|t| {
            std::process::Command::new("stty")
                .arg(arg)
                .stdin(t)
                .status()
        })
    };
    eprint!("{label}");
    let _ = std::io::stderr().flush();
    let _ = stty("-echo");
    let mut line = String::new();
    let read = std::io::BufReader::new(tty().context("opening the terminal")?).read_line(&mut line);
    let _ = stty("echo");
    eprintln!();
    read.context("reading the password")?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}
