//! Command line and environment: one clap definition, every field a documented flag with
//! an environment variable; `wordtally --help` is the reference and `.env.sample` lists
//! the same settings. Defaults make the embedded mode (SQLite file, in-process queue and
//! bus) work with no configuration at all.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::bus::nsq::NsqConfig;
use crate::fetch::FetchConfig;
use crate::queue::redis::RedisQueueConfig;

/// Counts a word on web pages: paste addresses, watch the counts arrive.
#[derive(Debug, Parser)]
#[command(
    name = "wordtally",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// With no subcommand, `wordtally` runs `serve` with these settings.
    #[command(flatten)]
    pub serve: ServeArgs,
}

// Parsed once at start-up: boxing the large variant would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Web page, JSON API, result listener, database writer and (unless --workers 0) workers.
    Serve(ServeArgs),
    /// Workers only: take jobs from Redis, fetch and count, publish results to NSQ.
    Worker(WorkerArgs),
    /// Submit addresses (a file or stdin) as one batch to a running server, wait, print
    /// the results as CSV or JSON Lines.
    Submit(crate::cli::submit::SubmitArgs),
    /// Run a batch again on a schedule (every interval or on cron), pause, resume, remove.
    Schedule(crate::cli::schedule::ScheduleArgs),
    /// Crawl a site from start addresses (following its links, obeying robots.txt) on a
    /// running server, wait, print every page as CSV or JSON Lines.
    Crawl(crate::cli::crawl::CrawlArgs),
    /// Accounts that sign in on the web page: add, list, remove, passwd.
    User(crate::cli::users::UserArgs),
    /// API tokens for scripts: create (printed once), list, revoke.
    Token(crate::cli::tokens::TokenArgs),
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address the web server listens on.
    #[arg(long, env = "LISTEN", default_value = "127.0.0.1:5000")]
    pub listen: SocketAddr,

    /// Database: `sqlite://PATH` (created if missing) or `postgres://USER@HOST/DB`.
    #[arg(long, env = "DATABASE_URL", default_value = "sqlite://wordtally.db")]
    pub database_url: String,

    /// NSQ channel the result listener consumes (every `serve` sharing a database shares it).
    #[arg(long, env = "NSQ_CHANNEL", default_value = "wordtally")]
    pub nsq_channel: String,

    /// nsqlookupd HTTP address(es), comma separated: the listener then finds every nsqd
    /// carrying the topic instead of reading only NSQD_TCP_ADDRESS.
    #[arg(long, env = "NSQLOOKUPD_HTTP_ADDRESS", value_delimiter = ',')]
    pub nsqlookupd_http_address: Vec<String>,

    /// Results the listener holds unsettled at once (NSQ max_in_flight).
    #[arg(long, env = "NSQ_MAX_IN_FLIGHT", default_value_t = 200)]
    pub nsq_max_in_flight: u32,

    /// Results written per database transaction, at most.
    #[arg(long, env = "DB_BATCH_SIZE", default_value_t = 256)]
    pub db_batch_size: usize,

    /// How long the DB writer waits to fill a batch (milliseconds).
    #[arg(long, env = "DB_BATCH_DELAY_MS", default_value_t = 5)]
    pub db_batch_delay_ms: u64,

    /// Seconds between reconciler sweeps (re-queue tasks left behind).
    #[arg(long, env = "SWEEP_INTERVAL_SECS", default_value_t = 5)]
    pub sweep_interval_secs: u64,

    /// A task still NOT_STARTED after this many seconds is queued again (the queue was down).
    #[arg(long, env = "REQUEUE_NOT_STARTED_SECS", default_value_t = 5)]
    pub requeue_not_started_secs: u64,

    /// A task PENDING for this many seconds without a result is queued again (its result
    /// was lost). Must exceed the longest fetch plus the visibility timeout.
    #[arg(long, env = "PENDING_DEADLINE_SECS", default_value_t = 300)]
    pub pending_deadline_secs: u64,

    /// Times a task is queued before it ends with an error result.
    #[arg(long, env = "MAX_TASK_ATTEMPTS", default_value_t = 3)]
    pub max_task_attempts: i32,

    /// Most addresses accepted in one submission.
    #[arg(long, env = "MAX_SUBMIT_ADDRESSES", default_value_t = 10_000)]
    pub max_submit_addresses: usize,

    /// The most pages one crawl may ask for (`max_pages` above it is refused with a 422).
    #[arg(long, env = "CRAWL_MAX_PAGES", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub crawl_max_pages: u64,

    /// Rows per page of the task table.
    #[arg(long, env = "PAGE_SIZE", default_value_t = 50)]
    pub page_size: i64,

    /// Delete batches (with their tasks and results) that finished more than this many
    /// days ago; unset keeps everything. Fractions are allowed (0.5 = twelve hours).
    #[arg(long, env = "RETAIN_DAYS", value_parser = parse_days)]
    pub retain_days: Option<f64>,
    /// nsqd HTTP address (`host:4151`) whose `/stats` gives the result bus's depth on
    /// /workers; unset = ask every nsqd that NSQLOOKUPD_HTTP_ADDRESS knows, or show none.
    #[arg(long, env = "NSQD_HTTP_ADDRESS")]
    pub nsqd_http_address: Option<String>,

    /// Milliseconds between schedule ticks (each ± a quarter, at random; DESIGN §16).
    #[arg(long, env = "SCHEDULE_TICK_MS", default_value_t = 5_000)]
    pub schedule_tick_ms: u64,

    /// Shortest schedule interval accepted, in milliseconds. People get one minute; tests
    /// shorten it.
    #[arg(
        long,
        env = "SCHEDULE_MIN_INTERVAL_MS",
        default_value_t = 60_000,
        hide = true
    )]
    pub schedule_min_interval_ms: u64,

    #[command(flatten)]
    pub worker: WorkerArgs,

    /// Sign-in, tokens, rate limits (DESIGN §13).
    #[command(flatten)]
    pub auth: crate::auth::AuthArgs,

    /// Webhook delivery (DESIGN §16).
    #[command(flatten)]
    pub webhooks: crate::notify::WebhookArgs,
}

