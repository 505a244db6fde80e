//! Helpers for tests and benchmarks (never for production code):
//! - [`free_port`]: a loopback port nobody listens on right now.
//! - [`hex`]: bytes from hex text (trace and span ids to look for in OTLP exports).
//! - [`HttpServer`]: a small threaded HTTP/1.1 server that records each request and answers
//!   as a closure says; it plays model services and OTLP collectors.
//! - [`raw_echo_server`] and [`raw_round_trips`]: a libzmq ROUTER that echoes every message
//!   and a blocking DEALER timing round trips, the transport peer of the benchmarks.
//! - [`mcp::Session`]: a minimal MCP client over Streamable HTTP, for gateway tests.
//! - [`one_tebibyte_frame`]: a hand-written ZMTP peer that announces a 1 TiB frame.
//! - [`replay_corpus`]: every file of a fuzz corpus through a check.
//! - [`signal`]: `kill -SIG pid` without the `kill` program (minimal Debian images lack procps).

pub mod blobs;
pub mod mcp;
pub mod postgres;
pub mod servers;

pub use libc::{SIGKILL, SIGSTOP, SIGTERM};

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// The bytes a hex string spells (e.g. a trace id as it appears in an OTLP/protobuf export).
pub fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
        .collect()
}

/// Sends `signal` (`libc::SIGTERM`, `libc::SIGSTOP`, …) to process `pid`, as `kill -SIG pid`
/// would, but without needing the `kill` program, which a minimal system lacks.
pub fn signal(pid: u32, signal: libc::c_int) -> std::io::Result<()> {
    let pid = libc::pid_t::try_from(pid)
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "pid out of range"))?;
    // SAFETY: kill(2) takes plain integers and touches no memory of ours.
    if unsafe { libc::kill(pid, signal) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// A child process killed (and reaped) when dropped, so a failing test leaves none behind.
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// A loopback TCP port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free loopback port")
}

/// One request the server received.
#[derive(Debug, Clone)]
pub struct Request {
    /// The request target, e.g. `/v1/traces`.
    pub path: String,
    /// Header names in lowercase, with their values.
    pub headers: Vec<(String, String)>,
    /// The body as sent.
    pub body: Vec<u8>,
}

impl Request {
    /// The body as JSON (null when it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    /// Whether a header has exactly this value.
    pub fn has_header(&self, name: &str, value: &str) -> bool {
        self.headers.iter().any(|(n, v)| n == name && v == value)
    }
}

/// How the server answers: given the request and how many came before it,
/// `(status, body, delay before answering)`.
/// For a 3xx status the body is sent as the `location` header instead.
pub type Reply = Box<dyn Fn(&Request, usize) -> (u16, Vec<u8>, Duration) + Send + Sync>;

/// A scriptable HTTP server on a free loopback port; it runs until the process ends.
pub struct HttpServer {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    seen: Arc<(Mutex<Vec<Request>>, Condvar)>,
}

impl HttpServer {
    /// Starts a server answering with `reply` (one thread per connection).
    pub fn start(reply: Reply) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let seen = Arc::new((Mutex::new(Vec::new()), Condvar::new()));
        let log = seen.clone();
        let reply = Arc::new(reply);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (log, reply) = (log.clone(), reply.clone());
                std::thread::spawn(move || serve(stream, &log, reply.as_ref()));
            }
        });
        Self { url, seen }
    }

    /// A server that answers every request with 200 and an empty body (an OTLP collector).
    pub fn accepting() -> Self {
        Self::start(Box::new(|_, _| (200, Vec::new(), Duration::ZERO)))
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Request> {
        self.seen.0.lock().map(|seen| seen.clone()).unwrap_or_default()
    }

    /// Waits until at least `n` requests have arrived (or `timeout` passes), then returns all.
    pub fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Request> {
        let deadline = Instant::now() + timeout;
        let (lock, arrived) = &*self.seen;
        let mut seen = lock.lock().expect("log");
        while seen.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            seen = arrived.wait_timeout(seen, left).expect("log").0;
        }
        seen.clone()
    }
}

