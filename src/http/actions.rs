//! What a person (or a script) does to submitted work — retry and cancel, of one task, of
//! a batch, or of whatever matches a filter — shared by the JSON API and the pages. The
//! store does each thousand tasks in one transaction; retried tasks go back through the
//! Submitter to the queue; cancelled runs are told to the queue, so jobs not yet handed
//! out are dropped without a fetch.

use ractor::rpc::CallResult;

use super::{AppState, Error};
use crate::actors::submitter::SubmitterMsg;
use crate::model::{Task, TaskStatus};
use crate::outcome::Outcome;
use crate::store::{CHUNK, CancelledRun, TaskFilter};

/// Who the current request is, as the audit log and the pages name them.
pub fn who() -> String {
    use crate::auth::Who;
    match crate::auth::current_who() {
        Who::Account { name, .. } => format!("account {name}"),
        Who::Token { name, .. } => format!("token {name}"),
        Who::Anonymous => match crate::auth::current_client() {
            Some(a) => format!("anonymous ({a})"),
            None => "anonymous".to_string(),
        },
    }
}

/// Queues the new runs of retried tasks through the Submitter (which marks them queued).
/// If the queue is down they wait as NOT_STARTED and the reconciler queues them later, so
/// this never fails the request once the database has the new runs.
async fn enqueue(state: &AppState, tasks: Vec<Task>) {
    enqueue_counted(state, tasks).await;
}

/// [`enqueue`], telling how many tasks the queue took now (0 when they wait).
pub(crate) async fn enqueue_counted(state: &AppState, tasks: Vec<Task>) -> usize {
    if tasks.is_empty() {
        return 0;
    }
    let Some(submitter) = state.submitter.get() else {
        tracing::warn!(
            n = tasks.len(),
            "tasks wait for the reconciler (no submitter)"
        );
        return 0;
    };
    match submitter
        .call(
            |reply| SubmitterMsg::Enqueue(tasks, reply),
            Some(state.submit_timeout),
        )
        .await
    {
        Ok(CallResult::Success(n)) => n,
        other => {
            tracing::warn!(
                outcome = ?other.map(|_| ()),
                "tasks not queued now; the reconciler will"
            );
            0
        }
    }
}

/// Tells the queue which runs were cancelled (best effort: a job it still hands out is
/// fetched, and its result changes nothing).
async fn tell_queue(state: &AppState, runs: &[CancelledRun]) {
    if runs.is_empty() {
        return;
    }
    if let Err(e) = state.queue.cancel(runs).await {
        tracing::warn!(error = %e, n = runs.len(), "queue not told of cancellations");
    }
}

/// Retries one finished task: a new run. 409 while it is unfinished.
pub async fn retry_task(state: &AppState, id: i64) -> Result<Task, Error> {
    let mut retried = state.store.retry_tasks_by(&[id], &who()).await?;
    match retried.pop() {
        Some(t) => {
            metrics::counter!("wordtally_retried_total").increment(1);
            enqueue(state, vec![t.clone()]).await;
            Ok(t)
        }
        None => match state.store.get_task(id).await? {
            None => Err(Error::NotFound),
            Some(v) => Err(Error::Conflict(format!(
                "task {id} is still {} (run {}); only a finished task can be retried — cancel it first",
                match v.task.status {
                    TaskStatus::NotStarted => "waiting for the queue",
                    TaskStatus::Pending => "pending",
                    TaskStatus::Finished => "finished",
                },
                v.task.run
            ))),
        },
    }
}

/// Cancels one unfinished task. 409 when it finished first (its result won).
pub async fn cancel_task(state: &AppState, id: i64) -> Result<Task, Error> {
    let runs = state.store.cancel_tasks_by(&[id], &who()).await?;
    tell_queue(state, &runs).await;
    let v = state.store.get_task(id).await?.ok_or(Error::NotFound)?;
    if runs.is_empty() {
        return Err(Error::Conflict(format!(
            "task {id} already finished ({}); there is nothing to cancel",
            v.task.outcome.map(Outcome::as_str).unwrap_or("finished")
        )));
    }
    metrics::counter!("wordtally_cancelled_total").increment(1);
    Ok(v.task)
}

/// Walks the tasks matching `base` oldest first, a thousand ids at a time, applying `act`
/// to each chunk; returns the sum of what `act` counted. Keyset paging means every task is
/// looked at once, even though acting on it changes whether it still matches.
async fn walk<F, Fut>(state: &AppState, base: &TaskFilter, mut act: F) -> Result<usize, Error>
where
    F: FnMut(Vec<i64>) -> Fut,
    Fut: std::future::Future<Output = Result<usize, Error>>,
{
    let mut filter = TaskFilter {
        before: None,
        after: None,
        limit: CHUNK as i64,
        oldest_first: true,
        ..base.clone()
    };
    let mut done = 0;
    loop {
        let ids = state.store.task_ids(&filter).await?;
        let Some(&last) = ids.last() else { break };
        let full = ids.len() >= CHUNK;
        done += act(ids).await?;
        if !full {
            break;
        }
        filter.after = Some(last);
    }
    Ok(done)
}

/// Retries every finished task matching `filter` whose outcome is one of `outcomes`.
pub async fn retry_matching(
    state: &AppState,
    filter: &TaskFilter,
    outcomes: &[Outcome],
) -> Result<usize, Error> {
    let mut total = 0;
    let who = &who();
    for &o in outcomes {
        if filter.outcome.is_some_and(|f| f != o) {
            continue;
        }
        if filter.status.is_some_and(|s| s != TaskStatus::Finished) {
            continue;
        }
        let f = TaskFilter {
            status: Some(TaskStatus::Finished),
            outcome: Some(o),
            ..filter.clone()
        };
        total += walk(state, &f, |ids| async move {
            let tasks = state.store.retry_tasks_by(&ids, who).await?;
            let n = tasks.len();
            enqueue(state, tasks).await;
            Ok(n)
        })
        .await?;
    }
    metrics::counter!("wordtally_retried_total").increment(total as u64);
    Ok(total)
}

/// Cancels every unfinished task matching `filter`.
pub async fn cancel_matching(state: &AppState, filter: &TaskFilter) -> Result<usize, Error> {
    let mut total = 0;
    let who = &who();
    for s in [TaskStatus::NotStarted, TaskStatus::Pending] {
        if filter.status.is_some_and(|f| f != s) || filter.outcome.is_some() {
            continue;
        }
        let f = TaskFilter {
            status: Some(s),
            ..filter.clone()
        };
        total += walk(state, &f, |ids| async move {
            let runs = state.store.cancel_tasks_by(&ids, who).await?;
            tell_queue(state, &runs).await;
            Ok(runs.len())
        })
        .await?;
    }
    metrics::counter!("wordtally_cancelled_total").increment(total as u64);
    Ok(total)
}

/// Deletes a batch: first cancels what is unfinished (so the queue drops those jobs),
/// then deletes tasks and results in chunks. 404 if there is no such batch.
pub async fn delete_batch(state: &AppState, id: i64) -> Result<(), Error> {
    if state.store.get_batch(id).await?.is_none() {
        return Err(Error::NotFound);
    }
    let filter = TaskFilter {
        batch: Some(id),
        ..Default::default()
    };
    cancel_matching(state, &filter).await?;
    if !state.store.delete_batch_by(id, &who()).await? {
        return Err(Error::NotFound);
    }
    tracing::info!(batch = id, "batch deleted");
    Ok(())
}
