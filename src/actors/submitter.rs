//! Submitter actor (**submit** → queue): stores new tasks first (the database is the source
//! of truth), then hands their jobs to the queue and marks them PENDING. If the queue is
//! unreachable the tasks simply stay NOT_STARTED and the person sees them waiting.
//!
//! It also runs the reconciler, on a timer message:
//! * NOT_STARTED tasks older than a few seconds are queued again (the queue was down);
//! * PENDING tasks past their deadline are queued again (their result was lost in
//!   transit, e.g. nsqd restarted without persistence), up to `max_attempts`, after which
//!   they finish with an error result.
//!
//! Claims go through `Store::claim_stale`, whose UPDATE re-checks its own condition, so
//! several `serve` processes sweeping the same database never queue a task twice at once.

use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tokio::task::JoinHandle;

use crate::model::{Job, JobResult, ResultRecord, Task, TaskStatus, now_ms};
use crate::queue::SharedQueue;
use crate::store::{NewTask, Store};

pub struct Submitter;

/// Reconciler settings.
#[derive(Clone, Debug)]
pub struct SweepConfig {
    pub interval: Duration,
    pub not_started_after: Duration,
    pub pending_deadline: Duration,
    pub max_attempts: i32,
    /// Tasks claimed per sweep and status.
    pub batch: i64,
    /// Re-queue every PENDING task at start-up. Right only for the in-process queue, which
    /// starts empty, so nothing can be in flight for those tasks (with Redis they may
    /// still be queued or running, and the deadline decides).
    pub requeue_pending_at_start: bool,
    /// Delete batches finished longer ago than this (`RETAIN_DAYS`); None keeps them.
    pub retain: Option<Duration>,
}

/// How often the retention sweep looks for expired batches, and how many it deletes per
/// look (each in chunks of a thousand tasks).
const RETENTION_EVERY: Duration = Duration::from_secs(60);
const RETENTION_BATCHES: i64 = 10;

/// A submission: its tasks and the batch's optional label.
#[derive(Clone, Debug, Default)]
pub struct Submission {
    pub label: Option<String>,
    /// Who submitted it (see `http::actions::who`).
    pub created_by: Option<String>,
    pub tasks: Vec<NewTask>,
}

/// What a submission stored: its batch and tasks (PENDING when the queue took them,
/// NOT_STARTED when it did not).
#[derive(Clone, Debug, Default)]
pub struct Submitted {
    pub batch_id: Option<i64>,
    pub tasks: Vec<Task>,
}

#[derive(Clone)]
pub struct SubmitterArgs {
    pub store: Store,
    pub queue: SharedQueue,
    pub sweep: SweepConfig,
}

pub struct SubmitterState {
    store: Store,
    queue: SharedQueue,
    sweep: SweepConfig,
    timer: Option<JoinHandle<()>>,
    /// Whether the last enqueue failed (to log the outage once, and its end once).
    queue_down: bool,
    /// When the retention sweep last ran.
    last_retention: Option<std::time::Instant>,
    /// The queue's generation at the last sweep (see `TaskQueue::generation`).
    generation: Option<String>,
    /// Rules of the crawls whose tasks were queued lately (bounded by `CRAWL_RULES_KEPT`).
    crawl_rules: std::collections::HashMap<i64, crate::crawl::rules::CrawlRules>,
}

/// Crawls whose rules the Submitter keeps at most (cleared when full: a re-read is cheap).
const CRAWL_RULES_KEPT: usize = 1_000;

pub enum SubmitterMsg {
    /// Store this submission as a batch and queue its tasks. Replies with what was stored,
    /// or an error if nothing was.
    Submit(Submission, RpcReplyPort<Result<Submitted, String>>),
    /// Queue these stored tasks (new runs made by a retry) and mark them queued. Replies
    /// with how many the queue took (the rest wait as NOT_STARTED for the reconciler).
    Enqueue(Vec<Task>, RpcReplyPort<usize>),
    /// Queue the tasks a crawl's results added (from the DB writer, after its commit).
    Discovered(Vec<Task>),
    /// Timer: re-queue what was left behind.
    Sweep,
    /// Run a sweep now and reply when done (tests, admin).
    SweepNow(RpcReplyPort<()>),
    /// Start-up with an in-process queue: queue again every task PENDING before `cutoff`.
    Recover { cutoff: i64 },
    /// Start-up: read the queue's generation now, so that a loss before the first sweep
    /// is noticed at that sweep (a change needs a generation to change from), and queue
    /// again the PENDING tasks queued before the current queue was made.
    NoteGeneration,
}

