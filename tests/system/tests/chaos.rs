//! Restart in any order: under a steady mixed load from SDK clients and MCP sessions through
//! `holler serve`, none ever recreated (lua_eval; script_store + job_execute + job_poll;
//! cas_store; artifact_create; transport and timeline ops), each service is killed with SIGKILL
//! and restarted in turn, in two orders, then all three at once. Every client must answer again
//! within 2 s of its service's restart, no call may hang, nothing acknowledged may be lost, and
//! a job running at the kill must be reported as interrupted. `HOOT_SOAK_SECS=N` goes on killing
//! services in random order for N seconds (the soak).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use hooteproto::v1::{self as pb, ErrorCode, JobState};
use hooteproto::{Client, Error, RequestOptions};
use system_tests::{Cluster, Gateway, Service};

/// Each load call's deadline: short, so a call lost with a killed service fails soon.
const CALL: Duration = Duration::from_millis(1500);
/// A call that takes this long has hung (its deadline is CALL).
const HANG: Duration = Duration::from_secs(6);
/// The requirement: every client answers again within this long of its service's restart.
const RECOVERY: Duration = Duration::from_secs(2);

fn options() -> RequestOptions {
    RequestOptions {
        timeout: Some(CALL),
        ..Default::default()
    }
}

fn params(n: i64) -> Option<hooteproto::wkt::Struct> {
    let mut object = serde_json::Map::new();
    object.insert("n".into(), n.into());
    Some(hooteproto::wkt::Struct::from_json(object))
}

/// A `Value` that holds a number, as that number.
fn number(value: Option<prost_types::Value>) -> Option<f64> {
    match value?.kind {
        Some(prost_types::value::Kind::NumberValue(x)) => Some(x),
        _ => None,
    }
}

/// What the services acknowledged: all of it must be there at the end.
#[derive(Default)]
struct Ledger {
    cas: Vec<String>,
    artifacts: Vec<String>,
    scripts: Vec<String>,
    /// Finished jobs and the result each returned.
    jobs: Vec<(String, f64)>,
    markers: Vec<String>,
    /// Markers found present mid-run and then removed (see [`prune_markers`]).
    markers_pruned: usize,
}

#[derive(Default)]
struct Shared {
    stop: AtomicBool,
    ledger: Mutex<Ledger>,
    /// Successful steps: (worker, when).
    successes: Mutex<Vec<(&'static str, Instant)>>,
    hangs: Mutex<Vec<&'static str>>,
    /// Failed steps per worker, and the last error (what a stuck worker keeps hitting).
    failures: Mutex<HashMap<&'static str, (u64, String)>>,
}

/// Counts a failed step of `worker`.
fn failed(shared: &Shared, worker: &'static str, error: impl std::fmt::Display) {
    let mut failures = shared.failures.lock().expect("failures");
    let entry = failures.entry(worker).or_default();
    entry.0 += 1;
    entry.1 = error.to_string();
}

#[derive(Clone, Copy)]
enum Worker {
    Eval,
    Jobs,
    Cas,
    Artifacts,
    Transport,
}

impl Worker {
    const ALL: [Worker; 5] = [
        Worker::Eval,
        Worker::Jobs,
        Worker::Cas,
        Worker::Artifacts,
        Worker::Transport,
    ];

    fn name(self) -> &'static str {
        match self {
            Worker::Eval => "lua_eval",
            Worker::Jobs => "script+job",
            Worker::Cas => "cas_store",
            Worker::Artifacts => "artifact_create",
            Worker::Transport => "transport+timeline",
        }
    }

    fn service(self) -> Service {
        match self {
            Worker::Eval | Worker::Jobs => Service::Luanette,
            Worker::Cas | Worker::Artifacts => Service::Hootenanny,
            Worker::Transport => Service::Chaosgarden,
        }
    }

