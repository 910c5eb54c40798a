//! Wiring: builds the store, queue, result bus, fetcher and actors from the configuration,
//! and runs `serve` or `worker`. Library functions (not `main`) so that the integration
//! tests start the real thing on port 0 and stop it as SIGTERM would.
//!
//! Graceful stop, in flow order: stop accepting HTTP requests → drain the worker pool
//! (running jobs finish and publish, the rest are released to the queue) → stop the
//! Submitter → drain the listener (every taken message settled) → flush the DB writer →
//! close the database.

use crate::crawl::job::CrawlKit;
use crate::crawl::politeness::Politeness;
use crate::crawl::robots::RobotsCache;
use crate::crawl::sitemap::SitemapLimits;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use ractor::{Actor, ActorRef};
use tokio::net::TcpListener;
use tokio::sync::{Mutex, oneshot};
use tokio::task::JoinHandle;

use crate::actors::ActorSlot;
use crate::actors::db_writer::{DbWriter, DbWriterArgs, DbWriterMsg};
use crate::actors::nsq_listener::{
    NsqListener, NsqListenerArgs, NsqListenerMsg, SharedSource, SourceFactory,
};
use crate::actors::submitter::{Submitter, SubmitterArgs, SubmitterMsg, SweepConfig};
use crate::actors::supervisor::{ChildSpec, Supervisor, SupervisorArgs, SupervisorMsg};
use crate::actors::worker::{WorkerPool, WorkerPoolArgs, WorkerPoolMsg, consumer_name};
use crate::bus::memory::MemoryPublisher;
use crate::bus::nsq::{NsqPublisher, NsqSource};
use crate::bus::stats::BusProbe;
use crate::bus::{ResultSource, SharedPublisher};
use crate::config::{ServeArgs, WorkerArgs};
use crate::fetch::{Fetcher, install_crypto_provider};
use crate::http::{AppState, app};
use crate::queue::SharedQueue;
use crate::queue::memory::MemoryQueue;
use crate::queue::redis::RedisQueue;
use crate::store::Store;

/// The job queue named by the configuration (Redis, or in-process).
fn make_queue(w: &WorkerArgs) -> anyhow::Result<SharedQueue> {
    Ok(match w.redis_config() {
        Some(c) => Arc::new(RedisQueue::new(&c).context("REDIS_URL")?),
        None => Arc::new(MemoryQueue::new(Duration::from_secs(
            w.visibility_timeout_secs.max(1),
        ))),
    })
}

/// The worker pool's child spec.
fn pool_spec(
    w: &WorkerArgs,
    queue: SharedQueue,
    publisher: SharedPublisher,
    slot: ActorSlot<WorkerPoolMsg>,
) -> anyhow::Result<ChildSpec> {
    let fetcher = Fetcher::new(w.fetch_config()).context("fetch settings")?;
    let crawl = crawl_kit(w, &fetcher)?;
    let args = WorkerPoolArgs {
        queue,
        publisher,
        fetcher,
        crawl,
        workers: w.workers,
        max_deliveries: w.max_deliveries,
        consumer: consumer_name(),
        heartbeat: Duration::from_millis(w.heartbeat_interval_ms),
    };
    Ok(ChildSpec::new("worker_pool", slot, move || {
        (WorkerPool, args.clone())
    }))
}

/// What the pool's runners share for crawls: one robots.txt cache and one politeness
/// clock per process, both carried by Redis across processes when it is configured.
fn crawl_kit(w: &WorkerArgs, fetcher: &Fetcher) -> anyhow::Result<CrawlKit> {
    let shared = crate::crawl::RedisShared::from_worker_args(w)
        .transpose()
        .context("REDIS_URL for crawls")?;
    Ok(CrawlKit::new(
        RobotsCache::new(
            fetcher.clone(),
            shared.clone(),
            w.user_agent.clone(),
            Duration::from_secs(w.robots_cache_secs.max(1)),
        ),
        Politeness::new(shared),
        Duration::from_millis(w.per_host_delay_ms),
        SitemapLimits::default(),
    ))
}

