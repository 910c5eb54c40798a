//! TEST SUPPORT ONLY: a small in-process NSQ broker speaking the nsqd v1.3 TCP protocol (V2) and a
//! subset of its HTTP API, so wordtally's tests can publish and consume through the real `tokio-nsq`
//! client without a real `nsqd`. It is never used by `wordtally serve` / `wordtally worker`.
//!
//! Implemented (following nsqd v1.3 behaviour and error spelling, see
//! <https://nsq.io/clients/tcp_protocol_spec.html>):
//! - TCP: magic `"  V2"`, `IDENTIFY` with feature negotiation (TLS, snappy and deflate are always
//!   refused by answering `false`; `heartbeat_interval`, `msg_timeout`, `sample_rate`, output buffer
//!   settings are validated like nsqd, and `heartbeat_interval`/`msg_timeout` are honoured),
//!   `SUB`, `RDY`, `FIN`, `REQ` (with delay), `TOUCH`, `NOP`, `CLS` (→ `CLOSE_WAIT`), `PUB`, `MPUB`,
//!   `DPUB`, `AUTH` (always `E_AUTH_DISABLED`). Fatal errors (`E_INVALID`, `E_BAD_TOPIC`, ...) close
//!   the connection like nsqd; `E_FIN_FAILED`/`E_REQ_FAILED`/`E_TOUCH_FAILED` do not. Error bodies are
//!   spelled exactly like nsqd's (`"E_FIN_FAILED FIN <id> failed ID not in flight"`).
//! - `_heartbeat_` frames at the negotiated interval; a client silent for two intervals is dropped.
//! - Topics and channels: each message published to a topic is copied to every channel; a topic
//!   without channels buffers messages until its first channel appears. Channel messages are spread
//!   round-robin over subscribers, respecting each one's `RDY` count (nsqd semantics: a client gets
//!   messages while its in-flight count is below its RDY count). In-flight messages that are not
//!   `FIN`ed/`TOUCH`ed within the message timeout are redelivered with `attempts + 1`.
//!   `#ephemeral` channels/topics disappear with their last subscriber/channel.
//! - HTTP: `/ping`, `/info`, `/pub`, `/mpub` (text or `binary=true`), `/stats` (`format=json` or
//!   text), `/lookup`, `/topics`, `/channels`, `/nodes` (nsqlookupd-style, so clients can use the
//!   broker as their lookupd), `/topic/create|delete|empty`, `/channel/create|delete|empty`.
//!
//! Deliberate differences from nsqd: everything is in memory (use [`NsqTestBroker::stop`] and
//! [`NsqTestBroker::start_on`] with a [`BrokerState`] to simulate a restart that keeps or loses
//! messages); a client's in-flight messages are requeued as soon as it disconnects (counted in
//! `requeue_count`) where nsqd lets them time out; `sample_rate` is accepted but not applied; no
//! TLS, compression, auth, pausing or e2e latency statistics.

// This file is compiled as a module of the integration-test binary and of the `nsq_test_broker`
// example, and each of them uses only part of the API.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

/// nsqd version this broker claims to be.
pub const NSQD_VERSION: &str = "1.3.0";
const MAX_RDY_COUNT: u64 = 2500;
const MAX_MSG_TIMEOUT: Duration = Duration::from_secs(15 * 60);
const MAX_REQ_TIMEOUT: Duration = Duration::from_secs(60 * 60);
const MAX_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(60);
const MAX_MSG_SIZE: usize = 1024 * 1024;
const MAX_BODY_SIZE: usize = 5 * 1024 * 1024;
const OUTPUT_BUFFER_SIZE: i64 = 16 * 1024;
const MAX_OUTPUT_BUFFER_SIZE: i64 = 64 * 1024 * 1024;
const OUTPUT_BUFFER_TIMEOUT_MS: i64 = 250;
const MAX_OUTPUT_BUFFER_TIMEOUT_MS: i64 = 30_000;
const MAX_DEFLATE_LEVEL: i64 = 6;

const FRAME_RESPONSE: u32 = 0;
const FRAME_ERROR: u32 = 1;
const FRAME_MESSAGE: u32 = 2;

// ---------------------------------------------------------------------------------------------
// Public API
// ---------------------------------------------------------------------------------------------

/// Broker settings (the nsqd flags that matter for tests).
#[derive(Clone, Debug)]
pub struct BrokerConfig {
    /// Default time a delivered message may stay un-`FIN`ed before it is redelivered (nsqd
    /// `--msg-timeout`, default 60 s). A client may override it with `msg_timeout` in IDENTIFY.
    pub msg_timeout: Duration,
    /// Default heartbeat interval (nsqd: half of `--client-timeout`, i.e. 30 s). A client may
    /// override it with `heartbeat_interval` in IDENTIFY. `Duration::ZERO` disables heartbeats by
    /// default (nsqd then refuses `SUB`).
    pub heartbeat_interval: Duration,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            msg_timeout: Duration::from_secs(60),
            heartbeat_interval: Duration::from_secs(30),
        }
    }
}

/// The messages a stopped broker still held: every topic and channel (ephemeral ones excepted, as
/// nsqd does not persist them) with its queued and deferred messages; in-flight messages are back
/// in their channel's queue. Pass it to [`NsqTestBroker::start_on`] to restart "keeping the
/// messages", or drop it to restart "losing them".
#[derive(Clone, Debug, Default)]
pub struct BrokerState {
    topics: Vec<SavedTopic>,
    next_msg_id: u64,
}

#[derive(Clone, Debug)]
struct SavedTopic {
    name: String,
    backlog: Vec<(Message, Option<Duration>)>,
    channels: Vec<SavedChannel>,
}

#[derive(Clone, Debug)]
struct SavedChannel {
    name: String,
    queue: Vec<Message>,
    deferred: Vec<(Duration, Message)>,
}

impl BrokerState {
    /// Total number of messages held (topic backlogs, channel queues and deferred messages).
    pub fn message_count(&self) -> usize {
        self.topics
            .iter()
            .map(|t| {
                t.backlog.len()
                    + t.channels
                        .iter()
                        .map(|c| c.queue.len() + c.deferred.len())
                        .sum::<usize>()
            })
            .sum()
    }

    /// True when no message is held.
    pub fn is_empty(&self) -> bool {
        self.message_count() == 0
    }

    /// Queued plus deferred messages of one channel, or `None` if the channel does not exist.
    pub fn channel_depth(&self, topic: &str, channel: &str) -> Option<usize> {
        let t = self.topics.iter().find(|t| t.name == topic)?;
        let c = t.channels.iter().find(|c| c.name == channel)?;
        Some(c.queue.len() + c.deferred.len())
    }

    /// Names of the saved topics.
    pub fn topic_names(&self) -> Vec<String> {
        self.topics.iter().map(|t| t.name.clone()).collect()
    }
}

/// A snapshot of the broker's counters (see [`NsqTestBroker::stats`]).
#[derive(Clone, Debug, Default)]
pub struct BrokerStats {
    /// Topics in name order.
    pub topics: Vec<TopicStats>,
    /// Connected clients that have not subscribed (producers, or clients still handshaking).
    pub producers: Vec<ClientStats>,
}

impl BrokerStats {
    /// The named topic, if it exists.
    pub fn topic(&self, topic: &str) -> Option<&TopicStats> {
        self.topics.iter().find(|t| t.topic_name == topic)
    }

    /// The named channel, if it exists.
    pub fn channel(&self, topic: &str, channel: &str) -> Option<&ChannelStats> {
        self.topic(topic)?
            .channels
            .iter()
            .find(|c| c.channel_name == channel)
    }

    /// Number of connected TCP clients (subscribers and producers).
    pub fn client_count(&self) -> usize {
        self.producers.len()
            + self
                .topics
                .iter()
                .flat_map(|t| t.channels.iter())
                .map(|c| c.clients.len())
                .sum::<usize>()
    }
}

/// Per-topic counters.
#[derive(Clone, Debug, Default)]
pub struct TopicStats {
    /// Topic name.
    pub topic_name: String,
    /// Messages buffered in the topic because it has no channel yet.
    pub depth: u64,
    /// Messages ever published to the topic (since this broker start).
    pub message_count: u64,
    /// Bytes ever published to the topic.
    pub message_bytes: u64,
    /// Channels in name order.
    pub channels: Vec<ChannelStats>,
}

/// Per-channel counters (nsqd names; `finish_count` is an addition).
#[derive(Clone, Debug, Default)]
pub struct ChannelStats {
    /// Channel name.
    pub channel_name: String,
    /// Messages waiting to be delivered (not counting in-flight or deferred ones).
    pub depth: u64,
    /// Messages waiting for a `DPUB` or `REQ` delay to pass.
    pub deferred_count: u64,
    /// Messages delivered and not yet finished, requeued or timed out.
    pub in_flight_count: u64,
    /// Messages ever put into the channel.
    pub message_count: u64,
    /// Messages requeued by `REQ` or because their client disconnected.
    pub requeue_count: u64,
    /// Messages whose in-flight timeout expired.
    pub timeout_count: u64,
    /// Messages finished with `FIN`.
    pub finish_count: u64,
    /// Number of subscribed clients.
    pub client_count: u64,
    /// Subscribed clients.
    pub clients: Vec<ClientStats>,
}

