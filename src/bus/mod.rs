//! The result bus from workers back to the database (fetch → count → **NSQ** → DB).
//!
//! Workers publish a `JobResult` and acknowledge their job only once `publish` returned
//! Ok; the NSQ Listener takes each message, has the DB writer commit it, and only then
//! `finish`es it (or `requeue`s it on a database error). Every message is therefore
//! settled explicitly, exactly once, by the listener. Two implementations: in-process
//! ([`memory`]) and NSQ ([`nsq`]).

pub mod memory;
pub mod nsq;
pub mod stats;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::model::JobResult;

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("result bus unavailable: {0}")]
    Unavailable(String),
    #[error("result bus is closed")]
    Closed,
}

/// The worker side: hands results to the bus.
#[async_trait]
pub trait ResultPublisher: Send + Sync + 'static {
    /// Returns Ok only once the bus has accepted the result (for NSQ: nsqd answered OK).
    async fn publish(&self, result: &JobResult) -> Result<(), BusError>;
}

pub type SharedPublisher = Arc<dyn ResultPublisher>;

/// How a received message is settled. Exactly one of the two is called.
#[async_trait]
pub trait Settle: Send + 'static {
    /// Done: never deliver it again.
    async fn finish(self: Box<Self>);
    /// Not done: deliver it again after `delay`.
    async fn requeue(self: Box<Self>, delay: Duration);
}

/// A message taken from the bus, not yet settled.
pub struct Incoming {
    pub body: Vec<u8>,
    /// Delivery attempts so far (1 = first).
    pub attempts: u16,
    pub settle: Box<dyn Settle>,
}

/// The listener side: yields messages until the source is closed.
#[async_trait]
pub trait ResultSource: Send + 'static {
    /// The next message, or `None` once the source was closed and drained.
    async fn next(&mut self) -> Option<Incoming>;

    /// Called when the listener stops, once every message it took was settled: a
    /// transport that buffers its FIN/REQ frames sends them before it is dropped.
    async fn close(&mut self) {}
}
