//! [`Server`]: a HOOT/1 ROUTER that runs a [`Handler`] for each request.
//!
//! One task owns the socket. Each accepted request runs as its own task, and its reply is
//! routed back by the peer's routing id. Requests in flight are capped so that one client
//! cannot starve the others: at most `max_in_flight` in all and `max_in_flight_per_client`
//! from one client (one routing id); beyond a cap the request is answered
//! `RESOURCE_EXHAUSTED` naming it, at once. The payloads in `reserved_payloads` (`ping`,
//! `register`, `timeline_event`, `shutdown`) do not count against those caps: they have
//! capacity of their own (`reserved_in_flight`, `reserved_in_flight_per_client`), so a flood
//! of other requests can never get them refused. On shutdown the server stops
//! accepting (new requests get `UNAVAILABLE`), waits up to `drain_timeout` for the
//! accepted ones, answers any still running with `UNAVAILABLE`, and returns only after
//! libzmq has had up to `linger` to send the last replies.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::Instrument as _;

use crate::auth::Key;
use crate::socket::{self, AsyncSocket, Sent, SocketOptions};
use crate::v1::Envelope;
use crate::v1::envelope::Payload;
use crate::{Error, Status, trace, wire};

/// Handles requests. Implemented by each service; called concurrently.
pub trait Handler: Send + Sync + 'static {
    /// Answers one request. `payload` is never an unknown case (the server answers
    /// those `UNIMPLEMENTED` itself); return `Status::unimplemented` for ones you do not serve.
    fn handle(&self, context: RequestContext, payload: Payload)
    -> impl Future<Output = Result<Payload, Status>> + Send;
}

/// What a handler knows about a request besides its payload.
#[derive(Debug, Clone)]
pub struct RequestContext {
    /// The envelope id.
    pub id: String,
    /// The caller's `traceparent` (the handler's span is already its child).
    pub traceparent: String,
    /// When the caller stops waiting, if it said so.
    pub deadline: Option<Instant>,
    /// The caller's routing id: stable for one client socket.
    pub peer: Vec<u8>,
}

/// How a [`Server`] binds and behaves. [`ServerConfig::new`] gives working defaults.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Endpoint to bind, e.g. `tcp://127.0.0.1:5580` (`tcp://127.0.0.1:*` picks a port).
    pub bind: String,
    /// Shared key: when set, unsigned or wrongly signed messages are dropped.
    pub key: Option<Key>,
    /// Allow binding a non-loopback address without a key.
    pub insecure: bool,
    /// Requests handled at once, all clients together; more are answered `RESOURCE_EXHAUSTED`.
    pub max_in_flight: usize,
    /// Requests one client (one routing id) may have in flight; more are answered
    /// `RESOURCE_EXHAUSTED`, so one client cannot take the whole of `max_in_flight`.
    pub max_in_flight_per_client: usize,
    /// Capacity kept for [`ServerConfig::reserved_payloads`] only, on top of `max_in_flight`.
    pub reserved_in_flight: usize,
    /// Reserved requests one client may have in flight (so one client flooding pings cannot
    /// take the reserve either).
    pub reserved_in_flight_per_client: usize,
    /// Payload cases (`Payload::name`) that use the reserved capacity: the ones that must get
    /// through a flood, such as liveness checks, worker registration and real-time events.
    pub reserved_payloads: Vec<String>,
    /// Largest envelope accepted or sent, in bytes.
    pub max_message_size: usize,
    /// How long shutdown waits for accepted requests.
    pub drain_timeout: Duration,
    /// How long shutdown waits for the last replies to leave.
    pub linger: Duration,
    /// ZMTP heartbeat interval; a silent client is dropped after three of them.
    pub heartbeat_interval: Duration,
}

