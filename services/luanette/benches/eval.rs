//! `cargo bench -p luanette --bench eval`: `lua_eval "return 1+1"` round trips per second
//! at 1 and 50 concurrent clients, measured in the same run as its peers:
//!
//! - Redis: `redis-benchmark EVAL "return 1+1" 0` against a local `redis-server` (Debian
//!   package; skipped with a note when absent).
//! - Raw libzmq: a DEALER/ROUTER echo of the same frames, no Lua, no SDK.
//!
//! Goals (issue 4): 1 client ≥ 0.9× raw libzmq; 50 clients ≥ 1.0× Redis.
//!
//! With `LUANETTE_BEFORE=<path of another luanette binary>` it also measures that binary as a
//! process, in the same run (issue 14 compares Lua run in sandbox processes with Lua run on
//! the service's own threads).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hooteproto::v1::{LuaEvalRequest, PingRequest};
use hooteproto::{Client, ClientConfig};

const SEQUENTIAL: usize = 20_000;
const CLIENTS: usize = 50;
const PER_CLIENT: usize = 2_000;

/// Round trips per second and median latency (µs).
struct Rate {
    per_second: f64,
    p50_us: f64,
}

fn median_us(mut latencies: Vec<Duration>) -> f64 {
    latencies.sort();
    latencies
        .get(latencies.len() / 2)
        .map(|d| d.as_secs_f64() * 1e6)
        .unwrap_or(f64::NAN)
}

// ------------------------------------------------------------------ raw libzmq

/// Frames the size of an encoded lua_eval request.
fn raw_frames() -> Vec<Vec<u8>> {
    vec![b"HOOT/1".to_vec(), Vec::new(), vec![0x2a; 60]]
}

fn raw_client(context: &zmq::Context, endpoint: &str) -> zmq::Socket {
    let dealer = context.socket(zmq::DEALER).expect("dealer");
    dealer.connect(endpoint).expect("connect");
    dealer
}

/// `clients` DEALERs driven by one thread with zmq_poll, one request outstanding on each
/// (the shape of redis-benchmark's event loop).
fn raw_polled(clients: usize, per_client: usize) -> Rate {
    let (endpoint, context) = testkit::raw_echo_server();
    let sockets: Vec<zmq::Socket> = (0..clients).map(|_| raw_client(&context, &endpoint)).collect();
    testkit::raw_round_trips(&sockets[0], &raw_frames(), 1000);
    let frames = raw_frames();
    let mut remaining = vec![per_client; clients];
    let mut sent_at = vec![Instant::now(); clients];
    let mut latencies = Vec::with_capacity(clients * per_client);
    let started = Instant::now();
    for (i, socket) in sockets.iter().enumerate() {
        sent_at[i] = Instant::now();
        socket.send_multipart(&frames, 0).expect("send");
    }
    let mut outstanding = clients;
    while outstanding > 0 {
        let mut items: Vec<zmq::PollItem> = sockets.iter().map(|s| s.as_poll_item(zmq::POLLIN)).collect();
        zmq::poll(&mut items, -1).expect("poll");
        let ready: Vec<usize> = (0..clients).filter(|&i| items[i].is_readable()).collect();
        drop(items);
        for i in ready {
            while sockets[i].recv_multipart(zmq::DONTWAIT).is_ok() {
                latencies.push(sent_at[i].elapsed());
                remaining[i] -= 1;
                if remaining[i] == 0 {
                    outstanding -= 1;
                } else {
                    sent_at[i] = Instant::now();
                    sockets[i].send_multipart(&frames, 0).expect("send");
                }
            }
        }
    }
    Rate {
        per_second: (clients * per_client) as f64 / started.elapsed().as_secs_f64(),
        p50_us: median_us(latencies),
    }
}

fn raw(clients: usize, per_client: usize) -> Rate {
    let (endpoint, context) = testkit::raw_echo_server();
    let warm = raw_client(&context, &endpoint);
    testkit::raw_round_trips(&warm, &raw_frames(), 1000);
    let started = Instant::now();
    let threads: Vec<_> = (0..clients)
        .map(|_| {
            let dealer = raw_client(&context, &endpoint);
            std::thread::spawn(move || testkit::raw_round_trips(&dealer, &raw_frames(), per_client))
        })
        .collect();
    let latencies: Vec<Duration> = threads.into_iter().flat_map(|t| t.join().expect("client")).collect();
    Rate {
        per_second: (clients * per_client) as f64 / started.elapsed().as_secs_f64(),
        p50_us: median_us(latencies),
    }
}

