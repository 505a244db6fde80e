//! HOOT/1 broadcasts over PUB/SUB (`schema/PROTOCOL.md` §11): `[topic, "HOOT/1",
//! signature, Broadcast]`, where the topic is the name of the `Broadcast.event` case.
//!
//! [`Publisher`] never blocks (PUB drops for slow subscribers); [`Subscriber`] filters by
//! topic prefix and skips (and counts) anything malformed or wrongly signed. Broadcasts are
//! hints: the state they announce can always be read with a request.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use prost::Message as _;

use crate::Error;
use crate::auth::{Key, SIGNATURE_LEN};
use crate::socket::{self, AsyncSocket, Sent, SocketOptions};
use crate::v1::{Broadcast, broadcast};
use crate::wire::{DEFAULT_MAX_MESSAGE_SIZE, PROTOCOL};

fn options() -> SocketOptions {
    SocketOptions::new(DEFAULT_MAX_MESSAGE_SIZE, Duration::from_secs(1))
}

fn now() -> prost_types::Timestamp {
    SystemTime::now().into()
}

/// Publishes broadcasts on a bound PUB socket. Safe to share between tasks.
pub struct Publisher {
    socket: Mutex<AsyncSocket>,
    source: String,
    key: Option<Key>,
    sequence: AtomicU64,
    dropped: AtomicU64,
    endpoint: String,
}

impl Publisher {
    /// Binds a PUB socket. `source` names the publishing service in every broadcast.
    /// Like a server, it refuses a non-loopback address without a key unless `insecure`.
    pub fn bind(endpoint: &str, source: &str, key: Option<Key>, insecure: bool) -> Result<Self, Error> {
        crate::server::check_bind_allowed(endpoint, key.as_ref(), insecure)?;
        let (socket, endpoint) = AsyncSocket::publisher(&socket::shared_context(), endpoint, &options())?;
        Ok(Self {
            socket: Mutex::new(socket),
            source: source.to_string(),
            key,
            sequence: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            endpoint,
        })
    }

    /// The endpoint actually bound.
    pub fn local_endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Publishes one event; returns its sequence number. Never blocks: when a subscriber's
    /// queue is full libzmq drops for it, and if the socket itself cannot take the message
    /// it is dropped and counted.
    pub fn publish(&self, event: broadcast::Event) -> Result<u64, Error> {
        let sequence = self.sequence.fetch_add(1, Ordering::Relaxed) + 1;
        let topic = event.name().as_bytes().to_vec();
        let body = Broadcast {
            source: self.source.clone(),
            sequence,
            sent_at: Some(now()),
            event: Some(event),
        }
        .encode_to_vec();
        let signature = self.key.as_ref().map(|k| k.sign(&body).to_vec()).unwrap_or_default();
        let frames = [topic, PROTOCOL.to_vec(), signature, body];
        let socket = self
            .socket
            .lock()
            .map_err(|_| Error::Transport("publisher lock poisoned".into()))?;
        match socket.try_send(&frames)? {
            Sent::Yes => {}
            Sent::WouldBlock | Sent::Unroutable => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(sequence)
    }

    /// Broadcasts dropped because the socket could not take them.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// Receives broadcasts from a PUB endpoint. Owned by one task.
pub struct Subscriber {
    socket: AsyncSocket,
    key: Option<Key>,
    max_message_size: usize,
    rejected: u64,
}

impl Subscriber {
    /// Connects to `endpoint` (the publisher need not be up yet) and subscribes to the given
    /// topic prefixes (`&[""]` for everything, or e.g. `&["job_"]`).
    pub fn connect(endpoint: &str, topics: &[&str], key: Option<Key>) -> Result<Self, Error> {
        let socket = AsyncSocket::subscriber(&socket::shared_context(), endpoint, topics, &options())?;
        Ok(Self {
            socket,
            key,
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            rejected: 0,
        })
    }

    /// The next valid broadcast. Malformed or wrongly signed ones are skipped and counted.
    pub async fn recv(&mut self) -> Result<Broadcast, Error> {
        loop {
            while let Some(frames) = self.socket.try_recv()? {
                match self.check(&frames) {
                    Some(broadcast) => return Ok(broadcast),
                    None => self.rejected += 1,
                }
            }
            self.socket.wait().await?;
        }
    }

    /// Messages skipped as malformed, unsigned or wrongly signed.
    pub fn rejected(&self) -> u64 {
        self.rejected
    }

    fn check(&self, frames: &[Vec<u8>]) -> Option<Broadcast> {
        let [topic, protocol, signature, body] = frames else {
            return None;
        };
        if protocol.as_slice() != PROTOCOL || body.len() > self.max_message_size {
            return None;
        }
        if let Some(key) = &self.key
            && (signature.len() != SIGNATURE_LEN || !key.verify(body, signature))
        {
            tracing::warn!("dropping a broadcast with a missing or wrong signature");
            return None;
        }
        let broadcast = Broadcast::decode(body.as_slice()).ok()?;
        // The topic must say what the body is, or prefix filtering would be a lie.
        let named = broadcast.event.as_ref().map(|e| e.name().as_bytes());
        (named == Some(topic.as_slice())).then_some(broadcast)
    }
}
