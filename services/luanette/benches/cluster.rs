//! `cargo bench -p luanette --bench cluster`: job throughput and latency for a trivial script,
//! the embedded queue (sled, jobs in the service's process) against cluster mode (PostgreSQL,
//! `luanette worker` processes) with 1, 2 and 4 workers, in the same run on the same machine.
//! It starts its own throwaway PostgreSQL with `scripts/postgres`.
//!
//! - throughput: 1,000 jobs submitted by 4 concurrent clients, until the last has finished;
//! - latency: `job_execute` to `succeeded` for the same jobs (server timestamps), p50/p99;
//! - claim: with an idle queue, one job at a time, from being recorded to being started.
//!
//! Goals (issue 17): cluster with one worker ≥ 0.5× embedded; claim-to-start p50 ≤ 5 ms.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hooteproto::v1::{JobExecuteRequest, JobInfo, JobPollRequest, JobState, PingRequest, PollMode, ScriptStoreRequest};
use hooteproto::{Client, ClientConfig, RequestOptions};

const JOBS: usize = 1_000;
const SUBMITTERS: usize = 4;
const SEQUENTIAL: usize = 200;
/// Jobs one worker (or the embedded service) runs at once: the machine has 2 cores.
const PER_WORKER: usize = 2;

fn seconds(t: &Option<prost_types::Timestamp>) -> f64 {
    t.as_ref()
        .map_or(f64::NAN, |t| t.seconds as f64 + t.nanos as f64 * 1e-9)
}

fn percentile(mut values: Vec<f64>, p: f64) -> f64 {
    values.sort_by(f64::total_cmp);
    values[((values.len() as f64 - 1.0) * p) as usize]
}

struct Measured {
    per_second: f64,
    latency_p50_ms: f64,
    latency_p99_ms: f64,
    claim_p50_ms: f64,
    claim_p99_ms: f64,
}

async fn wait_all(client: &Client, ids: &[String]) -> Vec<JobInfo> {
    let mut done = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(500) {
        loop {
            let reply = client
                .call_with(
                    JobPollRequest {
                        job_ids: chunk.to_vec(),
                        timeout_ms: 30_000,
                        mode: PollMode::All as i32,
                    },
                    RequestOptions {
                        timeout: Some(Duration::from_secs(40)),
                        attempt_timeout: Some(Duration::from_secs(35)),
                        ..Default::default()
                    },
                )
                .await
                .expect("poll");
            if !reply.timed_out {
                done.extend(reply.completed);
                break;
            }
        }
    }
    assert!(
        done.iter().all(|j| j.state == JobState::Succeeded as i32),
        "every job succeeded"
    );
    done
}

async fn measure(client: &Client) -> Measured {
    let script = client
        .call(ScriptStoreRequest {
            content: "function main(p) return p.n end".into(),
            ..Default::default()
        })
        .await
        .expect("store")
        .script
        .expect("script")
        .script_hash;
    let execute = |n: usize| JobExecuteRequest {
        script_hash: script.clone(),
        params: Some(hooteproto::wkt::Struct::from_json(
            serde_json::json!({"n": n}).as_object().cloned().unwrap_or_default(),
        )),
        ..Default::default()
    };
    // Warm the sandboxes.
    let warm: Vec<String> = futures_ids(client, (0..20).map(execute).collect()).await;
    wait_all(client, &warm).await;

    // Claim latency: one job at a time on an idle queue.
    let mut claims = Vec::new();
    for n in 0..SEQUENTIAL {
        let id = client.call(execute(n)).await.expect("execute").job_id;
        let job = wait_all(client, &[id]).await.remove(0);
        claims.push((seconds(&job.started_at) - seconds(&job.created_at)) * 1000.0);
    }

    // Throughput.
    let started = Instant::now();
    let requests: Vec<JobExecuteRequest> = (0..JOBS).map(execute).collect();
    let ids = futures_ids(client, requests).await;
    let jobs = wait_all(client, &ids).await;
    let took = started.elapsed();
    let latencies: Vec<f64> = jobs
        .iter()
        .map(|j| (seconds(&j.finished_at) - seconds(&j.created_at)) * 1000.0)
        .collect();
    Measured {
        per_second: JOBS as f64 / took.as_secs_f64(),
        latency_p50_ms: percentile(latencies.clone(), 0.5),
        latency_p99_ms: percentile(latencies, 0.99),
        claim_p50_ms: percentile(claims.clone(), 0.5),
        claim_p99_ms: percentile(claims, 0.99),
    }
}

