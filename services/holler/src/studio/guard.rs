//! Who may use the gateway: the token (a bearer header or the studio's cookie), and for the
//! studio's API the Origin and Host checks a browser-facing endpoint needs.

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::COOKIE;

/// The gateway's checks, built once from its configuration.
#[derive(Debug, Clone)]
pub struct Guard {
    token: Option<Arc<str>>,
    /// Allowed browser origins: exact (`https://studio.example`) or any port (`http://localhost:*`).
    origins: Vec<String>,
}

/// Origins every gateway allows: pages served from this machine.
pub const LOOPBACK_ORIGINS: [&str; 3] = ["http://localhost:*", "http://127.0.0.1:*", "http://[::1]:*"];

impl Guard {
    /// Checks for a gateway with this token (if any) that also allows `extra_origins`.
    pub fn new(token: Option<String>, extra_origins: &[String]) -> Self {
        let mut origins: Vec<String> = LOOPBACK_ORIGINS.iter().map(|o| o.to_string()).collect();
        origins.extend(extra_origins.iter().cloned());
        Self {
            token: token.map(Arc::from),
            origins,
        }
    }

    /// Every allowed origin, as rmcp's Origin validation takes them.
    pub fn origins(&self) -> Vec<String> {
        self.origins.clone()
    }

    /// Whether `presented` is the gateway's token (anything is, when it has none).
    pub fn token_matches(&self, presented: &str) -> bool {
        match &self.token {
            // Constant time: how long the refusal takes says nothing about the token.
            Some(token) => hooteproto::auth::constant_time_eq(presented.as_bytes(), token.as_bytes()),
            None => true,
        }
    }

    /// Whether the request carries the token, as `Authorization: Bearer` or the studio cookie.
    pub fn authorized(&self, headers: &HeaderMap) -> bool {
        if self.token.is_none() {
            return true;
        }
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let cookie = headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(name, _)| *name == COOKIE)
            .map(|(_, value)| value);
        bearer.is_some_and(|t| self.token_matches(t)) || cookie.is_some_and(|t| self.token_matches(t))
    }

    /// The Origin and Host checks: a page on another site may neither call the API (its
    /// Origin is not allowed) nor reach it under a name of its own (DNS rebinding: the Host
    /// is not one this gateway answers to). Requests without an Origin (curl, scripts) pass
    /// the first check; browsers send one on every request that can change something.
    pub fn admit(&self, headers: &HeaderMap, changes_state: bool) -> Result<(), Refusal> {
        if let Some(origin) = headers.get(header::ORIGIN) {
            let origin = origin.to_str().unwrap_or("");
            if !self.origins.iter().any(|allowed| origin_matches(allowed, origin)) {
                return Err(Refusal {
                    status: StatusCode::FORBIDDEN,
                    code: "PERMISSION_DENIED",
                    message: format!("origin {origin:?} is not allowed (holler serve --allowed-origin adds one)"),
                });
            }
        }
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
        if !self.host_allowed(host) {
            return Err(Refusal {
                status: StatusCode::FORBIDDEN,
                code: "PERMISSION_DENIED",
                message: format!(
                    "host {host:?} is not one this gateway answers to; use its address or an allowed origin's name"
                ),
            });
        }
        if changes_state
            && !headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("application/json"))
        {
            // A cross-site form cannot send this type without a preflight, which fails.
            return Err(Refusal {
                status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
                code: "INVALID_ARGUMENT",
                message: "send the arguments as Content-Type: application/json".into(),
            });
        }
        Ok(())
    }

    /// An IP literal (no name to rebind), `localhost`, or an allowed origin's host name.
    fn host_allowed(&self, host: &str) -> bool {
        let name = host_name(host);
        if name.eq_ignore_ascii_case("localhost") || name.trim_matches(['[', ']']).parse::<IpAddr>().is_ok() {
            return true;
        }
        self.origins.iter().any(|origin| {
            let without_scheme = origin.split_once("://").map_or(origin.as_str(), |(_, rest)| rest);
            host_name(without_scheme).eq_ignore_ascii_case(name)
        })
    }
}

/// `example.com:8080` → `example.com`; `[::1]:8080` → `[::1]`.
fn host_name(host: &str) -> &str {
    if host.starts_with('[') {
        return host.split_inclusive(']').next().unwrap_or(host);
    }
    host.split(':').next().unwrap_or(host)
}

