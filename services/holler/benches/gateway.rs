//! `cargo bench -p holler --bench gateway`: `tools/call lua_eval "return 1+1"` through the
//! MCP gateway (Streamable HTTP, a session per client) against the same request sent
//! straight to Luanette over ZMQ with the SDK, measured in the same run, in one process.
//!
//! Goals (issue 7): added p50 ≤ 1 ms; ≥ 2,000 calls/s across 16 sessions.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hooteproto::v1::LuaEvalRequest;
use hooteproto::{Client, ClientConfig};
use serde_json::{Value, json};

const SEQUENTIAL: usize = 2_000;
const SESSIONS: usize = 16;
const PER_SESSION: usize = 500;
const CODE: &str = "return 1+1";

fn p50_us(mut samples: Vec<Duration>) -> f64 {
    samples.sort();
    samples[samples.len() / 2].as_secs_f64() * 1e6
}

struct Session {
    http: reqwest::Client,
    url: String,
    id: String,
    next: u64,
}

impl Session {
    async fn post(&self, body: Value, session: bool) -> reqwest::Response {
        let mut request = self
            .http
            .post(&self.url)
            .header("Content-Type", "application/json")
            .header("Accept", "application/json, text/event-stream")
            .json(&body);
        if session {
            request = request.header("mcp-session-id", &self.id);
        }
        request.send().await.expect("POST")
    }

    async fn open(url: &str) -> Self {
        let mut session = Session {
            http: reqwest::Client::new(),
            url: url.to_string(),
            id: String::new(),
            next: 2,
        };
        let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "bench", "version": "1"}}});
        let reply = session.post(init, false).await;
        session.id = reply
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
            .expect("session id")
            .to_string();
        let _ = reply.text().await;
        let _ = session
            .post(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}), true)
            .await
            .text()
            .await;
        session
    }

    async fn call(&mut self) {
        let id = self.next;
        self.next += 1;
        let body = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
            "params": {"name": "lua_eval", "arguments": {"code": CODE}}});
        let text = self.post(body, true).await.text().await.expect("body");
        assert!(text.contains("\"result\"") && text.contains('2'), "{text}");
    }
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("gateway bench: run with `cargo bench -p holler --bench gateway`");
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let dir = tempfile::tempdir().expect("tmp");
        let mut config = luanette::Config::new(dir.path().to_path_buf());
        config.bind = "tcp://127.0.0.1:*".into();
        config.pub_bind = None;
        config.health_bind = None;
        let lua = luanette::bind(config).await.expect("luanette");
        let endpoint = lua.endpoint().to_string();
        tokio::spawn(lua.run(std::future::pending()));
        let endpoints = holler::backends::Endpoints {
            luanette: endpoint.clone(),
            ..Default::default()
        };
        let backends = Arc::new(holler::backends::Backends::connect(endpoints, None, "bench").expect("backends"));
        let gateway = holler::serve::bind(
            holler::serve::ServeConfig {
                listen: "127.0.0.1:0".parse().expect("addr"),
                ..Default::default()
            },
            backends,
        )
        .await
        .expect("gateway");
        let url = format!("http://{}/mcp", gateway.local_addr().expect("addr"));
        tokio::spawn(gateway.run(std::future::pending()));

        // Direct: one SDK client, sequential.
        let client = Client::connect(ClientConfig::new(endpoint.clone())).expect("client");
        let request = || LuaEvalRequest {
            code: CODE.into(),
            params: None,
        };
        for _ in 0..200 {
            client.call(request()).await.expect("warm");
        }
        let mut direct = Vec::with_capacity(SEQUENTIAL);
        let started = Instant::now();
        for _ in 0..SEQUENTIAL {
            let t = Instant::now();
            client.call(request()).await.expect("eval");
            direct.push(t.elapsed());
        }
        let direct_rate = SEQUENTIAL as f64 / started.elapsed().as_secs_f64();
        let direct_p50 = p50_us(direct);

        // Through Holler: one MCP session, sequential.
        let mut session = Session::open(&url).await;
        for _ in 0..200 {
            session.call().await;
        }
        let mut via = Vec::with_capacity(SEQUENTIAL);
        let started = Instant::now();
        for _ in 0..SEQUENTIAL {
            let t = Instant::now();
            session.call().await;
            via.push(t.elapsed());
        }
        let via_rate = SEQUENTIAL as f64 / started.elapsed().as_secs_f64();
        let via_p50 = p50_us(via);

        // 16 at once: SDK clients direct, MCP sessions through Holler.
        let started = Instant::now();
        let tasks: Vec<_> = (0..SESSIONS)
            .map(|_| {
                let endpoint = endpoint.clone();
                tokio::spawn(async move {
                    let client = Client::connect(ClientConfig::new(endpoint)).expect("client");
                    for _ in 0..PER_SESSION {
                        client
                            .call(LuaEvalRequest {
                                code: CODE.into(),
                                params: None,
                            })
                            .await
                            .expect("eval");
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.expect("direct task");
        }
        let direct_parallel = (SESSIONS * PER_SESSION) as f64 / started.elapsed().as_secs_f64();
        let mut sessions = Vec::new();
        for _ in 0..SESSIONS {
            sessions.push(Session::open(&url).await);
        }
        let started = Instant::now();
        let tasks: Vec<_> = sessions
            .into_iter()
            .map(|mut session| {
                tokio::spawn(async move {
                    for _ in 0..PER_SESSION {
                        session.call().await;
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.expect("mcp task");
        }
        let via_parallel = (SESSIONS * PER_SESSION) as f64 / started.elapsed().as_secs_f64();

        println!("lua_eval \"{CODE}\", same process, 2 cores:");
        println!("  direct (SDK over ZMQ), 1 client    p50 {direct_p50:>7.0} µs  {direct_rate:>7.0}/s");
        println!("  through Holler (MCP), 1 session    p50 {via_p50:>7.0} µs  {via_rate:>7.0}/s");
        println!(
            "  added by the gateway               p50 {:>7.0} µs (goal ≤ 1000 µs)",
            via_p50 - direct_p50
        );
        println!("  direct, {SESSIONS} clients                {direct_parallel:>7.0}/s");
        println!(
            "  through Holler, {SESSIONS} sessions          {via_parallel:>7.0}/s (goal ≥ 2000/s); {:.2}× direct",
            via_parallel / direct_parallel
        );
    });
}