    /// One step of the load; records what is acknowledged as soon as it is.
    async fn step(self, client: &Client, n: i64, shared: &Shared) -> Result<(), Error> {
        let ledger = || shared.ledger.lock().expect("ledger");
        match self {
            Worker::Eval => {
                let reply = client
                    .call_with(
                        pb::LuaEvalRequest {
                            code: "return 1 + 1".into(),
                            params: None,
                        },
                        options(),
                    )
                    .await?;
                assert_eq!(number(reply.result), Some(2.0), "lua_eval answered wrongly");
            }
            Worker::Jobs => {
                let content = format!("-- chaos {n}\nfunction main(p) return p.n * 2 end\n");
                let stored = client
                    .call_with(
                        pb::ScriptStoreRequest {
                            content,
                            tags: vec!["chaos".into()],
                            creator: String::new(),
                            ..Default::default()
                        },
                        options(),
                    )
                    .await?;
                let hash = stored.script.map(|s| s.script_hash).unwrap_or_default();
                ledger().scripts.push(hash.clone());
                let job = client
                    .call_with(
                        pb::JobExecuteRequest {
                            script_hash: hash,
                            params: params(n),
                            tags: vec![],
                            ..Default::default()
                        },
                        options(),
                    )
                    .await?;
                let poll = pb::JobPollRequest {
                    job_ids: vec![job.job_id.clone()],
                    timeout_ms: 500,
                    mode: pb::PollMode::Any as i32,
                };
                let polled = client.call_with(poll, options()).await?;
                if let Some(done) = polled
                    .completed
                    .into_iter()
                    .find(|j| j.state == JobState::Succeeded as i32)
                {
                    ledger().jobs.push((done.job_id, 2.0 * n as f64));
                }
            }
            Worker::Cas => {
                let data = format!("chaos object {n} {}", rand::random::<u64>()).repeat(64);
                store(client, data.into_bytes(), shared).await?;
            }
            Worker::Artifacts => {
                let data = format!("artifact body {n} {}", rand::random::<u64>());
                let hash = store(client, data.into_bytes(), shared).await?;
                let request = pb::ArtifactCreateRequest {
                    cas_hash: hash,
                    name: format!("chaos-{n}"),
                    tags: vec!["chaos".into()],
                    ..Default::default()
                };
                let created = client.call_with(request, options()).await?;
                ledger()
                    .artifacts
                    .push(created.artifact.map(|a| a.artifact_id).unwrap_or_default());
            }
            Worker::Transport => {
                client.call_with(pb::TransportPlayRequest {}, options()).await?;
                client.call_with(pb::TransportStatusRequest {}, options()).await?;
                let marker = pb::TimelineAddMarkerRequest {
                    event_type: pb::TimelineEventType::CuePoint as i32,
                    position_beats: 1000.0 + n as f64,
                    metadata: None,
                };
                let added = client.call_with(marker, options()).await?;
                ledger()
                    .markers
                    .push(added.marker.map(|m| m.marker_id).unwrap_or_default());
                client.call_with(pb::TransportStopRequest {}, options()).await?;
                prune_markers(client, n, shared).await?;
            }
        }
        Ok(())
    }
}

/// Keeps a long soak under Chaosgarden's 10,000-marker bound (past it, adding a marker is
/// RESOURCE_EXHAUSTED, as documented). Every 50th step, once the ledger holds more than `KEEP`
/// markers, the oldest 100 are checked to be on the timeline and then removed (a few per step,
/// so no step comes near the hang limit). A marker leaves the ledger before its removal is
/// sent, so a removal whose reply a kill swallowed is not mistaken for a loss.
async fn prune_markers(client: &Client, n: i64, shared: &Shared) -> Result<(), Error> {
    const KEEP: usize = 2_000;
    if n % 50 != 0 {
        return Ok(());
    }
    let oldest: Vec<String> = {
        let ledger = shared.ledger.lock().expect("ledger");
        let excess = ledger.markers.len().saturating_sub(KEEP).min(100);
        ledger.markers[..excess].to_vec()
    };
    if oldest.is_empty() {
        return Ok(());
    }
    assert_markers_present(client, &oldest).await?;
    for id in oldest {
        {
            let mut ledger = shared.ledger.lock().expect("ledger");
            ledger.markers.remove(0);
            ledger.markers_pruned += 1;
        }
        client.call_with(pb::TimelineRemoveRequest { id }, options()).await?;
    }
    Ok(())
}