/// `http://localhost:*` matches `http://localhost:5173`; other patterns match exactly.
fn origin_matches(pattern: &str, origin: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => origin
            .strip_prefix(prefix)
            .is_some_and(|port| !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit())),
        None => pattern == origin,
    }
}

/// Why a request was turned away, as the response that says so.
#[derive(Debug)]
pub struct Refusal {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        refuse(self.status, self.code, &self.message)
    }
}

fn refuse(status: StatusCode, code: &str, message: &str) -> Response {
    let mut response = (
        status,
        axum::Json(serde_json::json!({"code": code, "message": message})),
    )
        .into_response();
    if status == StatusCode::UNAUTHORIZED {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    response
}

fn unauthenticated() -> Response {
    refuse(
        StatusCode::UNAUTHORIZED,
        "UNAUTHENTICATED",
        "a token is required (Authorization: Bearer …, or the studio's session cookie)",
    )
}

/// The token check for every route behind it (`/mcp`, `/health`, the studio's API).
pub async fn require_token(State(guard): State<Arc<Guard>>, request: Request, next: Next) -> Response {
    if !guard.authorized(request.headers()) {
        return unauthenticated();
    }
    next.run(request).await
}

/// The studio API's checks: Origin and Host, then the token; POSTs must be JSON.
pub async fn check(State(guard): State<Arc<Guard>>, request: Request, next: Next) -> Response {
    let changes_state = request.method() != axum::http::Method::GET && request.method() != axum::http::Method::HEAD;
    if let Err(refusal) = guard.admit(request.headers(), changes_state) {
        return refusal.into_response();
    }
    if !guard.authorized(request.headers()) {
        return unauthenticated();
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(name.clone(), HeaderValue::from_str(value).expect("header"));
        }
        map
    }

    #[test]
    fn the_token_comes_as_a_bearer_header_or_the_studio_cookie() {
        let guard = Guard::new(Some("s3cret".into()), &[]);
        assert!(guard.authorized(&headers(&[(header::AUTHORIZATION, "Bearer s3cret")])));
        assert!(guard.authorized(&headers(&[(header::COOKIE, "a=b; hoot_studio=s3cret")])));
        assert!(!guard.authorized(&headers(&[(header::COOKIE, "hoot_studio=s3cre")])));
        assert!(!guard.authorized(&headers(&[(header::COOKIE, "other=s3cret")])));
        assert!(!guard.authorized(&HeaderMap::new()));
        assert!(Guard::new(None, &[]).authorized(&HeaderMap::new()));
    }

    #[test]
    fn foreign_origins_and_rebound_host_names_are_refused() {
        let guard = Guard::new(None, &["https://studio.example".into()]);
        let ok = |pairs: &[(header::HeaderName, &str)]| guard.admit(&headers(pairs), false).is_ok();
        assert!(ok(&[
            (header::HOST, "127.0.0.1:8080"),
            (header::ORIGIN, "http://127.0.0.1:8080")
        ]));
        assert!(ok(&[
            (header::HOST, "localhost:8080"),
            (header::ORIGIN, "http://localhost:3000")
        ]));
        assert!(ok(&[(header::HOST, "[::1]:8080")]));
        assert!(ok(&[
            (header::HOST, "studio.example"),
            (header::ORIGIN, "https://studio.example")
        ]));
        assert!(!ok(&[
            (header::HOST, "127.0.0.1:8080"),
            (header::ORIGIN, "http://evil.example")
        ]));
        assert!(!ok(&[
            (header::HOST, "127.0.0.1:8080"),
            (header::ORIGIN, "http://localhost:")
        ]));
        assert!(!ok(&[(header::HOST, "127.0.0.1:8080"), (header::ORIGIN, "null")]));
        assert!(!ok(&[(header::HOST, "evil.example:8080")]));
        assert!(!ok(&[(header::HOST, "localhost.evil.example")]));
    }

    #[test]
    fn a_post_must_be_json() {
        let guard = Guard::new(None, &[]);
        let host = (header::HOST, "127.0.0.1:1");
        assert!(guard.admit(&headers(std::slice::from_ref(&host)), true).is_err());
        assert!(
            guard
                .admit(&headers(&[host.clone(), (header::CONTENT_TYPE, "text/plain")]), true)
                .is_err()
        );
        assert!(
            guard
                .admit(&headers(&[host, (header::CONTENT_TYPE, "application/json")]), true)
                .is_ok()
        );
    }
}
