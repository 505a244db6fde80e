//! # luanette — Lua orchestration
//!
//! A HOOT/1 service (ROUTER, default `tcp://127.0.0.1:5570`) that runs Lua safely.
//! So far it serves `ping`, `shutdown`, `list_tools`, `lua_eval` and stored scripts
//! (`script_store`, `lua_describe`, `script_search`); jobs, resources, prompts and broadcasts
//! come next (issue 4).
//!
//! ## Map
//! - [`sandbox`]: a fresh restricted Lua 5.4 VM per evaluation, limits that really stop it,
//!   captured output, Lua ⇄ `google.protobuf.Value`.
//! - `runner`: the thread pool scripts run on (never the async runtime).
//! - `scripts`: stored scripts (source in the CAS, index in sled).
//! - `service`: the request handler. - [`run`]: serve until shutdown, then drain.

mod runner;
pub mod sandbox;
mod scripts;
mod service;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use hooteproto::health;
use hooteproto::server::Lifecycle;
use hooteproto::{Key, Server, ServerConfig, ServerStats};

/// Name under which gRPC health reports this service.
pub const HEALTH_SERVICE: &str = "luanette";

/// How to run. `Config::new` gives the documented defaults.
#[derive(Debug, Clone)]
pub struct Config {
    /// HOOT/1 ROUTER endpoint.
    pub bind: String,
    /// The shared CAS root.
    pub cas_root: PathBuf,
    /// The data directory; luanette keeps its index in `<data_dir>/luanette/`.
    pub data_dir: PathBuf,
    /// Where to serve grpc.health.v1 (None: not at all).
    pub health_bind: Option<SocketAddr>,
    /// Shared HMAC key.
    pub key: Option<Key>,
    /// Allow a non-loopback bind without a key.
    pub insecure: bool,
    /// Scripts that run at once.
    pub max_scripts: usize,
    /// Scripts that may wait for a free runner.
    pub max_queued: usize,
    /// Limits of one evaluation (a request's own deadline can only shorten the time).
    pub limits: sandbox::Limits,
    /// How long shutdown waits for accepted requests.
    pub drain_timeout: Duration,
}

impl Config {
    /// Defaults from the project conventions.
    pub fn new(data_dir: PathBuf) -> Self {
        Self {
            bind: "tcp://127.0.0.1:5570".into(),
            cas_root: data_dir.join("cas"),
            data_dir,
            health_bind: Some(SocketAddr::from(([127, 0, 0, 1], 6570))),
            key: None,
            insecure: false,
            max_scripts: 16,
            max_queued: 1024,
            limits: sandbox::Limits::default(),
            drain_timeout: Duration::from_secs(10),
        }
    }
}

/// Serves until `shutdown` completes (or a `shutdown` request arrives), then drains:
/// scripts still running at the drain deadline are cancelled and answered UNAVAILABLE.
pub async fn run(config: Config, shutdown: impl Future<Output = ()> + Send) -> anyhow::Result<ServerStats> {
    let mut server_config = ServerConfig::new(config.bind.clone());
    server_config.key = config.key.clone();
    server_config.insecure = config.insecure;
    server_config.drain_timeout = config.drain_timeout;
    let cas = cas::Cas::open(&config.cas_root)
        .with_context(|| format!("opening the CAS at {}", config.cas_root.display()))?;
    let index_dir = config.data_dir.join("luanette").join("db");
    let scripts =
        scripts::Scripts::open(cas, &index_dir).with_context(|| format!("opening sled at {}", index_dir.display()))?;
    let server = Server::bind(server_config)?;
    let health = health::start_if(config.health_bind, HEALTH_SERVICE).await?;
    let lifecycle = Arc::new(Lifecycle::new(
        "luanette",
        env!("CARGO_PKG_VERSION"),
        config.drain_timeout,
    ));
    let service = Arc::new(service::Service {
        runner: runner::Runner::new(config.max_scripts, config.max_queued)?,
        scripts,
        limits: config.limits,
        lifecycle: lifecycle.clone(),
    });
    tracing::info!(endpoint = %server.local_endpoint(), scripts = config.max_scripts, "luanette ready");
    let stop = health::drain_trigger(shutdown, &lifecycle, health.as_ref());
    let stats = server.run(service, stop).await?;
    if let Some(health) = health {
        health.stop().await;
    }
    Ok(stats)
}