impl SubmitterState {
    /// Queues `tasks` and records it; false if the queue refused.
    async fn enqueue(&mut self, tasks: &[Task]) -> bool {
        if tasks.is_empty() {
            return true;
        }
        if !self.push_jobs(tasks).await {
            return false;
        }
        let ids: Vec<i64> = tasks.iter().map(|t| t.id).collect();
        if let Err(e) = self.store.mark_queued(&ids).await {
            // Queued but not marked: the worker's result still finishes them.
            tracing::warn!(error = %e, "tasks queued but not marked PENDING");
        }
        true
    }

    /// Hands the jobs of `tasks` to the queue (nothing recorded); false if it refused.
    async fn push_jobs(&mut self, tasks: &[Task]) -> bool {
        let Some(jobs) = self.jobs(tasks).await else {
            return false;
        };
        match tokio::time::timeout(Duration::from_secs(5), self.queue.enqueue(&jobs)).await {
            Ok(Ok(())) => {
                if self.queue_down {
                    tracing::info!("queue reachable again");
                    self.queue_down = false;
                }
                true
            }
            Ok(Err(e)) => {
                self.note_down(&e.to_string(), tasks.len());
                false
            }
            Err(_) => {
                self.note_down("enqueue timed out", tasks.len());
                false
            }
        }
    }

    /// Queues the tasks a crawl's results added. Claimed and marked PENDING first, in one
    /// transaction (`Store::claim_and_mark_queued`: a sweep may have queued some of them
    /// already, when this message came late), then handed to the queue; what the queue
    /// refuses goes back to NOT_STARTED for the reconciler.
    async fn queue_discovered(&mut self, mut tasks: Vec<Task>) {
        let ids: Vec<i64> = tasks.iter().map(|t| t.id).collect();
        let claimed = match self.store.claim_and_mark_queued(&ids).await {
            Ok(c) => c,
            // Unclaimed, they wait as NOT_STARTED for the reconciler's sweep.
            Err(e) => {
                tracing::warn!(error = %e, "cannot claim discovered tasks");
                return;
            }
        };
        tasks.retain(|t| claimed.binary_search(&t.id).is_ok());
        if tasks.is_empty() {
            return;
        }
        let refused = !self.push_jobs(&tasks).await;
        if refused {
            let ids: Vec<i64> = tasks.iter().map(|t| t.id).collect();
            if let Err(e) = self.store.unclaim_queued(&ids).await {
                // They stay PENDING without a job: their pending deadline queues them.
                tracing::warn!(error = %e, "discovered tasks not queued wait for their deadline");
            }
        }
    }

    /// The jobs of `tasks`; a crawl's tasks carry their crawl's rules (read once per crawl
    /// and kept: a crawl's rules never change). None when the rules cannot be read (the
    /// database is down): the tasks stay as they are and the reconciler tries again.
    async fn jobs(&mut self, tasks: &[Task]) -> Option<Vec<Job>> {
        let mut missing: Vec<i64> = tasks
            .iter()
            .filter(|t| t.depth.is_some())
            .filter_map(|t| t.batch_id)
            .filter(|b| !self.crawl_rules.contains_key(b))
            .collect();
        missing.sort_unstable();
        missing.dedup();
        if !missing.is_empty() {
            match self.store.crawl_rules(&missing).await {
                Ok(found) => {
                    if self.crawl_rules.len() + found.len() > CRAWL_RULES_KEPT {
                        self.crawl_rules.clear();
                    }
                    self.crawl_rules.extend(found);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read crawl rules; tasks wait");
                    return None;
                }
            }
        }
        Some(
            tasks
                .iter()
                .map(|t| crate::store::crawls::job_of(t, &self.crawl_rules))
                .collect(),
        )
    }

