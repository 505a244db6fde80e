//! The only module that touches libzmq: DEALER/ROUTER sockets with the options HOOT/1
//! wants, driven from tokio through the socket's `ZMQ_FD`.
//!
//! `ZMQ_FD` is edge-triggered and only says "`ZMQ_EVENTS` may have changed". Any libzmq
//! call may consume that signal, so the owner's last call before [`AsyncSocket::wait`]
//! must be a [`AsyncSocket::try_recv`] that found nothing: it processes libzmq's pending
//! commands unthrottled, so anything arriving later raises a fresh edge. (Checking
//! `ZMQ_EVENTS` instead costs a `poll()` syscall each time.) One task owns each socket.

use std::os::fd::{AsRawFd, RawFd};
use std::sync::OnceLock;
use std::time::Duration;

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use crate::Error;

/// The context shared by all clients in a process (one libzmq I/O thread).
pub(crate) fn shared_context() -> zmq::Context {
    static CONTEXT: OnceLock<zmq::Context> = OnceLock::new();
    CONTEXT.get_or_init(zmq::Context::new).clone()
}

/// A new context, for a server that must wait for its last replies to leave on shutdown.
pub(crate) fn own_context() -> zmq::Context {
    zmq::Context::new()
}

struct ZmqFd(RawFd);

impl AsRawFd for ZmqFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

/// Settings common to both socket kinds.
#[derive(Debug, Clone)]
pub(crate) struct SocketOptions {
    pub max_message_size: usize,
    pub heartbeat_interval: Duration,
    pub heartbeat_timeout: Duration,
    pub linger: Duration,
    pub high_water_mark: i32,
}

impl SocketOptions {
    /// The options HOOT/1 recommends (PROTOCOL.md §10): heartbeat timeout of three
    /// intervals, no linger, a 10,000-message queue each way.
    pub fn new(max_message_size: usize, heartbeat_interval: Duration) -> Self {
        Self {
            max_message_size,
            heartbeat_interval,
            heartbeat_timeout: heartbeat_interval * 3,
            linger: Duration::ZERO,
            high_water_mark: 10_000,
        }
    }
}

/// What happened to a non-blocking send.
pub(crate) enum Sent {
    /// Queued in libzmq.
    Yes,
    /// The socket's queue is full; try again once [`AsyncSocket::wait`] returns.
    WouldBlock,
    /// A ROUTER has no peer with this routing id (it disconnected).
    Unroutable,
}

pub(crate) struct AsyncSocket {
    // Declared before `socket` so the fd is deregistered before libzmq closes it.
    fd: AsyncFd<ZmqFd>,
    socket: zmq::Socket,
}

fn millis(d: Duration) -> i32 {
    i32::try_from(d.as_millis()).unwrap_or(i32::MAX)
}

impl AsyncSocket {
    fn new(context: &zmq::Context, kind: zmq::SocketType, options: &SocketOptions) -> Result<Self, Error> {
        // Registering the fd (and spawning I/O tasks) needs a reactor: say so instead of panicking.
        tokio::runtime::Handle::try_current()
            .map_err(|_| Error::Config("HOOT/1 sockets must be created inside a tokio runtime".into()))?;
        let socket = context.socket(kind)?;
        socket.set_linger(millis(options.linger))?;
        socket.set_maxmsgsize(i64::try_from(options.max_message_size).unwrap_or(i64::MAX))?;
        socket.set_heartbeat_ivl(millis(options.heartbeat_interval))?;
        socket.set_heartbeat_timeout(millis(options.heartbeat_timeout))?;
        socket.set_heartbeat_ttl(millis(options.heartbeat_timeout))?;
        socket.set_sndhwm(options.high_water_mark)?;
        socket.set_rcvhwm(options.high_water_mark)?;
        let raw = ZmqFd(socket.get_fd()?);
        // SAFETY: `ZMQ_FD` is a valid descriptor owned by `socket`, which lives in the
        // same struct and is dropped after `fd` (field order), and libzmq never swaps it.
        let fd = unsafe { AsyncFd::register_with_interest(raw, Interest::READABLE) }
            .map_err(|e| Error::Transport(format!("cannot watch the socket: {e}")))?;
        Ok(Self { fd, socket })
    }

    /// A DEALER that connects to `endpoint`. Never blocks and does not need the peer to be up.
    pub fn dealer(
        context: &zmq::Context,
        endpoint: &str,
        routing_id: &str,
        options: &SocketOptions,
        reconnect_max: Duration,
    ) -> Result<Self, Error> {
        let this = Self::new(context, zmq::DEALER, options)?;
        this.socket.set_identity(routing_id.as_bytes())?;
        this.socket.set_reconnect_ivl(100)?;
        this.socket.set_reconnect_ivl_max(millis(reconnect_max))?;
        this.socket
            .connect(endpoint)
            .map_err(|e| Error::Config(format!("cannot connect to {endpoint:?}: {e}")))?;
        Ok(this)
    }

    /// A ROUTER bound to `endpoint`; returns it with the endpoint actually bound
    /// (`tcp://127.0.0.1:*` picks a free port).
    pub fn router(context: &zmq::Context, endpoint: &str, options: &SocketOptions) -> Result<(Self, String), Error> {
        let this = Self::new(context, zmq::ROUTER, options)?;
        this.socket.set_router_mandatory(true)?;
        // A client that reconnects with its old routing id before we noticed the old
        // connection died takes the id over instead of being refused.
        this.socket.set_router_handover(true)?;
        let bound = this.bind(endpoint)?;
        Ok((this, bound))
    }

    /// A PUB socket bound to `endpoint`; returns it with the endpoint actually bound.
    pub fn publisher(context: &zmq::Context, endpoint: &str, options: &SocketOptions) -> Result<(Self, String), Error> {
        let this = Self::new(context, zmq::PUB, options)?;
        let bound = this.bind(endpoint)?;
        Ok((this, bound))
    }