/// Per-connection counters.
#[derive(Clone, Debug, Default)]
pub struct ClientStats {
    /// Broker-assigned connection id.
    pub id: u64,
    /// `client_id` from IDENTIFY.
    pub client_id: String,
    /// `hostname` from IDENTIFY.
    pub hostname: String,
    /// `user_agent` from IDENTIFY.
    pub user_agent: String,
    /// Peer address.
    pub remote_address: String,
    /// `(topic, channel)` once subscribed.
    pub subscription: Option<(String, String)>,
    /// Current RDY count.
    pub ready_count: u64,
    /// Messages in flight to this client.
    pub in_flight_count: u64,
    /// Messages delivered to this client.
    pub message_count: u64,
    /// Messages this client finished.
    pub finish_count: u64,
    /// Messages this client requeued.
    pub requeue_count: u64,
    /// Messages this client published, per topic.
    pub pub_counts: BTreeMap<String, u64>,
    /// Negotiated message timeout.
    pub msg_timeout: Duration,
    /// Negotiated heartbeat interval (`None`: disabled).
    pub heartbeat_interval: Option<Duration>,
}

/// A running test broker. Dropping it without [`stop`](Self::stop) shuts it down in the
/// background.
pub struct NsqTestBroker {
    shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl NsqTestBroker {
    /// Starts a broker on `127.0.0.1` with OS-chosen TCP and HTTP ports.
    pub async fn start(config: BrokerConfig) -> io::Result<NsqTestBroker> {
        let any: SocketAddr = ([127, 0, 0, 1], 0).into();
        Self::start_on(config, any, any, None).await
    }

    /// Starts a broker on the given addresses (port 0 allowed), optionally with the messages a
    /// previous broker returned from [`stop`](Self::stop). Listeners use `SO_REUSEADDR`, so a
    /// restart on the ports of a just-stopped broker succeeds at once.
    pub async fn start_on(
        config: BrokerConfig,
        tcp: SocketAddr,
        http: SocketAddr,
        state: Option<BrokerState>,
    ) -> io::Result<NsqTestBroker> {
        let tcp_listener = bind(tcp)?;
        let http_listener = bind(http)?;
        let tcp_addr = tcp_listener.local_addr()?;
        let http_addr = http_listener.local_addr()?;
        let mut core = Core::new();
        if let Some(state) = state {
            core.restore(state, Instant::now());
        }
        let shared = Arc::new(Shared {
            config,
            core: Mutex::new(core),
            notify: Notify::new(),
            tcp_addr,
            http_addr,
            start_time: unix_now().as_secs(),
        });
        let (shutdown, shutdown_rx) = watch::channel(false);
        let tasks = vec![
            tokio::spawn(accept_loop(
                tcp_listener,
                shared.clone(),
                shutdown_rx.clone(),
                Proto::Tcp,
            )),
            tokio::spawn(accept_loop(
                http_listener,
                shared.clone(),
                shutdown_rx.clone(),
                Proto::Http,
            )),
            tokio::spawn(timer_loop(shared.clone(), shutdown_rx)),
        ];
        tracing::debug!(%tcp_addr, %http_addr, "nsq test broker started");
        Ok(NsqTestBroker {
            shared,
            shutdown,
            tasks,
        })
    }

    /// Address of the NSQ TCP protocol listener.
    pub fn tcp_addr(&self) -> SocketAddr {
        self.shared.tcp_addr
    }

    /// Address of the HTTP API listener.
    pub fn http_addr(&self) -> SocketAddr {
        self.shared.http_addr
    }

    /// Stops listening and drops every client connection (TCP and HTTP), as a crashed or stopped
    /// nsqd would. Returns the messages still held, in-flight ones back in their channel.
    pub async fn stop(mut self) -> BrokerState {
        self.shared.lock().stopping = true;
        let _ = self.shutdown.send(true);
        for task in std::mem::take(&mut self.tasks) {
            let _ = task.await;
        }
        let state = self.shared.lock().take_state(Instant::now());
        tracing::debug!(messages = state.message_count(), "nsq test broker stopped");
        state
    }

    /// Publishes one message, like `PUB`. Panics on an invalid topic name or an empty body (nsqd
    /// refuses both).
    pub async fn publish(&self, topic: &str, body: &[u8]) {
        assert!(valid_name(topic), "invalid NSQ topic name {topic:?}");
        assert!(!body.is_empty(), "nsqd refuses empty messages");
        self.shared
            .with_core(|core, now| core.put(topic, vec![body.to_vec()], None, None, now));
    }

    /// Publishes a message that becomes deliverable after `delay`, like `DPUB`.
    pub async fn publish_deferred(&self, topic: &str, body: &[u8], delay: Duration) {
        assert!(valid_name(topic), "invalid NSQ topic name {topic:?}");
        assert!(!body.is_empty(), "nsqd refuses empty messages");
        self.shared
            .with_core(|core, now| core.put(topic, vec![body.to_vec()], Some(delay), None, now));
    }

    /// Creates a topic and channel (like `POST /channel/create`), so messages published before any
    /// consumer subscribes are kept for that channel.
    pub fn create_channel(&self, topic: &str, channel: &str) {
        assert!(valid_name(topic), "invalid NSQ topic name {topic:?}");
        assert!(valid_name(channel), "invalid NSQ channel name {channel:?}");
        self.shared.with_core(|core, now| {
            core.ensure_channel(topic, channel, now);
        });
    }

    /// Closes every client connection without stopping the broker (clients see a disconnect and
    /// their in-flight messages are requeued).
    pub fn disconnect_all_clients(&self) {
        let core = self.shared.lock();
        for client in core.clients.values() {
            let _ = client.tx.send(Out::Close);
        }
    }

    /// A snapshot of the per-topic / per-channel / per-client counters.
    pub fn stats(&self) -> BrokerStats {
        self.shared.lock().stats()
    }
}

impl Drop for NsqTestBroker {
    fn drop(&mut self) {
        if !self.tasks.is_empty() {
            self.shared.lock().stopping = true;
            let _ = self.shutdown.send(true);
            for task in &self.tasks {
                task.abort();
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Broker core: topics, channels, clients (all behind one mutex, never held across an await)
// ---------------------------------------------------------------------------------------------

type MsgId = [u8; 16];
type ClientId = u64;

#[derive(Clone, Debug)]
struct Message {
    id: MsgId,
    timestamp: i64,
    attempts: u16,
    body: Arc<[u8]>,
}

#[derive(Debug)]
struct InFlight {
    msg: Message,
    client: ClientId,
    delivered: Instant,
    deadline: Instant,
}

#[derive(Debug, Default)]
struct Channel {
    queue: VecDeque<Message>,
    deferred: Vec<(Instant, Message)>,
    in_flight: HashMap<MsgId, InFlight>,
    clients: Vec<ClientId>,
    next_client: usize,
    message_count: u64,
    requeue_count: u64,
    timeout_count: u64,
    finish_count: u64,
}

#[derive(Debug, Default)]
struct Topic {
    channels: BTreeMap<String, Channel>,
    /// Messages published while the topic had no channel (with their DPUB due time).
    backlog: VecDeque<(Message, Option<Instant>)>,
    message_count: u64,
    message_bytes: u64,
}

#[derive(Debug)]
enum Out {
    Frame(u32, Vec<u8>),
    Heartbeat(Option<Duration>),
    Close,
}

#[derive(Debug)]
struct ClientEntry {
    tx: mpsc::UnboundedSender<Out>,
    remote: SocketAddr,
    client_id: String,
    hostname: String,
    user_agent: String,
    subscription: Option<(String, String)>,
    ready: u64,
    in_flight: u64,
    closing: bool,
    msg_timeout: Duration,
    heartbeat: Option<Duration>,
    sample_rate: i64,
    connected_at: u64,
    message_count: u64,
    finish_count: u64,
    requeue_count: u64,
    pub_counts: BTreeMap<String, u64>,
}

#[derive(Debug)]
struct Core {
    topics: BTreeMap<String, Topic>,
    clients: BTreeMap<ClientId, ClientEntry>,
    next_client_id: ClientId,
    next_msg_id: u64,
    stopping: bool,
    /// Set when a timer (in-flight deadline or deferred message) was added.
    wake_timer: bool,
}

impl Core {
    fn new() -> Self {
        Core {
            topics: BTreeMap::new(),
            clients: BTreeMap::new(),
            next_client_id: 1,
            // Seeded from the clock so ids differ from those of a previous broker run.
            next_msg_id: (unix_now().as_nanos() as u64) >> 8,
            stopping: false,
            wake_timer: false,
        }
    }

    fn new_message(&mut self, body: Vec<u8>) -> Message {
        let n = self.next_msg_id;
        self.next_msg_id = self.next_msg_id.wrapping_add(1);
        let mut id = [0u8; 16];
        id.copy_from_slice(format!("{n:016x}").as_bytes());
        Message {
            id,
            timestamp: unix_now().as_nanos() as i64,
            attempts: 0,
            body: body.into(),
        }
    }

    fn ensure_topic(&mut self, topic: &str) -> &mut Topic {
        self.topics.entry(topic.to_string()).or_default()
    }

    /// Gets or creates a channel; the first channel of a topic receives the topic's backlog.
    fn ensure_channel(&mut self, topic: &str, channel: &str, now: Instant) {
        let t = self.ensure_topic(topic);
        if t.channels.contains_key(channel) {
            return;
        }
        let mut ch = Channel::default();
        if t.channels.is_empty() {
            for (msg, due) in t.backlog.drain(..) {
                ch.message_count += 1;
                match due {
                    Some(due) if due > now => ch.deferred.push((due, msg)),
                    _ => ch.queue.push_back(msg),
                }
            }
            if !ch.deferred.is_empty() {
                self.wake_timer = true;
            }
        }
        self.topics
            .get_mut(topic)
            .expect("topic just created")
            .channels
            .insert(channel.to_string(), ch);
    }

    fn put(
        &mut self,
        topic: &str,
        bodies: Vec<Vec<u8>>,
        defer: Option<Duration>,
        publisher: Option<ClientId>,
        now: Instant,
    ) {
        let count = bodies.len() as u64;
        let messages: Vec<Message> = bodies.into_iter().map(|b| self.new_message(b)).collect();
        if let Some(c) = publisher.and_then(|id| self.clients.get_mut(&id)) {
            *c.pub_counts.entry(topic.to_string()).or_default() += count;
        }
        let due = defer.filter(|d| !d.is_zero()).map(|d| now + d);
        let t = self.ensure_topic(topic);
        for msg in messages {
            t.message_count += 1;
            t.message_bytes += msg.body.len() as u64;
            if t.channels.is_empty() {
                t.backlog.push_back((msg, due));
                continue;
            }
            for ch in t.channels.values_mut() {
                ch.message_count += 1;
                match due {
                    Some(due) => ch.deferred.push((due, msg.clone())),
                    None => ch.queue.push_back(msg.clone()),
                }
            }
        }
        if due.is_some() {
            self.wake_timer = true;
        }
        let names: Vec<String> = self.topics[topic].channels.keys().cloned().collect();
        for c in names {
            self.pump(topic, &c, now);
        }
    }

    /// Delivers queued messages of one channel to subscribers with spare RDY capacity.
    fn pump(&mut self, topic: &str, channel: &str, now: Instant) {
        if self.stopping {
            return;
        }
        let Core {
            topics,
            clients,
            wake_timer,
            ..
        } = self;
        let Some(ch) = topics
            .get_mut(topic)
            .and_then(|t| t.channels.get_mut(channel))
        else {
            return;
        };
        while !ch.queue.is_empty() && !ch.clients.is_empty() {
            let n = ch.clients.len();
            let chosen = (0..n).map(|k| (ch.next_client + k) % n).find(|&idx| {
                clients
                    .get(&ch.clients[idx])
                    .is_some_and(|c| !c.closing && c.in_flight < c.ready)
            });
            let Some(idx) = chosen else { break };
            ch.next_client = (idx + 1) % n;
            let cid = ch.clients[idx];
            let client = clients.get_mut(&cid).expect("checked above");
            let mut msg = ch.queue.pop_front().expect("queue not empty");
            msg.attempts = msg.attempts.saturating_add(1);
            client.in_flight += 1;
            client.message_count += 1;
            let _ = client
                .tx
                .send(Out::Frame(FRAME_MESSAGE, encode_message(&msg)));
            ch.in_flight.insert(
                msg.id,
                InFlight {
                    deadline: now + client.msg_timeout,
                    delivered: now,
                    client: cid,
                    msg,
                },
            );
            *wake_timer = true;
        }
    }

    fn channel_names(&self) -> Vec<(String, String)> {
        self.topics
            .iter()
            .flat_map(|(t, topic)| topic.channels.keys().map(|c| (t.clone(), c.clone())))
            .collect()
    }

    /// Times out in-flight messages, releases due deferred ones, delivers, and returns the next
    /// instant at which something is due.
    fn process_timers(&mut self, now: Instant) -> Option<Instant> {
        if self.stopping {
            return None;
        }
        let Core {
            topics, clients, ..
        } = self;
        for topic in topics.values_mut() {
            for ch in topic.channels.values_mut() {
                let mut expired: Vec<&InFlight> = ch
                    .in_flight
                    .values()
                    .filter(|f| f.deadline <= now)
                    .collect();
                expired.sort_by_key(|f| (f.delivered, f.msg.id));
                let expired: Vec<MsgId> = expired.iter().map(|f| f.msg.id).collect();
                for id in expired {
                    let f = ch.in_flight.remove(&id).expect("listed above");
                    ch.timeout_count += 1;
                    if let Some(c) = clients.get_mut(&f.client) {
                        c.in_flight = c.in_flight.saturating_sub(1);
                    }
                    ch.queue.push_back(f.msg);
                }
                if ch.deferred.iter().any(|(due, _)| *due <= now) {
                    let (mut due, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut ch.deferred)
                        .into_iter()
                        .partition(|(due, _)| *due <= now);
                    ch.deferred = rest;
                    due.sort_by_key(|(t, m)| (*t, m.id));
                    ch.queue.extend(due.into_iter().map(|(_, m)| m));
                }
            }
        }
        for (t, c) in self.channel_names() {
            self.pump(&t, &c, now);
        }
        self.topics
            .values()
            .flat_map(|t| t.channels.values())
            .flat_map(|ch| {
                ch.in_flight
                    .values()
                    .map(|f| f.deadline)
                    .chain(ch.deferred.iter().map(|(due, _)| *due))
            })
            .min()
    }

    fn channel_of(&mut self, client: ClientId) -> Option<(String, String)> {
        self.clients.get(&client)?.subscription.clone()
    }

    fn register_client(
        &mut self,
        tx: mpsc::UnboundedSender<Out>,
        remote: SocketAddr,
        config: &BrokerConfig,
    ) -> ClientId {
        let id = self.next_client_id;
        self.next_client_id += 1;
        self.clients.insert(
            id,
            ClientEntry {
                tx,
                remote,
                client_id: String::new(),
                hostname: String::new(),
                user_agent: String::new(),
                subscription: None,
                ready: 0,
                in_flight: 0,
                closing: false,
                msg_timeout: config.msg_timeout,
                heartbeat: non_zero(config.heartbeat_interval),
                sample_rate: 0,
                connected_at: unix_now().as_secs(),
                message_count: 0,
                finish_count: 0,
                requeue_count: 0,
                pub_counts: BTreeMap::new(),
            },
        );
        id
    }

    fn subscribe(&mut self, client: ClientId, topic: &str, channel: &str, now: Instant) {
        self.ensure_channel(topic, channel, now);
        if let Some(c) = self.clients.get_mut(&client) {
            c.subscription = Some((topic.to_string(), channel.to_string()));
        }
        if let Some(ch) = self
            .topics
            .get_mut(topic)
            .and_then(|t| t.channels.get_mut(channel))
        {
            ch.clients.push(client);
        }
        self.pump(topic, channel, now);
    }

    fn set_ready(&mut self, client: ClientId, count: u64, now: Instant) {
        if let Some(c) = self.clients.get_mut(&client) {
            c.ready = count;
        }
        if let Some((t, c)) = self.channel_of(client) {
            self.pump(&t, &c, now);
        }
    }

    /// Removes an in-flight message owned by `client` (nsqd's `popInFlightMessage`).
    fn pop_in_flight(
        &mut self,
        client: ClientId,
        id: &MsgId,
    ) -> Result<(String, String, InFlight), &'static str> {
        let (t, c) = self.channel_of(client).ok_or("ID not in flight")?;
        let ch = self
            .topics
            .get_mut(&t)
            .and_then(|topic| topic.channels.get_mut(&c))
            .ok_or("ID not in flight")?;
        match ch.in_flight.get(id) {
            None => return Err("ID not in flight"),
            Some(f) if f.client != client => return Err("client does not own message"),
            Some(_) => {}
        }
        let f = ch.in_flight.remove(id).expect("checked above");
        if let Some(entry) = self.clients.get_mut(&client) {
            entry.in_flight = entry.in_flight.saturating_sub(1);
        }
        Ok((t, c, f))
    }

    fn channel_mut(&mut self, topic: &str, channel: &str) -> Option<&mut Channel> {
        self.topics.get_mut(topic)?.channels.get_mut(channel)
    }

    fn finish(&mut self, client: ClientId, id: &MsgId, now: Instant) -> Result<(), &'static str> {
        let (t, c, _) = self.pop_in_flight(client, id)?;
        if let Some(ch) = self.channel_mut(&t, &c) {
            ch.finish_count += 1;
        }
        if let Some(entry) = self.clients.get_mut(&client) {
            entry.finish_count += 1;
        }
        self.pump(&t, &c, now);
        Ok(())
    }

    fn requeue(
        &mut self,
        client: ClientId,
        id: &MsgId,
        delay: Duration,
        now: Instant,
    ) -> Result<(), &'static str> {
        let (t, c, f) = self.pop_in_flight(client, id)?;
        if let Some(ch) = self.channel_mut(&t, &c) {
            ch.requeue_count += 1;
            if delay.is_zero() {
                ch.queue.push_back(f.msg);
            } else {
                ch.deferred.push((now + delay, f.msg));
                self.wake_timer = true;
            }
        }
        if let Some(entry) = self.clients.get_mut(&client) {
            entry.requeue_count += 1;
        }
        self.pump(&t, &c, now);
        Ok(())
    }

    fn touch(&mut self, client: ClientId, id: &MsgId, now: Instant) -> Result<(), &'static str> {
        let (t, c) = self.channel_of(client).ok_or("ID not in flight")?;
        let timeout = self.clients.get(&client).map(|e| e.msg_timeout);
        let f = self
            .channel_mut(&t, &c)
            .and_then(|ch| ch.in_flight.get_mut(id))
            .ok_or("ID not in flight")?;
        if f.client != client {
            return Err("client does not own message");
        }
        let max = f.delivered + MAX_MSG_TIMEOUT;
        f.deadline = (now + timeout.unwrap_or(MAX_MSG_TIMEOUT)).min(max);
        Ok(())
    }

