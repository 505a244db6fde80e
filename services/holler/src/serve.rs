//! `holler serve`: the MCP gateway over Streamable HTTP (rmcp in axum), with Origin
//! validation on, an optional bearer token on every request, and `/health`.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use tokio_util::sync::CancellationToken;

use crate::backends::{Backend, Backends};
use crate::mcp::Gateway;

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
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            listen: hooteproto::defaults::HOLLER_LISTEN,
            allowed_origins: Vec::new(),
            token: None,
            broadcasts: None,
            key: None,
        }
    }
}

#[derive(Clone)]
struct Shared {
    token: Option<Arc<str>>,
    backends: Arc<Backends>,
}

async fn require_token(State(shared): State<Shared>, request: Request, next: Next) -> Response {
    if let Some(token) = &shared.token {
        let presented = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        // Constant time: how long the refusal takes says nothing about the token.
        let accepted = presented.is_some_and(|p| hooteproto::auth::constant_time_eq(p.as_bytes(), token.as_bytes()));
        if !accepted {
            let mut response = (
                StatusCode::UNAUTHORIZED,
                "a bearer token is required (Authorization: Bearer …)",
            )
                .into_response();
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return response;
        }
    }
    next.run(request).await
}

async fn health(State(shared): State<Shared>) -> Response {
    let backends = &shared.backends;
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
    let mut origins = vec![
        "http://localhost:*".to_string(),
        "http://127.0.0.1:*".to_string(),
        "http://[::1]:*".to_string(),
    ];
    origins.extend(config.allowed_origins.iter().cloned());
    let mcp_config = StreamableHttpServerConfig::default()
        .with_allowed_origins(origins)
        .enforce_origin_validation()
        .with_cancellation_token(cancel.clone());
    let sessions = Arc::new(crate::mcp::Sessions::default());
    let gateway = Gateway::new(backends.clone(), sessions.clone());
    let shared_backends = backends.clone();
    let service: StreamableHttpService<Gateway, LocalSessionManager> =
        StreamableHttpService::new(move || Ok(gateway.clone()), Default::default(), mcp_config);
    let shared = Shared {
        token: config.token.map(Arc::from),
        backends,
    };
    let router = axum::Router::new()
        .nest_service("/mcp", service)
        .route("/health", axum::routing::get(health))
        .layer(axum::middleware::from_fn_with_state(shared.clone(), require_token))
        .with_state(shared);
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    let mut tasks = vec![tokio::spawn(Gateway::watch_backends(
        shared_backends,
        sessions.clone(),
        WATCH_EVERY,
    ))];
    if let Some(endpoint) = &config.broadcasts {
        let subscriber = hooteproto::broadcast::Subscriber::connect(endpoint, &[""], config.key.clone())?;
        tasks.push(tokio::spawn(Gateway::forward_broadcasts(subscriber, sessions)));
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