/// Settings of the worker pool, shared by `serve` (its local workers) and `worker`.
#[derive(Debug, Clone, Args)]
pub struct WorkerArgs {
    /// Concurrent fetches in this process (0 = no local workers).
    #[arg(long, env = "WORKERS", default_value_t = 16)]
    pub workers: usize,

    /// Turn the SSRF guard off: allow fetching loopback and private addresses (local use, tests).
    #[arg(long, env = "ALLOW_PRIVATE_TARGETS", default_value_t = false)]
    pub allow_private_targets: bool,

    /// Hosts or host:ports the SSRF guard lets through even when private (comma separated).
    #[arg(long = "allow-target", env = "ALLOW_TARGETS", value_delimiter = ',')]
    pub allow_targets: Vec<String>,

    /// Redis URL (`redis://host:port/db`) of the job queue; unset = in-process queue.
    #[arg(long, env = "REDIS_URL")]
    pub redis_url: Option<String>,

    /// Prefix of every Redis key wordtally uses.
    #[arg(long, env = "REDIS_PREFIX", default_value = "wordtally")]
    pub redis_prefix: String,

    /// Seconds a job may stay unacknowledged before another worker takes it over.
    #[arg(long, env = "VISIBILITY_TIMEOUT_SECS", default_value_t = 120)]
    pub visibility_timeout_secs: u64,

    /// Deliveries of one job before it ends as an error result (a job that kills workers).
    #[arg(long, env = "MAX_DELIVERIES", default_value_t = 5)]
    pub max_deliveries: u32,

    /// nsqd TCP address (`host:4150`) of the result bus; unset = in-process bus.
    #[arg(long, env = "NSQD_TCP_ADDRESS")]
    pub nsqd_tcp_address: Option<String>,

    /// NSQ topic results are published to.
    #[arg(long, env = "NSQ_TOPIC", default_value = "counter")]
    pub nsq_topic: String,

    /// Connect timeout of a fetch (milliseconds).
    #[arg(long, env = "CONNECT_TIMEOUT_MS", default_value_t = 5_000)]
    pub connect_timeout_ms: u64,

    /// Total time one fetch attempt may take, body included (milliseconds).
    #[arg(long, env = "FETCH_TIMEOUT_MS", default_value_t = 20_000)]
    pub fetch_timeout_ms: u64,

    /// Redirects followed at most (≤ 10).
    #[arg(long, env = "MAX_REDIRECTS", default_value_t = 10, value_parser = clap::value_parser!(u8).range(0..=10))]
    pub max_redirects: u8,

    /// Body bytes (after decompression) counted at most; the result says "truncated" beyond.
    #[arg(long, env = "MAX_BODY_BYTES", default_value_t = 10 * 1024 * 1024)]
    pub max_body_bytes: u64,

    /// Concurrent fetches to one host.
    #[arg(long, env = "PER_HOST_CONCURRENCY", default_value_t = 4)]
    pub per_host_concurrency: usize,