    /// Binds and returns the endpoint actually bound (the real port for `*`).
    fn bind(&self, endpoint: &str) -> Result<String, Error> {
        self.socket
            .bind(endpoint)
            .map_err(|e| Error::Transport(format!("cannot bind {endpoint:?}: {e}")))?;
        self.socket
            .get_last_endpoint()?
            .map_err(|raw| Error::Transport(format!("bound endpoint is not UTF-8: {raw:?}")))
    }

    /// A SUB socket connected to `endpoint`, subscribed to each topic prefix.
    pub fn subscriber(
        context: &zmq::Context,
        endpoint: &str,
        topics: &[&str],
        options: &SocketOptions,
    ) -> Result<Self, Error> {
        let this = Self::new(context, zmq::SUB, options)?;
        this.socket.set_reconnect_ivl(100)?;
        this.socket.set_reconnect_ivl_max(500)?;
        for topic in topics {
            this.socket.set_subscribe(topic.as_bytes())?;
        }
        this.socket
            .connect(endpoint)
            .map_err(|e| Error::Config(format!("cannot connect to {endpoint:?}: {e}")))?;
        Ok(this)
    }

    /// The next whole message, if one is queued.
    pub fn try_recv(&self) -> Result<Option<Vec<Vec<u8>>>, Error> {
        let mut frames = Vec::new();
        loop {
            match retry_interrupted(|| self.socket.recv_bytes(zmq::DONTWAIT)) {
                Ok(frame) => frames.push(frame),
                // Only the first frame can be missing: libzmq delivers a message whole or not at all.
                Err(zmq::Error::EAGAIN) if frames.is_empty() => return Ok(None),
                Err(e) => return Err(e.into()),
            }
            if !retry_interrupted(|| self.socket.get_rcvmore())? {
                return Ok(Some(frames));
            }
        }
    }

    /// Queues a whole message without blocking.
    pub fn try_send(&self, frames: &[Vec<u8>]) -> Result<Sent, Error> {
        let last = frames.len().saturating_sub(1);
        for (i, frame) in frames.iter().enumerate() {
            let flags = if i < last {
                zmq::DONTWAIT | zmq::SNDMORE
            } else {
                zmq::DONTWAIT
            };
            match retry_interrupted(|| self.socket.send(&frame[..], flags)) {
                Ok(()) => {}
                // libzmq decides at the first frame; once it is taken, the rest are too.
                Err(zmq::Error::EAGAIN) if i == 0 => return Ok(Sent::WouldBlock),
                Err(zmq::Error::EHOSTUNREACH) if i == 0 => return Ok(Sent::Unroutable),
                Err(e) => return Err(e.into()),
            }
        }
        Ok(Sent::Yes)
    }

    /// Waits until the socket's events may have changed. The future borrows only the
    /// fd (the libzmq socket is not `Sync`), so the owning task stays `Send`.
    pub fn wait(&self) -> impl std::future::Future<Output = Result<(), Error>> + Send + '_ {
        let fd = &self.fd;
        async move {
            let mut guard = fd
                .readable()
                .await
                .map_err(|e| Error::Transport(format!("waiting on the socket failed: {e}")))?;
            guard.clear_ready();
            Ok(())
        }
    }

    /// A PAIR socket that receives a message each time one of this socket's connections
    /// drops (`ZMQ_EVENT_DISCONNECTED`: the peer died, closed, or missed its heartbeats).
    /// Same rule as the socket itself: drain it with [`AsyncSocket::try_recv`] before waiting.
    pub fn disconnect_monitor(&self, context: &zmq::Context, name: &str) -> Result<Self, Error> {
        let address = format!("inproc://hoot-monitor-{name}");
        self.socket
            .monitor(&address, zmq::SocketEvent::DISCONNECTED as i32)
            .map_err(|e| Error::Transport(format!("cannot monitor the socket: {e}")))?;
        let options = SocketOptions::new(crate::wire::DEFAULT_MAX_MESSAGE_SIZE, Duration::ZERO);
        let monitor = Self::new(context, zmq::PAIR, &options)?;
        monitor
            .socket
            .connect(&address)
            .map_err(|e| Error::Transport(format!("cannot read the socket's events: {e}")))?;
        Ok(monitor)
    }

    /// Stops the monitor [`AsyncSocket::disconnect_monitor`] started; no event is sent after
    /// this returns. Call it before closing either socket: libzmq sends events blocking, so
    /// an event for a monitor whose reader has gone would stall the context's I/O thread.
    pub fn stop_monitor(&mut self) {
        // SAFETY: the socket is open and owned by `self`; a NULL endpoint deregisters its
        // monitor (zmq_socket_monitor(3)), under libzmq's own lock, in this thread.
        unsafe {
            zmq_sys::zmq_socket_monitor(self.socket.as_mut_ptr(), std::ptr::null(), 0);
        }
    }

    /// Changes how long unsent messages are kept when the socket closes.
    pub fn set_linger(&self, linger: Duration) -> Result<(), Error> {
        Ok(self.socket.set_linger(millis(linger))?)
    }
}

/// Runs a libzmq call again while it fails with EINTR. Even a non-blocking call processes
/// the socket's pending commands first, and that wait returns EINTR when a signal (SIGTERM,
/// which starts a graceful shutdown) lands on this thread; nothing was sent or received.
/// Retrying each frame, not each message, keeps a multipart message whole.
fn retry_interrupted<T>(mut call: impl FnMut() -> Result<T, zmq::Error>) -> Result<T, zmq::Error> {
    loop {
        match call() {
            Err(zmq::Error::EINTR) => continue,
            other => return other,
        }
    }
}
