//! NSQ result bus (topic `counter` by default, as the original service), over tokio-nsq 0.14.
//!
//! tokio-nsq has known defects (DESIGN §10) that shape this file:
//! * the producer never reports a dead connection (`Unhealthy` is never emitted) and
//!   `publish` fails while disconnected, so every publish waits for nsqd's `OK` with a
//!   deadline and the producer is rebuilt on any failure; callers keep their job
//!   unacknowledged and retry, which is the buffering that survives an nsqd restart;
//! * `max_in_flight` defaults to 1 and the first `RDY` can lag its rebalance interval, so
//!   both are set explicitly;
//! * a protocol error ends a consumer connection for good, silently, so a consumer that
//!   has delivered nothing for `idle_rebuild` is dropped and built anew (unsettled messages
//!   come back from nsqd: duplicates, which the store ignores);
//! * `NSQMessage::finish` unwraps internally, so settling runs in its own task where a
//!   panic is contained; every message is finished or requeued explicitly (a dropped
//!   message is *not* requeued by tokio-nsq, whatever its docs say);
//! * a late FIN (after the message timed out) gets `E_FIN_FAILED <details>`, which
//!   tokio-nsq treats as fatal: that connection goes silent for good. The idle rebuild
//!   above recovers from it; keeping the DB writer well under nsqd's `--msg-timeout`
//!   (60 s) avoids it;
//! * its connections kept Nagle's algorithm on, and it writes through an 8 KiB buffer: an
//!   MPUB larger than that (a few crawl results) waited for the peer's delayed ACK, ~30 ms
//!   a publish. The crate is built patched from `vendor/tokio-nsq` (TCP_NODELAY).
//!
//! Only documented nsqd v1.3 behaviour is relied on: PUB/MPUB answer `OK`, an unfinished
//! message is redelivered after the message timeout or on disconnect.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, timeout};
use tokio_nsq::{
    NSQChannel, NSQConfigShared, NSQConsumer, NSQConsumerConfig, NSQConsumerConfigSources,
    NSQConsumerLookupConfig, NSQEvent, NSQMessage, NSQProducer, NSQProducerConfig, NSQRequeueDelay,
    NSQTopic,
};

use super::{BusError, Incoming, ResultPublisher, ResultSource, Settle};
use crate::model::JobResult;

/// Settings shared by the publisher and the consumer.
#[derive(Clone, Debug)]
pub struct NsqConfig {
    /// nsqd TCP address (`host:4150`): where workers publish, and where the listener
    /// consumes unless a lookupd is given.
    pub nsqd_tcp_address: String,
    /// nsqlookupd HTTP address(es) for the listener to discover every nsqd with the topic.
    pub lookupd_http_addresses: Vec<String>,
    pub topic: String,
    pub channel: String,
    /// Messages the listener may hold unsettled at once.
    pub max_in_flight: u32,
    /// A consumer that delivered nothing for this long is rebuilt.
    pub idle_rebuild: Duration,
    /// How long a publish may wait for nsqd's OK.
    pub publish_timeout: Duration,
}

impl NsqConfig {
    fn topic(&self) -> Result<Arc<NSQTopic>, BusError> {
        NSQTopic::new(self.topic.clone()).ok_or_else(|| {
            BusError::Unavailable(format!("invalid NSQ topic name {:?}", self.topic))
        })
    }

    fn channel(&self) -> Result<Arc<NSQChannel>, BusError> {
        NSQChannel::new(self.channel.clone()).ok_or_else(|| {
            BusError::Unavailable(format!("invalid NSQ channel name {:?}", self.channel))
        })
    }

    /// Checks names up front so a typo is a start-up error, not a silent stall.
    pub fn validate(&self) -> Result<(), BusError> {
        self.topic()?;
        self.channel()?;
        Ok(())
    }
}

/// Connection settings for both sides. tokio-nsq buffers outgoing PUB/FIN/RDY and flushes
/// every 250 ms by default, which would add a quarter second to every result; its
/// reconnect back-off grows to 60 s, which would leave results waiting long after nsqd is
/// back. Both are shortened here.
fn shared() -> NSQConfigShared {
    NSQConfigShared::new()
        .set_flush_interval(Duration::from_millis(5))
        .set_backoff_max_wait(Duration::from_secs(5))
        .set_backoff_healthy_after(Duration::from_secs(10))
}

// ---------------------------------------------------------------- publisher

struct PubRequest {
    body: Vec<u8>,
    reply: oneshot::Sender<Result<(), BusError>>,
}