    /// Notices that the queue lost what it held (its generation changed since the last
    /// sweep) and starts re-queueing every PENDING task now, a batch per message, instead
    /// of letting each wait out its pending deadline (1,000 per sweep, ~100 tasks/s).
    async fn check_generation(&mut self, myself: &ActorRef<SubmitterMsg>) {
        let Ok(Some(now)) = self.queue.generation().await else {
            return;
        };
        match self.generation.replace(now.clone()) {
            Some(before) if before != now => {
                metrics::counter!("wordtally_queue_losses_total").increment(1);
                tracing::warn!(
                    before,
                    now,
                    "the queue lost its jobs (restarted empty?): re-queueing every PENDING task"
                );
                let _ = myself.cast(SubmitterMsg::Recover { cutoff: now_ms() });
            }
            Some(_) => {}
            // The first look (start-up): there is nothing to compare with, and the queue
            // may have been lost while this process was away (Redis and serve restarted
            // together). A task still PENDING from before the queue was made was queued
            // into a queue that is gone: queue it again now rather than at its deadline.
            // With a queue made long ago this claims nothing. (Clocks: `queued_at` is this
            // machine's, the token Redis'; a skew re-queues a few tasks twice, or leaves a
            // few to the deadline.)
            None => {
                if let Some(made) = crate::queue::generation_made_at(&now) {
                    let _ = myself.cast(SubmitterMsg::Recover { cutoff: made });
                }
            }
        }
    }

    fn note_down(&mut self, why: &str, n: usize) {
        metrics::counter!("wordtally_enqueue_failures_total").increment(1);
        if !self.queue_down {
            tracing::warn!(
                error = why,
                tasks = n,
                "queue unavailable; tasks wait as NOT_STARTED and are re-queued when it is back"
            );
        }
        self.queue_down = true;
    }

