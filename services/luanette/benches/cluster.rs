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
/// Embedded and cluster are measured in turn this many times: one machine's rate drifts by
/// a third from minute to minute, so each ratio is taken within a round and the median given.
const ROUNDS: usize = 3;

fn seconds(t: &Option<prost_types::Timestamp>) -> f64 {
    t.as_ref()
        .map_or(f64::NAN, |t| t.seconds as f64 + t.nanos as f64 * 1e-9)
}

fn percentile(mut values: Vec<f64>, p: f64) -> f64 {
    values.sort_by(f64::total_cmp);
    values[((values.len() as f64 - 1.0) * p) as usize]
}

/// CPU time (user + system, ms; children that exited included) of this process and its
/// descendants other than the workers (the front, its sandboxes, the bench's clients), of the
/// workers and their sandboxes, and of every `postgres` process, read from /proc.
#[derive(Debug, Clone, Copy, Default)]
struct Cpu {
    front: f64,
    workers: f64,
    postgres: f64,
}

fn cpu_now(workers: &[u32]) -> Cpu {
    // SAFETY: sysconf has no preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let mut processes = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // "pid (comm) state ppid ... utime stime": comm may hold spaces, so split after ')'.
        let Some((head, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let comm = head.split_once('(').map_or("", |(_, c)| c);
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let field = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
        processes.push((
            pid,
            field(1) as u32,
            comm.to_string(),
            // utime + stime, and cutime + cstime: children that exited and were reaped (a
            // sandbox process replaced, a backend that closed) count in their parent.
            (field(11) + field(12) + field(13) + field(14)) * 1000.0 / per_second,
        ));
    }
    let descends_from = |mut pid: u32, roots: &[u32]| {
        for _ in 0..64 {
            if roots.contains(&pid) {
                return true;
            }
            match processes.iter().find(|p| p.0 == pid) {
                Some(p) if p.1 > 1 => pid = p.1,
                _ => return false,
            }
        }
        false
    };
    let me = std::process::id();
    let mut cpu = Cpu::default();
    for (pid, _, comm, ms) in &processes {
        if comm.starts_with("postgres") {
            cpu.postgres += ms;
        } else if descends_from(*pid, workers) {
            cpu.workers += ms;
        } else if descends_from(*pid, &[me]) {
            cpu.front += ms;
        }
    }
    cpu
}

struct Measured {
    /// CPU per job of the throughput run, in ms.
    cpu: Cpu,
    per_second: f64,
    /// How fast `job_execute` took the jobs (all were in before the last finished).
    submitted_per_second: f64,
    latency_p50_ms: f64,
    latency_p99_ms: f64,
    claim_p50_ms: f64,
    claim_p99_ms: f64,
    /// Started to finished (server timestamps) of the throughput run's jobs, p50: how long a
    /// trivial job holds its slot, which on a saturated host is mostly waiting for a core.
    held_p50_ms: f64,
    /// Slots busy on average from the first start to the last finish.
    busy_slots: f64,
    /// How busy the host's cores were during the throughput run (every process and the
    /// kernel, from /proc/stat), and what that comes to per job in CPU ms: the whole cost,
    /// where `cpu` names only the processes it can attribute.
    host_busy: f64,
    host_cpu_ms: f64,
}

/// All and idle (idle + iowait) ticks of the host's cores so far.
fn host_ticks() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: Vec<f64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    (
        ticks.iter().sum(),
        ticks.get(3).unwrap_or(&0.0) + ticks.get(4).unwrap_or(&0.0),
    )
}