/// Publishes results to nsqd. Cheap to clone; [`PUBLISH_CONNECTIONS`] connections per
/// process, each owned by a background task that batches concurrent publishes into one
/// `MPUB` and waits for its `OK`. The tasks take turns at one shared queue, so while one
/// waits for nsqd's answer the next batch is already on its way (one connection waiting
/// for each `OK` in turn was the end-to-end limit: ~28 ms per result, BENCHMARKS.md).
#[derive(Clone, Debug)]
pub struct NsqPublisher {
    tx: mpsc::Sender<PubRequest>,
}

/// Most results sent in one MPUB.
const MAX_BATCH: usize = 128;

/// Connections (and publishing tasks) per publisher.
pub const PUBLISH_CONNECTIONS: usize = 4;

impl NsqPublisher {
    pub fn new(config: NsqConfig) -> Result<Self, BusError> {
        let topic = config.topic()?;
        let (tx, rx) = mpsc::channel(1024);
        let rx = Arc::new(tokio::sync::Mutex::new(rx));
        for _ in 0..PUBLISH_CONNECTIONS {
            tokio::spawn(publisher_task(config.clone(), topic.clone(), rx.clone()));
        }
        Ok(Self { tx })
    }

    /// Publishes raw bytes (tests use it for malformed messages).
    pub async fn publish_raw(&self, body: Vec<u8>) -> Result<(), BusError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(PubRequest { body, reply })
            .await
            .map_err(|_| BusError::Closed)?;
        rx.await.map_err(|_| BusError::Closed)?
    }
}

#[async_trait]
impl ResultPublisher for NsqPublisher {
    async fn publish(&self, result: &JobResult) -> Result<(), BusError> {
        let body = serde_json::to_vec(result)
            .map_err(|e| BusError::Unavailable(format!("cannot encode result: {e}")))?;
        self.publish_raw(body).await
    }
}

async fn connect_producer(config: &NsqConfig) -> Result<NSQProducer, BusError> {
    let mut producer = NSQProducerConfig::new(config.nsqd_tcp_address.clone())
        .set_shared(shared())
        .build();
    let deadline = Instant::now() + config.publish_timeout;
    loop {
        match timeout(
            deadline.saturating_duration_since(Instant::now()),
            producer.consume(),
        )
        .await
        {
            Ok(Some(NSQEvent::Healthy())) => return Ok(producer),
            Ok(Some(_)) => continue,
            Ok(None) => return Err(BusError::Unavailable("nsqd connection closed".into())),
            Err(_) => {
                return Err(BusError::Unavailable(format!(
                    "no connection to nsqd at {} within {:?}",
                    config.nsqd_tcp_address, config.publish_timeout
                )));
            }
        }
    }
}

async fn publish_batch(
    producer: &mut NSQProducer,
    topic: &Arc<NSQTopic>,
    bodies: Vec<Vec<u8>>,
    wait: Duration,
) -> Result<(), BusError> {
    let queued = if bodies.len() == 1 {
        let body = bodies.into_iter().next().unwrap_or_default();
        producer.publish(topic, body).await
    } else {
        producer.publish_multiple(topic, bodies).await
    };
    queued.map_err(|e| BusError::Unavailable(format!("publish failed: {e}")))?;
    let deadline = Instant::now() + wait;
    loop {
        match timeout(
            deadline.saturating_duration_since(Instant::now()),
            producer.consume(),
        )
        .await
        {
            Ok(Some(NSQEvent::Ok())) => return Ok(()),
            Ok(Some(NSQEvent::Unhealthy())) => {
                return Err(BusError::Unavailable("nsqd connection lost".into()));
            }
            Ok(Some(_)) => continue,
            Ok(None) => return Err(BusError::Unavailable("nsqd connection closed".into())),
            Err(_) => {
                return Err(BusError::Unavailable(format!(
                    "nsqd did not acknowledge within {wait:?}"
                )));
            }
        }
    }
}

async fn publisher_task(
    config: NsqConfig,
    topic: Arc<NSQTopic>,
    rx: Arc<tokio::sync::Mutex<mpsc::Receiver<PubRequest>>>,
) {
    let mut producer: Option<NSQProducer> = None;
    loop {
        // Hold the queue only while taking a batch, not while publishing it.
        let batch = {
            let mut rx = rx.lock().await;
            let Some(first) = rx.recv().await else { break };
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(r) => batch.push(r),
                    Err(_) => break,
                }
            }
            batch
        };
        let outcome = async {
            if producer.is_none() {
                producer = Some(connect_producer(&config).await?);
            }
            let p = producer.as_mut().ok_or(BusError::Closed)?;
            let bodies = batch.iter().map(|r| r.body.clone()).collect();
            publish_batch(p, &topic, bodies, config.publish_timeout).await
        }
        .await;
        if let Err(e) = &outcome {
            // Whatever state the connection is in, start over with a new one.
            tracing::warn!(error = %e, n = batch.len(), "NSQ publish failed; reconnecting");
            producer = None;
        }
        for r in batch {
            let _ = r.reply.send(match &outcome {
                Ok(()) => Ok(()),
                Err(e) => Err(BusError::Unavailable(e.to_string())),
            });
        }
    }
}

