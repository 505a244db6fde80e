//! `holler up`: Luanette, Hootenanny, Chaosgarden and the MCP gateway in one process, on
//! the default loopback ports, sharing one data directory that persists between runs. The
//! services still talk HOOT/1 over loopback ZMQ: the same code paths as a split deployment.
//! With a key (the default: the CLI passes `<data dir>/hoot.key`), every service drops unsigned
//! messages, the gateway signs what it sends, and broadcasts are signed and checked.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;

use crate::backends::{Backends, Endpoints};
use crate::serve::{self, ServeConfig};

/// What `holler up` starts.
pub struct UpConfig {
    /// The shared data directory (CAS and each service's state under it).
    pub data_dir: PathBuf,
    /// The gateway's HTTP address.
    pub listen: SocketAddr,
    /// The three backends' endpoints (defaults: :5570, :5580, :5555).
    pub endpoints: Endpoints,
    /// A bearer token the gateway requires, if any.
    pub token: Option<String>,
    /// The shared key every service requires and the gateway signs with, and where it came
    /// from (shown, never the key). None: unsigned (`--insecure`).
    pub key: Option<(hooteproto::Key, hooteproto::auth::KeySource)>,
    /// Chaosgarden's audio output.
    pub audio: chaosgarden::Output,
    /// Serve grpc.health.v1 on the conventional ports (:6570, :6580, :6555).
    pub health: bool,
    /// Luanette's broadcast endpoint (None: no broadcasts).
    pub broadcasts: Option<String>,
}

/// Runs the stack until `shutdown`; then stops the gateway and drains every service.
pub async fn run(
    config: UpConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let cas_root = config.data_dir.join("cas");
    let key = config.key.as_ref().map(|(key, _)| key.clone());
    let (stop_tx, _) = tokio::sync::broadcast::channel::<()>(1);
    let stopped = |tx: &tokio::sync::broadcast::Sender<()>| {
        let mut rx = tx.subscribe();
        async move {
            let _ = rx.recv().await;
        }
    };

    let mut lua = luanette::Config::new(config.data_dir.clone());
    lua.bind = config.endpoints.luanette.clone();
    lua.cas_root = cas_root.clone();
    lua.pub_bind = config.broadcasts.clone();
    lua.key = key.clone();
    if !config.health {
        lua.health_bind = None;
    }
    let lua = luanette::bind(lua).await.context("starting luanette")?;

    let mut hoot = hootenanny::Config::new(config.data_dir.clone());
    hoot.bind = config.endpoints.hootenanny.clone();
    hoot.cas_root = cas_root.clone();
    hoot.key = key.clone();
    if !config.health {
        hoot.health_bind = None;
    }

    let mut garden = chaosgarden::Config::new(config.data_dir.clone());
    garden.bind = config.endpoints.chaosgarden.clone();
    garden.luanette = Some(config.endpoints.luanette.clone());
    garden.cas_root = cas_root;
    garden.output = config.audio.clone();
    garden.key = key.clone();
    if !config.health {
        garden.health_bind = None;
    }
    let garden = chaosgarden::bind(garden).await.context("starting chaosgarden")?;

    let backends = Arc::new(Backends::connect(config.endpoints.clone(), key.clone(), "holler")?);
    let gateway = serve::bind(
        ServeConfig {
            listen: config.listen,
            allowed_origins: Vec::new(),
            token: config.token.clone(),
            broadcasts: config.broadcasts.clone(),
            key: key.clone(),
        },
        backends,
    )
    .await
    .with_context(|| format!("binding the MCP gateway on {}", config.listen))?;
    let url = format!("http://{}/mcp", gateway.local_addr()?);

    let tasks = vec![
        tokio::spawn({
            let stop = stopped(&stop_tx);
            async move { lua.run(stop).await.map(|_| ()) }
        }),
        tokio::spawn({
            let stop = stopped(&stop_tx);
            async move { hootenanny::run(hoot, stop).await.map(|_| ()) }
        }),
        tokio::spawn({
            let stop = stopped(&stop_tx);
            async move { garden.run(stop).await.map(|_| ()) }
        }),
        tokio::spawn({
            let stop = stopped(&stop_tx);
            async move { gateway.run(stop).await }
        }),
    ];
    println!("Hootenanny is up. Data: {}", config.data_dir.display());
    println!("  MCP (Streamable HTTP): {url}");
    println!(
        "  luanette {}  hootenanny {}  chaosgarden {}",
        config.endpoints.luanette, config.endpoints.hootenanny, config.endpoints.chaosgarden
    );
    match &config.key {
        Some((_, source)) => {
            tracing::info!(key = %source, "HOOT/1 messages must be signed");
            println!("  key: {source}: the services obey only messages signed with it; the CLI and clients");
            println!("       find it there (or pass --key-file / set HOOT_KEY_FILE)");
        }
        None => {
            tracing::warn!("running without a key (--insecure): any local process can run code and stop services");
            println!("  no key (--insecure): any local process can run code and stop the services");
        }
    }
    if config.token.is_some() {
        println!("  the gateway requires Authorization: Bearer <token>");
    }
    println!("Connect an MCP client to {url} (e.g. `claude mcp add --transport http hootenanny {url}`),");
    println!("or use the CLI directly: `holler ping`, `holler lua 'return 1 + 1'`. Ctrl-C stops everything.");
    shutdown.await;
    tracing::info!("stopping the stack");
    let _ = stop_tx.send(());
    let mut failure = None;
    for task in tasks {
        match task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failure = Some(e),
            Err(e) => failure = Some(anyhow::anyhow!("a service task failed: {e}")),
        }
    }
    match failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