    fn remove_client(&mut self, client: ClientId, now: Instant) {
        let Some(entry) = self.clients.remove(&client) else {
            return;
        };
        let Some((t, c)) = entry.subscription else {
            return;
        };
        let stopping = self.stopping;
        let Some(ch) = self.channel_mut(&t, &c) else {
            return;
        };
        ch.clients.retain(|id| *id != client);
        let mut mine: Vec<&InFlight> = ch
            .in_flight
            .values()
            .filter(|f| f.client == client)
            .collect();
        mine.sort_by_key(|f| (f.delivered, f.msg.id));
        let mine: Vec<MsgId> = mine.iter().map(|f| f.msg.id).collect();
        if stopping {
            // Broker shutdown: keep delivery order, in-flight messages first.
            for id in mine.iter().rev() {
                let f = ch.in_flight.remove(id).expect("listed above");
                ch.queue.push_front(f.msg);
            }
        } else {
            for id in mine {
                let f = ch.in_flight.remove(&id).expect("listed above");
                ch.requeue_count += 1;
                ch.queue.push_back(f.msg);
            }
        }
        if ch.clients.is_empty() && is_ephemeral(&c) {
            let topic = self.topics.get_mut(&t).expect("channel exists");
            topic.channels.remove(&c);
            if topic.channels.is_empty() && is_ephemeral(&t) {
                self.topics.remove(&t);
            }
            return;
        }
        self.pump(&t, &c, now);
    }

