//! DB writer actor (… → NSQ → **DB**): collects results from the NSQ Listener and writes
//! them in batches, one transaction each, replying to every sender only after the commit,
//! so the listener finishes an NSQ message only once its result is durable.
//!
//! Batching: a result is written at once when the batch is full, otherwise after a short
//! delay (a timer message, never a sleep in the handler). While a transaction runs, new
//! results wait in the mailbox and form the next batch, so batches grow with load.
//!
//! Crawls (DESIGN §15): the same transaction adds the unseen links of the results as new
//! tasks (the frontier); after the commit they go to the Submitter to be queued (if it is
//! away or the queue is down they wait as NOT_STARTED and its reconciler queues them).

use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};

use crate::actors::ActorSlot;
use crate::actors::submitter::SubmitterMsg;
use crate::model::JobResult;
use crate::store::crawls::KnownUrls;
use crate::store::{Store, StoreOutcome};

pub struct DbWriter;

#[derive(Clone)]
pub struct DbWriterArgs {
    pub store: Store,
    /// Results per transaction, at most.
    pub batch_size: usize,
    /// How long a partial batch waits for company.
    pub batch_delay: Duration,
    /// Where the tasks a crawl discovers are sent to be queued.
    pub submitter: ActorSlot<SubmitterMsg>,
}

pub struct DbWriterState {
    store: Store,
    batch_size: usize,
    batch_delay: Duration,
    submitter: ActorSlot<SubmitterMsg>,
    pending: Vec<(JobResult, RpcReplyPort<Result<StoreOutcome, String>>)>,
    timer_armed: bool,
    /// URLs this writer's crawls are known to have (saves the frontier's index probes).
    known: KnownUrls,
}

pub enum DbWriterMsg {
    /// Store one result; the reply comes after the commit (Err = not stored, retry later).
    Write(Box<JobResult>, RpcReplyPort<Result<StoreOutcome, String>>),
    /// The batch timer fired: write what is pending.
    Flush,
    /// Write everything pending, then reply (graceful shutdown).
    Drain(RpcReplyPort<()>),
}

impl DbWriterState {
    async fn flush(&mut self) {
        self.timer_armed = false;
        while !self.pending.is_empty() {
            let n = self.pending.len().min(self.batch_size);
            // Split, not cloned: a crawl's results carry every link of their pages.
            let (results, replies): (Vec<JobResult>, Vec<_>) = self.pending.drain(..n).unzip();
            metrics::histogram!("wordtally_db_batch_size").record(results.len() as f64);
            match self
                .store
                .write_results(&results, Some(&mut self.known))
                .await
            {
                Ok(written) => {
                    tracing::debug!(n = results.len(), "results committed");
                    for (reply, outcome) in replies.into_iter().zip(written.verdicts) {
                        let _ = reply.send(Ok(outcome));
                    }
                    if !written.discovered.is_empty() {
                        metrics::counter!("wordtally_crawl_discovered_total")
                            .increment(written.discovered.len() as u64);
                        match self.submitter.get() {
                            // A cast: queueing must not hold up the next write.
                            Some(s) => {
                                let _ = s.cast(SubmitterMsg::Discovered(written.discovered));
                            }
                            None => tracing::warn!(
                                n = written.discovered.len(),
                                "discovered tasks wait for the reconciler (no submitter)"
                            ),
                        }
                    }
                }
                Err(e) => {
                    metrics::counter!("wordtally_db_batch_failures_total").increment(1);
                    tracing::warn!(error = %e, n = results.len(), "result batch not stored; senders will retry");
                    for reply in replies {
                        let _ = reply.send(Err(e.to_string()));
                    }
                }
            }
        }
    }
}

impl Actor for DbWriter {
    type Msg = DbWriterMsg;
    type State = DbWriterState;
    type Arguments = DbWriterArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(DbWriterState {
            store: args.store,
            batch_size: args.batch_size.max(1),
            batch_delay: args.batch_delay,
            submitter: args.submitter,
            pending: Vec::new(),
            timer_armed: false,
            known: KnownUrls::default(),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            DbWriterMsg::Write(result, reply) => {
                state.pending.push((*result, reply));
                if state.pending.len() >= state.batch_size || state.batch_delay.is_zero() {
                    state.flush().await;
                } else if !state.timer_armed {
                    state.timer_armed = true;
                    myself.send_after(state.batch_delay, || DbWriterMsg::Flush);
                }
            }
            DbWriterMsg::Flush => state.flush().await,
            DbWriterMsg::Drain(reply) => {
                state.flush().await;
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
        state.flush().await;
        Ok(())
    }
}