// ---------------------------------------------------------------- consumer

/// Consumes the results channel. Owned by the NSQ Listener actor.
pub struct NsqSource {
    config: NsqConfig,
    consumer: Option<NSQConsumer>,
}

impl NsqSource {
    pub fn new(config: NsqConfig) -> Result<Self, BusError> {
        config.validate()?;
        Ok(Self {
            config,
            consumer: None,
        })
    }

    fn build(&self) -> Result<NSQConsumer, BusError> {
        let sources = if self.config.lookupd_http_addresses.is_empty() {
            NSQConsumerConfigSources::Daemons(vec![self.config.nsqd_tcp_address.clone()])
        } else {
            let addresses: HashSet<String> = self
                .config
                .lookupd_http_addresses
                .iter()
                .map(|a| {
                    if a.starts_with("http://") || a.starts_with("https://") {
                        a.clone()
                    } else {
                        format!("http://{a}")
                    }
                })
                .collect();
            NSQConsumerConfigSources::Lookup(
                NSQConsumerLookupConfig::new()
                    .set_poll_interval(Duration::from_secs(15))
                    .set_addresses(addresses),
            )
        };
        Ok(
            NSQConsumerConfig::new(self.config.topic()?, self.config.channel()?)
                .set_shared(shared())
                .set_max_in_flight(self.config.max_in_flight.max(1))
                .set_rebalance_interval(Duration::from_millis(500))
                .set_sources(sources)
                .build(),
        )
    }
}

/// Drops a consumer. tokio-nsq's `Drop` unwraps a send to its own supervisor task, which
/// panics when that task already ended (its connection died); the panic is contained here
/// so that rebuilding a dead consumer cannot take the listener down with it.
fn discard(consumer: Option<NSQConsumer>) {
    if let Some(c) = consumer
        && std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || drop(c))).is_err()
    {
        tracing::debug!("tokio-nsq panicked while dropping a dead consumer (contained)");
    }
}

impl Drop for NsqSource {
    fn drop(&mut self) {
        discard(self.consumer.take());
    }
}

struct NsqSettle(NSQMessage);

#[async_trait]
impl Settle for NsqSettle {
    async fn finish(self: Box<Self>) {
        let m = self.0;
        // A panic inside tokio-nsq (it unwraps on a dead connection) stays in this task;
        // the message is then redelivered by nsqd and stored as a harmless duplicate.
        if tokio::spawn(async move { m.finish().await }).await.is_err() {
            tracing::warn!("NSQ FIN failed (connection gone); nsqd will redeliver");
        }
    }

    async fn requeue(self: Box<Self>, delay: Duration) {
        let m = self.0;
        let r =
            tokio::spawn(async move { m.requeue(NSQRequeueDelay::CustomDelay(delay)).await }).await;
        if r.is_err() {
            tracing::warn!("NSQ REQ failed (connection gone); nsqd will redeliver");
        }
    }
}

#[async_trait]
impl ResultSource for NsqSource {
    async fn next(&mut self) -> Option<Incoming> {
        loop {
            if self.consumer.is_none() {
                match self.build() {
                    Ok(c) => self.consumer = Some(c),
                    Err(e) => {
                        tracing::error!(error = %e, "cannot build NSQ consumer");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                }
            }
            let consumer = self.consumer.as_mut()?;
            match timeout(self.config.idle_rebuild, consumer.consume()).await {
                Ok(Some(NSQEvent::Message(m))) => {
                    return Some(Incoming {
                        body: m.body.clone(),
                        attempts: m.attempt,
                        settle: Box::new(NsqSettle(m)),
                    });
                }
                Ok(Some(ev)) => tracing::debug!(event = ?ev, "NSQ consumer event"),
                Ok(None) => {
                    tracing::warn!("NSQ consumer ended; rebuilding");
                    discard(self.consumer.take());
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(_) => {
                    tracing::debug!(idle = ?self.config.idle_rebuild, "NSQ consumer idle; rebuilding it");
                    discard(self.consumer.take());
                }
            }
        }
    }

    async fn close(&mut self) {
        if self.consumer.is_some() {
            // tokio-nsq writes FIN/REQ frames on its flush interval (5 ms, see `shared`) and
            // has no flush call: give it a few intervals before the connection is dropped,
            // or the last FINs are lost and nsqd redelivers results already stored.
            tokio::time::sleep(Duration::from_millis(100)).await;
            discard(self.consumer.take());
        }
    }
}