    /// Sent as `User-Agent` with every request; its product token (`wordtally`) is what
    /// robots.txt groups are matched against.
    #[arg(long, env = "USER_AGENT", default_value = concat!("wordtally/", env!("CARGO_PKG_VERSION")))]
    pub user_agent: String,

    /// Least time between two requests to one host during a crawl, across every worker
    /// process (Redis when configured); a robots.txt `Crawl-delay` wins when larger.
    #[arg(long, env = "PER_HOST_DELAY_MS", default_value_t = 0)]
    pub per_host_delay_ms: u64,

    /// How long a crawl trusts a fetched robots.txt (seconds), in the process and in Redis.
    #[arg(long, env = "ROBOTS_CACHE_SECS", default_value_t = 3_600)]
    pub robots_cache_secs: u64,

    /// Attempts per fetch for transient failures (connect error, timeout, 429, 5xx).
    #[arg(long, env = "FETCH_ATTEMPTS", default_value_t = 3)]
    pub fetch_attempts: u32,

    /// First retry back-off (milliseconds); doubles each attempt, with jitter.
    #[arg(long, env = "RETRY_BACKOFF_MS", default_value_t = 500)]
    pub retry_backoff_ms: u64,

    /// Milliseconds between this pool's heartbeats; it is shown as gone after 3 missed.
    #[arg(long, env = "HEARTBEAT_INTERVAL_MS", default_value_t = 5_000, value_parser = clap::value_parser!(u64).range(50..=600_000))]
    pub heartbeat_interval_ms: u64,

    /// `wordtally worker` only: serve this process's Prometheus metrics at
    /// `http://ADDR/metrics` (e.g. `0.0.0.0:9100`); unset = no listener.
    #[arg(long, env = "METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
}

impl WorkerArgs {
    pub fn fetch_config(&self) -> FetchConfig {
        FetchConfig {
            connect_timeout: Duration::from_millis(self.connect_timeout_ms),
            total_timeout: Duration::from_millis(self.fetch_timeout_ms),
            max_redirects: self.max_redirects as usize,
            max_body_bytes: self.max_body_bytes,
            per_host_concurrency: self.per_host_concurrency.max(1),
            max_attempts: self.fetch_attempts.max(1),
            backoff_base: Duration::from_millis(self.retry_backoff_ms),
            allow_private_targets: self.allow_private_targets,
            allow_targets: self.allow_targets.clone(),
            user_agent: self.user_agent.clone(),
        }
    }

    pub fn redis_config(&self) -> Option<RedisQueueConfig> {
        self.redis_url.as_ref().map(|url| RedisQueueConfig {
            url: url.clone(),
            prefix: self.redis_prefix.clone(),
            visibility_timeout: Duration::from_secs(self.visibility_timeout_secs.max(1)),
        })
    }

    /// NSQ settings for publishing (and, with `channel`, consuming).
    pub fn nsq_config(
        &self,
        channel: &str,
        lookupd: &[String],
        max_in_flight: u32,
    ) -> Option<NsqConfig> {
        self.nsqd_tcp_address.as_ref().map(|addr| NsqConfig {
            nsqd_tcp_address: addr.clone(),
            lookupd_http_addresses: lookupd.to_vec(),
            topic: self.nsq_topic.clone(),
            channel: channel.to_string(),
            max_in_flight,
            idle_rebuild: Duration::from_secs(15),
            publish_timeout: Duration::from_secs(5),
        })
    }
}

/// A positive number of days (`RETAIN_DAYS`).
fn parse_days(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(d) if d.is_finite() && d > 0.0 && d <= 36_500.0 => Ok(d),
        _ => Err(format!(
            "{s:?} is not a number of days (more than 0, at most 36500)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn bare_invocation_is_serve_with_defaults() {
        let cli = Cli::try_parse_from(["wordtally"]).unwrap();
        assert!(cli.command.is_none());
        assert_eq!(cli.serve.listen.to_string(), "127.0.0.1:5000");
        assert_eq!(cli.serve.worker.nsq_topic, "counter");
    }

    #[test]
    fn subcommands_parse() {
        let cli = Cli::try_parse_from([
            "wordtally",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--workers",
            "0",
            "--allow-private-targets",
        ])
        .unwrap();
        match cli.command {
            Some(Command::Serve(a)) => {
                assert_eq!(a.worker.workers, 0);
                assert!(a.worker.allow_private_targets);
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(Cli::try_parse_from(["wordtally", "worker", "--workers", "4"]).is_ok());
        assert!(Cli::try_parse_from(["wordtally", "serve", "--max-redirects", "11"]).is_err());
    }
}