/// Submits `requests` from SUBMITTERS concurrent tasks; returns the job ids.
async fn futures_ids(client: &Client, requests: Vec<JobExecuteRequest>) -> Vec<String> {
    let per = requests.len().div_ceil(SUBMITTERS);
    let mut tasks = Vec::new();
    let mut requests = requests.into_iter();
    for _ in 0..SUBMITTERS {
        let batch: Vec<JobExecuteRequest> = requests.by_ref().take(per).collect();
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for request in batch {
                ids.push(client.call(request).await.expect("execute").job_id);
            }
            ids
        }));
    }
    let mut ids = Vec::new();
    for task in tasks {
        ids.extend(task.await.expect("submitter"));
    }
    ids
}

async fn front(data: &std::path::Path, database_url: Option<String>) -> (Client, tokio::sync::oneshot::Sender<()>) {
    let mut config = luanette::Config::new(data.to_path_buf());
    config.bind = "tcp://127.0.0.1:*".into();
    config.pub_bind = None;
    config.health_bind = None;
    config.max_jobs = PER_WORKER;
    config.max_unfinished_jobs_per_client = JOBS * 2;
    if let Some(url) = database_url {
        config.cluster = Some(luanette::cluster::ClusterConfig::new(url));
        config.local_workers = 0;
    }
    let bound = luanette::bind(config).await.expect("luanette");
    let client = Client::connect(ClientConfig::new(bound.endpoint())).expect("client");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(bound.run(async move {
        let _ = stopped.await;
    }));
    client.call(PingRequest {}).await.expect("ping");
    (client, stop)
}

fn worker(data: &std::path::Path, url: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_luanette"))
        .arg("worker")
        .arg("--data-dir")
        .arg(data)
        .args(["--database-url", url, "--health-bind", "none"])
        .args(["--max-jobs", &PER_WORKER.to_string()])
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn luanette worker")
}

fn print(name: &str, m: &Measured, embedded: f64) {
    println!(
        "  {name:<22} {:>8.0} jobs/s ({:>4.2}x embedded)  execute->succeeded p50 {:>7.1} ms p99 {:>8.1} ms  \
         claim p50 {:>5.2} ms p99 {:>6.2} ms",
        m.per_second,
        m.per_second / embedded,
        m.latency_p50_ms,
        m.latency_p99_ms,
        m.claim_p50_ms,
        m.claim_p99_ms
    );
}

fn main() {
    luanette::isolation::run_if_requested();
    if !std::env::args().any(|a| a == "--bench") {
        println!("cluster bench: run with `cargo bench -p luanette --bench cluster`");
        return;
    }
    // Directly under /tmp: as root, the server runs as `postgres`, which must reach it.
    let pg_dir = std::env::temp_dir().join(format!("hoot-bench-pg-{}", std::process::id()));
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let started = Command::new(format!("{root}/scripts/postgres"))
        .arg("start")
        .arg(&pg_dir)
        .output()
        .expect("scripts/postgres");
    assert!(started.status.success(), "{}", String::from_utf8_lossy(&started.stderr));
    let exported = String::from_utf8_lossy(&started.stdout);
    let server = exported
        .trim()
        .rsplit_once('=')
        .map(|(_, url)| url.to_string())
        .expect("a URL");
    // SAFETY: set before any thread of this process reads the environment.
    unsafe { std::env::set_var(testkit::postgres::URL_VARIABLE, &server) };
    let _stop_postgres = StopPostgres(pg_dir.clone());

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        println!("job throughput and latency, trivial script, same run ({JOBS} jobs, {SUBMITTERS} submitters):");
        let data = tempfile::tempdir().expect("tmp");
        let (client, stop) = front(data.path(), None).await;
        let embedded = measure(&client).await;
        drop(stop);
        print("embedded (sled)", &embedded, embedded.per_second);
        for workers in [1, 2, 4] {
            let data = tempfile::tempdir().expect("tmp");
            let url = testkit::postgres::database_for(data.path()).expect("database");
            let (client, stop) = front(data.path(), Some(url.clone())).await;
            let mut children: Vec<Child> = (0..workers).map(|_| worker(data.path(), &url)).collect();
            let measured = measure(&client).await;
            print(&format!("cluster, {workers} worker(s)"), &measured, embedded.per_second);
            for child in &mut children {
                let _ = child.kill();
                let _ = child.wait();
            }
            drop(stop);
        }
    });
}

/// Stops the bench's PostgreSQL however the bench ends (a failed assertion included).
struct StopPostgres(std::path::PathBuf);

impl Drop for StopPostgres {
    fn drop(&mut self) {
        let _ = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/postgres"))
            .arg("stop")
            .arg(&self.0)
            .status();
    }
}
