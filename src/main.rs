//! `wordtally`: parses the command line and runs `serve` (the default), `worker`, or the
//! verbs that drive a running server (`submit`, `crawl`, `schedule`, `webhook`) or manage
//! accounts and tokens (`user`, `token`).
//! Everything else is library code (see `lib.rs`).

use clap::Parser;
use tracing_subscriber::EnvFilter;
use wordtally::app::{shutdown_signal, start_serve, start_worker};
use wordtally::config::{Cli, Command};

/// mimalloc instead of the system allocator: a task allocates and frees many small
/// buffers (HTTP client and server, JSON, SQLite, actor messages) across threads, where
/// glibc's malloc spent ~8% of the embedded service's instructions (BENCHMARKS.md,
/// "Embedded: where the time went"). Measured: 2.9% fewer instructions and ~6% less CPU
/// per task, for ~14 MiB more RSS with 10,000 tasks in flight (79 → 93 MiB).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    // A `.env` file (see `.env.sample`) fills in variables the environment does not set.
    let dotenv = dotenvy::dotenv();
    let cli = Cli::parse();
    if let Err(e) = init_logs() {
        eprintln!("wordtally: error: {e}");
        return std::process::ExitCode::FAILURE;
    }
    if let Err(e) = dotenv
        && !e.not_found()
    {
        eprintln!("wordtally: error: cannot read .env: {e}");
        return std::process::ExitCode::FAILURE;
    }
    let outcome = match cli.command.unwrap_or(Command::Serve(cli.serve)) {
        Command::Serve(args) => match start_serve(args).await {
            Ok(running) => {
                shutdown_signal().await;
                running.stop().await
            }
            Err(e) => Err(e),
        },
        Command::Worker(args) => match start_worker(args).await {
            Ok(running) => {
                shutdown_signal().await;
                running.stop().await
            }
            Err(e) => Err(e),
        },
        Command::Submit(args) => wordtally::cli::submit::run(args).await,
        Command::Schedule(args) => wordtally::cli::schedule::run(args).await,
        Command::Webhook(args) => wordtally::cli::webhook::run(args).await,
        Command::Crawl(args) => wordtally::cli::crawl::run(args).await,
        Command::User(args) => wordtally::cli::users::run(args).await,
        Command::Token(args) => wordtally::cli::tokens::run(args).await,
    };
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // One clear line, then a non-zero exit.
            eprintln!("wordtally: error: {}", one_line(&e));
            std::process::ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr: `LOG_FORMAT=json` gives one JSON object per line (for log shippers),
/// `text` (the default) plain lines, coloured only when stderr is a terminal.
fn init_logs() -> Result<(), String> {
    use std::io::IsTerminal;
    let filter = || {
        EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,tokio_nsq=warn"))
    };
    let format = std::env::var("LOG_FORMAT").unwrap_or_default();
    match format.trim().to_ascii_lowercase().as_str() {
        "" | "text" => tracing_subscriber::fmt()
            .with_env_filter(filter())
            .with_writer(std::io::stderr)
            .with_ansi(std::io::stderr().is_terminal())
            .init(),
        "json" => tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter())
            .with_writer(std::io::stderr)
            .with_current_span(true)
            .init(),
        other => return Err(format!("LOG_FORMAT={other:?}: use text or json")),
    }
    Ok(())
}

/// The error and its causes on one line, leaving out causes whose text the line already
/// holds (sqlx and thiserror messages often repeat their source).
fn one_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}
