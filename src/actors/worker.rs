//! Worker pool actor (queue → **fetch → count** → NSQ): a ractor factory of `workers`
//! job runners fed by a reserve loop that takes only as many jobs as there are free
//! runners (bounded reads: a busy process leaves work for other processes).
//!
//! One job: fetch the page, count while it streams, publish the result, and only then
//! acknowledge the job. If publishing fails the job stays reserved and publishing is
//! retried with back-off (this is what survives an nsqd restart); if the process dies the
//! queue hands the job to another worker after the visibility timeout. A job delivered
//! more than `max_deliveries` times (it keeps killing workers) ends as an error result.
//!
//! A runner handles one job at a time for as long as the job takes: that is the unit of
//! concurrency of the factory, not a sleep in a message loop.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ractor::factory::{
    Factory, FactoryArguments, FactoryMessage, FactoryRef, Job, Worker, WorkerId, queues, routing,
    worker_builder,
};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinHandle;

use crate::address::normalize_address;
use crate::bus::SharedPublisher;
use crate::count::{BodyCounter, CountSummary};
use crate::crawl::job::CrawlKit;
use crate::fetch::{BodySink, Fetched, Fetcher};
use crate::model::{AttemptRecord, JobResult, ResultRecord, now_ms};
use crate::outcome::Outcome;
use crate::queue::{Delivery, DeliveryTag, SharedQueue};

use super::heartbeat::{Identity, beat_forever};

/// Feeds the streaming body into the counter.
struct CountingSink(BodyCounter);

impl BodySink for CountingSink {
    type Output = CountSummary;
    fn feed(&mut self, chunk: &[u8]) {
        self.0.feed(chunk);
    }
    fn finish(self) -> CountSummary {
        self.0.finish()
    }
}

fn error_record(error: String, started: Instant) -> ResultRecord {
    ResultRecord::error_only(error, started.elapsed().as_millis() as i64)
}

/// Fetches one job's page and counts its word: the whole of a worker's own work.
#[tracing::instrument(skip_all, fields(task_id = job.task_id, address = %job.address))]
pub async fn carry_out(fetcher: &Fetcher, job: &crate::model::Job) -> ResultRecord {
    let started = Instant::now();
    let url = match normalize_address(&job.address) {
        Ok(u) => u,
        Err(e) => return error_record(e.to_string(), started),
    };
    let opts = job.options.clone();
    // The keys of `counts`: the words, then the patterns (DESIGN §14, §17).
    let words = opts.count_keys();
    let fetched = fetcher
        .fetch(&url, |meta| {
            let ct = meta.content_type.as_deref();
            // One pass over the body for every word and pattern.
            CountingSink(BodyCounter::for_options(&opts, ct))
        })
        .await;
    record_of(fetched, &words)
}

/// The result of a fetch whose body was counted for `words` (in order): the counts per
/// word, the facts of the fetch, and the fetch metrics recorded.
pub(crate) fn record_of(fetched: Fetched<CountSummary>, words: &[String]) -> ResultRecord {
    let counts = fetched.output.as_ref().map(|s| {
        let per_word: Vec<u64> = if s.counts.is_empty() {
            vec![s.count]
        } else {
            s.counts.clone()
        };
        words
            .iter()
            .cloned()
            .zip(per_word.into_iter().map(|n| n as i64))
            .collect::<std::collections::BTreeMap<String, i64>>()
    });
    let outcome = match (&fetched.error, fetched.status) {
        (Some(_), _) => "error",
        (None, _) if fetched.truncated => "truncated",
        (None, Some(s)) if s >= 400 => "http_error",
        _ => "ok",
    };
    metrics::counter!("wordtally_fetches_total", "outcome" => outcome).increment(1);
    metrics::histogram!("wordtally_fetch_duration_seconds").record(fetched.duration.as_secs_f64());
    metrics::counter!("wordtally_fetched_bytes_total").increment(fetched.bytes_read);
    ResultRecord {
        words_count: fetched.output.as_ref().map(|s| s.count as i64),
        http_status_code: fetched.status.map(i32::from),
        error: fetched.error,
        timestamp: now_ms(),
        final_url: fetched.final_url,
        content_type: fetched.content_type,
        charset: fetched.output.as_ref().map(|s| s.charset.to_string()),
        bytes_read: fetched.bytes_read as i64,
        truncated: fetched.truncated,
        duration_ms: fetched.duration.as_millis() as i64,
        attempts: fetched.attempts as i32,
        charset_source: fetched
            .output
            .as_ref()
            .map(|s| s.charset_source.as_str().to_string()),
        attempt_log: fetched
            .attempt_log
            .into_iter()
            .map(|a| AttemptRecord {
                status: a.status.map(i32::from),
                error: a.error,
            })
            .collect(),
        counts,
        redirects: fetched.redirects,
        skipped: false,
        crawl: None,
    }
}

