//! [`Client`]: a HOOT/1 DEALER for async callers.
//!
//! One task owns the socket. Callers encode their envelope, hand it to that task over
//! a channel and wait on a oneshot for the reply with the same envelope id, so any
//! number of requests share one connection and no lock is held across a request.
//! Requests the schema marks idempotent are retried with capped backoff after a
//! timeout (zguide "Lazy Pirate"); after repeated timeouts the socket is rebuilt under
//! a fresh routing id. libzmq reconnects by itself when the server restarts.
//!
//! When the connection drops with requests in flight (the server died, or missed its
//! heartbeats), libzmq says so on a monitor socket and those requests stop waiting:
//! idempotent ones are sent again (they reach the server once it is back), the rest fail at
//! once with [`Error::ConnectionLost`] instead of waiting out their deadline.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::auth::Key;
use crate::socket::{self, AsyncSocket, Sent, SocketOptions};
use crate::v1::Envelope;
use crate::v1::envelope::Payload;
use crate::{Error, Request, Status, trace, wire};

/// How a [`Client`] connects and behaves. [`ClientConfig::new`] gives working defaults.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The server's endpoint, e.g. `tcp://127.0.0.1:5570`.
    pub endpoint: String,
    /// Prefix of the routing id, for the server's logs (e.g. `holler-cli`).
    pub name: String,
    /// Shared key for signing; must match the server's.
    pub key: Option<Key>,
    /// Default deadline of a request, retries included.
    pub timeout: Duration,
    /// How long one attempt of an idempotent request waits before it is sent again
    /// (plus one second per 8 MiB of request, so large uploads are not re-sent in flight).
    pub attempt_timeout: Duration,
    /// How many times an idempotent request is sent at most.
    pub max_attempts: u32,
    /// First pause between attempts; doubles each time up to `backoff_max`.
    pub backoff_initial: Duration,
    /// Longest pause between attempts.
    pub backoff_max: Duration,
    /// Rebuild the socket after this many consecutive timeouts.
    pub rebuild_after_timeouts: u32,
    /// Largest envelope sent or accepted, in bytes.
    pub max_message_size: usize,
    /// Longest pause between libzmq's reconnection attempts.
    pub reconnect_max: Duration,
    /// ZMTP heartbeat interval; a silent peer is dropped after three of them.
    pub heartbeat_interval: Duration,
}

impl ClientConfig {
    /// Defaults: 10 s deadline; idempotent requests wait 1 s per attempt, up to 4 attempts;
    /// libzmq retries a lost connection every 100 ms, backing off to 500 ms. Together these
    /// bring a client back within about a second of its server's restart.
    pub fn new(endpoint: impl Into<String>) -> Self {
        Self {
            endpoint: endpoint.into(),
            name: "hoot-client".to_string(),
            key: None,
            timeout: Duration::from_secs(10),
            attempt_timeout: Duration::from_secs(1),
            max_attempts: 4,
            backoff_initial: Duration::from_millis(50),
            backoff_max: Duration::from_secs(1),
            rebuild_after_timeouts: 2,
            max_message_size: wire::DEFAULT_MAX_MESSAGE_SIZE,
            reconnect_max: Duration::from_millis(500),
            heartbeat_interval: Duration::from_secs(1),
        }
    }
}

/// Per-request overrides of the client's defaults.
#[derive(Debug, Clone, Default)]
pub struct RequestOptions {
    /// Deadline for the whole request, retries included.
    pub timeout: Option<Duration>,
    /// Per-attempt timeout of an idempotent request (e.g. a long poll sets it above its wait).
    pub attempt_timeout: Option<Duration>,
    /// Override the schema's idempotency mark: `Some(false)` never retries.
    pub idempotent: Option<bool>,
    /// The W3C traceparent to send (None: the current span's, if tracing is on). Callers
    /// without a tracing subscriber, such as a Lua sandbox, hand on their run's this way.
    pub traceparent: Option<String>,
}

/// Counters of one client since it was created.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientStats {
    /// Attempts sent (a retried request counts once per attempt).
    pub sent: u64,
    /// Replies matched to a waiting request.
    pub replies: u64,
    /// Attempts that timed out.
    pub timeouts: u64,
    /// Attempts sent again after a timeout.
    pub retries: u64,
    /// Times the socket was rebuilt.
    pub rebuilds: u64,
    /// Replies dropped: unknown or late id, bad framing, bad or missing signature.
    pub dropped_replies: u64,
}

#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    replies: AtomicU64,
    timeouts: AtomicU64,
    retries: AtomicU64,
    rebuilds: AtomicU64,
    dropped_replies: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// What a waiting request gets from the I/O task.
#[allow(
    clippy::large_enum_variant,
    reason = "nearly every delivery is a reply; boxing it would cost an allocation per call to shrink the rare `Lost`"
)]
enum Delivery {
    /// The reply.
    Reply(Envelope),
    /// The connection dropped after the request was handed to libzmq.
    Lost,
}

