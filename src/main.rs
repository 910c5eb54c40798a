//! `wordtally`: parses the command line and runs `serve` (the default), `worker`, or the
//! account and token verbs (`user`, `token`).
//! Everything else is library code (see `lib.rs`).

use clap::Parser;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::writer::BoxMakeWriter;
use wordtally::app::{shutdown_signal, start_serve, start_worker};
use wordtally::config::{Cli, Command};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    // A `.env` file (see `.env.sample`) fills in variables the environment does not set.
    let dotenv = dotenvy::dotenv();
    let cli = Cli::parse();
    // `wordtally token create` prints the token on stdout and nothing else: logs of the
    // command-line verbs go to stderr.
    let writer = match cli.command {
        Some(Command::User(_) | Command::Token(_)) => BoxMakeWriter::new(std::io::stderr),
        _ => BoxMakeWriter::new(std::io::stdout),
    };
    tracing_subscriber::fmt()
        .with_writer(writer)
        .with_env_filter(
            EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,tokio_nsq=warn")),
        )
        .init();
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