impl ServerConfig {
    /// Defaults: 1024 in flight, 512 of them from one client; 256 more for `ping`, `register`,
    /// `timeline_event` and `shutdown` (32 from one client); 64 MiB messages, 10 s drain.
    pub fn new(bind: impl Into<String>) -> Self {
        Self {
            bind: bind.into(),
            key: None,
            insecure: false,
            max_in_flight: 1024,
            max_in_flight_per_client: 512,
            reserved_in_flight: 256,
            reserved_in_flight_per_client: 32,
            reserved_payloads: DEFAULT_RESERVED_PAYLOADS.iter().map(|name| name.to_string()).collect(),
            max_message_size: wire::DEFAULT_MAX_MESSAGE_SIZE,
            drain_timeout: Duration::from_secs(10),
            linger: Duration::from_secs(2),
            heartbeat_interval: Duration::from_secs(1),
        }
    }
}

/// The payloads that have reserved capacity unless a service configures others.
pub const DEFAULT_RESERVED_PAYLOADS: [&str; 4] = ["ping", "register", "timeline_event", "shutdown"];

/// Counters of one server since it was bound.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerStats {
    /// Requests accepted and handed to the handler.
    pub requests: u64,
    /// Replies queued for sending (results and errors).
    pub replies: u64,
    /// Replies that carried an `Error`.
    pub errors: u64,
    /// Malformed messages (bad framing or envelope), answered or dropped.
    pub malformed: u64,
    /// Messages dropped for a missing or wrong signature.
    pub unauthenticated: u64,
    /// Requests answered `RESOURCE_EXHAUSTED` because `max_in_flight` (or, for reserved
    /// payloads, `reserved_in_flight`) were running.
    pub rejected_busy: u64,
    /// Requests answered `RESOURCE_EXHAUSTED` because their client already had
    /// `max_in_flight_per_client` (or `reserved_in_flight_per_client`) running.
    pub rejected_client_busy: u64,
    /// Requests answered `UNAVAILABLE` because the server was shutting down.
    pub rejected_draining: u64,
    /// Replies libzmq could not route (the client had gone) or queue (its queue was full).
    pub undeliverable: u64,
}

/// Shared counters; [`StatsHandle::snapshot`] reads them while the server runs.
#[derive(Debug, Clone, Default)]
pub struct StatsHandle(Arc<Counters>);

#[derive(Debug, Default)]
struct Counters {
    requests: AtomicU64,
    replies: AtomicU64,
    errors: AtomicU64,
    malformed: AtomicU64,
    unauthenticated: AtomicU64,
    rejected_busy: AtomicU64,
    rejected_client_busy: AtomicU64,
    rejected_draining: AtomicU64,
    undeliverable: AtomicU64,
}

