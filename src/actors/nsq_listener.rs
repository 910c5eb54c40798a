//! NSQ Listener actor (fetch → count → **NSQ** → DB): takes results off the bus, hands each
//! to the DB writer, and settles the message only after the DB writer answered: `finish`
//! after the commit, `requeue` with back-off on a database error or time-out. A malformed
//! message (bad JSON) or one for an unknown task is logged with its content and finished,
//! so it can neither crash the listener nor block the channel.
//!
//! The pull loop runs in a task the actor owns (pulling blocks; a handler must not). At
//! most `max_in_flight` messages are unsettled at once. If the loop dies it is restarted
//! with a fresh source.

use std::sync::Arc;
use std::time::Duration;

use ractor::rpc::CallResult;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tokio::sync::{Mutex, Semaphore, watch};
use tokio::task::JoinHandle;

use super::ActorSlot;
use super::db_writer::DbWriterMsg;
use crate::bus::{Incoming, ResultSource};
use crate::model::JobResult;
use crate::store::StoreOutcome;

/// Makes the listener's source; called again when the pull loop has to be rebuilt.
pub type SourceFactory = Arc<dyn Fn() -> Box<dyn ResultSource> + Send + Sync>;

/// A source shared through a mutex so that a restarted pull loop keeps consuming the same
/// in-process channel.
pub struct SharedSource<S>(pub Arc<Mutex<S>>);

#[async_trait::async_trait]
impl<S: ResultSource> ResultSource for SharedSource<S> {
    async fn next(&mut self) -> Option<Incoming> {
        self.0.lock().await.next().await
    }
}

pub struct NsqListener;

#[derive(Clone)]
pub struct NsqListenerArgs {
    pub source: SourceFactory,
    pub db_writer: ActorSlot<DbWriterMsg>,
    pub max_in_flight: usize,
}

pub struct NsqListenerState {
    args: NsqListenerArgs,
    stop: watch::Sender<bool>,
    pump: Option<JoinHandle<()>>,
    permits: Arc<Semaphore>,
    draining: bool,
}

pub enum NsqListenerMsg {
    /// The pull loop ended (it only does so when stopped, or by a bug): restart it.
    PumpExited,
    /// Stop taking messages, wait (up to the duration) for the unsettled ones, reply.
    Drain(Duration, RpcReplyPort<()>),
}

/// Back-off before a requeued result is redelivered: 1 s doubling per attempt, ≤ 60 s.
fn requeue_delay(attempts: u16) -> Duration {
    let exp = u32::from(attempts.saturating_sub(1)).min(6);
    Duration::from_secs(1u64 << exp).min(Duration::from_secs(60))
}

/// What to do with one message; separated from I/O for testing.
async fn settle_one(m: Incoming, db_writer: ActorSlot<DbWriterMsg>) {
    let result: JobResult = match serde_json::from_slice(&m.body) {
        Ok(r) => r,
        Err(e) => {
            let shown: String = String::from_utf8_lossy(&m.body).chars().take(500).collect();
            metrics::counter!("wordtally_results_total", "outcome" => "malformed").increment(1);
            tracing::warn!(error = %e, body = %shown, "malformed result message; finishing it");
            m.settle.finish().await;
            return;
        }
    };
    let task_id = result.task_id;
    let Some(writer) = db_writer.get() else {
        m.settle.requeue(requeue_delay(m.attempts)).await;
        return;
    };
    let answer = writer
        .call(
            |reply| DbWriterMsg::Write(Box::new(result), reply),
            Some(Duration::from_secs(30)),
        )
        .await;
    match answer {
        Ok(CallResult::Success(Ok(outcome))) => {
            let label = match outcome {
                StoreOutcome::Stored => "stored",
                StoreOutcome::History => "history",
                StoreOutcome::Duplicate => "duplicate",
                StoreOutcome::UnknownTask => "unknown_task",
            };
            metrics::counter!("wordtally_results_total", "outcome" => label).increment(1);
            match outcome {
                StoreOutcome::Stored => tracing::debug!(task_id, "result stored"),
                StoreOutcome::History => {
                    tracing::debug!(task_id, "late result of an earlier run kept as history")
                }
                StoreOutcome::Duplicate => tracing::debug!(task_id, "duplicate result ignored"),
                StoreOutcome::UnknownTask => {
                    let shown: String =
                        String::from_utf8_lossy(&m.body).chars().take(500).collect();
                    tracing::warn!(task_id, body = %shown, "result for an unknown task; finishing it");
                }
            }
            m.settle.finish().await;
        }
        other => {
            let delay = requeue_delay(m.attempts);
            let why = match other {
                Ok(CallResult::Success(Err(e))) => e,
                Ok(CallResult::Timeout) => "DB writer timed out".into(),
                Ok(CallResult::SenderError) | Err(_) => "DB writer unavailable".into(),
                Ok(CallResult::Success(Ok(_))) => unreachable!("handled above"),
            };
            metrics::counter!("wordtally_results_total", "outcome" => "requeued").increment(1);
            tracing::warn!(task_id, attempts = m.attempts, ?delay, error = %why, "result not stored; requeued");
            m.settle.requeue(delay).await;
        }
    }
}

