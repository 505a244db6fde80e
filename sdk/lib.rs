//! # hooteproto — the Hootenanny protocol SDK
//!
//! Every Hootenanny service, the `holler` CLI and the gateway speak HOOT/1: protobuf
//! [`v1::Envelope`]s over ZeroMQ DEALER/ROUTER sockets (libzmq), as specified in
//! `schema/PROTOCOL.md`. This crate is the Rust side of that contract.
//!
//! ## Map of the crate
//! - [`v1`]: the message types, generated at build time from `schema/hooteproto/v1/*.proto`
//!   (prost + protox; no system `protoc`). Payload helpers (`name`, `is_idempotent`) and the
//!   [`Request`] impls that pair each request with its reply are generated too.
//! - [`wire`]: HOOT/1 framing — `["HOOT/1", signature, envelope]`, size limits, malformed input.
//! - [`auth`]: the optional shared key (HMAC-SHA256 signatures), found the same way by every
//!   program (`--key-file`, `HOOT_KEY_FILE`, `HOOT_KEY`, `<data dir>/hoot.key`), created 0600 by
//!   `holler up`; constant-time comparison of other secrets (bearer tokens).
//! - [`client`]: [`Client`], a DEALER for async callers: many concurrent requests, deadlines,
//!   retries of idempotent requests, reconnection after a server restart.
//! - [`server`]: [`Server`], a ROUTER that runs a [`Handler`] per request with bounded
//!   concurrency (in all and per client, with capacity reserved for `ping`, `register`,
//!   `timeline_event` and `shutdown`) and drains gracefully on shutdown.
//! - [`broadcast`]: [`broadcast::Publisher`] and [`broadcast::Subscriber`] for `Broadcast`s over PUB/SUB.
//! - `telemetry` (feature `telemetry`): logging + OpenTelemetry (OTLP/HTTP) setup for service binaries.
//! - [`trace`]: W3C `traceparent` propagation between `tracing` spans across processes.
//! - [`json`]: the schema at run time (descriptor pool) and proto3 JSON for any message; the
//!   tool JSON form agents see (short enum names, descriptions from comments, JSON Schemas).
//! - [`tools`]: the tool catalog, routing and per-service handler traits, generated from the
//!   schema's `(hooteproto.v1.tool)` options.
//! - [`canonical`]: deterministic encoding (maps sorted by key) for messages built at run time.
//! - [`wkt`]: [`wkt::Struct`], `google.protobuf.Struct` kept encoded until read (free-form JSON
//!   objects are mostly passed along, and decoding them was most of an envelope's decode cost).
//! - `health` (feature `health`): grpc.health.v1 for service binaries.
//! - [`defaults`]: the conventional endpoints and ports (the only place they are written).
//! - `cli` (feature `cli`): the flags every service binary shares (`--bind`, `--health-bind`,
//!   `--key-file`, `--insecure`, `--otlp-endpoint`, `--log-json`, `--data-dir`, `--cas-root`),
//!   declared once as a clap `Args` struct to flatten.
//! - [`dirs`]: the shared data directory and CAS root conventions; a private data dir (0700,
//!   umask 077).
//! - [`durable`]: group commit for acknowledging writes only once they are on disk (one flush
//!   at a time, shared by every caller that asked before it began).
//! - [`error`]: [`Status`] (a canonical error on the wire) and [`Error`] (what a call can fail with).
//!
//! Only the private `socket` module touches libzmq; nothing else in the project should.
//!
//! ## Example
//! ```no_run
//! use hooteproto::{Client, ClientConfig, v1::PingRequest};
//! # async fn demo() -> Result<(), hooteproto::Error> {
//! let client = Client::connect(ClientConfig::new("tcp://127.0.0.1:5580"))?;
//! let pong = client.call(PingRequest {}).await?;
//! println!("{} up for {} s", pong.service, pong.uptime_secs);
//! # Ok(()) }
//! ```

pub mod auth;
pub mod broadcast;
pub mod canonical;
#[cfg(feature = "cli")]
pub mod cli;
pub mod client;
pub mod defaults;
pub mod dirs;
pub mod durable;
pub mod error;
#[cfg(feature = "health")]
pub mod health;
pub mod json;
pub mod server;
mod socket;
#[cfg(feature = "telemetry")]
pub mod telemetry;
pub mod tools;
pub mod trace;
pub mod wire;
pub mod wkt;

/// Generated types of package `hooteproto.v1`.
#[allow(missing_docs, clippy::all)]
pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/hooteproto.v1.rs"));
    include!(concat!(env!("OUT_DIR"), "/payload_meta.rs"));
}

pub use auth::Key;
pub use client::{Client, ClientConfig, ClientStats, RequestOptions};
pub use error::{Error, Status};
pub use server::{Handler, RequestContext, Server, ServerConfig, ServerStats};

/// The protocol frame this SDK speaks.
pub const PROTOCOL: &str = "HOOT/1";

/// A request message paired with its typed reply (generated for every `foo`/`foo_reply`
/// pair of the `Envelope.payload` oneof).
pub trait Request: Sized + Send + 'static {
    /// The reply message.
    type Reply;
    /// Wraps the request as an envelope payload.
    fn into_payload(self) -> v1::envelope::Payload;
    /// Unwraps the typed reply, or gives back a payload of another kind.
    #[allow(clippy::result_large_err)] // the Err path is cold: it only reports a protocol mismatch
    fn reply_from(payload: v1::envelope::Payload) -> Result<Self::Reply, v1::envelope::Payload>;
}

/// Compiles the README's Rust example as a doctest, so the README cannot drift from the API.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
