//! `cargo bench -p holler --bench orchestration`: what `garden.status()` costs a script, from
//! inside a Lua run, against its peers measured in the same run on the same stack
//! (`holler::up::start`, in this process):
//!
//! - the SDK: `transport_status` sent straight to Chaosgarden by a Rust client;
//! - an empty evaluation (`return 1`), the cost of a run itself;
//! - `garden.status()` once per evaluation, and 2,000 times in one evaluation (per call,
//!   from the run's own duration).
//!
//! Goal (issue 16): reads fast enough to call at every marker; a marker's job has the time
//! to the next section boundary, seconds at any tempo.

use std::time::{Duration, Instant};

use hooteproto::v1::{LuaEvalRequest, TransportStatusRequest};
use hooteproto::{Client, ClientConfig};

const SEQUENTIAL: usize = 2_000;
const IN_ONE_RUN: usize = 2_000;

fn p50_us(mut samples: Vec<Duration>) -> f64 {
    samples.sort();
    samples[samples.len() / 2].as_secs_f64() * 1e6
}

fn p99_us(mut samples: Vec<Duration>) -> f64 {
    samples.sort();
    samples[samples.len() * 99 / 100].as_secs_f64() * 1e6
}

async fn eval(client: &Client, code: &str) -> hooteproto::v1::LuaEvalReply {
    client
        .call(LuaEvalRequest {
            code: code.into(),
            ..Default::default()
        })
        .await
        .expect("eval")
}

async fn sample_evals(client: &Client, code: &str) -> Vec<Duration> {
    let mut samples = Vec::with_capacity(SEQUENTIAL);
    for _ in 0..SEQUENTIAL {
        let started = Instant::now();
        eval(client, code).await;
        samples.push(started.elapsed());
    }
    samples
}

fn main() {
    // The sandboxes run as copies of this executable.
    luanette::isolation::run_if_requested();
    if !std::env::args().any(|a| a == "--bench") {
        println!("orchestration bench: run with `cargo bench -p holler --bench orchestration`");
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let dir = tempfile::tempdir().expect("tmp");
        let endpoint = || format!("tcp://127.0.0.1:{}", testkit::free_port());
        let endpoints = holler::backends::Endpoints {
            luanette: endpoint(),
            hootenanny: endpoint(),
            chaosgarden: endpoint(),
        };
        let stack = holler::up::start(&holler::up::StackConfig {
            data_dir: dir.path().to_path_buf(),
            endpoints: endpoints.clone(),
            key: None,
            audio: chaosgarden::Output::Null,
            soundfont: None,
            media_budget: 1 << 30,
            health: false,
            broadcasts: None,
            allow_transport_from_lua: false,
            database_url: None,
            blobs: cas::BlobConfig::default(),
        })
        .await
        .expect("stack");
        let garden = Client::connect(ClientConfig::new(endpoints.chaosgarden.clone())).expect("client");
        let lua = Client::connect(ClientConfig::new(endpoints.luanette.clone())).expect("client");
        // Warm both paths (connections, sandboxes, first calls).
        for _ in 0..200 {
            garden.call(TransportStatusRequest {}).await.expect("status");
            eval(&lua, "return garden.status().tempo_bpm").await;
        }

        let mut direct = Vec::with_capacity(SEQUENTIAL);
        for _ in 0..SEQUENTIAL {
            let started = Instant::now();
            garden.call(TransportStatusRequest {}).await.expect("status");
            direct.push(started.elapsed());
        }
        let empty = sample_evals(&lua, "return 1").await;
        let once = sample_evals(&lua, "return garden.status().tempo_bpm").await;
        let looped = eval(
            &lua,
            &format!("local t = 0 for i = 1, {IN_ONE_RUN} do t = t + garden.status().tempo_bpm end return t"),
        )
        .await;
        let per_call_in_run = looped.duration_us as f64 / IN_ONE_RUN as f64;

        let (direct_p50, direct_p99) = (p50_us(direct.clone()), p99_us(direct));
        let (empty_p50, once_p50, once_p99) = (p50_us(empty), p50_us(once.clone()), p99_us(once));
        println!("garden.status() from Lua vs its peers, same stack, same run (µs):");
        println!("  SDK transport_status, Rust client      p50 {direct_p50:8.1}  p99 {direct_p99:8.1}");
        println!("  lua_eval `return 1` (a run's cost)      p50 {empty_p50:8.1}");
        println!("  lua_eval one garden.status()            p50 {once_p50:8.1}  p99 {once_p99:8.1}");
        println!(
            "    added by the call (p50 minus empty)   {:8.1}  = {:.2}x the SDK's round trip",
            once_p50 - empty_p50,
            (once_p50 - empty_p50) / direct_p50
        );
        println!(
            "  {IN_ONE_RUN} garden.status() in one run, per call  {per_call_in_run:8.1}  = {:.2}x the SDK's round trip",
            per_call_in_run / direct_p50
        );
        stack.stop().await.expect("stop");
    });
}
