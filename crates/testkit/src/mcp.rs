//! A minimal MCP client for tests: JSON-RPC POSTs over Streamable HTTP, replies read from
//! the JSON body or the SSE stream. Enough to drive `holler serve` as an agent would.

use std::time::Duration;

use serde_json::{Value, json};

/// A session with the gateway, speaking JSON-RPC over Streamable HTTP.
pub struct Session {
    http: reqwest::blocking::Client,
    url: String,
    session: Option<String>,
    next_id: u64,
    pub traceparent: Option<String>,
    pub token: Option<String>,
}

impl Session {
    /// Initializes a session (panics if the gateway does not answer).
    pub fn connect(url: &str) -> Self {
        Self::connect_with(url, None, Duration::from_secs(90))
    }

    /// [`Session::connect`] with a bearer token.
    pub fn connect_with_token(url: &str, token: Option<&str>) -> Self {
        Self::connect_with(url, token, Duration::from_secs(90))
    }

    /// [`Session::connect`] with a bearer token and a limit on every HTTP request.
    pub fn connect_with(url: &str, token: Option<&str>, timeout: Duration) -> Self {
        let mut mcp = Session {
            http: reqwest::blocking::Client::builder()
                .timeout(timeout)
                .build()
                .expect("http client"),
            url: url.to_string(),
            session: None,
            next_id: 1,
            traceparent: None,
            token: token.map(str::to_string),
        };
        mcp.request(
            "initialize",
            json!({"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "holler-test", "version": "1"}}),
        );
        mcp.notify("notifications/initialized");
        mcp
    }

    fn post(&self, body: &Value) -> reqwest::Result<reqwest::blocking::Response> {
        let mut request = self
            .http
            .post(&self.url)
            .header("Content-Type", "application/json")
            .header("Accept", "application/json, text/event-stream")
            .json(body);
        if let Some(session) = &self.session {
            request = request.header("mcp-session-id", session);
        }
        if let Some(traceparent) = &self.traceparent {
            request = request.header("traceparent", traceparent);
        }
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        request.send()
    }

    /// The session id the gateway gave this session.
    pub fn session_id(&self) -> Option<&str> {
        self.session.as_deref()
    }

    pub fn notify(&mut self, method: &str) {
        let reply = self
            .post(&json!({"jsonrpc": "2.0", "method": method}))
            .expect("POST /mcp");
        assert!(reply.status().is_success(), "{method}: {}", reply.status());
    }

    /// The JSON-RPC result (or error) of one request.
    pub fn request(&mut self, method: &str, params: Value) -> Value {
        self.try_request(method, params).unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`Session::request`], with an HTTP failure as an error instead of a panic.
    pub fn try_request(&mut self, method: &str, params: Value) -> Result<Value, String> {
        let id = self.next_id;
        self.next_id += 1;
        let reply = self
            .post(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}))
            .map_err(|e| format!("{method}: {e}"))?;
        if !reply.status().is_success() {
            return Err(format!("{method}: HTTP {}", reply.status()));
        }
        if let Some(session) = reply.headers().get("mcp-session-id") {
            self.session = session.to_str().ok().map(str::to_string);
        }
        let text = reply.text().map_err(|e| format!("{method}: {e}"))?;
        let messages: Vec<Value> = if text.trim_start().starts_with('{') {
            serde_json::from_str(&text).into_iter().collect()
        } else {
            text.lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .filter_map(|d| serde_json::from_str(d.trim()).ok())
                .collect()
        };
        messages
            .into_iter()
            .find(|m| m["id"] == json!(id))
            .ok_or_else(|| format!("no reply to {method} in {text}"))
    }

    /// A tool call's result (`content[0].text` parsed as JSON when it is JSON).
    pub fn call(&mut self, tool: &str, arguments: Value) -> (bool, Value) {
        self.try_call(tool, arguments).unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`Session::call`], with an HTTP failure as an error instead of a panic.
    pub fn try_call(&mut self, tool: &str, arguments: Value) -> Result<(bool, Value), String> {
        let reply = self.try_request("tools/call", json!({"name": tool, "arguments": arguments}))?;
        let result = &reply["result"];
        let text = result["content"][0]["text"].as_str().unwrap_or_default();
        let value = serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_string()));
        Ok((result["isError"].as_bool().unwrap_or(false), value))
    }
}
