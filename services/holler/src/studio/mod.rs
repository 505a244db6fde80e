//! The studio: a page on the gateway where a person sees and hears what the agents made.
//!
//! - `/`, `/studio.js`, `/studio.css`: the page, embedded in the binary (no build step, no
//!   CDN). They carry no data, so they load without the token; everything else needs it.
//! - `POST /api/session`: trades the token for an HTTP-only, same-site cookie, so the page
//!   never keeps the token in script-readable storage.
//! - `POST /api/tools/{name}`: any tool, with the arguments and results agents see over MCP
//!   (the same backends, the same checks); errors carry their canonical code.
//! - `GET /api/events`: one Server-Sent Events stream of job changes (Luanette's broadcasts)
//!   and the transport's state ([`events`]).
//! - `GET /api/cas/{hash}`: a CAS object with HTTP byte ranges, so `<audio>` can seek (`cas`).
//! - `GET /api/notes/{hash}`, `GET /api/peaks/{hash}`: what MIDI and WAV regions are drawn
//!   with (`media`).
//! - `GET /api/render/{hash}`: a MIDI artifact as a WAV, on its own (`render`).
//!
//! Every `/api` request must come from an allowed Origin (when it names one) to an expected
//! Host (a page on another site cannot reach it through DNS rebinding), and no GET changes
//! anything.

mod cas;
pub mod events;
pub mod guard;
mod media;
pub mod render;

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use crate::backends::{Backends, CallError};
pub use guard::Guard;

/// The cookie the page's session rides on.
pub const COOKIE: &str = "hoot_studio";

/// What the studio's handlers share.
#[derive(Clone)]
pub struct Studio {
    pub(crate) backends: Arc<Backends>,
    pub(crate) events: Arc<events::Events>,
    pub(crate) guard: Arc<Guard>,
    pub(crate) drawings: Arc<media::Drawings>,
    pub(crate) renderer: Arc<render::Renderer>,
    /// The CAS itself, when this process shares it with Hootenanny (`holler up`): media is
    /// read from it directly rather than fetched through Hootenanny chunk by chunk.
    pub(crate) local_cas: Option<::cas::Cas>,
}

impl Studio {
    /// The studio over `backends`, with its event hub and its request checks; MIDI artifacts
    /// are heard through `soundfont` (None: Chaosgarden's default choice); media is read from
    /// `local_cas` when given (the same store Hootenanny serves).
    pub fn new(
        backends: Arc<Backends>,
        events: Arc<events::Events>,
        guard: Guard,
        soundfont: Option<std::path::PathBuf>,
        local_cas: Option<::cas::Cas>,
    ) -> Self {
        Self {
            backends,
            events,
            guard: Arc::new(guard),
            drawings: Arc::default(),
            renderer: Arc::new(render::Renderer::new(soundfont)),
            local_cas,
        }
    }

    /// The routes that need no token: the page itself and the session exchange.
    pub fn open_routes(&self) -> axum::Router {
        axum::Router::new()
            .route("/", get(page))
            .route("/studio.js", get(script))
            .route("/studio.css", get(style))
            .route("/api/session", post(session))
            .with_state(self.clone())
    }

    /// The routes behind the token (the caller layers the token check over them).
    pub fn api_routes(&self) -> axum::Router {
        axum::Router::new()
            .route("/api/tools/{name}", post(tool))
            .route("/api/events", get(events::stream))
            .route("/api/cas/{hash}", get(cas::object))
            .route("/api/notes/{hash}", get(media::notes))
            .route("/api/peaks/{hash}", get(media::peaks))
            .route("/api/render/{hash}", get(render::midi))
            .route("/api/render/{hash}/peaks", get(render::peaks))
            .layer(axum::middleware::from_fn_with_state(self.guard.clone(), guard::check))
            .with_state(self.clone())
    }
}

const PAGE: &str = include_str!("../../studio/index.html");
const SCRIPT: &str = include_str!("../../studio/studio.js");
const STYLE: &str = include_str!("../../studio/studio.css");

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
            // The page may only talk to this gateway and load its own assets.
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(
                    "default-src 'self'; media-src 'self' blob:; img-src 'self' data:; frame-ancestors 'none'",
                ),
            ),
        ],
        body,
    )
        .into_response()
}

async fn page() -> Response {
    asset("text/html; charset=utf-8", PAGE)
}

async fn script() -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

async fn style() -> Response {
    asset("text/css; charset=utf-8", STYLE)
}