impl StatsHandle {
    /// The counters now.
    pub fn snapshot(&self) -> ServerStats {
        let c = &self.0;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ServerStats {
            requests: get(&c.requests),
            replies: get(&c.replies),
            errors: get(&c.errors),
            malformed: get(&c.malformed),
            unauthenticated: get(&c.unauthenticated),
            rejected_busy: get(&c.rejected_busy),
            rejected_client_busy: get(&c.rejected_client_busy),
            rejected_draining: get(&c.rejected_draining),
            undeliverable: get(&c.undeliverable),
        }
    }
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Whether an endpoint only accepts connections from this host.
pub fn is_local_endpoint(endpoint: &str) -> bool {
    if endpoint.starts_with("ipc://") || endpoint.starts_with("inproc://") {
        return true;
    }
    let Some(rest) = endpoint.strip_prefix("tcp://") else {
        return false;
    };
    let host = match rest.rsplit_once(':') {
        Some((host, _port)) => host,
        None => rest,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Refuses a non-loopback endpoint without a shared key unless the operator said `insecure`.
pub(crate) fn check_bind_allowed(endpoint: &str, key: Option<&Key>, insecure: bool) -> Result<(), Error> {
    if key.is_none() && !insecure && !is_local_endpoint(endpoint) {
        return Err(Error::Config(format!(
            "refusing to bind {endpoint} without a shared key: anyone who can reach it could run code. \
             Configure a key (HOOT_KEY_FILE) or pass --insecure"
        )));
    }
    Ok(())
}

/// A bound HOOT/1 server, ready to [`run`](Server::run).
pub struct Server {
    config: ServerConfig,
    // Declared before `context`: the socket must close before the context terminates.
    socket: AsyncSocket,
    context: zmq::Context,
    endpoint: String,
    stats: StatsHandle,
}

impl Server {
    /// Binds the ROUTER. Refuses a non-loopback address without a key unless `insecure`.
    /// Must be called inside a tokio runtime.
    pub fn bind(config: ServerConfig) -> Result<Self, Error> {
        check_bind_allowed(&config.bind, config.key.as_ref(), config.insecure)?;
        let options = SocketOptions::new(config.max_message_size, config.heartbeat_interval);
        let context = socket::own_context();
        let (socket, endpoint) = AsyncSocket::router(&context, &config.bind, &options)?;
        Ok(Self {
            config,
            socket,
            context,
            endpoint,
            stats: StatsHandle::default(),
        })
    }

    /// The endpoint actually bound (with the real port when the config asked for `*`).
    pub fn local_endpoint(&self) -> &str {
        &self.endpoint
    }

    /// A handle to read the counters while the server runs.
    pub fn stats(&self) -> StatsHandle {
        self.stats.clone()
    }

    /// Serves until `shutdown` completes, then drains and returns the final counters.
    pub async fn run<H: Handler>(
        self,
        handler: Arc<H>,
        shutdown: impl Future<Output = ()>,
    ) -> Result<ServerStats, Error> {
        let Server {
            config,
            socket,
            context,
            endpoint,
            stats,
        } = self;
        let mut state = State {
            config,
            socket,
            handler,
            tasks: JoinSet::new(),
            running: HashMap::new(),
            load: Load::default(),
            outbox: VecDeque::new(),
            counters: stats.0.clone(),
            draining: false,
        };
        tracing::info!(%endpoint, "serving HOOT/1");
        let result = state.serve(shutdown).await;
        let State { config, socket, .. } = state;
        // Give libzmq up to `linger` to send the last replies: closing the socket and
        // terminating its own context blocks until they are out (or time is up).
        socket.set_linger(config.linger)?;
        drop(socket);
        let _ = tokio::task::spawn_blocking(move || drop(context)).await;
        tracing::info!(%endpoint, "stopped");
        result.map(|()| stats.snapshot())
    }
}

fn panicked() -> Status {
    Status::internal("the handler failed unexpectedly (panic); this is a bug in the service")
}

/// What a finished handler task yields.
struct Outcome {
    peer: Vec<u8>,
    id: String,
    result: Result<Payload, Status>,
}

/// Which capacity a request uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Ordinary,
    Reserved,
}

/// Requests in flight (running as tasks), in all and per client, for each class.
#[derive(Debug, Default)]
struct Load {
    ordinary: usize,
    reserved: usize,
    /// Per routing id: (ordinary, reserved). A client is removed when both reach zero, so
    /// the map holds only clients with requests in flight.
    clients: HashMap<Vec<u8>, (usize, usize)>,
}

/// Which cap refused a request.
struct Refusal {
    per_client: bool,
    cap: &'static str,
    limit: usize,
}

impl Load {
    fn totals(&mut self, class: Class) -> &mut usize {
        match class {
            Class::Ordinary => &mut self.ordinary,
            Class::Reserved => &mut self.reserved,
        }
    }

    fn client(&self, peer: &[u8], class: Class) -> usize {
        self.clients.get(peer).map_or(0, |&(ordinary, reserved)| match class {
            Class::Ordinary => ordinary,
            Class::Reserved => reserved,
        })
    }

    /// Whether a request of `class` from `peer` fits, or the cap it would break.
    fn admit(&self, config: &ServerConfig, peer: &[u8], class: Class) -> Result<(), Refusal> {
        let (total, client, caps) = match class {
            Class::Ordinary => (
                self.ordinary,
                self.client(peer, class),
                [
                    ("max_in_flight_per_client", config.max_in_flight_per_client),
                    ("max_in_flight", config.max_in_flight),
                ],
            ),
            Class::Reserved => (
                self.reserved,
                self.client(peer, class),
                [
                    ("reserved_in_flight_per_client", config.reserved_in_flight_per_client),
                    ("reserved_in_flight", config.reserved_in_flight),
                ],
            ),
        };
        let [(client_cap, client_limit), (total_cap, total_limit)] = caps;
        if client >= client_limit {
            return Err(Refusal {
                per_client: true,
                cap: client_cap,
                limit: client_limit,
            });
        }
        if total >= total_limit {
            return Err(Refusal {
                per_client: false,
                cap: total_cap,
                limit: total_limit,
            });
        }
        Ok(())
    }

    fn started(&mut self, peer: &[u8], class: Class) {
        *self.totals(class) += 1;
        let entry = self.clients.entry(peer.to_vec()).or_default();
        match class {
            Class::Ordinary => entry.0 += 1,
            Class::Reserved => entry.1 += 1,
        }
    }

    fn ended(&mut self, peer: &[u8], class: Class) {
        let total = self.totals(class);
        *total = total.saturating_sub(1);
        if let Entry::Occupied(mut entry) = self.clients.entry(peer.to_vec()) {
            let counts = entry.get_mut();
            match class {
                Class::Ordinary => counts.0 = counts.0.saturating_sub(1),
                Class::Reserved => counts.1 = counts.1.saturating_sub(1),
            }
            if *counts == (0, 0) {
                entry.remove();
            }
        }
    }
}

impl Refusal {
    fn status(&self, payload: &str) -> Status {
        let message = if self.per_client {
            format!(
                "this client already has {limit} requests in flight ({cap} = {limit}); `{payload}` was not started: \
                 wait for some replies before sending more",
                limit = self.limit,
                cap = self.cap
            )
        } else {
            format!(
                "server busy: {limit} requests in flight ({cap} = {limit}); `{payload}` was not started: retry later",
                limit = self.limit,
                cap = self.cap
            )
        };
        let mut details = serde_json::Map::new();
        details.insert("cap".into(), self.cap.into());
        details.insert("limit".into(), self.limit.into());
        details.insert("per_client".into(), self.per_client.into());
        Status::resource_exhausted(message).with_details(crate::wkt::Struct::from_json(details))
    }
}

struct State<H> {
    config: ServerConfig,
    socket: AsyncSocket,
    handler: Arc<H>,
    tasks: JoinSet<Outcome>,
    /// Who each running task answers (for tasks that panic or are aborted) and which
    /// capacity it holds.
    running: HashMap<tokio::task::Id, (Vec<u8>, String, Class)>,
    load: Load,
    outbox: VecDeque<Vec<Vec<u8>>>,
    counters: Arc<Counters>,
    draining: bool,
}

impl<H: Handler> State<H> {
    async fn serve(&mut self, shutdown: impl Future<Output = ()>) -> Result<(), Error> {
        tokio::pin!(shutdown);
        let mut drain_deadline: Option<Instant> = None;
        let mut aborted = false;
        loop {
            // Sends first, then receives until libzmq has nothing: ending on an empty
            // receive is what makes waiting on `ZMQ_FD` safe (see socket.rs).
            self.flush()?;
            while let Some(frames) = self.socket.try_recv()? {
                self.accept(frames);
            }
            if !self.outbox.is_empty() {
                continue;
            }
            if self.draining && self.tasks.is_empty() {
                return Ok(());
            }
            let deadline = drain_deadline.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                Some(joined) = self.tasks.join_next_with_id(), if !self.tasks.is_empty() => self.finish(joined),
                () = &mut shutdown, if !self.draining => {
                    tracing::info!(in_flight = self.tasks.len(), "shutting down: draining accepted requests");
                    self.draining = true;
                    drain_deadline = Some(Instant::now() + self.config.drain_timeout);
                }
                () = tokio::time::sleep_until(deadline), if drain_deadline.is_some() && !aborted => {
                    tracing::warn!(in_flight = self.tasks.len(), "drain deadline passed: answering the rest UNAVAILABLE");
                    aborted = true;
                    self.tasks.abort_all();
                }
                result = self.socket.wait() => result?,
            }
        }
    }

    /// Validates one inbound message and starts its handler, or answers it at once.
    fn accept(&mut self, mut frames: Vec<Vec<u8>>) {
        if frames.len() < 2 {
            bump(&self.counters.malformed);
            return;
        }
        let peer = frames.remove(0);
        let envelope = match wire::decode(&frames, self.config.key.as_ref(), self.config.max_message_size) {
            Ok(envelope) => envelope,
            Err(rejected) => {
                if rejected.error.is_auth() {
                    bump(&self.counters.unauthenticated);
                    tracing::warn!(error = %rejected.error, "dropping unauthenticated message");
                    return;
                }
                bump(&self.counters.malformed);
                tracing::warn!(error = %rejected.error, answered = rejected.reply_to.is_some(), "malformed message");
                if let Some(id) = rejected.reply_to {
                    self.reply(peer, id, Err(Status::invalid_argument(rejected.error.to_string())));
                }
                return;
            }
        };
        let Envelope {
            id,
            traceparent,
            timeout_ms,
            payload,
        } = envelope;
        let Some(payload) = payload else {
            let status =
                Status::unimplemented("the envelope has no payload this server knows (empty, or from a newer schema)");
            self.reply(peer, id, Err(status));
            return;
        };
        if self.draining {
            bump(&self.counters.rejected_draining);
            self.reply(
                peer,
                id,
                Err(Status::unavailable(
                    "server is shutting down; retry against its replacement",
                )),
            );
            return;
        }
        let class = if self.config.reserved_payloads.iter().any(|name| name == payload.name()) {
            Class::Reserved
        } else {
            Class::Ordinary
        };
        if let Err(refusal) = self.load.admit(&self.config, &peer, class) {
            bump(if refusal.per_client {
                &self.counters.rejected_client_busy
            } else {
                &self.counters.rejected_busy
            });
            tracing::debug!(
                cap = refusal.cap,
                limit = refusal.limit,
                payload = payload.name(),
                "refused: a cap is reached"
            );
            let status = refusal.status(payload.name());
            self.reply(peer, id, Err(status));
            return;
        }
        bump(&self.counters.requests);
        let span = tracing::info_span!("hoot.request", otel.name = payload.name(), request.id = %id);
        trace::set_remote_parent(&span, &traceparent);
        let timeout = (timeout_ms > 0).then(|| Duration::from_millis(u64::from(timeout_ms)));
        let context = RequestContext {
            id: id.clone(),
            traceparent,
            deadline: timeout.map(|t| Instant::now() + t),
            peer: peer.clone(),
        };
        let handler = self.handler.clone();
        let work = async move {
            let work = handler.handle(context, payload);
            match timeout {
                Some(limit) => tokio::time::timeout(limit, work).await.unwrap_or_else(|_| {
                    Err(Status::deadline_exceeded(format!(
                        "not finished within the request's {limit:?}"
                    )))
                }),
                None => work.await,
            }
        }
        .instrument(span);
        // Fast path: most handlers of cheap requests finish on their first poll; answer
        // those here without a task. The Future contract makes this sound: a future must
        // wake the waker of its most recent poll, so a pending one can move into a task.
        let mut work = Box::pin(work);
        let mut noop = std::task::Context::from_waker(std::task::Waker::noop());
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work.as_mut().poll(&mut noop))) {
            Ok(std::task::Poll::Ready(result)) => self.reply(peer, id, result),
            Ok(std::task::Poll::Pending) => {
                let (task_peer, task_id) = (peer.clone(), id.clone());
                let abort = self.tasks.spawn(async move {
                    Outcome {
                        peer: task_peer,
                        id: task_id,
                        result: work.await,
                    }
                });
                self.load.started(&peer, class);
                self.running.insert(abort.id(), (peer, id, class));
            }
            Err(_panic) => {
                tracing::error!(%id, "handler panicked");
                self.reply(peer, id, Err(panicked()));
            }
        }
    }

    /// A handler task ended: send its result, or an error if it panicked or was aborted.
    fn finish(&mut self, joined: Result<(tokio::task::Id, Outcome), tokio::task::JoinError>) {
        match joined {
            Ok((task, outcome)) => {
                if let Some((peer, _, class)) = self.running.remove(&task) {
                    self.load.ended(&peer, class);
                }
                self.reply(outcome.peer, outcome.id, outcome.result);
            }
            Err(error) => {
                let Some((peer, id, class)) = self.running.remove(&error.id()) else {
                    return;
                };
                self.load.ended(&peer, class);
                let status = if error.is_panic() {
                    tracing::error!(%id, "handler panicked");
                    panicked()
                } else {
                    Status::unavailable("server shut down before the request finished")
                };
                self.reply(peer, id, Err(status));
            }
        }
    }

    /// Encodes and queues a reply. A reply too large to send becomes `RESOURCE_EXHAUSTED`.
    fn reply(&mut self, peer: Vec<u8>, id: String, result: Result<Payload, Status>) {
        let is_error = result.is_err();
        let payload = result.unwrap_or_else(Status::into_payload);
        let mut envelope = Envelope {
            id,
            traceparent: String::new(),
            timeout_ms: 0,
            payload: Some(payload),
        };
        let key = self.config.key.as_ref();
        let max = self.config.max_message_size;
        let frames = match wire::encode(&envelope, key, max) {
            Ok(frames) => frames,
            Err(too_large) => {
                let status = Status::resource_exhausted(format!(
                    "the reply was not sent: {too_large}; ask for less (e.g. a byte range)"
                ));
                envelope.payload = Some(status.into_payload());
                match wire::encode(&envelope, key, max) {
                    Ok(frames) => frames,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot encode even an error reply");
                        return;
                    }
                }
            }
        };
        bump(&self.counters.replies);
        if is_error || matches!(envelope.payload, Some(Payload::Error(_))) {
            bump(&self.counters.errors);
        }
        let mut message = Vec::with_capacity(4);
        message.push(peer);
        message.extend(frames);
        self.outbox.push_back(message);
    }

    /// Hands queued replies to libzmq without blocking.
    fn flush(&mut self) -> Result<(), Error> {
        while let Some(message) = self.outbox.front() {
            match self.socket.try_send(message)? {
                Sent::Yes => {}
                Sent::WouldBlock | Sent::Unroutable => {
                    // The client is gone or not reading; never let it stall the server.
                    bump(&self.counters.undeliverable);
                }
            }
            self.outbox.pop_front();
        }
        Ok(())
    }
}

