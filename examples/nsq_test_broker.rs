//! TEST SUPPORT ONLY: runs the in-process NSQ test broker (`tests/support/nsq_broker.rs`) as a
//! stand-alone process, for manual runs and scripts where no real `nsqd` exists.
//!
//! ```text
//! cargo run --example nsq_test_broker -- --tcp-address 127.0.0.1:4150 --http-address 127.0.0.1:4151 \
//!     [--msg-timeout-ms N] [--heartbeat-interval-ms N]
//! ```
//!
//! Prints `nsq_test_broker tcp=ADDR http=ADDR` on stdout once listening (port 0 picks a free
//! port and the real one is printed), then runs until Ctrl-C or SIGTERM.

#[path = "../tests/support/nsq_broker.rs"]
mod nsq_broker;

use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

use nsq_broker::{BrokerConfig, NsqTestBroker};

const USAGE: &str = "usage: nsq_test_broker [--tcp-address ADDR] [--http-address ADDR] \
[--msg-timeout-ms N] [--heartbeat-interval-ms N]
defaults: --tcp-address 127.0.0.1:4150 --http-address 127.0.0.1:4151 --msg-timeout-ms 60000 \
--heartbeat-interval-ms 30000";

struct Args {
    tcp: SocketAddr,
    http: SocketAddr,
    config: BrokerConfig,
}

fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Args, String> {
    let mut parsed = Args {
        tcp: ([127, 0, 0, 1], 4150).into(),
        http: ([127, 0, 0, 1], 4151).into(),
        config: BrokerConfig::default(),
    };
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        if arg == "-h" || arg == "--help" {
            return Err(String::new());
        }
        // Accept `--flag value`, `--flag=value` and nsqd's single-dash `-flag value`.
        let flag = arg.trim_start_matches('-');
        let (name, inline) = match flag.split_once('=') {
            Some((name, value)) => (name.to_string(), Some(value.to_string())),
            None => (flag.to_string(), None),
        };
        let value = match inline {
            Some(value) => value,
            None => args
                .next()
                .ok_or_else(|| format!("missing value for {arg}"))?,
        };
        let millis = |v: &str| {
            v.parse::<u64>()
                .map(Duration::from_millis)
                .map_err(|e| format!("invalid {name} {v:?}: {e}"))
        };
        match name.as_str() {
            "tcp-address" => {
                parsed.tcp = value
                    .parse()
                    .map_err(|e| format!("invalid tcp-address {value:?}: {e}"))?
            }
            "http-address" => {
                parsed.http = value
                    .parse()
                    .map_err(|e| format!("invalid http-address {value:?}: {e}"))?
            }
            "msg-timeout-ms" => parsed.config.msg_timeout = millis(&value)?,
            "heartbeat-interval-ms" => parsed.config.heartbeat_interval = millis(&value)?,
            _ => return Err(format!("unknown flag {arg}")),
        }
    }
    Ok(parsed)
}

async fn wait_for_shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(message) => {
            if !message.is_empty() {
                eprintln!("nsq_test_broker: {message}");
            }
            eprintln!("{USAGE}");
            return if message.is_empty() {
                std::process::ExitCode::SUCCESS
            } else {
                std::process::ExitCode::from(2)
            };
        }
    };
    let broker = match NsqTestBroker::start_on(args.config, args.tcp, args.http, None).await {
        Ok(broker) => broker,
        Err(e) => {
            eprintln!("nsq_test_broker: cannot listen: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    {
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(
            stdout,
            "nsq_test_broker tcp={} http={}",
            broker.tcp_addr(),
            broker.http_addr()
        );
        let _ = stdout.flush();
    }
    wait_for_shutdown_signal().await;
    let _ = broker.stop().await;
    std::process::ExitCode::SUCCESS
}
