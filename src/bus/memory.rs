//! In-process result bus for the embedded default: an unbounded channel with the same
//! finish / requeue contract as NSQ (a requeued message comes back after its delay with
//! one more attempt).

use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::mpsc;

use super::{BusError, Incoming, ResultPublisher, ResultSource, Settle};
use crate::model::JobResult;

#[derive(Debug)]
struct Message {
    body: Vec<u8>,
    attempts: u16,
}

/// Publishing half (clone it for every worker).
#[derive(Clone, Debug)]
pub struct MemoryPublisher {
    tx: mpsc::UnboundedSender<Message>,
}

/// Consuming half (one, owned by the NSQ Listener actor).
#[derive(Debug)]
pub struct MemorySource {
    tx: mpsc::UnboundedSender<Message>,
    rx: mpsc::UnboundedReceiver<Message>,
}

/// A connected publisher / source pair.
pub fn channel() -> (MemoryPublisher, MemorySource) {
    let (tx, rx) = mpsc::unbounded_channel();
    (MemoryPublisher { tx: tx.clone() }, MemorySource { tx, rx })
}

impl MemoryPublisher {
    /// Puts raw bytes on the bus (tests use it to send malformed messages).
    pub fn publish_raw(&self, body: Vec<u8>) -> Result<(), BusError> {
        self.tx
            .send(Message { body, attempts: 1 })
            .map_err(|_| BusError::Closed)
    }
}

#[async_trait]
impl ResultPublisher for MemoryPublisher {
    async fn publish(&self, result: &JobResult) -> Result<(), BusError> {
        let body = serde_json::to_vec(result)
            .map_err(|e| BusError::Unavailable(format!("cannot encode result: {e}")))?;
        self.publish_raw(body)
    }
}

struct MemorySettle {
    tx: mpsc::UnboundedSender<Message>,
    body: Vec<u8>,
    attempts: u16,
}

#[async_trait]
impl Settle for MemorySettle {
    async fn finish(self: Box<Self>) {}

    async fn requeue(self: Box<Self>, delay: Duration) {
        let MemorySettle { tx, body, attempts } = *self;
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = tx.send(Message {
                body,
                attempts: attempts.saturating_add(1),
            });
        });
    }
}

#[async_trait]
impl ResultSource for MemorySource {
    async fn next(&mut self) -> Option<Incoming> {
        let m = self.rx.recv().await?;
        Some(Incoming {
            body: m.body.clone(),
            attempts: m.attempts,
            settle: Box::new(MemorySettle {
                tx: self.tx.clone(),
                body: m.body,
                attempts: m.attempts,
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn requeue_redelivers_with_one_more_attempt() {
        let (publisher, mut source) = channel();
        publisher.publish_raw(b"x".to_vec()).unwrap();
        let m = source.next().await.unwrap();
        assert_eq!(m.attempts, 1);
        m.settle.requeue(Duration::from_millis(10)).await;
        let again = tokio::time::timeout(Duration::from_secs(5), source.next())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(again.body, b"x");
        assert_eq!(again.attempts, 2);
        again.settle.finish().await;
    }
}