    /// Deletes batches past the retention age, a few per minute.
    async fn retention(&mut self) {
        let Some(age) = self.sweep.retain else { return };
        if self
            .last_retention
            .is_some_and(|t| t.elapsed() < RETENTION_EVERY)
        {
            return;
        }
        self.last_retention = Some(std::time::Instant::now());
        let cutoff = now_ms() - age.as_millis() as i64;
        match self
            .store
            .batches_finished_before(cutoff, RETENTION_BATCHES)
            .await
        {
            Ok(ids) => {
                for id in ids {
                    match self.store.delete_batch(id).await {
                        Ok(_) => tracing::info!(batch = id, "retention: deleted a finished batch"),
                        Err(e) => {
                            tracing::warn!(batch = id, error = %e, "retention: cannot delete batch");
                            break;
                        }
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "retention: cannot read expired batches"),
        }
    }

    async fn sweep(&mut self) {
        self.retention().await;
        let s = self.sweep.clone();
        match self
            .store
            .claim_stale(
                TaskStatus::NotStarted,
                s.not_started_after.as_millis() as i64,
                s.batch,
            )
            .await
        {
            Ok(tasks) if !tasks.is_empty() => {
                if self.enqueue(&tasks).await {
                    metrics::counter!("wordtally_requeued_total", "reason" => "not_started")
                        .increment(tasks.len() as u64);
                    tracing::info!(
                        n = tasks.len(),
                        "re-queued tasks that were waiting for the queue"
                    );
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "reconciler could not read NOT_STARTED tasks"),
        }
        match self
            .store
            .claim_stale(
                TaskStatus::Pending,
                s.pending_deadline.as_millis() as i64,
                s.batch,
            )
            .await
        {
            Ok(tasks) if !tasks.is_empty() => {
                let (give_up, retry): (Vec<Task>, Vec<Task>) = tasks
                    .into_iter()
                    .partition(|t| t.attempts >= s.max_attempts);
                if !give_up.is_empty() {
                    let results: Vec<JobResult> = give_up
                        .iter()
                        .map(|t| gave_up(t, s.pending_deadline))
                        .collect();
                    match self.store.store_results(&results).await {
                        Ok(_) => {
                            metrics::counter!("wordtally_tasks_gave_up_total")
                                .increment(results.len() as u64);
                            tracing::warn!(
                                n = results.len(),
                                "tasks gave up after too many attempts"
                            )
                        }
                        Err(e) => tracing::warn!(error = %e, "could not store gave-up results"),
                    }
                }
                if !retry.is_empty() && self.enqueue(&retry).await {
                    metrics::counter!("wordtally_requeued_total", "reason" => "pending_deadline")
                        .increment(retry.len() as u64);
                    tracing::info!(
                        n = retry.len(),
                        "re-queued PENDING tasks whose result never arrived"
                    );
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "reconciler could not read PENDING tasks"),
        }
    }
}

/// The final result of a task that was queued `max_attempts` times without a result.
fn gave_up(t: &Task, deadline: Duration) -> JobResult {
    JobResult {
        task_id: t.id,
        run: t.run,
        result: ResultRecord::error_only(
            format!(
                "gave up: queued {} times, no result arrived within {} s each time",
                t.attempts,
                deadline.as_secs()
            ),
            0,
        ),
        worker: "reconciler".into(),
    }
}

impl Actor for Submitter {
    type Msg = SubmitterMsg;
    type State = SubmitterState;
    type Arguments = SubmitterArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        let timer = (!args.sweep.interval.is_zero())
            .then(|| myself.send_interval(args.sweep.interval, || SubmitterMsg::Sweep));
        // Without it the first sweep would only record the generation: jobs queued before
        // it and lost with the queue (Redis restarted empty within the first interval)
        // would wait out their pending deadline instead of being queued again at once.
        // The first look also re-queues what a queue lost while this process was away.
        let _ = myself.cast(SubmitterMsg::NoteGeneration);
        if args.sweep.requeue_pending_at_start {
            let cutoff = now_ms();
            let _ = myself.cast(SubmitterMsg::Recover { cutoff });
        }
        Ok(SubmitterState {
            store: args.store,
            queue: args.queue,
            sweep: args.sweep,
            timer,
            queue_down: false,
            last_retention: None,
            crawl_rules: std::collections::HashMap::new(),
            generation: None,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            SubmitterMsg::Submit(sub, reply) => {
                let (batch_id, mut tasks) = match state
                    .store
                    .insert_batch_by(sub.label.as_deref(), sub.created_by.as_deref(), &sub.tasks)
                    .await
                {
                    Ok(t) => t,
                    Err(e) => {
                        tracing::error!(error = %e, "could not store submitted tasks");
                        let _ = reply.send(Err(
                            "the database is unavailable; nothing was stored, please retry".into(),
                        ));
                        return Ok(());
                    }
                };
                if state.enqueue(&tasks).await {
                    for t in &mut tasks {
                        t.status = TaskStatus::Pending;
                        t.attempts += 1;
                    }
                }
                let _ = reply.send(Ok(Submitted { batch_id, tasks }));
            }
            SubmitterMsg::Enqueue(tasks, reply) => {
                let n = if state.enqueue(&tasks).await {
                    tasks.len()
                } else {
                    0
                };
                let _ = reply.send(n);
            }
            SubmitterMsg::Discovered(tasks) => state.queue_discovered(tasks).await,
            SubmitterMsg::Sweep => {
                state.check_generation(&myself).await;
                state.sweep().await
            }
            SubmitterMsg::NoteGeneration => state.check_generation(&myself).await,
            SubmitterMsg::SweepNow(reply) => {
                state.sweep().await;
                let _ = reply.send(());
            }
            SubmitterMsg::Recover { cutoff } => {
                // One batch per message, so submissions are served in between.
                let batch = state.sweep.batch;
                match state
                    .store
                    .claim_queued_before(TaskStatus::Pending, cutoff, batch)
                    .await
                {
                    Ok(tasks) if !tasks.is_empty() => {
                        let n = tasks.len();
                        if state.enqueue(&tasks).await {
                            tracing::info!(n, "re-queued tasks left PENDING by the previous run");
                        }
                        if n as i64 == batch {
                            let _ = myself.cast(SubmitterMsg::Recover { cutoff });
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "could not recover PENDING tasks at start-up")
                    }
                }
            }
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        if let Some(t) = state.timer.take() {
            t.abort();
        }
        Ok(())
    }
}
