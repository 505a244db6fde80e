//! Test helpers: `holler up` as a child process on free ports, and a minimal MCP client
//! over plain HTTP (JSON-RPC POSTs, replies read from the SSE stream).
#![allow(dead_code)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

pub struct Up {
    pub child: Child,
    pub port: u16,
    pub luanette: String,
    pub hootenanny: String,
    pub chaosgarden: String,
}

impl Up {
    pub fn start(data: &Path, extra: &[&str]) -> Self {
        Self::start_with(data, extra, &[])
    }

    /// `extra` goes before `up` (global flags), `up_args` after it.
    pub fn start_with(data: &Path, extra: &[&str], up_args: &[&str]) -> Self {
        let port = testkit::free_port();
        let endpoint = || format!("tcp://127.0.0.1:{}", testkit::free_port());
        let (luanette, hootenanny, chaosgarden) = (endpoint(), endpoint(), endpoint());
        let child = Command::new(env!("CARGO_BIN_EXE_holler"))
            .args([
                "--luanette",
                &luanette,
                "--hootenanny",
                &hootenanny,
                "--chaosgarden",
                &chaosgarden,
            ])
            .args(extra)
            .arg("up")
            .arg("--data-dir")
            .arg(data)
            .args([
                "--port",
                &port.to_string(),
                "--audio-device",
                "none",
                "--broadcasts",
                "none",
                "--no-health",
            ])
            .args(up_args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn holler up");
        let up = Up {
            child,
            port,
            luanette,
            hootenanny,
            chaosgarden,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            // Any HTTP answer (401 with a token) means it is listening.
            if reqwest::blocking::get(format!("http://127.0.0.1:{port}/health")).is_ok() {
                return up;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("holler up did not come up");
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/mcp", self.port)
    }

    /// SIGTERM and wait; true when it exited cleanly.
    pub fn stop(mut self) -> bool {
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill");
        self.child.wait().expect("wait").success()
    }
}

/// A session with the gateway, speaking JSON-RPC over Streamable HTTP.
pub struct Mcp {
    http: reqwest::blocking::Client,
    url: String,
    session: Option<String>,
    next_id: u64,
    pub traceparent: Option<String>,
    pub token: Option<String>,
}

impl Mcp {
    pub fn connect(url: &str) -> Self {
        Self::connect_with_token(url, None)
    }

    pub fn connect_with_token(url: &str, token: Option<&str>) -> Self {
        let mut mcp = Mcp {
            http: reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(90))
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

    fn post(&self, body: &Value) -> reqwest::blocking::Response {
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
        request.send().expect("POST /mcp")
    }

    /// The session id the gateway gave this session.
    pub fn session_id(&self) -> Option<&str> {
        self.session.as_deref()
    }

    pub fn notify(&mut self, method: &str) {
        let reply = self.post(&json!({"jsonrpc": "2.0", "method": method}));
        assert!(reply.status().is_success(), "{method}: {}", reply.status());
    }

    /// The JSON-RPC result (or error) of one request.
    pub fn request(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let reply = self.post(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
        assert!(reply.status().is_success(), "{method}: HTTP {}", reply.status());
        if let Some(session) = reply.headers().get("mcp-session-id") {
            self.session = session.to_str().ok().map(str::to_string);
        }
        let text = reply.text().expect("body");
        let messages: Vec<Value> = if text.trim_start().starts_with('{') {
            vec![serde_json::from_str(&text).expect("json")]
        } else {
            text.lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .filter_map(|d| serde_json::from_str(d.trim()).ok())
                .collect()
        };
        messages
            .into_iter()
            .find(|m| m["id"] == json!(id))
            .unwrap_or_else(|| panic!("no reply to {method} in {text}"))
    }

    /// A tool call's result (`content[0].text` parsed as JSON when it is JSON).
    pub fn call(&mut self, tool: &str, arguments: Value) -> (bool, Value) {
        let reply = self.request("tools/call", json!({"name": tool, "arguments": arguments}));
        let result = &reply["result"];
        let text = result["content"][0]["text"].as_str().unwrap_or_default();
        let value = serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_string()));
        (result["isError"].as_bool().unwrap_or(false), value)
    }
}
