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
    tracing_subscriber::fmt()
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
    };
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // One clear line, then a non-zero exit.
            eprintln!("wordtally: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
