//! Helpers shared by the integration tests: a steerable test service run in-process
//! on a real tcp loopback ROUTER, raw libzmq peers, and paths to the example binaries.
#![allow(dead_code)]

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hooteproto::server::StatsHandle;
use hooteproto::v1::envelope::Payload;
use hooteproto::v1::{CasInspectReply, CasObject, PingReply, Success};
use hooteproto::{Handler, RequestContext, Server, ServerConfig, ServerStats, Status};
use prost_types::value::Kind;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A service whose behaviour the test chooses through `lua_eval` code:
/// `sleep:MS` answers after MS ms, `panic` panics (`panic-later` after an await), `big:N` returns an N-byte string,
/// anything else is echoed. `cas_inspect` stalls the first attempt of each request id
/// for `stall_first_ms`, to exercise client retries.
#[derive(Default)]
pub struct TestService {
    pub calls: AtomicU64,
    pub stall_first_ms: u64,
    pub seen: Mutex<HashSet<String>>,
}

pub fn string_value(s: impl Into<String>) -> prost_types::Value {
    prost_types::Value {
        kind: Some(Kind::StringValue(s.into())),
    }
}

pub fn success_text(payload: &Payload) -> Option<&str> {
    match payload {
        Payload::Success(Success {
            result: Some(prost_types::Value {
                kind: Some(Kind::StringValue(s)),
            }),
        }) => Some(s),
        _ => None,
    }
}

impl Handler for TestService {
    async fn handle(&self, context: RequestContext, payload: Payload) -> Result<Payload, Status> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        match payload {
            Payload::Ping(_) => Ok(Payload::PingReply(PingReply {
                worker_id: "test".into(),
                uptime_secs: 0,
                service: "test-service".into(),
                version: "0".into(),
            })),
            Payload::LuaEval(eval) => {
                let code = eval.code;
                if let Some(ms) = code.strip_prefix("sleep:") {
                    let ms: u64 = ms.parse().map_err(|_| Status::invalid_argument("sleep:MS"))?;
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                } else if code == "panic" {
                    panic!("test handler asked to panic");
                } else if code == "panic-later" {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    panic!("test handler asked to panic after an await");
                } else if let Some(n) = code.strip_prefix("big:") {
                    let n: usize = n.parse().map_err(|_| Status::invalid_argument("big:N"))?;
                    return Ok(Payload::Success(Success {
                        result: Some(string_value("x".repeat(n))),
                    }));
                }
                Ok(Payload::Success(Success {
                    result: Some(string_value(code)),
                }))
            }
            Payload::CasInspect(inspect) => {
                let first = self
                    .seen
                    .lock()
                    .map(|mut seen| seen.insert(context.id.clone()))
                    .unwrap_or(false);
                if first && self.stall_first_ms > 0 {
                    tokio::time::sleep(Duration::from_millis(self.stall_first_ms)).await;
                }
                Ok(Payload::CasInspectReply(CasInspectReply {
                    object: Some(CasObject {
                        hash: inspect.hash,
                        size: 1,
                        ..Default::default()
                    }),
                }))
            }
            other => Err(Status::unimplemented(format!(
                "test service does not serve `{}`",
                other.name()
            ))),
        }
    }
}

/// A server running in the current tokio runtime.
pub struct Running {
    pub endpoint: String,
    pub stats: StatsHandle,
    pub service: Arc<TestService>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<ServerStats, hooteproto::Error>>,
}

impl Running {
    /// Starts graceful shutdown and waits for `run` to return.
    pub async fn shutdown(mut self) -> ServerStats {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.await.expect("server task").expect("server run")
    }

    /// Starts graceful shutdown without waiting.
    pub fn begin_shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    pub async fn join(self) -> ServerStats {
        self.task.await.expect("server task").expect("server run")
    }
}

pub fn config() -> ServerConfig {
    ServerConfig::new("tcp://127.0.0.1:*")
}

pub fn start(config: ServerConfig, service: TestService) -> Running {
    let server = Server::bind(config).expect("bind");
    let endpoint = server.local_endpoint().to_string();
    let stats = server.stats();
    let service = Arc::new(service);
    let (stop, stopped) = oneshot::channel::<()>();
    let handler = service.clone();
    let task = tokio::spawn(server.run(handler, async move {
        let _ = stopped.await;
    }));
    Running {
        endpoint,
        stats,
        service,
        stop: Some(stop),
        task,
    }
}

/// A free loopback port (bound and released; fine for tests on one machine).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// A blocking raw DEALER for sending arbitrary frames.
pub fn raw_dealer(endpoint: &str) -> zmq::Socket {
    let context = zmq::Context::new();
    let socket = context.socket(zmq::DEALER).expect("socket");
    socket.set_linger(0).expect("linger");
    socket.set_rcvtimeo(2000).expect("rcvtimeo");
    socket.connect(endpoint).expect("connect");
    socket
}

/// Sends frames and returns the reply frames, or None if nothing came within `rcvtimeo`.
pub fn raw_exchange(socket: &zmq::Socket, frames: &[Vec<u8>]) -> Option<Vec<Vec<u8>>> {
    socket.send_multipart(frames, 0).expect("send");
    socket.recv_multipart(0).ok()
}

/// Path of a built example binary (cargo builds examples before integration tests).
pub fn example(name: &str) -> PathBuf {
    let mut dir = std::env::current_exe().expect("test exe");
    dir.pop(); // deps/
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir.join("examples").join(name)
}

/// A child process killed (SIGKILL) when dropped.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn spawn_echo_server(bind: &str) -> Proc {
    // Like every Hootenanny program it would use <data dir>/hoot.key if one exists (e.g. in
    // ~/.local/share/hootenanny after a `holler up`): point it at a data dir that has none.
    let no_data_dir = std::env::temp_dir().join(format!("hooteproto-tests-no-data-dir-{}", std::process::id()));
    let child = Command::new(example("echo-server"))
        .args(["--bind", bind])
        .env_remove("HOOT_KEY")
        .env_remove("HOOT_KEY_FILE")
        .env("HOOT_DATA_DIR", no_data_dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn echo-server (run `cargo build --examples` first)");
    Proc(child)
}
