//! `holler serve`: the MCP gateway over Streamable HTTP (rmcp in axum), with Origin
//! validation on, an optional token on every request, `/health`, and the studio's page and
//! API ([`crate::studio`]).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use tokio_util::sync::CancellationToken;

use crate::backends::{Backend, Backends};
use crate::mcp::Gateway;
use crate::studio::events::Events;
use crate::studio::{Guard, Studio, guard};

/// How to serve.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Where to listen (default [`hooteproto::defaults::HOLLER_LISTEN`], 127.0.0.1:8080).
    pub listen: SocketAddr,
    /// Browser origins allowed besides loopback ones (`http://localhost:*`, `http://127.0.0.1:*`).
    pub allowed_origins: Vec<String>,
    /// A bearer token every request must carry, if set.
    pub token: Option<String>,
    /// Luanette's broadcast (PUB) endpoint, forwarded to the sessions it concerns.
    pub broadcasts: Option<String>,
    /// The shared HMAC key (broadcasts are signed with it).
    pub key: Option<hooteproto::Key>,
    /// The SoundFont the studio plays MIDI artifacts through (None: Chaosgarden's default
    /// choice; `holler up` passes its own).
    pub soundfont: Option<std::path::PathBuf>,
    /// The CAS Hootenanny serves, when this process can open it too (`holler up`): the
    /// studio reads waveforms and MIDI files from it directly (None: through Hootenanny).
    pub cas: Option<cas::Cas>,
    /// Chaosgarden's transport, when it runs in this process (`holler up`): the studio's
    /// playhead is read from it directly (None: asked over HOOT/1).
    pub transport: Option<crate::studio::events::LocalTransport>,
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            listen: hooteproto::defaults::HOLLER_LISTEN,
            allowed_origins: Vec::new(),
            token: None,
            broadcasts: None,
            key: None,
            soundfont: None,
            cas: None,
            transport: None,
        }
    }
}

async fn health(State(backends): State<Arc<Backends>>) -> Response {
    // Asked at once, so a down backend costs one probe (750 ms), not one each.
    let (luanette, hootenanny, chaosgarden) = tokio::join!(
        backends.ping(Backend::Luanette),
        backends.ping(Backend::Hootenanny),
        backends.ping(Backend::Chaosgarden),
    );
    let state = |up: bool| if up { "up" } else { "down" };
    let body = serde_json::json!({
        "status": "serving",
        "backends": {
            "luanette": state(luanette),
            "hootenanny": state(hootenanny),
            "chaosgarden": state(chaosgarden),
        },
    });
    (StatusCode::OK, axum::Json(body)).into_response()
}

/// A bound gateway, ready to serve.
pub struct Bound {
    listener: tokio::net::TcpListener,
    router: axum::Router,
    cancel: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// How often the gateway checks which backends answer.
pub(crate) const WATCH_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Binds the listener and builds the routes.
pub async fn bind(config: ServeConfig, backends: Arc<Backends>) -> anyhow::Result<Bound> {
    let cancel = CancellationToken::new();
    let guard = Arc::new(Guard::new(config.token.clone(), &config.allowed_origins));
    let mcp_config = StreamableHttpServerConfig::default()
        .with_allowed_origins(guard.origins())
        .enforce_origin_validation()
        .with_cancellation_token(cancel.clone());
    let sessions = Arc::new(crate::mcp::Sessions::default());
    let gateway = Gateway::new(backends.clone(), sessions.clone());
    let service: StreamableHttpService<Gateway, LocalSessionManager> =
        StreamableHttpService::new(move || Ok(gateway.clone()), Default::default(), mcp_config);
    let events = Arc::new(Events::default());
    let studio = Studio::new(
        backends.clone(),
        events.clone(),
        (*guard).clone(),
        config.soundfont.clone(),
        config.cas.clone(),
    );
    let guarded = axum::Router::new()
        .nest_service("/mcp", service)
        .route("/health", axum::routing::get(health))
        .with_state(backends.clone())
        .merge(studio.api_routes())
        .layer(axum::middleware::from_fn_with_state(guard, guard::require_token));
    let router = studio.open_routes().merge(guarded);
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    let mut tasks = vec![
        tokio::spawn(Gateway::watch_backends(backends.clone(), sessions.clone(), WATCH_EVERY)),
        tokio::spawn(events.clone().watch_transport(backends, config.transport.clone())),
    ];
    if let Some(endpoint) = &config.broadcasts {
        let subscriber = hooteproto::broadcast::Subscriber::connect(endpoint, &[""], config.key.clone())?;
        tasks.push(tokio::spawn(Gateway::forward_broadcasts(
            subscriber,
            sessions,
            Some(events),
        )));
    }
    Ok(Bound {
        listener,
        router,
        cancel,
        tasks,
    })
}

impl Bound {
    /// Where it listens.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown`.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let cancel = self.cancel.clone();
        use axum::serve::ListenerExt as _;
        // Replies are small SSE frames: without TCP_NODELAY, Nagle's algorithm and the
        // client's delayed ACK hold each one back ~40 ms.
        let listener = self.listener.tap_io(|tcp| {
            if let Err(error) = tcp.set_nodelay(true) {
                tracing::debug!(%error, "TCP_NODELAY");
            }
        });
        axum::serve(listener, self.router)
            .with_graceful_shutdown(async move {
                shutdown.await;
                cancel.cancel();
            })
            .await?;
        for task in self.tasks {
            task.abort();
        }
        Ok(())
    }
}