fn serve(stream: std::net::TcpStream, log: &(Mutex<Vec<Request>>, Condvar), reply: &Reply) {
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let path = line.split_whitespace().nth(1).unwrap_or_default().to_string();
        let mut headers = Vec::new();
        let mut length = 0usize;
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 || header == "\r\n" {
                break;
            }
            if let Some((name, value)) = header.trim_end().split_once(':') {
                let (name, value) = (name.to_ascii_lowercase(), value.trim().to_string());
                if name == "content-length" {
                    length = value.parse().unwrap_or(0);
                }
                headers.push((name, value));
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let request = Request { path, headers, body };
        let count = {
            let mut seen = log.0.lock().expect("log");
            seen.push(request.clone());
            log.1.notify_all();
            seen.len() - 1
        };
        let (status, body, delay) = reply(&request, count);
        std::thread::sleep(delay);
        // A redirect's body is its Location.
        let (location, body) = if (300..400).contains(&status) {
            (format!("location: {}\r\n", String::from_utf8_lossy(&body)), Vec::new())
        } else {
            (String::new(), body)
        };
        let head = format!(
            "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\n{location}content-length: {}\r\n\r\n",
            body.len()
        );
        let stream = reader.get_mut();
        if stream.write_all(head.as_bytes()).is_err() || stream.write_all(&body).is_err() {
            return;
        }
    }
}

/// `n` sequential round trips of `frames` on a blocking DEALER; returns each one's time.
pub fn raw_round_trips(dealer: &zmq::Socket, frames: &[Vec<u8>], n: usize) -> Vec<Duration> {
    (0..n)
        .map(|_| {
            let started = Instant::now();
            dealer.send_multipart(frames, 0).expect("send");
            dealer.recv_multipart(0).expect("recv");
            started.elapsed()
        })
        .collect()
}

/// A ROUTER on a free loopback port that sends every message straight back; returns its
/// endpoint and the context to connect DEALERs with.
pub fn raw_echo_server() -> (String, zmq::Context) {
    let context = zmq::Context::new();
    let router = context.socket(zmq::ROUTER).expect("router");
    router.bind("tcp://127.0.0.1:*").expect("bind");
    let endpoint = router.get_last_endpoint().expect("endpoint").expect("utf8");
    std::thread::spawn(move || {
        while let Ok(frames) = router.recv_multipart(0) {
            if router.send_multipart(frames, 0).is_err() {
                break;
            }
        }
    });
    (endpoint, context)
}

/// A hand-written ZMTP 3.0 peer at `address` (`host:port`): greeting, READY as a DEALER, then
/// one frame header announcing 1 TiB. Returns whether the server closed the connection (as it
/// must, rather than try to buffer the frame).
pub fn one_tebibyte_frame(address: &str) -> bool {
    let mut stream = std::net::TcpStream::connect(address).expect("tcp connect");
    stream.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    let mut greeting = vec![0xFF, 0, 0, 0, 0, 0, 0, 0, 0, 0x7F, 3, 0];
    greeting.extend_from_slice(b"NULL");
    greeting.resize(64, 0);
    stream.write_all(&greeting).expect("greeting");
    let mut theirs = [0u8; 64];
    stream.read_exact(&mut theirs).expect("the server's greeting");
    assert_eq!((theirs[0], theirs[9], theirs[10]), (0xFF, 0x7F, 3), "a ZMTP 3 server");
    let mut ready = vec![5];
    ready.extend_from_slice(b"READY");
    ready.push(11);
    ready.extend_from_slice(b"Socket-Type");
    ready.extend_from_slice(&6u32.to_be_bytes());
    ready.extend_from_slice(b"DEALER");
    let mut command = vec![0x04, u8::try_from(ready.len()).expect("short")];
    command.extend_from_slice(&ready);
    stream.write_all(&command).expect("ready");
    let mut frame = vec![0x02]; // last frame, long size
    frame.extend_from_slice(&(1u64 << 40).to_be_bytes());
    frame.extend_from_slice(&[0x55; 4096]);
    let _ = stream.write_all(&frame);
    let mut sink = [0u8; 4096];
    loop {
        match stream.read(&mut sink) {
            Ok(0) => return true,
            Ok(_) => continue, // its READY
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

/// Runs `check` on every file in the fuzz corpus `dir`; fails if it holds fewer than `min`.
pub fn replay_corpus(dir: &std::path::Path, min: usize, check: impl Fn(&[u8])) {
    let mut inputs = 0;
    for entry in std::fs::read_dir(dir).expect("the corpus is committed") {
        let path = entry.expect("a corpus entry").path();
        check(&std::fs::read(&path).expect("a corpus file"));
        inputs += 1;
    }
    assert!(inputs >= min, "only {inputs} inputs in {}", dir.display());
}
