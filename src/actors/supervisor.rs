//! Supervises the pipeline's actors: a child that fails (a panic or an error out of a
//! handler) is logged and started again with the same arguments, and its `ActorSlot` is
//! pointed at the new instance, so the process never silently stops working.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use ractor::{Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, SpawnErr, SupervisionEvent};

use super::ActorSlot;

type StartFuture = Pin<Box<dyn Future<Output = Result<ActorCell, SpawnErr>> + Send>>;

/// How to (re)start one child, linked to the supervisor given as argument.
#[derive(Clone)]
pub struct ChildSpec {
    pub name: &'static str,
    start: Arc<dyn Fn(ActorCell) -> StartFuture + Send + Sync>,
}

impl ChildSpec {
    /// A child made by `make` (handler and arguments, rebuilt on every restart) whose live
    /// reference is kept in `slot`.
    pub fn new<A, F>(name: &'static str, slot: ActorSlot<A::Msg>, make: F) -> Self
    where
        A: Actor,
        F: Fn() -> (A, A::Arguments) + Send + Sync + 'static,
    {
        let make = Arc::new(make);
        Self {
            name,
            start: Arc::new(move |sup: ActorCell| {
                let make = make.clone();
                let slot = slot.clone();
                Box::pin(async move {
                    let (handler, args) = make();
                    let (actor, _join) = Actor::spawn_linked(None, handler, args, sup).await?;
                    slot.set(actor.clone());
                    Ok(actor.get_cell())
                })
            }),
        }
    }
}

pub struct Supervisor;

pub struct SupervisorState {
    specs: HashMap<ActorId, ChildSpec>,
    /// Restarts so far, by child name (logged; a crash loop shows up in the logs).
    restarts: HashMap<&'static str, u32>,
}

/// Children are started in order (e.g. the DB writer before the listener that uses it).
pub struct SupervisorArgs {
    pub children: Vec<ChildSpec>,
}

/// The supervisor takes no messages of its own; it reacts to supervision events.
pub enum SupervisorMsg {}

impl Actor for Supervisor {
    type Msg = SupervisorMsg;
    type State = SupervisorState;
    type Arguments = SupervisorArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        let mut specs = HashMap::new();
        for spec in args.children {
            let cell = (spec.start)(myself.get_cell()).await?;
            specs.insert(cell.get_id(), spec);
        }
        Ok(SupervisorState {
            specs,
            restarts: HashMap::new(),
        })
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match event {
            SupervisionEvent::ActorFailed(cell, err) => {
                let Some(spec) = state.specs.remove(&cell.get_id()) else {
                    return Ok(());
                };
                let n = state.restarts.entry(spec.name).or_default();
                *n += 1;
                tracing::error!(actor = spec.name, error = %err, restarts = *n, "actor failed; restarting it");
                // A short pause keeps a crash loop from spinning a core.
                if *n > 3 {
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                }
                match (spec.start)(myself.get_cell()).await {
                    Ok(new_cell) => {
                        state.specs.insert(new_cell.get_id(), spec);
                    }
                    Err(e) => {
                        tracing::error!(actor = spec.name, error = %e, "restart failed; stopping the pipeline");
                        return Err(Box::new(e));
                    }
                }
            }
            SupervisionEvent::ActorTerminated(cell, _, reason) => {
                if let Some(spec) = state.specs.remove(&cell.get_id()) {
                    tracing::debug!(actor = spec.name, ?reason, "actor stopped");
                }
            }
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ractor::RpcReplyPort;
    use std::time::Duration;

    struct Flaky;
    enum FlakyMsg {
        Panic,
        Ping(RpcReplyPort<u32>),
    }

    impl Actor for Flaky {
        type Msg = FlakyMsg;
        type State = u32;
        type Arguments = u32;
        async fn pre_start(
            &self,
            _: ActorRef<FlakyMsg>,
            a: u32,
        ) -> Result<u32, ActorProcessingErr> {
            Ok(a)
        }
        async fn handle(
            &self,
            _: ActorRef<FlakyMsg>,
            m: FlakyMsg,
            s: &mut u32,
        ) -> Result<(), ActorProcessingErr> {
            match m {
                FlakyMsg::Panic => panic!("boom"),
                FlakyMsg::Ping(r) => {
                    let _ = r.send(*s);
                }
            }
            Ok(())
        }
    }

    #[tokio::test]
    async fn failed_child_is_restarted_and_slot_updated() {
        let slot: ActorSlot<FlakyMsg> = ActorSlot::default();
        let spec = ChildSpec::new("flaky", slot.clone(), || (Flaky, 7));
        let (sup, _h) = Actor::spawn(
            None,
            Supervisor,
            SupervisorArgs {
                children: vec![spec],
            },
        )
        .await
        .unwrap();
        let first = slot.get().unwrap();
        first.cast(FlakyMsg::Panic).unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(a) = slot.get()
                && a.get_id() != first.get_id()
            {
                let v = ractor::call!(a, FlakyMsg::Ping).unwrap();
                assert_eq!(v, 7);
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "not restarted");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        sup.stop(None);
    }
}
