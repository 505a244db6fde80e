//! `holler up`: Luanette, Hootenanny, Chaosgarden and the MCP gateway in one process, on
//! the default loopback ports, sharing one data directory that persists between runs. The
//! services still talk HOOT/1 over loopback ZMQ: the same code paths as a split deployment.
//! With a key (the default: the CLI passes `<data dir>/hoot.key`), every service drops unsigned
//! messages, the gateway signs what it sends, and broadcasts are signed and checked.
//!
//! [`start`] brings up the three services alone ([`Stack`]); `holler mcp --up` puts MCP over
//! stdio in front of them, and [`run`] (`holler up`) the HTTP gateway.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use tokio::task::JoinHandle;

use crate::backends::{Backends, Endpoints};
use crate::serve::{self, ServeConfig};

/// The three services `holler up` and `holler mcp --up` start.
pub struct StackConfig {
    /// The shared data directory (CAS and each service's state under it).
    pub data_dir: PathBuf,
    /// The three backends' endpoints (defaults: [`hooteproto::defaults`]).
    pub endpoints: Endpoints,
    /// The shared key every service requires and the gateway signs with, and where it came
    /// from (shown, never the key). None: unsigned (`--insecure`).
    pub key: Option<(hooteproto::Key, hooteproto::auth::KeySource)>,
    /// Chaosgarden's audio output.
    pub audio: chaosgarden::Output,
    /// The SoundFont for MIDI regions (None: a system GM SoundFont, else the built-in one).
    pub soundfont: Option<PathBuf>,
    /// The most bytes Chaosgarden's decoded media may hold.
    pub media_budget: u64,
    /// Serve grpc.health.v1 on the conventional ports ([`hooteproto::defaults`]).
    pub health: bool,
    /// Luanette's broadcast endpoint (None: no broadcasts).
    pub broadcasts: Option<String>,
    /// Let scripts move the transport (`garden.play/stop/seek`).
    pub allow_transport_from_lua: bool,
    /// Cluster mode: PostgreSQL for Hootenanny's artifacts and Luanette's job queue (whose
    /// jobs this stack's Luanette runs with a local worker, and `luanette worker`s on other
    /// hosts too). None: the embedded default (sled).
    pub database_url: Option<String>,
    /// Where blobs live: the CAS under the data directory (the default), or object storage
    /// read through a cache (cluster mode), for all three services.
    pub blobs: cas::BlobConfig,
}

/// What `holler up` starts: the services and the MCP gateway over HTTP.
pub struct UpConfig {
    /// The services.
    pub stack: StackConfig,
    /// The gateway's HTTP address.
    pub listen: SocketAddr,
    /// A bearer token the gateway requires, if any.
    pub token: Option<String>,
}

/// The three services, running.
pub struct Stack {
    tasks: Vec<JoinHandle<anyhow::Result<()>>>,
    stop: tokio::sync::broadcast::Sender<()>,
    /// Clients for the three services, signing with the stack's key.
    pub backends: Arc<Backends>,
    /// Which SoundFont MIDI regions play through (a path, or the built-in font).
    pub soundfont: String,
    /// The CAS the services share, for the gateway's studio to read media from directly.
    pub cas: Option<cas::Cas>,
    /// Chaosgarden's transport, for the studio's playhead.
    pub transport: crate::studio::events::LocalTransport,
}

/// Starts Luanette, Hootenanny and Chaosgarden on their endpoints, sharing the data directory.
/// Each is bound (its stores open, its sockets listening) before this returns, so a client
/// connecting once it has returned reaches a service, and a port in use fails it here.
pub async fn start(config: &StackConfig) -> anyhow::Result<Stack> {
    let cas_root = config.data_dir.join("cas");
    let key = config.key.as_ref().map(|(key, _)| key.clone());
    let (stop, _) = tokio::sync::broadcast::channel::<()>(1);
    let stopped = |tx: &tokio::sync::broadcast::Sender<()>| {
        let mut rx = tx.subscribe();
        async move {
            let _ = rx.recv().await;
        }
    };

    let mut lua = luanette::Config::new(config.data_dir.clone());
    lua.bind = config.endpoints.luanette.clone();
    lua.cas_root = cas_root.clone();
    lua.blobs = config.blobs.clone();
    lua.pub_bind = config.broadcasts.clone();
    lua.key = key.clone();
    // Scripts reach the other two with `garden.*` and `hoot.*`.
    lua.peers = luanette::stdlib::Peers {
        chaosgarden: Some(config.endpoints.chaosgarden.clone()),
        hootenanny: Some(config.endpoints.hootenanny.clone()),
        key: key.clone(),
        allow_transport: config.allow_transport_from_lua,
    };
    if let Some(url) = &config.database_url {
        lua.cluster = Some(luanette::cluster::ClusterConfig::new(url.clone()));
        lua.local_workers = 1;
    }
    if !config.health {
        lua.health_bind = None;
    }
    let lua = luanette::bind(lua).await.context("starting luanette")?;

    let mut hoot = hootenanny::Config::new(config.data_dir.clone());
    hoot.bind = config.endpoints.hootenanny.clone();
    hoot.cas_root = cas_root.clone();
    hoot.blobs = config.blobs.clone();
    hoot.key = key.clone();
    hoot.database_url = config.database_url.clone();
    if !config.health {
        hoot.health_bind = None;
    }
    let hoot = hootenanny::bind(hoot).await.context("starting hootenanny")?;

    let mut garden = chaosgarden::Config::new(config.data_dir.clone());
    garden.bind = config.endpoints.chaosgarden.clone();
    garden.luanette = Some(config.endpoints.luanette.clone());
    garden.cas_root = cas_root.clone();
    garden.blobs = config.blobs.clone();
    garden.output = config.audio.clone();
    garden.soundfont = config.soundfont.clone();
    garden.media_budget = config.media_budget;
    garden.key = key.clone();
    if !config.health {
        garden.health_bind = None;
    }
    let garden = chaosgarden::bind(garden).await.context("starting chaosgarden")?;
    let soundfont = garden.soundfont().to_string();
    let transport: crate::studio::events::LocalTransport = {
        let studio = garden.studio();
        crate::studio::events::LocalTransport(Arc::new(move || studio.engine.state()))
    };
    // Opened after the services, which made it; without it the studio reads through Hootenanny.
    let cas = match cas::Cas::open_with(&cas_root, &config.blobs) {
        Ok(cas) => Some(cas),
        Err(error) => {
            tracing::warn!(%error, "the studio reads media through Hootenanny: the CAS did not open here");
            None
        }
    };

    let backends = Arc::new(Backends::connect(config.endpoints.clone(), key, "holler")?);
    let tasks = vec![
        tokio::spawn({
            let stop = stopped(&stop);
            async move { lua.run(stop).await.map(|_| ()) }
        }),
        tokio::spawn({
            let stop = stopped(&stop);
            async move { hoot.run(stop).await.map(|_| ()) }
        }),
        tokio::spawn({
            let stop = stopped(&stop);
            async move { garden.run(stop).await.map(|_| ()) }
        }),
    ];
    Ok(Stack {
        tasks,
        stop,
        backends,
        soundfont,
        cas,
        transport,
    })
}