/// Completes on Ctrl-C or SIGTERM: the usual `shutdown` argument of [`Server::run`].
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}

/// What every service answers the same way: `ping` (who and how long up) and `shutdown`
/// (start a graceful stop). Pass [`Lifecycle::requested`] into the shutdown future.
#[derive(Debug)]
pub struct Lifecycle {
    service: &'static str,
    version: &'static str,
    instance: String,
    started: std::time::Instant,
    drain_deadline_ms: u32,
    requested: tokio::sync::Notify,
}

impl Lifecycle {
    /// For `service` (e.g. "hootenanny") at `version`, draining for up to `drain_timeout`.
    pub fn new(service: &'static str, version: &'static str, drain_timeout: Duration) -> Self {
        Self {
            service,
            version,
            instance: format!("{service}-{}", std::process::id()),
            started: std::time::Instant::now(),
            drain_deadline_ms: u32::try_from(drain_timeout.as_millis()).unwrap_or(u32::MAX),
            requested: tokio::sync::Notify::new(),
        }
    }

    /// Answers `ping` with `name` as the worker id (e.g. a `--name` flag) instead of `<service>-<pid>`.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.instance = name.into();
        self
    }

    /// The reply to `ping`.
    pub fn ping_reply(&self) -> Payload {
        Payload::PingReply(crate::v1::PingReply {
            worker_id: self.instance.clone(),
            uptime_secs: self.started.elapsed().as_secs(),
            service: self.service.into(),
            version: self.version.into(),
        })
    }

    /// Handles `shutdown`: wakes [`Lifecycle::requested`] and says how long the drain may take.
    pub fn shutdown_reply(&self, reason: &str) -> Payload {
        tracing::info!(%reason, "shutdown requested");
        self.requested.notify_one();
        Payload::ShutdownReply(crate::v1::ShutdownReply {
            drain_deadline_ms: self.drain_deadline_ms,
        })
    }

    /// Completes when a `shutdown` request has arrived.
    pub async fn requested(&self) {
        self.requested.notified().await;
    }
}