/// How long a draining pool waits for running jobs: one full fetch with its retries.
fn drain_wait(w: &WorkerArgs) -> Duration {
    Duration::from_millis(
        w.fetch_timeout_ms
            .saturating_mul(u64::from(w.fetch_attempts.max(1))),
    )
    .min(Duration::from_secs(90))
        + Duration::from_secs(2)
}

/// Drains the worker pool, if any: running jobs finish and publish (for up to `wait`),
/// the rest are released to the queue.
async fn drain_pool(slot: &ActorSlot<WorkerPoolMsg>, wait: Duration) {
    if let Some(pool) = slot.get() {
        let _ = pool
            .call(
                |r| WorkerPoolMsg::Drain(wait, r),
                Some(wait + Duration::from_secs(10)),
            )
            .await;
    }
}

/// A running `serve`: its address, its store, and the way to stop it.
pub struct Running {
    pub addr: SocketAddr,
    pub store: Store,
    /// The in-process bus's publisher, when no NSQ is configured (tests inject messages).
    pub memory_bus: Option<MemoryPublisher>,
    pub submitter: ActorSlot<SubmitterMsg>,
    pub worker_pool: ActorSlot<WorkerPoolMsg>,
    state: AppState,
    stop_http: Option<oneshot::Sender<()>>,
    http: Option<JoinHandle<std::io::Result<()>>>,
    supervisor: ActorRef<SupervisorMsg>,
    listener: ActorSlot<NsqListenerMsg>,
    db_writer: ActorSlot<DbWriterMsg>,
    drain_wait: Duration,
}

impl Running {
    /// The same router the server runs, for `oneshot` tests.
    pub fn router(&self) -> axum::Router {
        app(self.state.clone())
    }

    /// Graceful stop (what SIGTERM does).
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(tx) = self.stop_http.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.http.take() {
            match tokio::time::timeout(Duration::from_secs(10), h).await {
                Ok(Ok(Err(e))) => tracing::warn!(error = %e, "HTTP server ended with an error"),
                Err(_) => tracing::warn!("HTTP connections still open after 10 s; closing"),
                _ => {}
            }
        }
        drain_pool(&self.worker_pool, self.drain_wait).await;
        if let Some(s) = self.submitter.get() {
            let _ = s.stop_and_wait(None, Some(Duration::from_secs(10))).await;
        }
        if let Some(l) = self.listener.get() {
            let wait = Duration::from_secs(10);
            let _ = l
                .call(
                    |r| NsqListenerMsg::Drain(wait, r),
                    Some(wait + Duration::from_secs(5)),
                )
                .await;
        }
        if let Some(w) = self.db_writer.get() {
            let _ = w
                .call(DbWriterMsg::Drain, Some(Duration::from_secs(30)))
                .await;
        }
        let _ = self
            .supervisor
            .stop_and_wait(None, Some(Duration::from_secs(10)))
            .await;
        self.store.close().await;
        tracing::info!("stopped");
        Ok(())
    }
}

/// Creates the first account from `WORDTALLY_ADMIN_PASSWORD(_FILE)` when none exists yet
/// (how docker-compose sets up a new deployment); does nothing once any account exists.
async fn first_account(store: &Store, a: &crate::auth::AuthArgs) -> anyhow::Result<()> {
    let password = match (&a.admin_password_file, &a.admin_password) {
        (Some(f), _) if !f.is_empty() => {
            let text = std::fs::read_to_string(f)
                .with_context(|| format!("cannot read WORDTALLY_ADMIN_PASSWORD_FILE {f}"))?;
            text.lines().next().unwrap_or_default().to_string()
        }
        (_, Some(p)) => p.clone(),
        _ => return Ok(()),
    };
    if password.is_empty() || store.any_account().await? {
        return Ok(());
    }
    if password.chars().count() < 8 {
        anyhow::bail!("WORDTALLY_ADMIN_PASSWORD must be at least 8 characters long");
    }
    crate::cli::users::add(store, &a.admin_user, &password).await?;
    tracing::info!(account = %a.admin_user, "created the first account");
    Ok(())
}