enum Command {
    Send {
        id: String,
        frames: Vec<Vec<u8>>,
        reply: oneshot::Sender<Delivery>,
    },
    Abandon {
        id: String,
        timed_out: bool,
    },
}

struct Shared {
    config: ClientConfig,
    commands: mpsc::UnboundedSender<Command>,
    id_prefix: String,
    next_id: AtomicU64,
    counters: Arc<Counters>,
}

/// A HOOT/1 client. Cheap to clone; all clones share one connection. The connection
/// closes when the last clone is dropped.
#[derive(Clone)]
pub struct Client {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("endpoint", &self.shared.config.endpoint)
            .finish()
    }
}

fn random_hex(bytes: usize) -> String {
    (0..bytes).map(|_| format!("{:02x}", rand::random::<u8>())).collect()
}

impl Client {
    /// Connects to `config.endpoint`. Returns at once: the server need not be up yet.
    /// Fails only for an invalid configuration. Must be called inside a tokio runtime.
    pub fn connect(config: ClientConfig) -> Result<Self, Error> {
        let instance = format!("{}-{}", config.name, random_hex(6));
        let counters = Arc::new(Counters::default());
        let link = Link::open(&config, &instance, 0)?;
        let (commands, receiver) = mpsc::unbounded_channel();
        tokio::spawn(io_loop(
            config.clone(),
            instance.clone(),
            link,
            receiver,
            counters.clone(),
        ));
        Ok(Self {
            shared: Arc::new(Shared {
                config,
                commands,
                id_prefix: instance,
                next_id: AtomicU64::new(1),
                counters,
            }),
        })
    }

    /// The endpoint this client talks to.
    pub fn endpoint(&self) -> &str {
        &self.shared.config.endpoint
    }

    /// Sends a typed request and returns its typed reply.
    pub async fn call<R: Request>(&self, request: R) -> Result<R::Reply, Error> {
        self.call_with(request, RequestOptions::default()).await
    }

    /// [`Client::call`] with per-request options.
    pub async fn call_with<R: Request>(&self, request: R, options: RequestOptions) -> Result<R::Reply, Error> {
        let reply = self.request_with(request.into_payload(), options).await?;
        R::reply_from(reply).map_err(|other| Error::UnexpectedReply(other.name()))
    }

    /// Sends any payload and returns the reply payload; an `Error` reply becomes `Err(Error::Remote)`.
    pub async fn request(&self, payload: Payload) -> Result<Payload, Error> {
        self.request_with(payload, RequestOptions::default()).await
    }

    /// [`Client::request`] with per-request options.
    pub async fn request_with(&self, payload: Payload, options: RequestOptions) -> Result<Payload, Error> {
        let reply = self.exchange(payload, options).await?;
        match reply.payload {
            Some(Payload::Error(error)) => Err(Error::Remote(Status::from_proto(error))),
            Some(payload) => Ok(payload),
            None => Err(Error::EmptyReply),
        }
    }

    /// Sends an envelope built from `payload` and returns the whole reply envelope.
    pub async fn exchange(&self, payload: Payload, options: RequestOptions) -> Result<Envelope, Error> {
        let config = &self.shared.config;
        let idempotent = options.idempotent.unwrap_or_else(|| payload.is_idempotent());
        let started = Instant::now();
        let deadline = started + options.timeout.unwrap_or(config.timeout);
        let id = format!(
            "{}-{}",
            self.shared.id_prefix,
            self.shared.next_id.fetch_add(1, Ordering::Relaxed)
        );
        let mut envelope = Envelope {
            id: id.clone(),
            traceparent: options.traceparent.clone().unwrap_or_else(trace::current_traceparent),
            timeout_ms: 0,
            payload: Some(payload),
        };
        let mut backoff = config.backoff_initial;
        let mut attempt = 0;
        let mut guard = AbandonOnDrop {
            commands: &self.shared.commands,
            id: None,
        };
        loop {
            attempt += 1;
            let remaining = deadline.saturating_duration_since(Instant::now());
            let last_attempt = !idempotent || attempt >= config.max_attempts;
            // The server may work until the caller's overall deadline: a retry of an idempotent
            // request carries the same id, and the reply to any attempt completes it.
            envelope.timeout_ms = u32::try_from(remaining.as_millis()).unwrap_or(u32::MAX).max(1);
            let frames = wire::encode(&envelope, config.key.as_ref(), config.max_message_size)?;
            let wait = if last_attempt {
                remaining
            } else {
                remaining.min(options.attempt_timeout.unwrap_or(config.attempt_timeout) + transfer_allowance(&frames))
            };
            let (reply_tx, reply_rx) = oneshot::channel();
            self.shared
                .commands
                .send(Command::Send {
                    id: id.clone(),
                    frames,
                    reply: reply_tx,
                })
                .map_err(|_| Error::Closed)?;
            guard.id = Some(id.clone());
            match tokio::time::timeout(wait, reply_rx).await {
                Ok(Ok(Delivery::Reply(reply))) => {
                    guard.id = None;
                    return Ok(reply);
                }
                Ok(Ok(Delivery::Lost)) => {
                    guard.id = None;
                    if last_attempt || Instant::now() + backoff >= deadline {
                        return Err(Error::ConnectionLost {
                            endpoint: config.endpoint.clone(),
                        });
                    }
                    tracing::debug!(%id, attempt, "connection lost; sending again");
                    bump(&self.shared.counters.retries);
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(config.backoff_max);
                }
                Ok(Err(_)) => return Err(Error::Closed),
                Err(_elapsed) => {
                    guard.id = None;
                    let _ = self.shared.commands.send(Command::Abandon {
                        id: id.clone(),
                        timed_out: true,
                    });
                    let out_of_time = Instant::now() + backoff >= deadline;
                    if last_attempt || out_of_time {
                        return Err(Error::DeadlineExceeded {
                            endpoint: config.endpoint.clone(),
                            elapsed: started.elapsed(),
                            attempts: attempt,
                        });
                    }
                    tracing::debug!(%id, attempt, "no reply; sending again");
                    bump(&self.shared.counters.retries);
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(config.backoff_max);
                }
            }
        }
    }

