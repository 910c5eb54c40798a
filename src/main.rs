//! `wordtally`: parses the command line and runs `serve` (the default) or `worker`.
//! Everything else is library code (see `lib.rs`).

use clap::Parser;
use tracing_subscriber::EnvFilter;
use wordtally::app::{shutdown_signal, start_serve, start_worker};
use wordtally::config::{Cli, Command};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    // A `.env` file (see `.env.sample`) fills in variables the environment does not set.
    let dotenv = dotenvy::dotenv();
    let cli = Cli::parse();
    // `submit` writes its results to stdout, so its logs go to stderr.
    let quiet_stdout = matches!(cli.command, Some(Command::Submit(_)));
    let subscriber = tracing_subscriber::fmt().with_env_filter(
        EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,tokio_nsq=warn")),
    );
    if quiet_stdout {
        subscriber.with_writer(std::io::stderr).init();
    } else {
        subscriber.init();
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