    /// Closes the connections of clients subscribed to `topic` (and `channel`, if given).
    fn close_subscribers(&self, topic: &str, channel: Option<&str>) {
        for c in self.clients.values() {
            let subscribed = c
                .subscription
                .as_ref()
                .is_some_and(|(t, ch)| t == topic && channel.is_none_or(|name| name == ch));
            if subscribed {
                let _ = c.tx.send(Out::Close);
            }
        }
    }

    fn empty_channel(&mut self, topic: &str, channel: &str) -> bool {
        let Core {
            topics, clients, ..
        } = self;
        let Some(ch) = topics
            .get_mut(topic)
            .and_then(|t| t.channels.get_mut(channel))
        else {
            return false;
        };
        ch.queue.clear();
        ch.deferred.clear();
        for f in ch.in_flight.values() {
            if let Some(c) = clients.get_mut(&f.client) {
                c.in_flight = c.in_flight.saturating_sub(1);
            }
        }
        ch.in_flight.clear();
        true
    }

    fn client_stats(&self, id: ClientId) -> Option<ClientStats> {
        let c = self.clients.get(&id)?;
        Some(ClientStats {
            id,
            client_id: c.client_id.clone(),
            hostname: c.hostname.clone(),
            user_agent: c.user_agent.clone(),
            remote_address: c.remote.to_string(),
            subscription: c.subscription.clone(),
            ready_count: c.ready,
            in_flight_count: c.in_flight,
            message_count: c.message_count,
            finish_count: c.finish_count,
            requeue_count: c.requeue_count,
            pub_counts: c.pub_counts.clone(),
            msg_timeout: c.msg_timeout,
            heartbeat_interval: c.heartbeat,
        })
    }

    fn stats(&self) -> BrokerStats {
        let topics = self
            .topics
            .iter()
            .map(|(name, t)| TopicStats {
                topic_name: name.clone(),
                depth: t.backlog.len() as u64,
                message_count: t.message_count,
                message_bytes: t.message_bytes,
                channels: t
                    .channels
                    .iter()
                    .map(|(cname, ch)| ChannelStats {
                        channel_name: cname.clone(),
                        depth: ch.queue.len() as u64,
                        deferred_count: ch.deferred.len() as u64,
                        in_flight_count: ch.in_flight.len() as u64,
                        message_count: ch.message_count,
                        requeue_count: ch.requeue_count,
                        timeout_count: ch.timeout_count,
                        finish_count: ch.finish_count,
                        client_count: ch.clients.len() as u64,
                        clients: ch
                            .clients
                            .iter()
                            .filter_map(|id| self.client_stats(*id))
                            .collect(),
                    })
                    .collect(),
            })
            .collect();
        let producers = self
            .clients
            .iter()
            .filter(|(_, c)| c.subscription.is_none())
            .filter_map(|(id, _)| self.client_stats(*id))
            .collect();
        BrokerStats { topics, producers }
    }

    /// Empties the core into a [`BrokerState`] (in-flight messages first in their queue).
    fn take_state(&mut self, now: Instant) -> BrokerState {
        let remaining = |due: Instant| due.saturating_duration_since(now);
        let topics = std::mem::take(&mut self.topics)
            .into_iter()
            .filter(|(name, _)| !is_ephemeral(name))
            .map(|(name, t)| SavedTopic {
                name,
                backlog: t
                    .backlog
                    .into_iter()
                    .map(|(m, due)| (m, due.map(remaining)))
                    .collect(),
                channels: t
                    .channels
                    .into_iter()
                    .filter(|(name, _)| !is_ephemeral(name))
                    .map(|(name, ch)| {
                        let mut in_flight: Vec<InFlight> = ch.in_flight.into_values().collect();
                        in_flight.sort_by_key(|f| (f.delivered, f.msg.id));
                        SavedChannel {
                            name,
                            queue: in_flight
                                .into_iter()
                                .map(|f| f.msg)
                                .chain(ch.queue)
                                .collect(),
                            deferred: ch
                                .deferred
                                .into_iter()
                                .map(|(due, m)| (remaining(due), m))
                                .collect(),
                        }
                    })
                    .collect(),
            })
            .collect();
        BrokerState {
            topics,
            next_msg_id: self.next_msg_id,
        }
    }