    /// A snapshot of this client's counters.
    pub fn stats(&self) -> ClientStats {
        let c = &self.shared.counters;
        ClientStats {
            sent: c.sent.load(Ordering::Relaxed),
            replies: c.replies.load(Ordering::Relaxed),
            timeouts: c.timeouts.load(Ordering::Relaxed),
            retries: c.retries.load(Ordering::Relaxed),
            rebuilds: c.rebuilds.load(Ordering::Relaxed),
            dropped_replies: c.dropped_replies.load(Ordering::Relaxed),
        }
    }
}

/// Extra patience per attempt for large requests: one second per 8 MiB, so a big upload is
/// not sent again while the first copy is still being transferred and stored.
fn transfer_allowance(frames: &[Vec<u8>]) -> Duration {
    let bytes: usize = frames.iter().map(Vec::len).sum();
    Duration::from_secs((bytes / (8 << 20)) as u64)
}

/// Forgets the pending request if the caller's future is dropped mid-wait.
struct AbandonOnDrop<'a> {
    commands: &'a mpsc::UnboundedSender<Command>,
    id: Option<String>,
}

impl Drop for AbandonOnDrop<'_> {
    fn drop(&mut self) {
        if let Some(id) = self.id.take() {
            let _ = self.commands.send(Command::Abandon { id, timed_out: false });
        }
    }
}

/// One DEALER socket, its disconnect monitor, and the generation it belongs to.
struct Link {
    monitor: AsyncSocket,
    socket: AsyncSocket,
    generation: u64,
}

impl Drop for Link {
    fn drop(&mut self) {
        self.socket.stop_monitor();
    }
}

impl Link {
    fn open(config: &ClientConfig, instance: &str, generation: u64) -> Result<Self, Error> {
        let options = SocketOptions::new(config.max_message_size, config.heartbeat_interval);
        let routing_id = format!("{instance}-g{generation}");
        let context = socket::shared_context();
        let socket = AsyncSocket::dealer(&context, &config.endpoint, &routing_id, &options, config.reconnect_max)?;
        let monitor = socket.disconnect_monitor(&context, &routing_id)?;
        Ok(Self {
            monitor,
            socket,
            generation,
        })
    }
}

struct Pending {
    reply: oneshot::Sender<Delivery>,
    generation: u64,
}

/// What the I/O task owns.
struct Io {
    config: ClientConfig,
    instance: String,
    link: Link,
    pending: HashMap<String, Pending>,
    outbox: VecDeque<Vec<Vec<u8>>>,
    consecutive_timeouts: u32,
    counters: Arc<Counters>,
    /// The monitor's fd has signalled since it was last drained. Only then is it read, so the
    /// common wake-up (a reply) costs no extra libzmq call.
    monitor_ready: bool,
}

async fn io_loop(
    config: ClientConfig,
    instance: String,
    link: Link,
    mut commands: mpsc::UnboundedReceiver<Command>,
    counters: Arc<Counters>,
) {
    let mut io = Io {
        config,
        instance,
        link,
        pending: HashMap::new(),
        outbox: VecDeque::new(),
        consecutive_timeouts: 0,
        counters,
        monitor_ready: true,
    };
    loop {
        io.pump();
        tokio::select! {
            command = commands.recv() => {
                let Some(command) = command else { break };
                io.handle(command);
                // Take whatever else is queued before touching the socket again.
                while let Ok(command) = commands.try_recv() {
                    io.handle(command);
                }
            }
            result = io.link.socket.wait() => {
                if let Err(e) = result {
                    tracing::error!(error = %e, "client socket failed; closing");
                    break;
                }
            }
            result = io.link.monitor.wait() => {
                if let Err(e) = result {
                    tracing::error!(error = %e, "client socket monitor failed; closing");
                    break;
                }
                io.monitor_ready = true;
            }
        }
    }
}

