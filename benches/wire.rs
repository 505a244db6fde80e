//! `cargo bench --bench wire`: the SDK against its peers, measured in the same run.
//!
//! - P1: Envelope{JobExecute} encode+decode (prost) vs serde_json of the seed's JSON shape.
//! - P2: Ping round trip, SDK client+server vs raw blocking libzmq DEALER/ROUTER (echo), and
//!   pipelined throughput of both.
//!
//! Prints a table with ratios. Figures depend on the machine (the project's is 2 cores).

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hooteproto::v1::envelope::Payload;
use hooteproto::v1::{Envelope, JobExecuteRequest, PingReply, PingRequest};
use hooteproto::{Client, ClientConfig, Handler, RequestContext, Server, ServerConfig, Status};
use prost::Message as _;
use prost_types::value::Kind;
use serde::{Deserialize, Serialize};

const HASH_A: &str = "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262";
const HASH_B: &str = "4b1d8e1c7a2b0e7f9c3d5a6b8e0f1a2c3d4e5f60718293a4b5c6d7e8f9012345";
const HASH_C: &str = "0f0e0d0c0b0a09080706050403020100f0e0d0c0b0a090807060504030201000";
const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

// ---------------------------------------------------------------- P1: encoding

/// The seed design's JSON envelope: an internally tagged payload enum.
#[derive(Serialize, Deserialize)]
struct SeedEnvelope {
    id: String,
    traceparent: Option<String>,
    payload: SeedPayload,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum SeedPayload {
    JobExecute {
        script_hash: String,
        params: serde_json::Value,
        tags: Vec<String>,
    },
}

fn seed_message() -> SeedEnvelope {
    SeedEnvelope {
        id: "550e8400-e29b-41d4-a716-446655440000".into(),
        traceparent: Some(TRACEPARENT.into()),
        payload: SeedPayload::JobExecute {
            script_hash: HASH_A.into(),
            params: serde_json::json!({
                "current_section": HASH_B,
                "next_section": HASH_C,
                "beats_available": 16,
                "tempo": 120.0,
            }),
            tags: vec!["transition".into(), "jazz".into()],
        },
    }
}

fn proto_message() -> Envelope {
    let value = |kind| prost_types::Value { kind: Some(kind) };
    let params = hooteproto::wkt::Struct::from(prost_types::Struct {
        fields: [
            ("current_section".to_string(), value(Kind::StringValue(HASH_B.into()))),
            ("next_section".to_string(), value(Kind::StringValue(HASH_C.into()))),
            ("beats_available".to_string(), value(Kind::NumberValue(16.0))),
            ("tempo".to_string(), value(Kind::NumberValue(120.0))),
        ]
        .into_iter()
        .collect(),
    });
    Envelope {
        id: "550e8400-e29b-41d4-a716-446655440000".into(),
        traceparent: TRACEPARENT.into(),
        timeout_ms: 10_000,
        payload: Some(Payload::JobExecute(JobExecuteRequest {
            script_hash: HASH_A.into(),
            params: Some(params),
            tags: vec!["transition".into(), "jazz".into()],
            ..Default::default()
        })),
    }
}

/// Median ns per iteration over `rounds` timed rounds of `iterations` calls.
fn time_per_op(rounds: usize, iterations: u32, mut f: impl FnMut()) -> f64 {
    for _ in 0..iterations / 10 {
        f();
    }
    let mut samples: Vec<f64> = (0..rounds)
        .map(|_| {
            let started = Instant::now();
            for _ in 0..iterations {
                f();
            }
            started.elapsed().as_nanos() as f64 / f64::from(iterations)
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

fn p1_encoding() {
    let seed = seed_message();
    let proto = proto_message();
    let json_size = serde_json::to_vec(&seed).map(|v| v.len()).unwrap_or(0);
    let proto_size = proto.encoded_len();
    let json_ns = time_per_op(7, 200_000, || {
        let bytes = serde_json::to_vec(black_box(&seed)).unwrap_or_default();
        let back: Option<SeedEnvelope> = serde_json::from_slice(&bytes).ok();
        black_box(back);
    });
    let mut buffer = Vec::with_capacity(512);
    let proto_ns = time_per_op(7, 200_000, || {
        buffer.clear();
        let _ = black_box(&proto).encode(&mut buffer);
        black_box(Envelope::decode(buffer.as_slice()).ok());
    });
    // The same, when the receiver also reads every param (wkt::Struct decodes on read).
    let proto_read_ns = time_per_op(7, 200_000, || {
        buffer.clear();
        let _ = black_box(&proto).encode(&mut buffer);
        if let Ok(Envelope {
            payload: Some(Payload::JobExecute(job)),
            ..
        }) = Envelope::decode(buffer.as_slice())
        {
            black_box(job.params.map(|p| p.to_prost()));
        }
    });
    println!("P1  Envelope{{JobExecute}} encode+decode");
    println!("    serde_json (seed shape)          {json_ns:>7.0} ns/op   {json_size:>4} bytes");
    println!("    prost (hooteproto.v1)            {proto_ns:>7.0} ns/op   {proto_size:>4} bytes");
    println!("    prost, then reading the params   {proto_read_ns:>7.0} ns/op");
    println!(
        "    ratio: {:.2}x faster ({:.2}x reading params), {:.2}x the size   (goal: >= 3x faster, no larger)",
        json_ns / proto_ns,
        json_ns / proto_read_ns,
        proto_size as f64 / json_size as f64
    );
}

// ---------------------------------------------------------------- P2: transport

struct Pong;

impl Handler for Pong {
    async fn handle(&self, _context: RequestContext, payload: Payload) -> Result<Payload, Status> {
        match payload {
            Payload::Ping(_) => Ok(Payload::PingReply(PingReply::default())),
            other => Err(Status::unimplemented(other.name())),
        }
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn ping_frames() -> Vec<Vec<u8>> {
    let envelope = Envelope {
        id: "raw-1".into(),
        payload: Some(Payload::Ping(PingRequest {})),
        ..Default::default()
    };
    vec![b"HOOT/1".to_vec(), vec![], envelope.encode_to_vec()]
}

fn raw_throughput(dealer: &zmq::Socket, total: usize, window: usize) -> f64 {
    let frames = ping_frames();
    let started = Instant::now();
    let (mut sent, mut received) = (0, 0);
    while received < total {
        while sent < total && sent - received < window {
            dealer.send_multipart(&frames, 0).expect("send");
            sent += 1;
        }
        dealer.recv_multipart(0).expect("recv");
        received += 1;
    }
    total as f64 / started.elapsed().as_secs_f64()
}

/// `n` sequential typed pings from a spawned task (as a request handler would call).
async fn sdk_latencies(client: &Client, n: usize) -> Vec<Duration> {
    let client = client.clone();
    tokio::spawn(async move {
        let mut latencies = Vec::with_capacity(n);
        for _ in 0..n {
            let started = Instant::now();
            client.call(PingRequest {}).await.expect("ping");
            latencies.push(started.elapsed());
        }
        latencies
    })
    .await
    .expect("latency task")
}

async fn sdk_throughput(client: &Client, total: usize, concurrency: usize) -> f64 {
    let started = Instant::now();
    let per_task = total / concurrency;
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move {
                for _ in 0..per_task {
                    client.call(PingRequest {}).await.expect("ping");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("task");
    }
    (per_task * concurrency) as f64 / started.elapsed().as_secs_f64()
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn p2_transport() {
    const BLOCKS: usize = 6;
    const PER_BLOCK: usize = 4_000;
    const TOTAL: usize = 100_000;
    const IN_FLIGHT: usize = 256;
    // The raw client gets its own context (its own I/O thread), as a separate process would.
    let (raw_endpoint, _raw_server_context) = testkit::raw_echo_server();
    let raw_client_context = zmq::Context::new();
    let dealer = raw_client_context.socket(zmq::DEALER).expect("dealer");
    dealer.connect(&raw_endpoint).expect("connect");

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("rt");
    let (client, stop, running) = runtime.block_on(async {
        let server = Server::bind(ServerConfig::new("tcp://127.0.0.1:*")).expect("bind");
        let endpoint = server.local_endpoint().to_string();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let running = tokio::spawn(server.run(Arc::new(Pong), async move {
            let _ = stopped.await;
        }));
        (
            Client::connect(ClientConfig::new(&endpoint)).expect("connect"),
            stop,
            running,
        )
    });

    // Warm up both, then alternate blocks so both see the same machine noise.
    testkit::raw_round_trips(&dealer, &ping_frames(), 1000);
    runtime.block_on(sdk_latencies(&client, 1000));
    let (mut raw, mut sdk) = (Vec::new(), Vec::new());
    let (mut raw_rates, mut sdk_rates) = (Vec::new(), Vec::new());
    for _ in 0..BLOCKS {
        raw.extend(testkit::raw_round_trips(&dealer, &ping_frames(), PER_BLOCK));
        sdk.extend(runtime.block_on(sdk_latencies(&client, PER_BLOCK)));
    }
    for _ in 0..3 {
        raw_rates.push(raw_throughput(&dealer, TOTAL, IN_FLIGHT));
        sdk_rates.push(runtime.block_on(sdk_throughput(&client, TOTAL, IN_FLIGHT)));
    }
    let _ = stop.send(());
    let _ = runtime.block_on(running);
    raw.sort();
    sdk.sort();
    let (raw_rate, sdk_rate) = (median(raw_rates), median(sdk_rates));

    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!(
        "P2  Ping round trip, tcp loopback ({} sequential each, in {BLOCKS} alternating blocks)",
        BLOCKS * PER_BLOCK
    );
    println!(
        "    raw libzmq (blocking echo)  p50 {:>7.1} us   p99 {:>7.1} us",
        us(percentile(&raw, 0.5)),
        us(percentile(&raw, 0.99))
    );
    println!(
        "    SDK Client -> Server        p50 {:>7.1} us   p99 {:>7.1} us",
        us(percentile(&sdk, 0.5)),
        us(percentile(&sdk, 0.99))
    );
    println!(
        "    ratio p50: {:.2}x raw                              (goal: <= 1.2x)",
        us(percentile(&sdk, 0.5)) / us(percentile(&raw, 0.5))
    );
    println!("P2  Pipelined pings ({TOTAL}, {IN_FLIGHT} in flight; median of 3)");
    println!("    raw libzmq                  {raw_rate:>9.0} req/s");
    println!("    SDK                         {sdk_rate:>9.0} req/s");
    println!(
        "    ratio: {:.2}x raw                                  (goal: >= 100k req/s)",
        sdk_rate / raw_rate
    );
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing: run a quick smoke.
    let benching = std::env::args().any(|a| a == "--bench");
    if !benching {
        println!("wire bench: run with `cargo bench --bench wire`");
        return;
    }
    p1_encoding();
    p2_transport();
}
