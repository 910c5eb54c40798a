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

/// The headings `--help` groups settings under; `.env.sample` and the README's configuration
/// table use the same groups, in this order (a test below checks `.env.sample`).
pub mod heading {
    pub const WEB: &str = "Web";
    pub const DATABASE: &str = "Database";
    pub const QUEUE: &str = "Queue and result bus";
    pub const FETCHING: &str = "Fetching";
    pub const CRAWLING: &str = "Crawling";
    pub const SECURITY: &str = "Security";
    pub const LIMITS: &str = "Limits";
    /// Every heading, in the order `.env.sample` lists them.
    pub const ALL: [&str; 7] = [WEB, DATABASE, QUEUE, FETCHING, CRAWLING, SECURITY, LIMITS];
}

/// `wordtally --help`: the commands only, as cargo's is. The sixty-odd settings of a bare
/// `wordtally` (= `serve`) are under `wordtally serve --help`, grouped by [`heading`].
const TOP_HELP: &str = "\
{about-with-newline}
{usage-heading} {usage}

Commands:
{subcommands}

Options:
  -h, --help     Print help
  -V, --version  Print version

With no command, `wordtally` runs `serve`; its settings (flags or environment variables,
grouped) are listed by `wordtally serve --help`, and `wordtally worker --help` lists a
worker's.
";