fn cores() -> f64 {
    std::thread::available_parallelism().map_or(1.0, |n| n.get() as f64)
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

async fn measure(client: &Client, workers: &[u32]) -> Measured {
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
    let host_before = host_ticks();
    let cpu_before = cpu_now(workers);
    let started = Instant::now();
    let requests: Vec<JobExecuteRequest> = (0..JOBS).map(execute).collect();
    let ids = futures_ids(client, requests).await;
    let submitted = started.elapsed();
    let jobs = wait_all(client, &ids).await;
    let took = started.elapsed();
    let cpu_after = cpu_now(workers);
    let host_after = host_ticks();
    let (all, idle) = (host_after.0 - host_before.0, host_after.1 - host_before.1);
    let host_busy = if all > 0.0 { 1.0 - idle / all } else { f64::NAN };
    let per_job = |after: f64, before: f64| (after - before) / JOBS as f64;
    let first_start = jobs
        .iter()
        .map(|j| seconds(&j.started_at))
        .fold(f64::INFINITY, f64::min);
    let last_finish = jobs.iter().map(|j| seconds(&j.finished_at)).fold(0.0, f64::max);
    let held: Vec<f64> = jobs
        .iter()
        .map(|j| (seconds(&j.finished_at) - seconds(&j.started_at)) * 1000.0)
        .collect();
    let busy_slots = held.iter().sum::<f64>() / 1000.0 / (last_finish - first_start);
    let latencies: Vec<f64> = jobs
        .iter()
        .map(|j| (seconds(&j.finished_at) - seconds(&j.created_at)) * 1000.0)
        .collect();
    Measured {
        cpu: Cpu {
            front: per_job(cpu_after.front, cpu_before.front),
            workers: per_job(cpu_after.workers, cpu_before.workers),
            postgres: per_job(cpu_after.postgres, cpu_before.postgres),
        },
        per_second: JOBS as f64 / took.as_secs_f64(),
        submitted_per_second: JOBS as f64 / submitted.as_secs_f64(),
        latency_p50_ms: percentile(latencies.clone(), 0.5),
        latency_p99_ms: percentile(latencies, 0.99),
        claim_p50_ms: percentile(claims.clone(), 0.5),
        claim_p99_ms: percentile(claims, 0.99),
        held_p50_ms: percentile(held, 0.5),
        busy_slots,
        host_busy,
        host_cpu_ms: host_busy * cores() * took.as_secs_f64() * 1000.0 / JOBS as f64,
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
         claim p50 {:>5.2} ms p99 {:>6.2} ms\n  {:<22} submitted at {:.0} jobs/s; a job held its slot p50 {:.2} ms, {:.2} slots busy; \
         host {:.0}% busy, {:.2} ms CPU per job in all (front and clients {:.2} ms, workers {:.2} ms, postgres {:.2} ms)",
        m.per_second,
        m.per_second / embedded,
        m.latency_p50_ms,
        m.latency_p99_ms,
        m.claim_p50_ms,
        m.claim_p99_ms,
        "",
        m.submitted_per_second,
        m.held_p50_ms,
        m.busy_slots,
        m.host_busy * 100.0,
        m.host_cpu_ms,
        m.cpu.front,
        m.cpu.workers,
        m.cpu.postgres
    );
}

fn main() {
    luanette::isolation::run_if_requested();
    if !std::env::args().any(|a| a == "--bench") {
        println!("cluster bench: run with `cargo bench -p luanette --bench cluster`");
        return;
    }
    // A server of its own, unless one is given (to inspect it afterwards, e.g. with
    // pg_stat_statements): `eval "$(scripts/postgres start DIR)"` first.
    let _stop_postgres = if testkit::postgres::enabled() {
        None
    } else {
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
        Some(StopPostgres(pg_dir))
    };

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        // `cargo bench -p luanette --bench cluster -- 1` measures only the counts given.
        let mut counts: Vec<usize> = std::env::args().filter_map(|a| a.parse().ok()).collect();
        if counts.is_empty() {
            counts = vec![1, 2, 4];
        }
        println!(
            "job throughput and latency, trivial script ({JOBS} jobs, {SUBMITTERS} submitters), {ROUNDS} rounds; \
             each cluster figure against the embedded one of its round:"
        );
        // Ratios to embedded, per worker count, one per round.
        let mut ratios: Vec<Vec<f64>> = vec![Vec::new(); counts.len()];
        for round in 1..=ROUNDS {
            println!("round {round}:");
            let data = tempfile::tempdir().expect("tmp");
            let (client, stop) = front(data.path(), None).await;
            let embedded = measure(&client, &[]).await;
            drop(stop);
            print("embedded (sled)", &embedded, embedded.per_second);
            for (at, &workers) in counts.iter().enumerate() {
                let data = tempfile::tempdir().expect("tmp");
                let url = testkit::postgres::database_for(data.path()).expect("database");
                let (client, stop) = front(data.path(), Some(url.clone())).await;
                let mut children: Vec<Child> = (0..workers).map(|_| worker(data.path(), &url)).collect();
                let pids: Vec<u32> = children.iter().map(Child::id).collect();
                let measured = measure(&client, &pids).await;
                print(&format!("cluster, {workers} worker(s)"), &measured, embedded.per_second);
                ratios[at].push(measured.per_second / embedded.per_second);
                for child in &mut children {
                    let _ = child.kill();
                    let _ = child.wait();
                }
                drop(stop);
            }
        }
        println!("median ratio to embedded over {ROUNDS} rounds:");
        for (workers, ratios) in counts.iter().zip(ratios) {
            let (low, high) = ratios
                .iter()
                .fold((f64::MAX, 0.0f64), |(l, h), r| (l.min(*r), h.max(*r)));
            println!(
                "  cluster, {workers} worker(s): {:.2}x (rounds {low:.2}x to {high:.2}x)",
                percentile(ratios, 0.5)
            );
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