/// Starts `serve`: opens the database (running migrations), starts the actors and the
/// web server on `args.listen` (port 0 allowed), and returns at once.
pub async fn start_serve(args: ServeArgs) -> anyhow::Result<Running> {
    install_crypto_provider();
    crate::metrics::install();
    let w = &args.worker;
    let store = Store::connect(&args.database_url)
        .await
        .with_context(|| format!("cannot open the database {}", redact(&args.database_url)))?;
    first_account(&store, &args.auth).await?;
    let auth = crate::auth::Auth::new(store.clone(), &args.auth)
        .await
        .context("reading the accounts")?;
    crate::auth::check_listen(args.listen, auth.required().await, args.auth.insecure_open)?;
    let queue = make_queue(w)?;

    let mut memory_bus = None;
    let (publisher, source): (SharedPublisher, SourceFactory) = match w.nsq_config(
        &args.nsq_channel,
        &args.nsqlookupd_http_address,
        args.nsq_max_in_flight,
    ) {
        Some(cfg) => {
            cfg.validate().context("NSQ settings")?;
            let publisher = NsqPublisher::new(cfg.clone()).context("NSQ settings")?;
            let factory: SourceFactory = Arc::new(move || -> Box<dyn ResultSource> {
                match NsqSource::new(cfg.clone()) {
                    Ok(s) => Box::new(s),
                    // Validated above; cannot happen.
                    Err(e) => panic!("NSQ settings became invalid: {e}"),
                }
            });
            (Arc::new(publisher), factory)
        }
        None => {
            let (p, s) = crate::bus::memory::channel();
            memory_bus = Some(p.clone());
            let shared = Arc::new(Mutex::new(s));
            let factory: SourceFactory = Arc::new(move || -> Box<dyn ResultSource> {
                Box::new(SharedSource(shared.clone()))
            });
            (Arc::new(p), factory)
        }
    };

    let db_writer: ActorSlot<DbWriterMsg> = ActorSlot::default();
    let listener: ActorSlot<NsqListenerMsg> = ActorSlot::default();
    let submitter: ActorSlot<SubmitterMsg> = ActorSlot::default();
    let worker_pool: ActorSlot<WorkerPoolMsg> = ActorSlot::default();

    let writer_args = DbWriterArgs {
        store: store.clone(),
        batch_size: args.db_batch_size,
        batch_delay: Duration::from_millis(args.db_batch_delay_ms),
        submitter: submitter.clone(),
    };
    let listener_args = NsqListenerArgs {
        source,
        db_writer: db_writer.clone(),
        max_in_flight: args.nsq_max_in_flight.max(1) as usize,
    };
    let submitter_args = SubmitterArgs {
        store: store.clone(),
        queue: queue.clone(),
        sweep: SweepConfig {
            interval: Duration::from_secs(args.sweep_interval_secs),
            not_started_after: Duration::from_secs(args.requeue_not_started_secs),
            pending_deadline: Duration::from_secs(args.pending_deadline_secs),
            max_attempts: args.max_task_attempts.max(1),
            batch: 500,
            requeue_pending_at_start: queue.kind() == "memory",
            retain: args
                .retain_days
                .filter(|d| d.is_finite() && *d >= 0.0)
                .map(|d| Duration::from_secs_f64(d * 86_400.0)),
        },
    };
    let mut children = vec![
        ChildSpec::new("db_writer", db_writer.clone(), move || {
            (DbWriter, writer_args.clone())
        }),
        ChildSpec::new("nsq_listener", listener.clone(), move || {
            (NsqListener, listener_args.clone())
        }),
        ChildSpec::new("submitter", submitter.clone(), move || {
            (Submitter, submitter_args.clone())
        }),
    ];
    if w.workers > 0 {
        children.push(pool_spec(w, queue.clone(), publisher, worker_pool.clone())?);
    }
    let (supervisor, _) = Actor::spawn(None, Supervisor, SupervisorArgs { children })
        .await
        .context("starting the actors")?;

    let tcp = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = tcp.local_addr()?;
    let state = AppState {
        store: store.clone(),
        submitter: submitter.clone(),
        queue: queue.clone(),
        page_size: args.page_size.clamp(1, 500),
        max_submit: args.max_submit_addresses.max(1),
        submit_timeout: Duration::from_secs(60),
        bus: Arc::new(match &w.nsqd_tcp_address {
            None => BusProbe::memory(),
            Some(_) => BusProbe::nsq(
                args.nsqd_http_address.clone(),
                args.nsqlookupd_http_address.clone(),
                w.nsq_topic.clone(),
                args.nsq_channel.clone(),
            ),
        }),
        auth,
        crawl_max_pages: args.crawl_max_pages,
    };
    let (stop_http, stop_rx) = oneshot::channel::<()>();
    let router = app(state.clone());
    let http = tokio::spawn(async move {
        // With the peer address, for per-client rate limits when nobody is signed in.
        axum::serve(
            tcp,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move {
            let _ = stop_rx.await;
        })
        .await
    });
    tracing::info!(
        %addr,
        database = store.kind(),
        queue = queue.kind(),
        bus = if memory_bus.is_some() { "memory" } else { "nsq" },
        workers = w.workers,
        "wordtally serving on http://{addr}/tasks"
    );
    Ok(Running {
        addr,
        store,
        memory_bus,
        submitter,
        worker_pool,
        state,
        stop_http: Some(stop_http),
        http: Some(http),
        supervisor,
        listener,
        db_writer,
        drain_wait: drain_wait(w),
    })
}