fn spawn_pump(
    myself: ActorRef<NsqListenerMsg>,
    args: &NsqListenerArgs,
    permits: Arc<Semaphore>,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    let mut source = (args.source)();
    let db_writer = args.db_writer.clone();
    let all_permits = args.max_in_flight.max(1) as u32;
    let pull = async move {
        loop {
            let permit = tokio::select! {
                _ = stop.wait_for(|s| *s) => break,
                p = permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            };
            let next = tokio::select! {
                _ = stop.wait_for(|s| *s) => break,
                m = source.next() => m,
            };
            let Some(m) = next else { break };
            let db_writer = db_writer.clone();
            tokio::spawn(async move {
                settle_one(m, db_writer).await;
                drop(permit);
            });
        }
        // The source (its connection) must outlive the messages still being settled, or
        // their FIN/REQ go nowhere and stored results are delivered again after a restart.
        let settled = permits.acquire_many(all_permits);
        let _ = tokio::time::timeout(Duration::from_secs(10), settled).await;
        source.close().await;
    };
    // The loop runs in a task of its own so that even a panic inside it (tokio-nsq
    // unwraps internally) is reported to the actor, which starts a new one.
    tokio::spawn(async move {
        if let Err(e) = tokio::spawn(pull).await
            && e.is_panic()
        {
            tracing::error!("result listener loop panicked");
        }
        let _ = myself.cast(NsqListenerMsg::PumpExited);
    })
}

impl Actor for NsqListener {
    type Msg = NsqListenerMsg;
    type State = NsqListenerState;
    type Arguments = NsqListenerArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        let (stop, stop_rx) = watch::channel(false);
        let permits = Arc::new(Semaphore::new(args.max_in_flight.max(1)));
        let pump = spawn_pump(myself, &args, permits.clone(), stop_rx);
        Ok(NsqListenerState {
            args,
            stop,
            pump: Some(pump),
            permits,
            draining: false,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            NsqListenerMsg::PumpExited => {
                if !state.draining {
                    tracing::error!("result listener loop ended unexpectedly; restarting it");
                    let rx = state.stop.subscribe();
                    state.pump = Some(spawn_pump(myself, &state.args, state.permits.clone(), rx));
                }
            }
            NsqListenerMsg::Drain(wait, reply) => {
                state.draining = true;
                let _ = state.stop.send(true);
                if let Some(p) = state.pump.take() {
                    let _ = tokio::time::timeout(wait, p).await;
                }
                // All permits back = every taken message settled.
                let all = state.args.max_in_flight.max(1) as u32;
                let _ = tokio::time::timeout(wait, state.permits.acquire_many(all)).await;
                let _ = reply.send(());
            }
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let _ = state.stop.send(true);
        if let Some(p) = state.pump.take() {
            p.abort();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requeue_backoff_grows_and_caps() {
        assert_eq!(requeue_delay(1), Duration::from_secs(1));
        assert_eq!(requeue_delay(2), Duration::from_secs(2));
        assert_eq!(requeue_delay(4), Duration::from_secs(8));
        assert_eq!(requeue_delay(100), Duration::from_secs(60));
    }
}