impl Io {
    /// Everything we have for libzmq, then everything libzmq has for us, then the
    /// connection's fate. Ends with a receive that found nothing on each socket it touched,
    /// which is what makes waiting on their `ZMQ_FD`s safe (the monitor, untouched since its
    /// last empty receive, needs none).
    fn pump(&mut self) {
        self.exchange_frames();
        if !std::mem::take(&mut self.monitor_ready) {
            return;
        }
        let mut lost = false;
        while let Ok(Some(_event)) = self.link.monitor.try_recv() {
            lost = true;
        }
        if lost {
            // Replies that arrived before the drop are in the queue by now: hand them over first.
            self.exchange_frames();
            self.connection_lost();
        }
    }

    /// Every request handed to libzmq on this socket stops waiting for a reply that
    /// cannot come; nothing is known of whether the server did it.
    fn connection_lost(&mut self) {
        let generation = self.link.generation;
        let lost: Vec<String> = self
            .pending
            .iter()
            .filter(|(_, p)| p.generation == generation)
            .map(|(id, _)| id.clone())
            .collect();
        if !lost.is_empty() {
            tracing::info!(endpoint = %self.config.endpoint, requests = lost.len(), "connection lost with requests in flight");
        }
        for id in lost {
            if let Some(pending) = self.pending.remove(&id) {
                let _ = pending.reply.send(Delivery::Lost);
            }
        }
    }

    fn exchange_frames(&mut self) {
        while let Some(frames) = self.outbox.front() {
            match self.link.socket.try_send(frames) {
                Ok(Sent::Yes) => {
                    self.outbox.pop_front();
                    bump(&self.counters.sent);
                }
                Ok(Sent::WouldBlock) => break,
                Ok(Sent::Unroutable) | Err(_) => {
                    // The caller's deadline answers for it.
                    self.outbox.pop_front();
                }
            }
        }
        loop {
            match self.link.socket.try_recv() {
                Ok(Some(frames)) => {
                    if deliver(&self.config, &frames, &mut self.pending) {
                        self.consecutive_timeouts = 0;
                        bump(&self.counters.replies);
                    } else {
                        bump(&self.counters.dropped_replies);
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "receive failed");
                    break;
                }
            }
        }
    }

    fn handle(&mut self, command: Command) {
        match command {
            Command::Send { id, frames, reply } => {
                self.pending.insert(
                    id,
                    Pending {
                        reply,
                        generation: self.link.generation,
                    },
                );
                self.outbox.push_back(frames);
            }
            Command::Abandon { id, timed_out } => {
                let Some(entry) = self.pending.remove(&id) else { return };
                if !timed_out {
                    return;
                }
                bump(&self.counters.timeouts);
                // Only timeouts on the current socket say anything about it.
                if entry.generation == self.link.generation {
                    self.consecutive_timeouts += 1;
                }
                if self.consecutive_timeouts >= self.config.rebuild_after_timeouts {
                    self.rebuild();
                }
            }
        }
    }

    /// Lazy Pirate: a socket that keeps timing out is closed and opened afresh.
    fn rebuild(&mut self) {
        self.consecutive_timeouts = 0;
        match Link::open(&self.config, &self.instance, self.link.generation + 1) {
            Ok(fresh) => {
                tracing::info!(endpoint = %self.config.endpoint, generation = fresh.generation, "rebuilt socket after repeated timeouts");
                self.link = fresh;
                self.monitor_ready = true;
                bump(&self.counters.rebuilds);
            }
            Err(e) => tracing::warn!(error = %e, "could not rebuild socket"),
        }
    }
}

/// Hands a reply to its waiting caller. False when it was dropped.
fn deliver(config: &ClientConfig, frames: &[Vec<u8>], pending: &mut HashMap<String, Pending>) -> bool {
    let envelope = match wire::decode(frames, config.key.as_ref(), config.max_message_size) {
        Ok(envelope) => envelope,
        Err(rejected) => {
            tracing::warn!(error = %rejected.error, endpoint = %config.endpoint, "dropping bad reply");
            return false;
        }
    };
    match pending.remove(&envelope.id) {
        Some(waiting) => waiting.reply.send(Delivery::Reply(envelope)).is_ok(),
        None => {
            tracing::debug!(id = %envelope.id, "reply for a request nobody waits for (late or abandoned)");
            false
        }
    }
}