/// A running `worker` process's pipeline.
pub struct RunningWorker {
    pub worker_pool: ActorSlot<WorkerPoolMsg>,
    /// The `--metrics-listen` listener, when asked for.
    pub metrics: Option<crate::metrics::MetricsListener>,
    supervisor: ActorRef<SupervisorMsg>,
    drain_wait: Duration,
}

impl RunningWorker {
    /// Graceful stop: running jobs finish and publish; unstarted ones go back to the queue.
    pub async fn stop(self) -> anyhow::Result<()> {
        drain_pool(&self.worker_pool, self.drain_wait).await;
        let _ = self
            .supervisor
            .stop_and_wait(None, Some(Duration::from_secs(10)))
            .await;
        if let Some(m) = self.metrics {
            m.stop().await;
        }
        tracing::info!("worker stopped");
        Ok(())
    }
}

/// Starts `worker`: the job source, the worker pool and the NSQ publisher only.
pub async fn start_worker(w: WorkerArgs) -> anyhow::Result<RunningWorker> {
    install_crypto_provider();
    if w.redis_url.is_none() || w.nsqd_tcp_address.is_none() {
        bail!(
            "`wordtally worker` needs REDIS_URL (where jobs come from) and NSQD_TCP_ADDRESS (where results go); \
             without them run `wordtally serve`, which has in-process workers"
        );
    }
    if w.workers == 0 {
        bail!("`wordtally worker --workers 0` would do nothing; give it at least 1");
    }
    let metrics = match w.metrics_listen {
        Some(addr) => Some(
            crate::metrics::MetricsListener::start(addr)
                .await
                .with_context(|| format!("cannot listen on METRICS_LISTEN {addr}"))?,
        ),
        None => None,
    };
    let queue = make_queue(&w)?;
    let cfg = w
        .nsq_config("unused", &[], 1)
        .context("NSQD_TCP_ADDRESS is required")?;
    let publisher: SharedPublisher = Arc::new(NsqPublisher::new(cfg).context("NSQ settings")?);
    let worker_pool: ActorSlot<WorkerPoolMsg> = ActorSlot::default();
    let spec = pool_spec(&w, queue.clone(), publisher, worker_pool.clone())?;
    let (supervisor, _) = Actor::spawn(
        None,
        Supervisor,
        SupervisorArgs {
            children: vec![spec],
        },
    )
    .await
    .context("starting the worker pool")?;
    tracing::info!(
        workers = w.workers,
        queue = queue.kind(),
        "wordtally worker running"
    );
    Ok(RunningWorker {
        worker_pool,
        metrics,
        supervisor,
        drain_wait: drain_wait(&w),
    })
}

/// A database URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown signal received; stopping gracefully");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_hides_passwords() {
        assert_eq!(redact("postgres://u:secret@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact("sqlite://x.db"), "sqlite://x.db");
    }
}