/// `{"token": "..."}` → a session cookie, if the token is the gateway's (or none is required).
async fn session(State(studio): State<Studio>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    if let Err(refusal) = studio.guard.admit(&headers, true) {
        return refusal.into_response();
    }
    let presented = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v.get("token").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_default();
    if !studio.guard.token_matches(&presented) {
        return failure(
            StatusCode::UNAUTHORIZED,
            hooteproto::v1::ErrorCode::Unauthenticated,
            "that is not this gateway's token (holler serve --token / HOLLER_TOKEN)",
        );
    }
    let cookie = format!("{COOKIE}={presented}; HttpOnly; SameSite=Strict; Path=/");
    let mut response = Json(json!({"session": "started"})).into_response();
    match HeaderValue::from_str(&cookie) {
        Ok(value) => {
            response.headers_mut().insert(header::SET_COOKIE, value);
            response
        }
        Err(_) => failure(
            StatusCode::BAD_REQUEST,
            hooteproto::v1::ErrorCode::InvalidArgument,
            "the token cannot be carried in a cookie",
        ),
    }
}

/// Calls one tool with the JSON body as its arguments; answers its result as agents see it.
async fn tool(State(studio): State<Studio>, Path(name): Path<String>, body: axum::body::Bytes) -> Response {
    let arguments = if body.is_empty() {
        json!({})
    } else {
        match serde_json::from_slice::<Value>(&body) {
            Ok(value @ Value::Object(_)) => value,
            _ => {
                return failure(
                    StatusCode::BAD_REQUEST,
                    hooteproto::v1::ErrorCode::InvalidArgument,
                    "the body must be a JSON object of the tool's arguments",
                );
            }
        }
    };
    let timeout = crate::mcp::call_timeout(&name, &arguments);
    match studio.backends.call_tool_structured(&name, &arguments, timeout).await {
        Ok(reply) => Json(reply).into_response(),
        Err(error) => call_failure(&error),
    }
}

/// A failed call as JSON `{code, message}` with the HTTP status that fits its code.
pub(crate) fn call_failure(error: &CallError) -> Response {
    let code = error.code();
    failure(http_status(code), code, &error.message())
}

pub(crate) fn failure(status: StatusCode, code: hooteproto::v1::ErrorCode, message: &str) -> Response {
    let body = json!({"code": hooteproto::error::code_name(code), "message": message});
    (status, Json(body)).into_response()
}

/// A failure of the CAS this process reads itself, with the canonical code every service
/// answers it with (a missing object is NOT_FOUND, a corrupt one DATA_LOSS: not the input's
/// fault, unlike what [`blocking`]'s work reports).
pub(crate) fn cas_failure(error: ::cas::CasError) -> Response {
    let status = ::cas::status::status(error);
    failure(http_status(status.code), status.code, &status.message)
}

/// Bad input, as 400 INVALID_ARGUMENT with the reason.
pub(crate) fn refused(message: impl std::fmt::Display) -> Response {
    failure(
        StatusCode::BAD_REQUEST,
        hooteproto::v1::ErrorCode::InvalidArgument,
        &message.to_string(),
    )
}

/// Runs CPU-bound `work` on a blocking thread: its error is the input's fault (400, see
/// [`refused`]); a panic in it is 500.
pub(crate) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, Response> {
    match tokio::task::spawn_blocking(work).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(message)) => Err(refused(message)),
        Err(error) => Err(panicked(error)),
    }
}

/// Runs a read of the CAS this process has on a blocking thread: its failure is the store's,
/// answered as [`cas_failure`] says.
pub(crate) async fn read_cas<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ::cas::CasError> + Send + 'static,
) -> Result<T, Response> {
    match tokio::task::spawn_blocking(work).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(cas_failure(error)),
        Err(error) => Err(panicked(error)),
    }
}

/// Work on a blocking thread that panicked: 500 INTERNAL.
pub(crate) fn panicked(error: tokio::task::JoinError) -> Response {
    failure(
        StatusCode::INTERNAL_SERVER_ERROR,
        hooteproto::v1::ErrorCode::Internal,
        &error.to_string(),
    )
}

/// The HTTP status for a canonical code (as gRPC's HTTP mapping has it).
pub(crate) fn http_status(code: hooteproto::v1::ErrorCode) -> StatusCode {
    use hooteproto::v1::ErrorCode as C;
    match code {
        C::InvalidArgument | C::OutOfRange => StatusCode::BAD_REQUEST,
        C::FailedPrecondition => StatusCode::CONFLICT,
        C::Unauthenticated => StatusCode::UNAUTHORIZED,
        C::PermissionDenied => StatusCode::FORBIDDEN,
        C::NotFound => StatusCode::NOT_FOUND,
        C::AlreadyExists | C::Aborted => StatusCode::CONFLICT,
        C::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        C::Cancelled => StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
        C::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        C::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        C::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        C::Unspecified | C::Unknown | C::Internal | C::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
    }
}
