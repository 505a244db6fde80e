//! # hootenanny — the system's memory
//!
//! A HOOT/1 service (ROUTER, default `tcp://127.0.0.1:5580`) over:
//! - the shared content-addressed store (crate `cas`): `cas_store`, `cas_inspect`, `cas_get`;
//! - artifacts with tags, creators, metadata and lineage, in sled: `artifact_*`;
//! - a GraphQL graph over all of it, and device bindings: `graph_query`, `graph_bind`.
//!
//! ## Map
//! - [`bind`] (open the stores, bind HOOT/1 and gRPC health) then [`Bound::run`] (serve
//!   until `shutdown`, drain, flush), or [`run`] for both.
//! - `service`: the request handler. - `store`: where artifacts live: `artifacts` (sled, the
//!   embedded default, and the checks both stores make) or `postgres` (`--database-url`,
//!   cluster mode). - `graph`: GraphQL, its
//!   pricing and budgets ([`GraphLimits`]). - `objects`: CAS metadata read with a bound, MIME
//!   type checks, errors without paths. - `tools`: the GraphQL SDL resource (the tools
//!   themselves are declared in `schema/` and served through `hooteproto::tools::HootenannyTools`).

mod artifacts;
mod graph;
mod objects;
mod postgres;
mod service;
mod store;
mod tools;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use hooteproto::defaults;
use hooteproto::health;
use hooteproto::server::Lifecycle;
use hooteproto::{Key, Server, ServerConfig, ServerStats};

pub use graph::GraphLimits;
pub use objects::MAX_MIME;
pub use tools::GRAPH_SCHEMA_URI;

/// Name under which gRPC health reports this service (the empty name reports it too).
pub const HEALTH_SERVICE: &str = "hootenanny";

/// How to run. `Config::new` gives the documented defaults.
#[derive(Debug, Clone)]
pub struct Config {
    /// HOOT/1 ROUTER endpoint.
    pub bind: String,
    /// The shared CAS root.
    pub cas_root: PathBuf,
    /// Where blobs live beyond `cas_root`: object storage and its cache (cluster mode).
    pub blobs: cas::BlobConfig,
    /// The data directory; hootenanny keeps its sled database in `<data_dir>/hootenanny/`.
    pub data_dir: PathBuf,
    /// Where to serve grpc.health.v1 (None: not at all).
    pub health_bind: Option<SocketAddr>,
    /// Shared HMAC key.
    pub key: Option<Key>,
    /// Allow a non-loopback bind without a key.
    pub insecure: bool,
    /// How long shutdown waits for accepted requests.
    pub drain_timeout: Duration,
    /// Largest envelope accepted or sent.
    pub max_message_size: usize,
    /// What one `graph_query` may cost and spend.
    pub graph: GraphLimits,
    /// PostgreSQL for artifacts, lineage and bindings (cluster mode; None: sled under
    /// `data_dir`).
    pub database_url: Option<String>,
}

impl Config {
    /// Defaults from the project conventions.
    pub fn new(data_dir: PathBuf) -> Self {
        Self {
            bind: defaults::HOOTENANNY.bind.into(),
            cas_root: data_dir.join("cas"),
            blobs: cas::BlobConfig::default(),
            data_dir,
            health_bind: Some(defaults::HOOTENANNY.health_addr()),
            key: None,
            insecure: false,
            drain_timeout: Duration::from_secs(10),
            max_message_size: hooteproto::wire::DEFAULT_MAX_MESSAGE_SIZE,
            graph: GraphLimits::default(),
            database_url: None,
        }
    }
}

/// Serves until `shutdown` completes (or a `shutdown` request arrives), then stops taking
/// requests, answers the accepted ones, flushes the database and returns the counters.
pub async fn run(config: Config, shutdown: impl Future<Output = ()> + Send) -> anyhow::Result<ServerStats> {
    bind(config).await?.run(shutdown).await
}

/// A hootenanny whose stores are open and whose sockets are bound (so `tcp://127.0.0.1:*`
/// has become a real port and clients may connect), ready to [`Bound::run`].
pub struct Bound {
    server: Server,
    service: Arc<service::Service>,
    store: store::Store,
    health: Option<health::HealthServer>,
    lifecycle: Arc<Lifecycle>,
}

/// Opens the CAS and the database and binds every socket, without serving yet.
pub async fn bind(config: Config) -> anyhow::Result<Bound> {
    let cas = cas::Cas::open_with(&config.cas_root, &config.blobs)
        .with_context(|| format!("opening the CAS at {}", config.cas_root.display()))?;
    let cas_described = cas.describe();
    let db_dir = config.data_dir.join("hootenanny").join("db");
    let store = store::Store::open(config.database_url.as_deref(), &db_dir).await?;

    let mut server_config = ServerConfig::new(config.bind.clone());
    server_config.key = config.key.clone();
    server_config.insecure = config.insecure;
    server_config.drain_timeout = config.drain_timeout;
    server_config.max_message_size = config.max_message_size;
    let server = Server::bind(server_config)?;

    let health = health::start_if(config.health_bind, HEALTH_SERVICE).await?;

    let lifecycle = Arc::new(Lifecycle::new(
        "hootenanny",
        env!("CARGO_PKG_VERSION"),
        config.drain_timeout,
    ));
    let service = Arc::new(service::Service {
        schema: graph::schema(store.clone(), cas.clone(), &config.graph),
        graph_limits: config.graph.clone(),
        graph_slots: Arc::new(tokio::sync::Semaphore::new(config.graph.max_concurrent.max(1))),
        cas,
        store: store.clone(),
        lifecycle: lifecycle.clone(),
        // Room for the envelope around the bytes.
        max_reply_bytes: config.max_message_size.saturating_sub(64 * 1024) as u64,
    });
    tracing::info!(endpoint = %server.local_endpoint(), cas = %cas_described, store = store.describe(), "hootenanny ready");
    Ok(Bound {
        server,
        service,
        store,
        health,
        lifecycle,
    })
}

impl Bound {
    /// The HOOT/1 endpoint actually bound.
    pub fn endpoint(&self) -> &str {
        self.server.local_endpoint()
    }

    /// Serves until `shutdown` (see [`run`]).
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> anyhow::Result<ServerStats> {
        let Bound {
            server,
            service,
            store,
            health,
            lifecycle,
        } = self;
        let stop = health::drain_trigger(shutdown, &lifecycle, health.as_ref());
        let stats = server.run(service, stop).await?;
        store
            .flush()
            .await
            .map_err(|e| anyhow::anyhow!("final flush failed: {e}"))?;
        if let Some(health) = health {
            health.stop().await;
        }
        Ok(stats)
    }
}