/// What every runner of one pool shares.
pub struct WorkerCtx {
    pub queue: SharedQueue,
    pub publisher: SharedPublisher,
    pub fetcher: Fetcher,
    /// robots.txt, politeness and link scopes, shared by every runner (DESIGN §15).
    pub crawl: CrawlKit,
    pub max_deliveries: u32,
    /// This process's consumer name in the queue (host-pid-random).
    pub consumer: String,
    in_flight: Mutex<HashSet<DeliveryTag>>,
    stopping: watch::Receiver<bool>,
    /// Jobs finished (result published) and, of those, failed: for the heartbeat.
    done: AtomicU64,
    failed: AtomicU64,
}

impl WorkerCtx {
    /// (busy, done, failed) right now, for the heartbeat.
    pub fn counters(&self) -> (usize, u64, u64) {
        let busy = self.in_flight.lock().map(|g| g.len()).unwrap_or(0);
        (
            busy,
            self.done.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }

    fn forget(&self, tag: &DeliveryTag) {
        if let Ok(mut g) = self.in_flight.lock() {
            g.remove(tag);
        }
    }

    fn in_flight(&self) -> Vec<DeliveryTag> {
        self.in_flight
            .lock()
            .map(|g| g.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Carries out one delivery end to end (see the module docs for the ordering).
    async fn run(&self, d: Delivery) {
        let record = if d.deliveries > self.max_deliveries {
            tracing::warn!(
                task_id = d.job.task_id,
                deliveries = d.deliveries,
                "job delivered too often; giving up"
            );
            error_record(
                format!(
                    "gave up: the job was delivered {} times without completing (a worker died each time?)",
                    d.deliveries
                ),
                Instant::now(),
            )
        } else if let Some(crawl) = &d.job.crawl {
            crate::crawl::job::carry_out(&self.crawl, &self.fetcher, &d.job, crawl).await
        } else {
            carry_out(&self.fetcher, &d.job).await
        };
        let result = JobResult {
            task_id: d.job.task_id,
            run: d.job.run,
            result: record,
            worker: self.consumer.clone(),
        };
        let mut delay = Duration::from_millis(200);
        loop {
            match self.publisher.publish(&result).await {
                Ok(()) => {
                    self.done.fetch_add(1, Ordering::Relaxed);
                    if Outcome::of(&result.result) == Outcome::Failed {
                        self.failed.fetch_add(1, Ordering::Relaxed);
                    }
                    break;
                }
                Err(e) => {
                    if *self.stopping.borrow() {
                        tracing::warn!(task_id = result.task_id, error = %e, "shutting down with an unpublished result; releasing the job");
                        let _ = self
                            .queue
                            .release(&self.consumer, std::slice::from_ref(&d.tag))
                            .await;
                        self.forget(&d.tag);
                        return;
                    }
                    metrics::counter!("wordtally_publish_failures_total").increment(1);
                    tracing::warn!(task_id = result.task_id, error = %e, ?delay, "publish failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
        for attempt in 1..=3u32 {
            match self.queue.ack(&d.tag).await {
                Ok(()) => {
                    metrics::counter!("wordtally_jobs_acked_total").increment(1);
                    break;
                }
                Err(e) => {
                    // Not acked: the job comes back after the visibility timeout and its
                    // duplicate result is ignored by the store.
                    tracing::warn!(task_id = result.task_id, error = %e, attempt, "ack failed");
                    tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
                }
            }
        }
        self.forget(&d.tag);
    }
}

/// A job for a runner; the permit is its slot, freed when the job is done.
pub struct WorkItem {
    delivery: Delivery,
    _slot: OwnedSemaphorePermit,
}

/// The factory's worker: runs jobs one at a time.
pub struct JobRunner;

impl Worker for JobRunner {
    type Key = ();
    type Message = WorkItem;
    type State = Arc<WorkerCtx>;
    type Arguments = Arc<WorkerCtx>;

    async fn pre_start(
        &self,
        _wid: WorkerId,
        _factory: &ActorRef<FactoryMessage<(), WorkItem>>,
        ctx: Arc<WorkerCtx>,
    ) -> Result<Arc<WorkerCtx>, ActorProcessingErr> {
        Ok(ctx)
    }

    async fn handle(
        &self,
        _wid: WorkerId,
        _factory: &ActorRef<FactoryMessage<(), WorkItem>>,
        Job { msg, key, .. }: Job<(), WorkItem>,
        ctx: &mut Arc<WorkerCtx>,
    ) -> Result<(), ActorProcessingErr> {
        ctx.run(msg.delivery).await;
        Ok(key)
    }
}

type PoolFactory = Factory<
    (),
    WorkItem,
    Arc<WorkerCtx>,
    JobRunner,
    routing::QueuerRouting<(), WorkItem>,
    queues::DefaultQueue<(), WorkItem>,
>;

pub struct WorkerPool;

#[derive(Clone)]
pub struct WorkerPoolArgs {
    pub queue: SharedQueue,
    pub publisher: SharedPublisher,
    pub fetcher: Fetcher,
    pub crawl: CrawlKit,
    pub workers: usize,
    pub max_deliveries: u32,
    pub consumer: String,
    /// Time between heartbeats.
    pub heartbeat: Duration,
}

pub struct WorkerPoolState {
    ctx: Arc<WorkerCtx>,
    factory: FactoryRef<(), WorkItem>,
    feeder: Option<JoinHandle<()>>,
    /// The heartbeat task and this pool's heartbeat id (goodbye on stop).
    beats: Option<JoinHandle<()>>,
    beat_id: String,
    stop: watch::Sender<bool>,
    slots: Arc<Semaphore>,
    workers: usize,
}

pub enum WorkerPoolMsg {
    /// Stop reserving, let running jobs finish for up to the duration, release the rest
    /// back to the queue, then reply.
    Drain(Duration, RpcReplyPort<()>),
    /// Jobs running right now (tests, /healthz).
    InFlight(RpcReplyPort<usize>),
}

/// The reserve loop: waits for a free slot, reserves at most as many jobs as free slots.
async fn feed(
    ctx: Arc<WorkerCtx>,
    factory: FactoryRef<(), WorkItem>,
    slots: Arc<Semaphore>,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = Duration::from_millis(100);
    let mut down_since: Option<Instant> = None;
    loop {
        let first = tokio::select! {
            _ = stop.wait_for(|s| *s) => break,
            p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
        };
        let mut permits = vec![first];
        while let Ok(p) = slots.clone().try_acquire_owned() {
            permits.push(p);
        }
        // Not cancelled on stop: a reserve cut short could leave jobs reserved but unseen
        // (they would still come back, after the visibility timeout); it waits ≤ 1 s.
        match ctx
            .queue
            .reserve(&ctx.consumer, permits.len(), Duration::from_secs(1))
            .await
        {
            Ok(deliveries) => {
                metrics::counter!("wordtally_jobs_reserved_total")
                    .increment(deliveries.len() as u64);
                if let Some(since) = down_since.take() {
                    tracing::info!(after = ?since.elapsed(), "queue reachable again");
                }
                backoff = Duration::from_millis(100);
                for d in deliveries {
                    let Some(slot) = permits.pop() else { break };
                    if let Ok(mut g) = ctx.in_flight.lock() {
                        g.insert(d.tag.clone());
                    }
                    let tag = d.tag.clone();
                    if factory
                        .dispatch(
                            (),
                            WorkItem {
                                delivery: d,
                                _slot: slot,
                            },
                        )
                        .is_err()
                    {
                        ctx.forget(&tag);
                        let _ = ctx.queue.release(&ctx.consumer, &[tag]).await;
                    }
                }
            }
            Err(e) => {
                if down_since.is_none() {
                    tracing::warn!(error = %e, "cannot reserve jobs; retrying with back-off");
                    down_since = Some(Instant::now());
                }
                drop(permits);
                tokio::select! {
                    _ = stop.wait_for(|s| *s) => break,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// A consumer name unique to this process: host, pid and a random suffix.
pub fn consumer_name() -> String {
    let host = crate::queue::heartbeat::host_name();
    format!("{host}-{}-{:04x}", std::process::id(), fastrand::u16(..))
}

impl Actor for WorkerPool {
    type Msg = WorkerPoolMsg;
    type State = WorkerPoolState;
    type Arguments = WorkerPoolArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        let workers = args.workers.max(1);
        let (stop, stop_rx) = watch::channel(false);
        let ctx = Arc::new(WorkerCtx {
            queue: args.queue,
            publisher: args.publisher,
            fetcher: args.fetcher,
            crawl: args.crawl,
            max_deliveries: args.max_deliveries,
            consumer: args.consumer,
            in_flight: Mutex::new(HashSet::new()),
            stopping: stop_rx.clone(),
            done: AtomicU64::new(0),
            failed: AtomicU64::new(0),
        });
        let ctx_for_builder = ctx.clone();
        let factory_args = FactoryArguments::builder()
            .worker_builder(Box::new(worker_builder(move |_wid| {
                (JobRunner, ctx_for_builder.clone())
            })))
            .queue(Default::default())
            .router(Default::default())
            .num_initial_workers(workers)
            .build();
        let (factory, _join) = Actor::spawn_linked(
            None,
            PoolFactory::default(),
            factory_args,
            myself.get_cell(),
        )
        .await?;
        let slots = Arc::new(Semaphore::new(workers));
        let feeder = tokio::spawn(feed(ctx.clone(), factory.clone(), slots.clone(), stop_rx));
        // Beats go on while the pool drains (a draining worker is still working).
        let me = Identity::of_this_process(workers, args.heartbeat);
        let beat_id = me.id.clone();
        let beats = tokio::spawn(beat_forever(ctx.clone(), me));
        tracing::info!(workers, consumer = %ctx.consumer, queue = ctx.queue.kind(), "worker pool started");
        Ok(WorkerPoolState {
            ctx,
            factory,
            feeder: Some(feeder),
            beats: Some(beats),
            beat_id,
            stop,
            slots,
            workers,
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            WorkerPoolMsg::InFlight(reply) => {
                let _ = reply.send(state.workers - state.slots.available_permits());
            }
            WorkerPoolMsg::Drain(wait, reply) => {
                let _ = state.stop.send(true);
                if let Some(f) = state.feeder.take() {
                    let _ = tokio::time::timeout(Duration::from_secs(5), f).await;
                }
                let deadline = tokio::time::Instant::now() + wait;
                while !state.ctx.in_flight().is_empty() && tokio::time::Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                let left = state.ctx.in_flight();
                if !left.is_empty() {
                    tracing::warn!(n = left.len(), "releasing unfinished jobs to the queue");
                    let _ = state.ctx.queue.release(&state.ctx.consumer, &left).await;
                }
                state.factory.stop(None);
                state.say_goodbye().await;
                let _ = reply.send(());
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        _myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        _state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        if let SupervisionEvent::ActorFailed(_, err) = event {
            // Fail too, so that our supervisor restarts the whole pool.
            return Err(format!("worker factory failed: {err}").into());
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let _ = state.stop.send(true);
        if let Some(f) = state.feeder.take() {
            f.abort();
        }
        state.factory.stop(None);
        state.say_goodbye().await;
        Ok(())
    }
}

impl WorkerPoolState {
    /// Stops the heartbeats and removes this pool's entry, so a graceful stop leaves the
    /// workers list at once. Commands already sent by the aborted beat travel on the same
    /// connection ahead of the goodbye, so they cannot bring the entry back.
    async fn say_goodbye(&mut self) {
        if let Some(b) = self.beats.take() {
            b.abort();
            let _ = b.await;
            if let Err(e) = self.ctx.queue.goodbye(&self.beat_id).await {
                tracing::warn!(error = %e, "cannot remove this worker's heartbeat; it expires by itself");
            }
        }
    }
}