impl Stack {
    /// Completes when the stack is told to stop.
    fn stopped(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.stop.subscribe();
        async move {
            let _ = rx.recv().await;
        }
    }

    /// Stops every service (each drains what it has in flight) and reports the first failure.
    pub async fn stop(self) -> anyhow::Result<()> {
        tracing::info!("stopping the stack");
        let _ = self.stop.send(());
        let mut failure = None;
        for task in self.tasks {
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
}

/// How to make sound-card and MIDI-port output available, if this build lacks them (one line).
pub fn devices_hint() -> Option<&'static str> {
    (!cfg!(feature = "devices")).then_some(
        "no sound card or MIDI ports in this build (renders and the null clock work): \
         rebuild with `--features devices` (needs Debian's libasound2-dev)",
    )
}

/// Runs the stack and the HTTP gateway until `shutdown`; then stops the gateway and drains
/// every service.
pub async fn run(
    config: UpConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let mut stack = start(&config.stack).await?;
    let gateway = serve::bind(
        ServeConfig {
            listen: config.listen,
            allowed_origins: Vec::new(),
            token: config.token.clone(),
            broadcasts: config.stack.broadcasts.clone(),
            key: config.stack.key.as_ref().map(|(key, _)| key.clone()),
            soundfont: config.stack.soundfont.clone(),
            cas: stack.cas.clone(),
            transport: Some(stack.transport.clone()),
        },
        stack.backends.clone(),
    )
    .await
    .with_context(|| format!("binding the MCP gateway on {}", config.listen))?;
    let address = gateway.local_addr()?;
    let url = format!("http://{address}/mcp");
    let studio = studio_url(address, config.token.as_deref());
    let stopped = stack.stopped();
    stack.tasks.push(tokio::spawn(gateway.run(stopped)));

    let endpoints = &config.stack.endpoints;
    println!("Hootenanny is up. Data: {}", config.stack.data_dir.display());
    println!("  Studio (open in a browser): {studio}");
    println!("  MCP (Streamable HTTP): {url}");
    println!(
        "  luanette {}  hootenanny {}  chaosgarden {}",
        endpoints.luanette, endpoints.hootenanny, endpoints.chaosgarden
    );
    println!("  MIDI plays through: {}", stack.soundfont);
    if let Some(hint) = devices_hint() {
        println!("  {hint}");
    }
    match &config.stack.key {
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
        println!("  the gateway requires Authorization: Bearer <token> (the studio's link carries it once)");
    }
    println!("Connect an MCP client to {url} (e.g. `claude mcp add --transport http hootenanny {url}`),");
    println!("or use the CLI directly: `holler ping`, `holler lua 'return 1 + 1'`. Ctrl-C stops everything.");
    shutdown.await;
    stack.stop().await
}

/// The studio's address; with a token, the link carries it in the fragment (never sent to a
/// server or kept in history: the page trades it for a session cookie and drops it).
pub fn studio_url(address: std::net::SocketAddr, token: Option<&str>) -> String {
    match token {
        Some(token) => {
            // Percent-encoded as the page's URLSearchParams reads it back.
            let encoded: String = token
                .bytes()
                .map(|b| match b {
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
                    other => format!("%{other:02X}"),
                })
                .collect();
            format!("http://{address}/#token={encoded}")
        }
        None => format!("http://{address}/"),
    }
}

#[cfg(test)]
mod studio_link_tests {
    use super::studio_url;

    #[test]
    fn the_studio_link_carries_the_token_so_the_page_reads_it_back_exactly() {
        let address = "127.0.0.1:8080".parse().expect("address");
        assert_eq!(studio_url(address, None), "http://127.0.0.1:8080/");
        assert_eq!(
            studio_url(address, Some("a+b/c d&e=f~g")),
            "http://127.0.0.1:8080/#token=a%2Bb%2Fc%20d%26e%3Df~g"
        );
    }
}