// ---------------------------------------------------------------------- Redis

struct Redis(Child, u16);

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn redis() -> Option<Redis> {
    let port = testkit::free_port();
    let child = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let redis = Redis(child, port);
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Some(redis);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

fn redis_benchmark(port: u16, clients: usize, requests: usize) -> Option<Rate> {
    let output = Command::new("redis-benchmark")
        .args([
            "-p",
            &port.to_string(),
            "-c",
            &clients.to_string(),
            "-n",
            &requests.to_string(),
            "--csv",
        ])
        .args(["EVAL", "return 1+1", "0"])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&output.stdout);
    let row = text.lines().find(|l| l.starts_with("\"EVAL"))?;
    let fields: Vec<f64> = row
        .split("\",\"")
        .skip(1)
        .filter_map(|f| f.trim_matches('"').parse().ok())
        .collect();
    // rps, avg, min, p50, ...
    Some(Rate {
        per_second: *fields.first()?,
        p50_us: fields.get(3)? * 1000.0,
    })
}

// ------------------------------------------------------------------- luanette

/// `ping` measures the same path without Lua (SDK client, server and dispatch only).
/// `shared`: all callers use one client (one socket, requests multiplexed), as Holler does.
async fn luanette_rate(endpoint: &str, clients: usize, per_client: usize, ping: bool, shared: bool) -> Rate {
    let mut handles = Vec::new();
    let one = Client::connect(ClientConfig::new(endpoint)).expect("connect");
    one.call(PingRequest {}).await.expect("ping");
    let started = Instant::now();
    for _ in 0..clients {
        let client = if shared {
            one.clone()
        } else {
            let client = Client::connect(ClientConfig::new(endpoint)).expect("connect");
            client.call(PingRequest {}).await.expect("ping");
            client
        };
        handles.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(per_client);
            for _ in 0..per_client {
                let sent = Instant::now();
                if ping {
                    client.call(PingRequest {}).await.expect("ping");
                } else {
                    let request = LuaEvalRequest {
                        code: "return 1+1".into(),
                        params: None,
                    };
                    let reply = client.call(request).await.expect("eval");
                    assert!(reply.result.is_some());
                }
                latencies.push(sent.elapsed());
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for handle in handles {
        latencies.extend(handle.await.expect("client"));
    }
    Rate {
        per_second: (clients * per_client) as f64 / started.elapsed().as_secs_f64(),
        p50_us: median_us(latencies),
    }
}

fn row(name: &str, clients: usize, rate: &Rate) {
    println!(
        "{name:<28} {clients:>3} clients  {:>9.0} req/s  p50 {:>7.1} µs",
        rate.per_second, rate.p50_us
    );
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --all-targets` passes nothing: skip.
    if !std::env::args().any(|a| a == "--bench") {
        println!("eval bench: run with `cargo bench -p luanette --bench eval`");
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tmp");
    let mut config = luanette::Config::new(dir.path().to_path_buf());
    config.bind = "tcp://127.0.0.1:*".into();
    config.pub_bind = None;
    config.health_bind = None;
    let bound = runtime.block_on(luanette::bind(config)).expect("luanette starts");
    let endpoint = bound.endpoint().to_string();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = runtime.spawn(bound.run(async move {
        let _ = stopped.await;
    }));

    println!("lua_eval \"return 1+1\" round trips (same run, same machine)\n");
    let raw1 = raw(1, SEQUENTIAL);
    let raw50 = raw(CLIENTS, PER_CLIENT);
    let raw50_polled = raw_polled(CLIENTS, PER_CLIENT);
    let lua1 = runtime.block_on(async {
        luanette_rate(&endpoint, 1, 1000, false, false).await; // warm up
        luanette_rate(&endpoint, 1, SEQUENTIAL, false, false).await
    });
    let ping1 = runtime.block_on(luanette_rate(&endpoint, 1, SEQUENTIAL, true, false));
    let lua50 = runtime.block_on(luanette_rate(&endpoint, CLIENTS, PER_CLIENT, false, false));
    let lua50_shared = runtime.block_on(luanette_rate(&endpoint, CLIENTS, PER_CLIENT, false, true));
    let ping50 = runtime.block_on(luanette_rate(&endpoint, CLIENTS, PER_CLIENT, true, false));
    let redis_server = redis();
    let redis1 = redis_server.as_ref().and_then(|r| redis_benchmark(r.1, 1, SEQUENTIAL));
    let redis50 = redis_server
        .as_ref()
        .and_then(|r| redis_benchmark(r.1, CLIENTS, CLIENTS * PER_CLIENT));
    drop(redis_server);

    row("raw libzmq echo", 1, &raw1);
    row("raw libzmq echo (threads)", CLIENTS, &raw50);
    row("raw libzmq echo (1 poller)", CLIENTS, &raw50_polled);
    row("luanette lua_eval", 1, &lua1);
    row("luanette lua_eval", CLIENTS, &lua50);
    row("luanette lua_eval 1 socket", CLIENTS, &lua50_shared);
    row("luanette ping (no Lua)", 1, &ping1);
    row("luanette ping (no Lua)", CLIENTS, &ping50);
    match (&redis1, &redis50) {
        (Some(r1), Some(r50)) => {
            row("redis EVAL", 1, r1);
            row("redis EVAL", CLIENTS, r50);
        }
        _ => println!("redis-server/redis-benchmark not found: install the Debian package redis-server"),
    }
    println!();
    println!(
        "1 client:   luanette / raw libzmq = {:.2}x (goal >= 0.9x)",
        lua1.per_second / raw1.per_second
    );
    if let (Some(r1), Some(r50)) = (&redis1, &redis50) {
        println!(
            "1 client:   luanette / redis      = {:.2}x",
            lua1.per_second / r1.per_second
        );
        println!(
            "50 clients: luanette / redis      = {:.2}x (goal >= 1.0x)",
            lua50.per_second / r50.per_second
        );
        println!(
            "50 in flight on 1 socket: luanette / redis = {:.2}x",
            lua50_shared.per_second / r50.per_second
        );
    }
    println!(
        "50 clients: luanette / raw libzmq = {:.2}x",
        lua50.per_second / raw50.per_second
    );
    if let Some(before) = std::env::var_os("LUANETTE_BEFORE") {
        compare_with(&runtime, std::path::Path::new(&before));
    }
    let _ = stop.send(());
    let _ = runtime.block_on(server);
}

/// Measures a luanette binary as its own process: (1 client, 50 clients).
fn measure_binary(runtime: &tokio::runtime::Runtime, binary: &std::path::Path) -> (Rate, Rate) {
    let dir = tempfile::tempdir().expect("tmp");
    let endpoint = format!("tcp://127.0.0.1:{}", testkit::free_port());
    let mut child = Command::new(binary)
        .args([
            "--bind",
            &endpoint,
            "--pub-bind",
            "none",
            "--health-bind",
            "none",
            "--data-dir",
        ])
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start luanette");
    let rates = runtime.block_on(async {
        luanette_rate(&endpoint, 1, 1000, false, false).await; // warm up (waits for it to answer)
        let one = luanette_rate(&endpoint, 1, SEQUENTIAL, false, false).await;
        let fifty = luanette_rate(&endpoint, CLIENTS, PER_CLIENT, false, false).await;
        (one, fifty)
    });
    let _ = child.kill();
    let _ = child.wait();
    rates
}

/// This build's binary against another, both as processes, alternated twice.
fn compare_with(runtime: &tokio::runtime::Runtime, before: &std::path::Path) {
    let now = std::path::Path::new(env!("CARGO_BIN_EXE_luanette"));
    println!();
    for round in 1..=2 {
        let (before1, before50) = measure_binary(runtime, before);
        let (now1, now50) = measure_binary(runtime, now);
        row(&format!("round {round}: before"), 1, &before1);
        row(&format!("round {round}: before"), CLIENTS, &before50);
        row(&format!("round {round}: now"), 1, &now1);
        row(&format!("round {round}: now"), CLIENTS, &now50);
        println!(
            "round {round}: now / before = {:.2}x at 1 client (p50 {:.1} vs {:.1} µs), {:.2}x at {CLIENTS} clients",
            now1.per_second / before1.per_second,
            now1.p50_us,
            before1.p50_us,
            now50.per_second / before50.per_second
        );
    }
}
