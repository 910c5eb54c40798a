//! The four long-lived actors of a `serve` process and their supervisor:
//! [`submitter::Submitter`] (store, then queue; reconciler sweeps),
//! [`worker::WorkerPool`] (a ractor factory: reserve → fetch → count → publish → ack),
//! [`nsq_listener::NsqListener`] (result bus → DB writer → finish/requeue) and
//! [`db_writer::DbWriter`] (batches results into transactions).
//! They talk only by ractor messages; replies use `RpcReplyPort`.

pub mod db_writer;
pub mod heartbeat;
pub mod nsq_listener;
pub mod submitter;
pub mod supervisor;
pub mod worker;

use std::sync::{Arc, RwLock};

use ractor::ActorRef;

/// The current `ActorRef` of a supervised actor. The supervisor swaps in the new ref when
/// it restarts the actor, so holders of the slot (the web handlers, the listener) always
/// reach the live instance.
pub struct ActorSlot<M: ractor::Message>(Arc<RwLock<Option<ActorRef<M>>>>);

impl<M: ractor::Message> Clone for ActorSlot<M> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<M: ractor::Message> Default for ActorSlot<M> {
    fn default() -> Self {
        Self(Arc::new(RwLock::new(None)))
    }
}

impl<M: ractor::Message> ActorSlot<M> {
    /// The live actor, if it is running.
    pub fn get(&self) -> Option<ActorRef<M>> {
        self.0.read().ok().and_then(|g| g.clone())
    }

    pub fn set(&self, actor: ActorRef<M>) {
        if let Ok(mut g) = self.0.write() {
            *g = Some(actor);
        }
    }
}
