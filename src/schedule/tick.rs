//! The schedule tick (DESIGN §16), started by `serve` beside its actors: every few seconds
//! (with random jitter, like Sidekiq's scheduled poller, so several processes do not poll
//! in step) it claims the due ticks in the database, pages of `CLAIM_PAGE` at a time, and
//! then hands the started runs' tasks their new run, a thousand at a time, passing them to
//! the Submitter (→ queue → fetch → … → DB). Every decision is a conditional statement in
//! the database (store/schedules.rs), never this process's memory, so any number of
//! `serve` processes — restarted, or cut off from the database for a while — start each
//! due tick's run exactly once. A failed round is logged and tried again next period.

use std::time::Duration;

use ractor::rpc::CallResult;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::actors::ActorSlot;
use crate::actors::submitter::SubmitterMsg;
use crate::model::{Task, now_ms};
use crate::store::schedules::CLAIM_PAGE;
use crate::store::{Store, StoreResult};

/// Most claim pages per round: bounds one round's work (10,000 due schedules) while a
/// backlog larger than that is taken over the next rounds.
const MAX_PAGES: usize = 100;
/// Starting runs read per page, and pages per round: a round starts at most 1,000 runs
/// (their tasks a thousand per transaction); more wait for the next round.
const MAX_STARTING: i64 = 100;
const MAX_STARTING_PAGES: usize = 10;

/// What one round did (for tests and logs).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RoundReport {
    pub claimed: usize,
    pub started: usize,
    pub skipped: usize,
    /// Tasks handed a new run.
    pub tasks: usize,
}

/// The running tick loop; `stop` ends it between rounds.
pub struct Ticker {
    stop: watch::Sender<bool>,
    handle: JoinHandle<()>,
}

impl Ticker {
    /// Starts the loop: a round every `period` (± up to a quarter of it, random).
    pub fn start(store: Store, submitter: ActorSlot<SubmitterMsg>, period: Duration) -> Ticker {
        let (stop, mut stopped) = watch::channel(false);
        let handle = tokio::spawn(async move {
            loop {
                match round(&store, &submitter).await {
                    Ok(r) if r.claimed + r.tasks > 0 => {
                        tracing::info!(
                            claimed = r.claimed,
                            started = r.started,
                            skipped = r.skipped,
                            tasks = r.tasks,
                            "schedule tick"
                        )
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "schedule tick failed; trying again next period")
                    }
                }
                let ms = period.as_millis() as u64;
                let jitter = fastrand::u64(0..=ms / 2);
                let wait = Duration::from_millis(ms - ms / 4 + jitter);
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = stopped.changed() => break,
                }
            }
        });
        Ticker { stop, handle }
    }

    /// Stops the loop (a round in progress finishes its current statement first).
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(10), self.handle).await;
    }
}

/// One round: claim every due tick (bounded), then advance the runs being started.
pub async fn round(store: &Store, submitter: &ActorSlot<SubmitterMsg>) -> StoreResult<RoundReport> {
    let mut report = RoundReport::default();
    let now = now_ms();
    for _ in 0..MAX_PAGES {
        let page = store.claim_due_ticks(now).await?;
        report.claimed += page.claimed;
        report.started += page.started.len();
        report.skipped += page.skipped;
        metrics::counter!("wordtally_schedule_runs_started_total")
            .increment(page.started.len() as u64);
        metrics::counter!("wordtally_schedule_ticks_skipped_total").increment(page.skipped as u64);
        if page.due < CLAIM_PAGE {
            break;
        }
    }
    for _ in 0..MAX_STARTING_PAGES {
        let starting = store.starting_runs(MAX_STARTING).await?;
        let full = starting.len() as i64 >= MAX_STARTING;
        let mut progressed = false;
        for run in starting {
            let mut cur = Some(run);
            while let Some(r) = cur {
                match store.start_run_chunk(&r).await? {
                    // Another process took this chunk: it carries the run on.
                    None => break,
                    Some((tasks, next)) => {
                        progressed = true;
                        report.tasks += tasks.len();
                        enqueue(submitter, tasks).await;
                        cur = next;
                    }
                }
            }
        }
        if !full || !progressed {
            break;
        }
    }
    Ok(report)
}

/// Hands new runs to the Submitter (which queues them and marks them queued). If it is not
/// there or the queue is down, the tasks wait as NOT_STARTED and the reconciler queues
/// them: the run is in the database already.
async fn enqueue(submitter: &ActorSlot<SubmitterMsg>, tasks: Vec<Task>) {
    if tasks.is_empty() {
        return;
    }
    let Some(s) = submitter.get() else {
        tracing::warn!(
            n = tasks.len(),
            "scheduled tasks wait for the reconciler (no submitter)"
        );
        return;
    };
    match s
        .call(
            |reply| SubmitterMsg::Enqueue(tasks, reply),
            Some(Duration::from_secs(60)),
        )
        .await
    {
        Ok(CallResult::Success(_)) => {}
        other => tracing::warn!(
            outcome = ?other.map(|_| ()),
            "scheduled tasks not queued now; the reconciler will"
        ),
    }
}