/// Counts a word on web pages: paste addresses, watch the counts arrive.
#[derive(Debug, Parser)]
#[command(
    name = "wordtally",
    version,
    about,
    args_conflicts_with_subcommands = true,
    help_template = TOP_HELP,
    override_usage = "wordtally [COMMAND] [SETTINGS]"
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
    /// Send a batch's events to a URL (signed webhooks): create, list, deliveries, test,
    /// remove.
    Webhook(crate::cli::webhook::WebhookArgs),
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
    #[arg(long, env = "LISTEN", help_heading = heading::WEB, default_value = "127.0.0.1:5000")]
    pub listen: SocketAddr,

    /// Database: `sqlite://PATH` (created if missing) or `postgres://USER@HOST/DB`.
    #[arg(long, env = "DATABASE_URL", help_heading = heading::DATABASE, default_value = "sqlite://wordtally.db")]
    pub database_url: String,

    /// NSQ channel the result listener consumes (every `serve` sharing a database shares it).
    #[arg(long, env = "NSQ_CHANNEL", help_heading = heading::QUEUE, default_value = "wordtally")]
    pub nsq_channel: String,

    /// nsqlookupd HTTP address(es), comma separated: the listener then finds every nsqd
    /// carrying the topic instead of reading only NSQD_TCP_ADDRESS.
    #[arg(long, env = "NSQLOOKUPD_HTTP_ADDRESS", help_heading = heading::QUEUE, value_delimiter = ',')]
    pub nsqlookupd_http_address: Vec<String>,

    /// Results the listener holds unsettled at once (NSQ max_in_flight).
    #[arg(long, env = "NSQ_MAX_IN_FLIGHT", help_heading = heading::QUEUE, default_value_t = 200)]
    pub nsq_max_in_flight: u32,

    /// Results written per database transaction, at most.
    #[arg(long, env = "DB_BATCH_SIZE", help_heading = heading::DATABASE, default_value_t = 256)]
    pub db_batch_size: usize,

    /// How long the DB writer waits to fill a batch (milliseconds).
    #[arg(long, env = "DB_BATCH_DELAY_MS", help_heading = heading::DATABASE, default_value_t = 5)]
    pub db_batch_delay_ms: u64,

    /// Seconds between reconciler sweeps (re-queue tasks left behind).
    #[arg(long, env = "SWEEP_INTERVAL_SECS", help_heading = heading::QUEUE, default_value_t = 5)]
    pub sweep_interval_secs: u64,

    /// A task still NOT_STARTED after this many seconds is queued again (the queue was down).
    #[arg(long, env = "REQUEUE_NOT_STARTED_SECS", help_heading = heading::QUEUE, default_value_t = 5)]
    pub requeue_not_started_secs: u64,

    /// A task PENDING for this many seconds without a result is queued again (its result
    /// was lost). Must exceed the longest fetch plus the visibility timeout.
    #[arg(long, env = "PENDING_DEADLINE_SECS", help_heading = heading::QUEUE, default_value_t = 300)]
    pub pending_deadline_secs: u64,

    /// Times a task is queued before it ends with an error result.
    #[arg(long, env = "MAX_TASK_ATTEMPTS", help_heading = heading::QUEUE, default_value_t = 3)]
    pub max_task_attempts: i32,

    /// Rows per page of the task table.
    #[arg(long, env = "PAGE_SIZE", help_heading = heading::WEB, default_value_t = 50)]
    pub page_size: i64,

    /// Delete batches (with their tasks and results) that finished more than this many
    /// days ago; unset keeps everything. Fractions are allowed (0.5 = twelve hours).
    #[arg(long, env = "RETAIN_DAYS", help_heading = heading::DATABASE, value_parser = parse_days)]
    pub retain_days: Option<f64>,
    /// nsqd HTTP address (`host:4151`) whose `/stats` gives the result bus's depth on
    /// /workers; unset = ask every nsqd that NSQLOOKUPD_HTTP_ADDRESS knows, or show none.
    #[arg(long, env = "NSQD_HTTP_ADDRESS", help_heading = heading::QUEUE)]
    pub nsqd_http_address: Option<String>,

    /// Milliseconds between schedule ticks (each ± a quarter, at random; DESIGN §16).
    #[arg(long, env = "SCHEDULE_TICK_MS", help_heading = heading::WEB, default_value_t = 5_000)]
    pub schedule_tick_ms: u64,

    #[command(flatten)]
    pub worker: WorkerArgs,

    /// Most pages one crawl may fetch, whatever it asks for: the server-wide ceiling of a
    /// crawl's `max_pages` (a crawl asking for more is refused with a 422).
    #[arg(long, env = "CRAWL_MAX_PAGES", help_heading = heading::CRAWLING, default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub crawl_max_pages: u64,

    /// Most addresses accepted in one submission.
    #[arg(long, env = "MAX_SUBMIT_ADDRESSES", help_heading = heading::LIMITS, default_value_t = 10_000)]
    pub max_submit_addresses: usize,

    /// Shortest schedule interval accepted, in milliseconds. People get one minute; tests
    /// shorten it.
    #[arg(
        long,
        env = "SCHEDULE_MIN_INTERVAL_MS",
        help_heading = heading::LIMITS,
        default_value_t = 60_000,
        hide = true
    )]
    pub schedule_min_interval_ms: u64,

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
    /// `wordtally worker` only: serve this process's Prometheus metrics at
    /// `http://ADDR/metrics` (e.g. `0.0.0.0:9100`); unset = no listener.
    #[arg(long, env = "METRICS_LISTEN", help_heading = heading::WEB)]
    pub metrics_listen: Option<SocketAddr>,

    /// Redis URL (`redis://host:port/db`) of the job queue; unset = in-process queue.
    #[arg(long, env = "REDIS_URL", help_heading = heading::QUEUE)]
    pub redis_url: Option<String>,

    /// Prefix of every Redis key wordtally uses.
    #[arg(long, env = "REDIS_PREFIX", help_heading = heading::QUEUE, default_value = "wordtally")]
    pub redis_prefix: String,

    /// Seconds a job may stay unacknowledged before another worker takes it over.
    #[arg(long, env = "VISIBILITY_TIMEOUT_SECS", help_heading = heading::QUEUE, default_value_t = 120)]
    pub visibility_timeout_secs: u64,

    /// Deliveries of one job before it ends as an error result (a job that kills workers).
    #[arg(long, env = "MAX_DELIVERIES", help_heading = heading::QUEUE, default_value_t = 5)]
    pub max_deliveries: u32,

    /// nsqd TCP address (`host:4150`) of the result bus; unset = in-process bus.
    #[arg(long, env = "NSQD_TCP_ADDRESS", help_heading = heading::QUEUE)]
    pub nsqd_tcp_address: Option<String>,

    /// NSQ topic results are published to.
    #[arg(long, env = "NSQ_TOPIC", help_heading = heading::QUEUE, default_value = "counter")]
    pub nsq_topic: String,

    /// Concurrent fetches in this process (0 = no local workers).
    #[arg(long, env = "WORKERS", help_heading = heading::FETCHING, default_value_t = 16)]
    pub workers: usize,

    /// Connect timeout of a fetch (milliseconds).
    #[arg(long, env = "CONNECT_TIMEOUT_MS", help_heading = heading::FETCHING, default_value_t = 5_000)]
    pub connect_timeout_ms: u64,

    /// Total time one fetch attempt may take, body included (milliseconds).
    #[arg(long, env = "FETCH_TIMEOUT_MS", help_heading = heading::FETCHING, default_value_t = 20_000)]
    pub fetch_timeout_ms: u64,

    /// Redirects followed at most (≤ 10).
    #[arg(long, env = "MAX_REDIRECTS", help_heading = heading::FETCHING, default_value_t = 10, value_parser = clap::value_parser!(u8).range(0..=10))]
    pub max_redirects: u8,

    /// Body bytes (after decompression) counted at most; the result says "truncated" beyond.
    #[arg(long, env = "MAX_BODY_BYTES", help_heading = heading::FETCHING, default_value_t = 10 * 1024 * 1024)]
    pub max_body_bytes: u64,

    /// Concurrent fetches to one host.
    #[arg(long, env = "PER_HOST_CONCURRENCY", help_heading = heading::FETCHING, default_value_t = 4)]
    pub per_host_concurrency: usize,

    /// Attempts per fetch for transient failures (connect error, timeout, 429, 5xx).
    #[arg(long, env = "FETCH_ATTEMPTS", help_heading = heading::FETCHING, default_value_t = 3)]
    pub fetch_attempts: u32,

    /// First retry back-off (milliseconds); doubles each attempt, with jitter.
    #[arg(long, env = "RETRY_BACKOFF_MS", help_heading = heading::FETCHING, default_value_t = 500)]
    pub retry_backoff_ms: u64,

    /// Milliseconds between this pool's heartbeats; it is shown as gone after 3 missed.
    #[arg(long, env = "HEARTBEAT_INTERVAL_MS", help_heading = heading::QUEUE, default_value_t = 5_000, value_parser = clap::value_parser!(u64).range(50..=600_000))]
    pub heartbeat_interval_ms: u64,

    /// Sent as `User-Agent` on every fetch; its product token (`wordtally`) is the name
    /// robots.txt groups are matched against.
    #[arg(long, env = "USER_AGENT", help_heading = heading::CRAWLING,
          default_value = concat!("wordtally/", env!("CARGO_PKG_VERSION")),
          value_parser = parse_user_agent)]
    pub user_agent: String,

    /// Least time between two requests to one host, across every worker process (Redis
    /// carries it when configured); a robots.txt `Crawl-delay` wins when larger. 0 = none.
    #[arg(long, env = "PER_HOST_DELAY_MS", help_heading = heading::CRAWLING, default_value_t = 0,
          value_parser = clap::value_parser!(u64).range(0..=600_000))]
    pub per_host_delay_ms: u64,

    /// How long a crawl trusts a fetched robots.txt (seconds), in the process and in Redis.
    #[arg(long, env = "ROBOTS_CACHE_SECS", help_heading = heading::CRAWLING, default_value_t = 3_600,
          value_parser = clap::value_parser!(u64).range(1..=604_800))]
    pub robots_cache_secs: u64,

    /// Turn the SSRF guard off: allow fetching loopback and private addresses (local use, tests).
    #[arg(long, env = "ALLOW_PRIVATE_TARGETS", help_heading = heading::SECURITY, default_value_t = false)]
    pub allow_private_targets: bool,

    /// Hosts or host:ports the SSRF guard lets through even when private (comma separated).
    #[arg(long = "allow-target", env = "ALLOW_TARGETS", help_heading = heading::SECURITY, value_delimiter = ',')]
    pub allow_targets: Vec<String>,
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

    /// `PER_HOST_DELAY_MS` as a duration (the crawl takes the larger of it and `Crawl-delay`).
    pub fn per_host_delay(&self) -> Duration {
        Duration::from_millis(self.per_host_delay_ms)
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

/// A `User-Agent` header value: printable ASCII, not blank, at most 200 characters.
fn parse_user_agent(s: &str) -> Result<String, String> {
    let t = s.trim();
    if t.is_empty() || t.len() > 200 || !t.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return Err(format!(
            "{s:?} is not a usable user agent (printable ASCII, 1 to 200 characters, e.g. \
             \"wordtally/1.0 (+https://example.com/bot)\")"
        ));
    }
    Ok(t.to_owned())
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

    fn help_of(cmd: &mut clap::Command) -> String {
        cmd.render_help().to_string()
    }

    #[test]
    fn top_level_help_is_short_and_lists_the_commands() {
        use clap::CommandFactory;
        let help = help_of(&mut Cli::command());
        for c in [
            "serve", "worker", "submit", "schedule", "webhook", "crawl", "user", "token",
        ] {
            assert!(
                help.lines().any(|l| l.trim_start().starts_with(c)),
                "{c} missing:\n{help}"
            );
        }
        assert!(!help.contains("--database-url"), "settings leaked:\n{help}");
        assert!(help.lines().count() < 30, "not short:\n{help}");
        assert!(help.contains("wordtally serve --help"));
    }

    #[test]
    fn every_serve_and_worker_setting_sits_under_a_heading() {
        use clap::CommandFactory;
        let mut cli = Cli::command();
        for name in ["serve", "worker"] {
            let sub = cli.find_subcommand_mut(name).expect("subcommand");
            for arg in sub.get_arguments() {
                if matches!(arg.get_id().as_str(), "help" | "version") {
                    continue;
                }
                let h = arg.get_help_heading();
                assert!(
                    h.is_some_and(|h| heading::ALL.contains(&h)),
                    "{name} --{}: heading {h:?}",
                    arg.get_id()
                );
            }
            let help = help_of(sub);
            let found: Vec<usize> = heading::ALL
                .iter()
                .filter_map(|h| help.find(&format!("\n{h}:\n")))
                .collect();
            assert!(
                found.windows(2).all(|w| w[0] < w[1]),
                "{name}: out of order"
            );
            // A worker has no database or submissions of its own.
            let want = if name == "serve" { 7 } else { 5 };
            assert_eq!(found.len(), want, "{name}:\n{help}");
        }
    }

    #[test]
    fn crawl_settings_have_their_defaults_and_bounds() {
        let cli = Cli::try_parse_from(["wordtally", "serve"]).unwrap();
        let Some(Command::Serve(a)) = cli.command else {
            panic!("serve")
        };
        assert_eq!(a.crawl_max_pages, 10_000);
        assert_eq!(a.worker.per_host_delay(), Duration::ZERO);
        assert_eq!(
            a.worker.user_agent,
            concat!("wordtally/", env!("CARGO_PKG_VERSION"))
        );
        assert_eq!(a.worker.fetch_config().user_agent, a.worker.user_agent);
        let cli = Cli::try_parse_from([
            "wordtally",
            "worker",
            "--per-host-delay-ms",
            "250",
            "--user-agent",
            "wordtally/9 (+https://example.com/bot)",
        ])
        .unwrap();
        let Some(Command::Worker(w)) = cli.command else {
            panic!("worker")
        };
        assert_eq!(w.per_host_delay(), Duration::from_millis(250));
        assert_eq!(
            w.fetch_config().user_agent,
            "wordtally/9 (+https://example.com/bot)"
        );
        for bad in [
            &["serve", "--crawl-max-pages", "0"][..],
            &["worker", "--per-host-delay-ms", "600001"],
            &["worker", "--user-agent", "  "],
            &["worker", "--user-agent", "bot\r\nX-Injected: 1"],
        ] {
            let args = std::iter::once("wordtally").chain(bad.iter().copied());
            assert!(Cli::try_parse_from(args).is_err(), "{bad:?} accepted");
        }
    }

    /// `.env.sample` lists every setting of `serve` and `worker`, under `# --- Heading` lines
    /// in the same groups and order as `--help`.
    #[test]
    fn env_sample_follows_the_help_groups() {
        use clap::CommandFactory;
        let sample = include_str!("../.env.sample");
        let mut group_of: std::collections::HashMap<String, String> = Default::default();
        let mut current = String::new();
        let mut order = Vec::new();
        for line in sample.lines() {
            if let Some(rest) = line.strip_prefix("# --- ") {
                // "# --- Security (DESIGN §13) -----" → "Security".
                let name = rest.split(" (").next().unwrap_or(rest);
                current = name.trim_end_matches(['-', ' ']).to_owned();
                order.push(current.clone());
                continue;
            }
            let var = line.trim_start_matches('#').trim_start();
            if let Some((name, _)) = var.split_once('=')
                && !name.is_empty()
                && name.bytes().all(|b| b.is_ascii_uppercase() || b == b'_')
            {
                group_of.insert(name.to_owned(), current.clone());
            }
        }
        let headings: Vec<String> = heading::ALL.iter().map(|h| h.to_string()).collect();
        assert_eq!(order[..headings.len()], headings[..], "group order");
        let mut cli = Cli::command();
        for name in ["serve", "worker"] {
            let sub = cli.find_subcommand_mut(name).expect("subcommand");
            for arg in sub.get_arguments() {
                let Some(env) = arg.get_env() else { continue };
                let env = env.to_string_lossy().into_owned();
                let want = arg.get_help_heading().unwrap_or_default();
                assert_eq!(
                    group_of.get(&env).map(String::as_str),
                    Some(want),
                    "{env} in .env.sample"
                );
            }
        }
    }
}