    fn restore(&mut self, state: BrokerState, now: Instant) {
        self.next_msg_id = self.next_msg_id.max(state.next_msg_id);
        for saved in state.topics {
            let topic = self.ensure_topic(&saved.name);
            topic.backlog = saved
                .backlog
                .into_iter()
                .map(|(m, d)| (m, d.map(|d| now + d)))
                .collect();
            for sc in saved.channels {
                let ch = Channel {
                    queue: sc.queue.into(),
                    deferred: sc.deferred.into_iter().map(|(d, m)| (now + d, m)).collect(),
                    ..Channel::default()
                };
                topic.channels.insert(sc.name, ch);
            }
        }
        self.wake_timer = true;
    }
}

// ---------------------------------------------------------------------------------------------
// Shared state, listeners, timers
// ---------------------------------------------------------------------------------------------

struct Shared {
    config: BrokerConfig,
    core: Mutex<Core>,
    notify: Notify,
    tcp_addr: SocketAddr,
    http_addr: SocketAddr,
    start_time: u64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Core> {
        self.core.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` under the lock, then wakes the timer task if a timer was added.
    fn with_core<R>(&self, f: impl FnOnce(&mut Core, Instant) -> R) -> R {
        let (result, wake) = {
            let mut core = self.lock();
            let result = f(&mut core, Instant::now());
            (result, std::mem::take(&mut core.wake_timer))
        };
        if wake {
            self.notify.notify_one();
        }
        result
    }

    fn broadcast_address(&self) -> String {
        if self.tcp_addr.ip().is_unspecified() {
            "127.0.0.1".to_string()
        } else {
            self.tcp_addr.ip().to_string()
        }
    }
}

fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

#[derive(Clone, Copy)]
enum Proto {
    Tcp,
    Http,
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
    proto: Proto,
) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            accepted = listener.accept() => {
                let Ok((stream, remote)) = accepted else { continue };
                let shared = shared.clone();
                match proto {
                    Proto::Tcp => conns.spawn(tcp_connection(shared, stream, remote)),
                    Proto::Http => conns.spawn(http_connection(shared, stream)),
                };
            }
        }
    }
    drop(listener);
    // Aborting drops every connection's socket halves, which closes them.
    conns.shutdown().await;
}

async fn timer_loop(shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    loop {
        let next = shared.with_core(|core, now| core.process_timers(now));
        let far = Instant::now() + Duration::from_secs(3600);
        tokio::select! {
            _ = shutdown.changed() => break,
            _ = shared.notify.notified() => {}
            _ = tokio::time::sleep_until(next.unwrap_or(far)) => {}
        }
    }
}

// ---------------------------------------------------------------------------------------------
// TCP protocol V2
// ---------------------------------------------------------------------------------------------

/// Removes the client (requeueing its in-flight messages) however the connection task ends,
/// including when it is aborted by [`NsqTestBroker::stop`].
struct ClientGuard {
    shared: Arc<Shared>,
    id: ClientId,
}

impl Drop for ClientGuard {
    fn drop(&mut self) {
        let id = self.id;
        self.shared
            .with_core(|core, now| core.remove_client(id, now));
        tracing::debug!(client = id, "nsq client disconnected");
    }
}

async fn tcp_connection(shared: Arc<Shared>, stream: TcpStream, remote: SocketAddr) {
    let _ = stream.set_nodelay(true);
    let (rd, mut wr) = stream.into_split();
    let mut rd = BufReader::new(rd);
    let mut magic = [0u8; 4];
    let magic_wait =
        non_zero(shared.config.heartbeat_interval).map_or(Duration::from_secs(60), |hb| hb * 2);
    match tokio::time::timeout(magic_wait, rd.read_exact(&mut magic)).await {
        Ok(Ok(_)) => {}
        _ => return,
    }
    if &magic != b"  V2" {
        let _ = wr.write_all(&frame(FRAME_ERROR, b"E_BAD_PROTOCOL")).await;
        return;
    }
    let (tx, rx) = mpsc::unbounded_channel();
    let config = shared.config.clone();
    let id = shared.with_core(|core, _| core.register_client(tx.clone(), remote, &config));
    let _guard = ClientGuard {
        shared: shared.clone(),
        id,
    };
    tracing::debug!(client = id, %remote, "nsq client connected");
    let heartbeat = non_zero(config.heartbeat_interval);
    let mut conn = Conn {
        shared: shared.clone(),
        id,
        tx,
        state: ConnState::Init,
        heartbeat,
        msg_timeout: config.msg_timeout,
    };
    let reader = async {
        let result = conn.read_loop(&mut rd).await;
        if let Err(e) = &result {
            tracing::debug!(client = id, error = %e, "nsq client read ended");
        }
        // Nothing more may be delivered; let the writer flush what is queued, then close.
        shared.with_core(|core, _| {
            if let Some(c) = core.clients.get_mut(&id) {
                c.closing = true;
            }
        });
        let _ = conn.tx.send(Out::Close);
    };
    let writer = write_loop(wr, rx, heartbeat);
    tokio::pin!(reader, writer);
    tokio::select! {
        _ = &mut reader => {
            let _ = tokio::time::timeout(Duration::from_secs(1), &mut writer).await;
        }
        _ = &mut writer => {}
    }
}

async fn write_loop(
    wr: OwnedWriteHalf,
    mut rx: mpsc::UnboundedReceiver<Out>,
    heartbeat: Option<Duration>,
) -> io::Result<()> {
    let mut wr = BufWriter::new(wr);
    let mut ticker = heartbeat_ticker(heartbeat);
    loop {
        tokio::select! {
            out = rx.recv() => match out {
                None | Some(Out::Close) => {
                    wr.flush().await?;
                    let _ = wr.shutdown().await;
                    return Ok(());
                }
                Some(Out::Frame(kind, data)) => {
                    wr.write_all(&frame(kind, &data)).await?;
                    if rx.is_empty() {
                        wr.flush().await?;
                    }
                }
                Some(Out::Heartbeat(interval)) => ticker = heartbeat_ticker(interval),
            },
            _ = tick(&mut ticker) => {
                wr.write_all(&frame(FRAME_RESPONSE, b"_heartbeat_")).await?;
                wr.flush().await?;
            }
        }
    }
}

fn heartbeat_ticker(interval: Option<Duration>) -> Option<tokio::time::Interval> {
    interval.map(|every| {
        let mut ticker = tokio::time::interval_at(Instant::now() + every, every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker
    })
}

async fn tick(ticker: &mut Option<tokio::time::Interval>) {
    match ticker {
        Some(t) => {
            t.tick().await;
        }
        None => std::future::pending().await,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ConnState {
    Init,
    Subscribed,
    Closing,
}

struct ProtoErr {
    code: &'static str,
    desc: String,
    fatal: bool,
}

fn fatal(code: &'static str, desc: impl Into<String>) -> ProtoErr {
    ProtoErr {
        code,
        desc: desc.into(),
        fatal: true,
    }
}

fn non_fatal(code: &'static str, desc: impl Into<String>) -> ProtoErr {
    ProtoErr {
        code,
        desc: desc.into(),
        fatal: false,
    }
}

type ExecResult = Result<Option<Vec<u8>>, ProtoErr>;

struct Conn {
    shared: Arc<Shared>,
    id: ClientId,
    tx: mpsc::UnboundedSender<Out>,
    state: ConnState,
    heartbeat: Option<Duration>,
    msg_timeout: Duration,
}

#[derive(serde::Deserialize, Default)]
#[serde(default)]
struct IdentifyData {
    client_id: Option<String>,
    hostname: Option<String>,
    user_agent: Option<String>,
    feature_negotiation: Option<bool>,
    heartbeat_interval: Option<i64>,
    output_buffer_size: Option<i64>,
    output_buffer_timeout: Option<i64>,
    tls_v1: Option<bool>,
    snappy: Option<bool>,
    deflate: Option<bool>,
    deflate_level: Option<i64>,
    sample_rate: Option<i64>,
    msg_timeout: Option<i64>,
}

impl Conn {
    /// Reads with nsqd's read deadline: twice the heartbeat interval.
    async fn timed<T>(&self, fut: impl Future<Output = io::Result<T>>) -> io::Result<T> {
        match self.heartbeat {
            Some(hb) => tokio::time::timeout(hb * 2, fut)
                .await
                .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "missed heartbeats"))?,
            None => fut.await,
        }
    }

    async fn read_loop<R: AsyncBufReadExt + Unpin>(&mut self, rd: &mut R) -> io::Result<()> {
        let mut line = Vec::new();
        loop {
            line.clear();
            let n = self.timed(rd.read_until(b'\n', &mut line)).await?;
            if n == 0 || line.last() != Some(&b'\n') {
                return Ok(()); // EOF
            }
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            let params: Vec<&[u8]> = line.split(|b| *b == b' ').collect();
            match self.exec(&params, rd).await {
                Ok(Some(response)) => self.send(FRAME_RESPONSE, response),
                Ok(None) => {}
                Err(e) => {
                    tracing::debug!(client = self.id, code = e.code, desc = %e.desc, "nsq client error");
                    self.send(FRAME_ERROR, format!("{} {}", e.code, e.desc).into_bytes());
                    if e.fatal {
                        return Ok(());
                    }
                }
            }
        }
    }

    fn send(&self, kind: u32, data: Vec<u8>) {
        let _ = self.tx.send(Out::Frame(kind, data));
    }

    async fn exec<R: AsyncRead + Unpin>(&mut self, params: &[&[u8]], rd: &mut R) -> ExecResult {
        match params[0] {
            b"IDENTIFY" => self.identify(rd).await,
            b"FIN" => self.fin(params),
            b"RDY" => self.rdy(params),
            b"REQ" => self.req(params),
            b"PUB" => self.publish(params, rd).await,
            b"MPUB" => self.mpub(params, rd).await,
            b"DPUB" => self.dpub(params, rd).await,
            b"NOP" => Ok(None),
            b"TOUCH" => self.touch(params),
            b"SUB" => self.sub(params),
            b"CLS" => self.cls(),
            b"AUTH" => self.auth(params, rd).await,
            other => Err(fatal(
                "E_INVALID",
                format!("invalid command {}", lossy(other)),
            )),
        }
    }

    /// Reads a 4-byte big-endian size followed by that many bytes.
    async fn read_sized<R: AsyncRead + Unpin>(
        &self,
        rd: &mut R,
        max: usize,
        code: &'static str,
        what: &str,
        invalid: &str,
    ) -> Result<Vec<u8>, ProtoErr> {
        let len = self
            .timed(rd.read_i32())
            .await
            .map_err(|_| fatal(code, format!("{what} failed to read {invalid} size")))?;
        if len <= 0 {
            return Err(fatal(code, format!("{what} invalid {invalid} size {len}")));
        }
        if len as usize > max {
            let big = if invalid == "body" { "body" } else { "message" };
            return Err(fatal(code, format!("{what} {big} too big {len} > {max}")));
        }
        let mut body = vec![0u8; len as usize];
        self.timed(rd.read_exact(&mut body))
            .await
            .map_err(|_| fatal(code, format!("{what} failed to read {invalid}")))?;
        Ok(body)
    }

    async fn identify<R: AsyncRead + Unpin>(&mut self, rd: &mut R) -> ExecResult {
        if self.state != ConnState::Init {
            return Err(fatal("E_INVALID", "cannot IDENTIFY in current state"));
        }
        let body = self
            .read_sized(rd, MAX_BODY_SIZE, "E_BAD_BODY", "IDENTIFY", "body")
            .await?;
        let data: IdentifyData = serde_json::from_slice(&body)
            .map_err(|_| fatal("E_BAD_BODY", "IDENTIFY failed to decode JSON body"))?;
        let bad = |msg: String| fatal("E_BAD_BODY", format!("IDENTIFY {msg}"));

        let heartbeat = match data.heartbeat_interval.unwrap_or(0) {
            -1 => None,
            0 => self.heartbeat,
            ms if ms >= 1000 && ms <= MAX_HEARTBEAT_INTERVAL.as_millis() as i64 => {
                Some(Duration::from_millis(ms as u64))
            }
            ms => return Err(bad(format!("heartbeat interval ({ms}) is invalid"))),
        };
        let output_buffer_size = match data.output_buffer_size.unwrap_or(0) {
            -1 => 0,
            0 => OUTPUT_BUFFER_SIZE,
            n if (64..=MAX_OUTPUT_BUFFER_SIZE).contains(&n) => n,
            n => return Err(bad(format!("output buffer size ({n}) is invalid"))),
        };
        let output_buffer_timeout = match data.output_buffer_timeout.unwrap_or(0) {
            -1 => 0,
            0 => OUTPUT_BUFFER_TIMEOUT_MS,
            n if (1..=MAX_OUTPUT_BUFFER_TIMEOUT_MS).contains(&n) => n,
            n => return Err(bad(format!("output buffer timeout ({n}) is invalid"))),
        };
        let sample_rate = data.sample_rate.unwrap_or(0);
        if !(0..=99).contains(&sample_rate) {
            return Err(bad(format!("sample rate ({sample_rate}) is invalid")));
        }
        let max_msg_timeout = MAX_MSG_TIMEOUT.max(self.shared.config.msg_timeout);
        let msg_timeout = match data.msg_timeout.unwrap_or(0) {
            0 => self.msg_timeout,
            ms if ms >= 1000 && ms <= max_msg_timeout.as_millis() as i64 => {
                Duration::from_millis(ms as u64)
            }
            ms => return Err(bad(format!("msg timeout ({ms}) is invalid"))),
        };
        // Nothing to negotiate: TLS, snappy and deflate are never enabled.
        let _ = (data.tls_v1, data.snappy, data.deflate, data.deflate_level);

        self.heartbeat = heartbeat;
        self.msg_timeout = msg_timeout;
        let id = self.id;
        self.shared.with_core(|core, _| {
            if let Some(c) = core.clients.get_mut(&id) {
                c.client_id = data.client_id.clone().unwrap_or_default();
                c.hostname = data.hostname.clone().unwrap_or_default();
                c.user_agent = data.user_agent.clone().unwrap_or_default();
                c.heartbeat = heartbeat;
                c.msg_timeout = msg_timeout;
                c.sample_rate = sample_rate;
            }
        });
        let _ = self.tx.send(Out::Heartbeat(heartbeat));

        if !data.feature_negotiation.unwrap_or(false) {
            return Ok(Some(b"OK".to_vec()));
        }
        let response = serde_json::json!({
            "max_rdy_count": MAX_RDY_COUNT,
            "version": NSQD_VERSION,
            "max_msg_timeout": max_msg_timeout.as_millis() as u64,
            "msg_timeout": msg_timeout.as_millis() as u64,
            "tls_v1": false,
            "deflate": false,
            "deflate_level": 0,
            "max_deflate_level": MAX_DEFLATE_LEVEL,
            "snappy": false,
            "sample_rate": sample_rate,
            "auth_required": false,
            "output_buffer_size": output_buffer_size,
            "output_buffer_timeout": output_buffer_timeout,
        });
        Ok(Some(response.to_string().into_bytes()))
    }

    fn sub(&mut self, params: &[&[u8]]) -> ExecResult {
        if self.state != ConnState::Init {
            return Err(fatal("E_INVALID", "cannot SUB in current state"));
        }
        if self.heartbeat.is_none() {
            return Err(fatal("E_INVALID", "cannot SUB with heartbeats disabled"));
        }
        if params.len() < 3 {
            return Err(fatal("E_INVALID", "SUB insufficient number of parameters"));
        }
        let topic = lossy(params[1]);
        if !valid_name(&topic) {
            return Err(fatal(
                "E_BAD_TOPIC",
                format!("SUB topic name {topic:?} is not valid"),
            ));
        }
        let channel = lossy(params[2]);
        if !valid_name(&channel) {
            return Err(fatal(
                "E_BAD_CHANNEL",
                format!("SUB channel name {channel:?} is not valid"),
            ));
        }
        let id = self.id;
        self.shared
            .with_core(|core, now| core.subscribe(id, &topic, &channel, now));
        self.state = ConnState::Subscribed;
        Ok(Some(b"OK".to_vec()))
    }

    fn rdy(&mut self, params: &[&[u8]]) -> ExecResult {
        if self.state == ConnState::Closing {
            return Ok(None); // nsqd ignores RDY after CLS
        }
        if self.state != ConnState::Subscribed {
            return Err(fatal("E_INVALID", "cannot RDY in current state"));
        }
        let count = match params.get(1) {
            Some(raw) => parse_base10(raw).ok_or_else(|| {
                fatal(
                    "E_INVALID",
                    format!("RDY could not parse count {}", lossy(raw)),
                )
            })?,
            None => 1,
        };
        if count > MAX_RDY_COUNT {
            return Err(fatal(
                "E_INVALID",
                format!("RDY count {count} out of range 0-{MAX_RDY_COUNT}"),
            ));
        }
        let id = self.id;
        self.shared
            .with_core(|core, now| core.set_ready(id, count, now));
        Ok(None)
    }

    fn message_id(&self, cmd: &str, params: &[&[u8]], needed: usize) -> Result<MsgId, ProtoErr> {
        if self.state != ConnState::Subscribed && self.state != ConnState::Closing {
            return Err(fatal("E_INVALID", format!("cannot {cmd} in current state")));
        }
        if params.len() < needed {
            return Err(fatal(
                "E_INVALID",
                format!("{cmd} insufficient number of params"),
            ));
        }
        MsgId::try_from(params[1]).map_err(|_| fatal("E_INVALID", "Invalid Message ID"))
    }

    fn fin(&mut self, params: &[&[u8]]) -> ExecResult {
        let msg_id = self.message_id("FIN", params, 2)?;
        let id = self.id;
        self.shared
            .with_core(|core, now| core.finish(id, &msg_id, now))
            .map_err(|e| non_fatal("E_FIN_FAILED", format!("FIN {} failed {e}", lossy(&msg_id))))?;
        Ok(None)
    }

    fn req(&mut self, params: &[&[u8]]) -> ExecResult {
        let msg_id = self.message_id("REQ", params, 3)?;
        let ms = parse_base10(params[2]).ok_or_else(|| {
            fatal(
                "E_INVALID",
                format!("REQ could not parse timeout {}", lossy(params[2])),
            )
        })?;
        let delay = Duration::from_millis(ms);
        if delay > MAX_REQ_TIMEOUT {
            // Go prints both durations in nanoseconds here.
            return Err(fatal(
                "E_INVALID",
                format!(
                    "REQ timeout {} out of range 0-{}",
                    delay.as_nanos(),
                    MAX_REQ_TIMEOUT.as_nanos()
                ),
            ));
        }
        let id = self.id;
        self.shared
            .with_core(|core, now| core.requeue(id, &msg_id, delay, now))
            .map_err(|e| non_fatal("E_REQ_FAILED", format!("REQ {} failed {e}", lossy(&msg_id))))?;
        Ok(None)
    }

    fn touch(&mut self, params: &[&[u8]]) -> ExecResult {
        let msg_id = self.message_id("TOUCH", params, 2)?;
        let id = self.id;
        self.shared
            .with_core(|core, now| core.touch(id, &msg_id, now))
            .map_err(|e| {
                non_fatal(
                    "E_TOUCH_FAILED",
                    format!("TOUCH {} failed {e}", lossy(&msg_id)),
                )
            })?;
        Ok(None)
    }

    fn cls(&mut self) -> ExecResult {
        if self.state != ConnState::Subscribed {
            return Err(fatal("E_INVALID", "cannot CLS in current state"));
        }
        self.state = ConnState::Closing;
        let id = self.id;
        self.shared.with_core(|core, _| {
            if let Some(c) = core.clients.get_mut(&id) {
                c.closing = true;
                c.ready = 0;
            }
        });
        Ok(Some(b"CLOSE_WAIT".to_vec()))
    }

    fn topic_param(&self, cmd: &str, params: &[&[u8]], needed: usize) -> Result<String, ProtoErr> {
        if params.len() < needed {
            return Err(fatal(
                "E_INVALID",
                format!("{cmd} insufficient number of parameters"),
            ));
        }
        let topic = lossy(params[1]);
        if !valid_name(&topic) {
            // nsqd really does repeat the code in MPUB's message.
            let prefix = if cmd == "MPUB" { "E_BAD_TOPIC " } else { "" };
            return Err(fatal(
                "E_BAD_TOPIC",
                format!("{prefix}{cmd} topic name {topic:?} is not valid"),
            ));
        }
        Ok(topic)
    }

    fn put(&self, topic: &str, bodies: Vec<Vec<u8>>, defer: Option<Duration>) {
        let id = self.id;
        self.shared
            .with_core(|core, now| core.put(topic, bodies, defer, Some(id), now));
    }

    async fn publish<R: AsyncRead + Unpin>(&mut self, params: &[&[u8]], rd: &mut R) -> ExecResult {
        let topic = self.topic_param("PUB", params, 2)?;
        let body = self
            .read_sized(rd, MAX_MSG_SIZE, "E_BAD_MESSAGE", "PUB", "message body")
            .await?;
        self.put(&topic, vec![body], None);
        Ok(Some(b"OK".to_vec()))
    }

    async fn dpub<R: AsyncRead + Unpin>(&mut self, params: &[&[u8]], rd: &mut R) -> ExecResult {
        let topic = self.topic_param("DPUB", params, 3)?;
        let ms = parse_base10(params[2]).ok_or_else(|| {
            fatal(
                "E_INVALID",
                format!("DPUB could not parse timeout {}", lossy(params[2])),
            )
        })?;
        let max_ms = MAX_REQ_TIMEOUT.as_millis() as u64;
        if ms > max_ms {
            return Err(fatal(
                "E_INVALID",
                format!("DPUB timeout {ms} out of range 0-{max_ms}"),
            ));
        }
        let body = self
            .read_sized(rd, MAX_MSG_SIZE, "E_BAD_MESSAGE", "DPUB", "message body")
            .await?;
        self.put(&topic, vec![body], Some(Duration::from_millis(ms)));
        Ok(Some(b"OK".to_vec()))
    }

    async fn mpub<R: AsyncRead + Unpin>(&mut self, params: &[&[u8]], rd: &mut R) -> ExecResult {
        let topic = self.topic_param("MPUB", params, 2)?;
        let body = self
            .read_sized(rd, MAX_BODY_SIZE, "E_BAD_BODY", "MPUB", "body")
            .await?;
        let mut rest = body.as_slice();
        let count = take_u32(&mut rest)
            .ok_or_else(|| fatal("E_BAD_BODY", "MPUB failed to read message count"))?
            as i32;
        if count <= 0 {
            return Err(fatal(
                "E_BAD_BODY",
                format!("MPUB invalid message count {count}"),
            ));
        }
        let mut bodies = Vec::new();
        for i in 0..count {
            let size = take_u32(&mut rest).ok_or_else(|| {
                fatal(
                    "E_BAD_MESSAGE",
                    format!("MPUB failed to read message({i}) body size"),
                )
            })? as i32;
            if size <= 0 {
                return Err(fatal(
                    "E_BAD_MESSAGE",
                    format!("MPUB invalid message({i}) body size {size}"),
                ));
            }
            if size as usize > MAX_MSG_SIZE {
                return Err(fatal(
                    "E_BAD_MESSAGE",
                    format!("MPUB message too big {size} > {MAX_MSG_SIZE}"),
                ));
            }
            if rest.len() < size as usize {
                return Err(fatal("E_BAD_MESSAGE", "MPUB failed to read message body"));
            }
            let (msg, tail) = rest.split_at(size as usize);
            bodies.push(msg.to_vec());
            rest = tail;
        }
        self.put(&topic, bodies, None);
        Ok(Some(b"OK".to_vec()))
    }

    async fn auth<R: AsyncRead + Unpin>(&mut self, params: &[&[u8]], rd: &mut R) -> ExecResult {
        if self.state != ConnState::Init {
            return Err(fatal("E_INVALID", "cannot AUTH in current state"));
        }
        if params.len() != 1 {
            return Err(fatal("E_INVALID", "AUTH invalid number of parameters"));
        }
        self.read_sized(rd, MAX_BODY_SIZE, "E_BAD_BODY", "AUTH", "body")
            .await?;
        Err(fatal("E_AUTH_DISABLED", "AUTH Disabled"))
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP API (minimal HTTP/1.1: one request per connection, `Connection: close`)
// ---------------------------------------------------------------------------------------------

struct HttpResponse {
    status: u16,
    content_type: &'static str,
    body: Vec<u8>,
}

impl HttpResponse {
    fn text(status: u16, body: &str) -> Self {
        HttpResponse {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.as_bytes().to_vec(),
        }
    }

    fn json(status: u16, value: serde_json::Value) -> Self {
        HttpResponse {
            status,
            content_type: "application/json; charset=utf-8",
            body: value.to_string().into_bytes(),
        }
    }

    fn error(status: u16, message: &str) -> Self {
        Self::json(status, serde_json::json!({ "message": message }))
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Request Entity Too Large",
        431 => "Request Header Fields Too Large",
        _ => "Internal Server Error",
    }
}

async fn http_connection(shared: Arc<Shared>, stream: TcpStream) {
    let mut stream = BufReader::new(stream);
    let (response, head_only) = match read_http_request(&mut stream).await {
        Ok(Some((method, target, body))) => {
            let head_only = method == "HEAD";
            (route(&shared, &method, &target, body), head_only)
        }
        Ok(None) => return,
        Err(resp) => (resp, false),
    };
    let mut out = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nX-Nsq-Content-Type: nsq; version=1.0\r\nConnection: close\r\n\r\n",
        response.status,
        reason(response.status),
        response.content_type,
        response.body.len()
    )
    .into_bytes();
    if !head_only {
        out.extend_from_slice(&response.body);
    }
    let stream = stream.get_mut();
    let _ = stream.write_all(&out).await;
    let _ = stream.shutdown().await;
}

/// Reads one request: `Ok(None)` if the peer went away, `Err` with a ready error response.
async fn read_http_request(
    stream: &mut BufReader<TcpStream>,
) -> Result<Option<(String, String, Vec<u8>)>, HttpResponse> {
    let deadline = Duration::from_secs(30);
    let mut head = Vec::new();
    loop {
        let before = head.len();
        match tokio::time::timeout(deadline, stream.read_until(b'\n', &mut head)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return Ok(None),
            Ok(Ok(_)) => {}
        }
        let line = &head[before..];
        if line == b"\r\n" || line == b"\n" {
            break;
        }
        if head.len() > 64 * 1024 {
            return Err(HttpResponse::error(431, "HEADERS_TOO_LARGE"));
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let mut lines = head.lines();
    let mut request_line = lines.next().unwrap_or_default().split_whitespace();
    let method = request_line.next().unwrap_or_default().to_string();
    let target = request_line.next().unwrap_or_default().to_string();
    let mut content_length = 0usize;
    let mut chunked = false;
    let mut expect_continue = false;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "content-length" => {
                content_length = value
                    .parse()
                    .map_err(|_| HttpResponse::error(400, "INVALID_CONTENT_LENGTH"))?
            }
            "transfer-encoding" => chunked = value.to_ascii_lowercase().contains("chunked"),
            "expect" => expect_continue = value.eq_ignore_ascii_case("100-continue"),
            _ => {}
        }
    }
    if content_length > MAX_BODY_SIZE {
        return Err(HttpResponse::error(413, "BODY_TOO_BIG"));
    }
    if expect_continue {
        let _ = stream
            .get_mut()
            .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
            .await;
    }
    let read_body = async {
        let mut body = Vec::new();
        if chunked {
            loop {
                let mut size_line = String::new();
                stream.read_line(&mut size_line).await?;
                let size_hex = size_line.trim().split(';').next().unwrap_or_default();
                let size = usize::from_str_radix(size_hex, 16)
                    .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad chunk"))?;
                if body.len() + size > MAX_BODY_SIZE {
                    return Err(io::Error::new(io::ErrorKind::InvalidData, "too big"));
                }
                let start = body.len();
                body.resize(start + size, 0);
                stream.read_exact(&mut body[start..]).await?;
                let mut crlf = String::new();
                stream.read_line(&mut crlf).await?;
                if size == 0 {
                    // Skip trailers up to the empty line.
                    while !crlf.trim().is_empty() {
                        crlf.clear();
                        if stream.read_line(&mut crlf).await? == 0 {
                            break;
                        }
                    }
                    break;
                }
            }
        } else {
            body.resize(content_length, 0);
            stream.read_exact(&mut body).await?;
        }
        Ok::<_, io::Error>(body)
    };
    match tokio::time::timeout(deadline, read_body).await {
        Ok(Ok(body)) => Ok(Some((method, target, body))),
        _ => Err(HttpResponse::error(400, "BAD_BODY")),
    }
}

fn route(shared: &Shared, method: &str, target: &str, body: Vec<u8>) -> HttpResponse {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let query = parse_query(query);
    let arg = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let get = method == "GET" || method == "HEAD";
    let post = method == "POST" || method == "PUT";
    let topic_arg = || -> Result<String, HttpResponse> {
        let topic = arg("topic").ok_or_else(|| HttpResponse::error(400, "MISSING_ARG_TOPIC"))?;
        if !valid_name(&topic) {
            return Err(HttpResponse::error(400, "INVALID_TOPIC"));
        }
        Ok(topic)
    };
    let channel_arg = || -> Result<String, HttpResponse> {
        let channel =
            arg("channel").ok_or_else(|| HttpResponse::error(400, "MISSING_ARG_CHANNEL"))?;
        if !valid_name(&channel) {
            return Err(HttpResponse::error(400, "INVALID_CHANNEL"));
        }
        Ok(channel)
    };
    macro_rules! tryr {
        ($e:expr) => {
            match $e {
                Ok(v) => v,
                Err(resp) => return resp,
            }
        };
    }
    let ok_empty = || HttpResponse::text(200, "");
    match (path, get, post) {
        ("/ping", true, _) => HttpResponse::text(200, "OK"),
        ("/info", true, _) => HttpResponse::json(
            200,
            serde_json::json!({
                "version": NSQD_VERSION,
                "broadcast_address": shared.broadcast_address(),
                "hostname": hostname(),
                "http_port": shared.http_addr.port(),
                "tcp_port": shared.tcp_addr.port(),
                "start_time": shared.start_time,
            }),
        ),
        ("/pub", _, true) => {
            let topic = tryr!(topic_arg());
            if body.is_empty() {
                return HttpResponse::error(400, "MSG_EMPTY");
            }
            if body.len() > MAX_MSG_SIZE {
                return HttpResponse::error(413, "MSG_TOO_BIG");
            }
            let defer = match arg("defer") {
                Some(ms) => match ms.parse::<u64>() {
                    Ok(ms) if Duration::from_millis(ms) <= MAX_REQ_TIMEOUT => {
                        Some(Duration::from_millis(ms))
                    }
                    _ => return HttpResponse::error(400, "INVALID_DEFER"),
                },
                None => None,
            };
            shared.with_core(|core, now| core.put(&topic, vec![body], defer, None, now));
            HttpResponse::text(200, "OK")
        }
        ("/mpub", _, true) => {
            let topic = tryr!(topic_arg());
            let binary = matches!(arg("binary").as_deref(), Some("true" | "1"));
            let bodies = if binary {
                let mut rest = body.as_slice();
                let Some(count) = take_u32(&mut rest) else {
                    return HttpResponse::error(400, "MSG_EMPTY");
                };
                let mut bodies = Vec::new();
                for _ in 0..count {
                    let Some(size) = take_u32(&mut rest) else {
                        return HttpResponse::error(400, "BAD_BODY");
                    };
                    let size = size as usize;
                    if size == 0 || size > MAX_MSG_SIZE || rest.len() < size {
                        return HttpResponse::error(400, "BAD_MESSAGE");
                    }
                    let (msg, tail) = rest.split_at(size);
                    bodies.push(msg.to_vec());
                    rest = tail;
                }
                bodies
            } else {
                // nsqd silently drops empty lines.
                let mut bodies = Vec::new();
                for line in body.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                    if line.len() > MAX_MSG_SIZE {
                        return HttpResponse::error(413, "MSG_TOO_BIG");
                    }
                    bodies.push(line.to_vec());
                }
                bodies
            };
            if bodies.is_empty() {
                return HttpResponse::error(400, "MSG_EMPTY");
            }
            shared.with_core(|core, now| core.put(&topic, bodies, None, None, now));
            HttpResponse::text(200, "OK")
        }
        ("/stats", true, _) => {
            let stats = shared.lock().stats();
            let topic = arg("topic");
            let channel = arg("channel");
            if arg("format").as_deref() == Some("json") {
                HttpResponse::json(
                    200,
                    stats_json(shared, &stats, topic.as_deref(), channel.as_deref()),
                )
            } else {
                HttpResponse::text(
                    200,
                    &stats_text(shared, &stats, topic.as_deref(), channel.as_deref()),
                )
            }
        }
        ("/lookup", true, _) => {
            let topic =
                tryr!(arg("topic").ok_or_else(|| HttpResponse::error(400, "MISSING_ARG_TOPIC")));
            let core = shared.lock();
            let Some(t) = core.topics.get(&topic) else {
                return HttpResponse::error(404, "TOPIC_NOT_FOUND");
            };
            let channels: Vec<&String> = t.channels.keys().collect();
            HttpResponse::json(
                200,
                serde_json::json!({ "channels": channels, "producers": [producer_json(shared)] }),
            )
        }
        ("/topics", true, _) => {
            let topics: Vec<String> = shared.lock().topics.keys().cloned().collect();
            HttpResponse::json(200, serde_json::json!({ "topics": topics }))
        }
        ("/channels", true, _) => {
            let topic =
                tryr!(arg("topic").ok_or_else(|| HttpResponse::error(400, "MISSING_ARG_TOPIC")));
            let channels: Vec<String> = shared
                .lock()
                .topics
                .get(&topic)
                .map(|t| t.channels.keys().cloned().collect())
                .unwrap_or_default();
            HttpResponse::json(200, serde_json::json!({ "channels": channels }))
        }
        ("/nodes", true, _) => {
            let topics: Vec<String> = shared.lock().topics.keys().cloned().collect();
            let mut producer = producer_json(shared);
            producer["topics"] = serde_json::json!(topics);
            producer["tombstones"] = serde_json::json!(vec![false; topics.len()]);
            HttpResponse::json(200, serde_json::json!({ "producers": [producer] }))
        }
        ("/topic/create", _, true) => {
            let topic = tryr!(topic_arg());
            shared.with_core(|core, _| {
                core.ensure_topic(&topic);
            });
            ok_empty()
        }
        ("/topic/delete", _, true) => {
            let topic = tryr!(topic_arg());
            let found = shared.with_core(|core, _| {
                core.close_subscribers(&topic, None);
                core.topics.remove(&topic).is_some()
            });
            if found {
                ok_empty()
            } else {
                HttpResponse::error(404, "TOPIC_NOT_FOUND")
            }
        }
        ("/topic/empty", _, true) => {
            let topic = tryr!(topic_arg());
            let found = shared.with_core(|core, _| match core.topics.get_mut(&topic) {
                Some(t) => {
                    t.backlog.clear();
                    true
                }
                None => false,
            });
            if found {
                ok_empty()
            } else {
                HttpResponse::error(404, "TOPIC_NOT_FOUND")
            }
        }
        ("/channel/create", _, true) => {
            let topic = tryr!(topic_arg());
            let channel = tryr!(channel_arg());
            shared.with_core(|core, now| core.ensure_channel(&topic, &channel, now));
            ok_empty()
        }
        ("/channel/delete", _, true) => {
            let topic = tryr!(topic_arg());
            let channel = tryr!(channel_arg());
            let found = shared.with_core(|core, _| {
                core.close_subscribers(&topic, Some(&channel));
                core.topics
                    .get_mut(&topic)
                    .and_then(|t| t.channels.remove(&channel))
                    .is_some()
            });
            if found {
                ok_empty()
            } else {
                HttpResponse::error(404, "CHANNEL_NOT_FOUND")
            }
        }
        ("/channel/empty", _, true) => {
            let topic = tryr!(topic_arg());
            let channel = tryr!(channel_arg());
            if shared.with_core(|core, _| core.empty_channel(&topic, &channel)) {
                ok_empty()
            } else {
                HttpResponse::error(404, "CHANNEL_NOT_FOUND")
            }
        }
        (
            "/ping" | "/info" | "/pub" | "/mpub" | "/stats" | "/lookup" | "/topics" | "/channels"
            | "/nodes" | "/topic/create" | "/topic/delete" | "/topic/empty" | "/channel/create"
            | "/channel/delete" | "/channel/empty",
            _,
            _,
        ) => HttpResponse::error(405, "METHOD_NOT_ALLOWED"),
        _ => HttpResponse::error(404, "NOT_FOUND"),
    }
}

fn producer_json(shared: &Shared) -> serde_json::Value {
    serde_json::json!({
        "remote_address": shared.tcp_addr.to_string(),
        "hostname": hostname(),
        "broadcast_address": shared.broadcast_address(),
        "tcp_port": shared.tcp_addr.port(),
        "http_port": shared.http_addr.port(),
        "version": NSQD_VERSION,
    })
}

fn client_json(c: &ClientStats) -> serde_json::Value {
    let pub_counts: Vec<serde_json::Value> = c
        .pub_counts
        .iter()
        .map(|(topic, count)| serde_json::json!({ "topic": topic, "count": count }))
        .collect();
    serde_json::json!({
        "client_id": c.client_id,
        "hostname": c.hostname,
        "version": "V2",
        "remote_address": c.remote_address,
        "state": if c.subscription.is_some() { 3 } else { 2 },
        "ready_count": c.ready_count,
        "in_flight_count": c.in_flight_count,
        "message_count": c.message_count,
        "finish_count": c.finish_count,
        "requeue_count": c.requeue_count,
        "user_agent": c.user_agent,
        "msg_timeout": c.msg_timeout.as_millis() as u64,
        "tls": false,
        "deflate": false,
        "snappy": false,
        "pub_counts": pub_counts,
    })
}

fn stats_json(
    shared: &Shared,
    stats: &BrokerStats,
    topic: Option<&str>,
    channel: Option<&str>,
) -> serde_json::Value {
    let topics: Vec<serde_json::Value> = stats
        .topics
        .iter()
        .filter(|t| topic.is_none_or(|name| name == t.topic_name))
        .map(|t| {
            let channels: Vec<serde_json::Value> = t
                .channels
                .iter()
                .filter(|c| channel.is_none_or(|name| name == c.channel_name))
                .map(|c| {
                    serde_json::json!({
                        "channel_name": c.channel_name,
                        "depth": c.depth,
                        "backend_depth": 0,
                        "in_flight_count": c.in_flight_count,
                        "deferred_count": c.deferred_count,
                        "message_count": c.message_count,
                        "requeue_count": c.requeue_count,
                        "timeout_count": c.timeout_count,
                        "finish_count": c.finish_count,
                        "client_count": c.client_count,
                        "clients": c.clients.iter().map(client_json).collect::<Vec<_>>(),
                        "paused": false,
                        "e2e_processing_latency": { "count": 0, "percentiles": null },
                    })
                })
                .collect();
            serde_json::json!({
                "topic_name": t.topic_name,
                "channels": channels,
                "depth": t.depth,
                "backend_depth": 0,
                "message_count": t.message_count,
                "message_bytes": t.message_bytes,
                "paused": false,
                "e2e_processing_latency": { "count": 0, "percentiles": null },
            })
        })
        .collect();
    serde_json::json!({
        "version": NSQD_VERSION,
        "health": "OK",
        "start_time": shared.start_time,
        "topics": topics,
        "producers": stats.producers.iter().map(client_json).collect::<Vec<_>>(),
    })
}

fn stats_text(
    shared: &Shared,
    stats: &BrokerStats,
    topic: Option<&str>,
    channel: Option<&str>,
) -> String {
    let mut out = format!(
        "nsqd v{NSQD_VERSION} (nsq_test_broker)\nstart_time {}\n\nHealth: OK\n\nTopics:",
        shared.start_time
    );
    for t in stats
        .topics
        .iter()
        .filter(|t| topic.is_none_or(|name| name == t.topic_name))
    {
        out.push_str(&format!(
            "\n   [{:<15}] depth: {:<5} be-depth: 0     msgs: {:<8}\n",
            t.topic_name, t.depth, t.message_count
        ));
        for c in t
            .channels
            .iter()
            .filter(|c| channel.is_none_or(|name| name == c.channel_name))
        {
            out.push_str(&format!(
                "      [{:<15}] depth: {:<5} be-depth: 0     inflt: {:<4} def: {:<4} re-q: {:<5} timeout: {:<5} msgs: {:<8} fin: {}\n",
                c.channel_name,
                c.depth,
                c.in_flight_count,
                c.deferred_count,
                c.requeue_count,
                c.timeout_count,
                c.message_count,
                c.finish_count
            ));
            for client in &c.clients {
                out.push_str(&format!(
                    "        [V2 {:<21}] state: 3 inflt: {:<4} rdy: {:<4} fin: {:<8} re-q: {:<8} msgs: {:<8}\n",
                    client.remote_address,
                    client.in_flight_count,
                    client.ready_count,
                    client.finish_count,
                    client.requeue_count,
                    client.message_count
                ));
            }
        }
    }
    out.push('\n');
    out
}

// ---------------------------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------------------------

fn frame(kind: u32, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + data.len());
    out.extend_from_slice(&(data.len() as u32 + 4).to_be_bytes());
    out.extend_from_slice(&kind.to_be_bytes());
    out.extend_from_slice(data);
    out
}

fn encode_message(msg: &Message) -> Vec<u8> {
    let mut out = Vec::with_capacity(26 + msg.body.len());
    out.extend_from_slice(&msg.timestamp.to_be_bytes());
    out.extend_from_slice(&msg.attempts.to_be_bytes());
    out.extend_from_slice(&msg.id);
    out.extend_from_slice(&msg.body);
    out
}

fn take_u32(rest: &mut &[u8]) -> Option<u32> {
    let (head, tail) = rest.split_first_chunk::<4>()?;
    *rest = tail;
    Some(u32::from_be_bytes(*head))
}

/// nsqd's `ByteToBase10`: ASCII digits only (an empty string is 0).
fn parse_base10(raw: &[u8]) -> Option<u64> {
    raw.iter().try_fold(0u64, |n, d| {
        d.is_ascii_digit()
            .then(|| n.saturating_mul(10).saturating_add(u64::from(d - b'0')))
    })
}

/// nsqd's topic/channel name rule: `^[.a-zA-Z0-9_-]+(#ephemeral)?$`, 1 to 64 bytes.
fn valid_name(name: &str) -> bool {
    if name.is_empty() || name.len() > 64 {
        return false;
    }
    let base = name.strip_suffix("#ephemeral").unwrap_or(name);
    !base.is_empty()
        && base
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn is_ephemeral(name: &str) -> bool {
    name.ends_with("#ephemeral")
}

fn lossy(raw: &[u8]) -> String {
    String::from_utf8_lossy(raw).into_owned()
}

fn non_zero(d: Duration) -> Option<Duration> {
    (!d.is_zero()).then_some(d)
}

fn unix_now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