/// Fails the test if any of `ids` is not on Chaosgarden's timeline.
async fn assert_markers_present(client: &Client, ids: &[String]) -> Result<(), Error> {
    let query = pb::TimelineQueryRequest {
        from_beats: 0.0,
        to_beats: 0.0,
    };
    let timeline = client.call_with(query, options()).await?;
    let present: std::collections::HashSet<&str> = timeline.markers.iter().map(|m| m.marker_id.as_str()).collect();
    for id in ids {
        assert!(present.contains(id.as_str()), "acknowledged marker {id} is lost");
    }
    Ok(())
}

/// When the test began: kills and hangs are printed with their time, so a soak's log shows
/// which kill a hang followed.
static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();

fn since_start() -> f64 {
    START.get_or_init(Instant::now).elapsed().as_secs_f64()
}

/// Stores `data` in the CAS and records its hash as acknowledged.
async fn store(client: &Client, data: Vec<u8>, shared: &Shared) -> Result<String, Error> {
    let request = pb::CasStoreRequest {
        data,
        mime_type: "text/plain".into(),
    };
    let hash = client.call_with(request, options()).await?.hash;
    shared.ledger.lock().expect("ledger").cas.push(hash.clone());
    Ok(hash)
}

async fn run(worker: Worker, client: Client, shared: Arc<Shared>) {
    let mut n = 0;
    while !shared.stop.load(Ordering::Relaxed) {
        n += 1;
        match tokio::time::timeout(HANG, worker.step(&client, n, &shared)).await {
            Ok(Ok(())) => shared
                .successes
                .lock()
                .expect("successes")
                .push((worker.name(), Instant::now())),
            Ok(Err(error)) => {
                failed(&shared, worker.name(), error);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(_) => {
                eprintln!("t={:.1}s {}: a step hung past {HANG:?}", since_start(), worker.name());
                shared.hangs.lock().expect("hangs").push(worker.name());
            }
        }
    }
}

/// Load through the MCP gateway: (worker name, the service its tool reaches, tool).
const MCP_WORKERS: [(&str, Service, &str); 3] = [
    ("mcp lua_eval", Service::Luanette, "lua_eval"),
    ("mcp cas_store", Service::Hootenanny, "cas_store"),
    ("mcp transport_status", Service::Chaosgarden, "transport_status"),
];

/// One MCP session calling `tool` until told to stop (a blocking loop, as an agent would).
fn run_mcp(name: &'static str, tool: &'static str, url: String, shared: Arc<Shared>) {
    let mut session = testkit::mcp::Session::connect_with(&url, None, HANG);
    let mut n = 0u64;
    while !shared.stop.load(Ordering::Relaxed) {
        n += 1;
        let arguments = match tool {
            "lua_eval" => serde_json::json!({"code": "return 1 + 1"}),
            "cas_store" => {
                let data = format!("mcp object {n} {}", rand::random::<u64>());
                serde_json::json!({"data": base64::engine::general_purpose::STANDARD.encode(data), "mimeType": "text/plain"})
            }
            _ => serde_json::json!({}),
        };
        let started = Instant::now();
        match session.try_call(tool, arguments) {
            Ok((false, value)) => {
                if let Some(hash) = value["hash"].as_str() {
                    shared.ledger.lock().expect("ledger").cas.push(hash.to_string());
                }
                shared.successes.lock().expect("successes").push((name, Instant::now()));
            }
            Ok((true, value)) => {
                failed(&shared, name, value);
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) if started.elapsed() >= HANG => {
                eprintln!("t={:.1}s {name}: no answer within {HANG:?}: {e}", since_start());
                shared.hangs.lock().expect("hangs").push(name);
            }
            Err(e) => {
                failed(&shared, name, e);
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// Every load worker that reaches `service`, SDK and MCP.
fn workers_of(service: Service) -> Vec<&'static str> {
    let sdk = Worker::ALL
        .into_iter()
        .filter(|w| w.service() == service)
        .map(Worker::name);
    let mcp = MCP_WORKERS
        .into_iter()
        .filter(|(_, s, _)| *s == service)
        .map(|(name, _, _)| name);
    sdk.chain(mcp).collect()
}

/// Waits until every worker of `service` has succeeded after `since`; returns how long each took.
async fn recovery(shared: &Shared, service: Service, since: Instant) -> Vec<(&'static str, Duration)> {
    let workers = workers_of(service);
    let deadline = since + Duration::from_secs(15);
    loop {
        let first: Vec<Option<Instant>> = {
            let successes = shared.successes.lock().expect("successes");
            workers
                .iter()
                .map(|w| {
                    successes
                        .iter()
                        .filter(|(name, at)| name == w && *at > since)
                        .map(|(_, at)| *at)
                        .next()
                })
                .collect()
        };
        if first.iter().all(Option::is_some) || Instant::now() > deadline {
            return workers
                .iter()
                .zip(first)
                .map(|(w, at)| (*w, at.map_or(Duration::MAX, |at| at - since)))
                .collect();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Starts a job that runs for 20 s and returns its id once it is running.
async fn long_job(lua: &Client) -> String {
    let content = "function main(p) local t = os.clock() while os.clock() - t < 20 do end return 1 end".to_string();
    let stored = lua
        .call(pb::ScriptStoreRequest {
            content,
            tags: vec![],
            creator: String::new(),
            ..Default::default()
        })
        .await
        .expect("store the long script");
    let hash = stored.script.map(|s| s.script_hash).unwrap_or_default();
    let job = lua
        .call(pb::JobExecuteRequest {
            script_hash: hash,
            params: None,
            tags: vec![],
            ..Default::default()
        })
        .await
        .expect("start the long job");
    for _ in 0..100 {
        let status = lua
            .call(pb::JobStatusRequest {
                job_id: job.job_id.clone(),
            })
            .await
            .expect("job status");
        if status.job.is_some_and(|j| j.state == JobState::Running as i32) {
            return job.job_id;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the long job never started running");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_service_killed_and_restarted_in_any_order_under_load() {
    since_start();
    let mut cluster = Cluster::start(&[]).await;
    let gateway = Gateway::start(&cluster);
    let shared = Arc::new(Shared::default());
    let tasks: Vec<_> = Worker::ALL
        .into_iter()
        .map(|w| tokio::spawn(run(w, cluster.client(w.service()), shared.clone())))
        .collect();
    let sessions: Vec<_> = MCP_WORKERS
        .into_iter()
        .map(|(name, _, tool)| {
            let (url, shared) = (gateway.url.clone(), shared.clone());
            std::thread::spawn(move || run_mcp(name, tool, url, shared))
        })
        .collect();
    let lua = cluster.client(Service::Luanette);
    let mut interrupted = Vec::new();
    let mut figures: Vec<(Service, &'static str, Duration)> = Vec::new();

    let rounds = [
        vec![Service::Hootenanny, Service::Luanette, Service::Chaosgarden],
        vec![Service::Chaosgarden, Service::Luanette, Service::Hootenanny],
    ];
    // The soak: HOOT_SOAK_SECS=600 keeps killing services in random order for that long.
    let soak = std::env::var("HOOT_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or_default();
    let soak_until = Instant::now() + soak;
    let mut order: std::collections::VecDeque<Service> = rounds.concat().into();
    while let Some(service) = order.pop_front() {
        if order.is_empty() && Instant::now() < soak_until {
            order.push_back(Service::ALL[rand::random_range(0..3)]);
        }
        tokio::time::sleep(Duration::from_millis(800)).await;
        if service == Service::Luanette {
            interrupted.push(long_job(&lua).await);
        }
        eprintln!("t={:.1}s kill -9 {}", since_start(), service.name());
        cluster.kill9(service);
        tokio::time::sleep(Duration::from_millis(300)).await;
        let restarted = cluster.restart(service);
        for (worker, took) in recovery(&shared, service, restarted).await {
            figures.push((service, worker, took));
        }
    }
    // All three at once, brought back in the order that is hardest for Chaosgarden (Luanette last).
    tokio::time::sleep(Duration::from_millis(800)).await;
    eprintln!("t={:.1}s kill -9 all three", since_start());
    for service in Service::ALL {
        cluster.kill9(service);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    for service in [Service::Chaosgarden, Service::Hootenanny, Service::Luanette] {
        let restarted = cluster.restart(service);
        tokio::time::sleep(Duration::from_millis(200)).await;
        for (worker, took) in recovery(&shared, service, restarted).await {
            figures.push((service, worker, took));
        }
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    shared.stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.expect("a load task panicked");
    }
    for session in sessions {
        session.join().expect("an MCP session panicked");
    }

    for (service, worker, took) in &figures {
        eprintln!(
            "recovery after {} restart: {worker} answered again in {took:?}",
            service.name()
        );
    }
    let slow: Vec<String> = figures
        .iter()
        .filter(|(_, _, took)| *took > RECOVERY)
        .map(|(service, worker, took)| match *took {
            Duration::MAX => format!("{worker} after a {} restart: not within 15 s", service.name()),
            took => format!("{worker} after a {} restart: {took:?}", service.name()),
        })
        .collect();
    assert!(
        slow.is_empty(),
        "clients that took longer than {RECOVERY:?} to recover: {slow:?}"
    );
    let hangs = shared.hangs.lock().expect("hangs").clone();
    assert!(hangs.is_empty(), "calls hung past their deadline: {hangs:?}");
    eprintln!(
        "failed steps while services were down: {:?}",
        shared.failures.lock().expect("failures")
    );

    let ledger = std::mem::take(&mut *shared.ledger.lock().expect("ledger"));
    eprintln!(
        "acknowledged: {} CAS objects, {} artifacts, {} scripts, {} finished jobs, {} markers \
         (and {} more found present mid-run, then removed)",
        ledger.cas.len(),
        ledger.artifacts.len(),
        ledger.scripts.len(),
        ledger.jobs.len(),
        ledger.markers.len(),
        ledger.markers_pruned
    );
    assert!(
        [
            ledger.cas.len(),
            ledger.artifacts.len(),
            ledger.jobs.len(),
            ledger.markers.len()
        ]
        .iter()
        .all(|&n| n >= 10),
        "the load barely ran"
    );
    let hoot = cluster.client(Service::Hootenanny);
    let garden = cluster.client(Service::Chaosgarden);
    for hash in &ledger.cas {
        let inspected = hoot.call(pb::CasInspectRequest { hash: hash.clone() }).await;
        assert!(
            inspected.is_ok(),
            "acknowledged CAS object {hash} is lost: {inspected:?}"
        );
    }
    for id in &ledger.artifacts {
        let got = hoot
            .call(pb::ArtifactGetRequest {
                artifact_id: id.clone(),
            })
            .await;
        assert!(got.is_ok(), "acknowledged artifact {id} is lost: {got:?}");
    }
    for hash in &ledger.scripts {
        let described = lua
            .call(pb::LuaDescribeRequest {
                script_hash: hash.clone(),
            })
            .await;
        assert!(described.is_ok(), "acknowledged script {hash} is lost: {described:?}");
    }
    for (id, expected) in &ledger.jobs {
        let job = lua
            .call(pb::JobStatusRequest { job_id: id.clone() })
            .await
            .unwrap_or_else(|e| panic!("finished job {id} is lost: {e}"))
            .job
            .expect("a job record");
        assert_eq!(job.state, JobState::Succeeded as i32, "job {id} changed state");
        assert_eq!(number(job.result), Some(*expected), "job {id} lost its result");
    }
    assert_markers_present(&garden, &ledger.markers)
        .await
        .expect("timeline");
    for id in &interrupted {
        let job = lua
            .call(pb::JobStatusRequest { job_id: id.clone() })
            .await
            .expect("the interrupted job is remembered")
            .job
            .expect("a job record");
        assert_eq!(
            job.state,
            JobState::Failed as i32,
            "a job running at the kill is failed, not forgotten"
        );
        let error = job.error.expect("an interrupted job says why");
        assert_eq!(error.code, ErrorCode::Aborted as i32, "{error:?}");
        assert!(error.message.contains("interrupted"), "{error:?}");
    }
}
