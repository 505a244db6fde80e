//! What `garden.*` and `hoot.*` put on the wire, and how they fail: the run's trace and a
//! deadline within its limit on every call, a stopped service reported at once, a service
//! that never answers unable to hold a run past its limit or past a cancel, the transport
//! permission, and a clear error when no endpoint is configured.
//!
//! The far end is a real HOOT/1 server (libzmq, the SDK's `Server`) that records what reaches
//! it, so the test can see the envelope; the end-to-end flow against the real Chaosgarden and
//! Hootenanny is in `services/holler/tests/orchestration.rs`.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hooteproto::v1::envelope::Payload;
use hooteproto::v1::{
    self as pb, ErrorCode, JobCancelRequest, JobExecuteRequest, JobState, LuaEvalRequest, PingRequest,
};
use hooteproto::{Client, ClientConfig, Error, Handler, RequestContext, RequestOptions, Server, ServerConfig, Status};

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const TEMPO: f64 = 97.0;

/// What reached the stand-in Chaosgarden.
#[derive(Debug, Clone)]
struct Seen {
    request: &'static str,
    traceparent: String,
    /// How long the caller said it would wait, measured on arrival.
    deadline_in: Option<Duration>,
}

struct Recorder {
    seen: Mutex<Vec<Seen>>,
    /// Never answer (a service that hangs).
    stall: bool,
}

impl Handler for Recorder {
    async fn handle(&self, context: RequestContext, payload: Payload) -> Result<Payload, Status> {
        if let Ok(mut seen) = self.seen.lock() {
            seen.push(Seen {
                request: payload.name(),
                traceparent: context.traceparent.clone(),
                deadline_in: context
                    .deadline
                    .map(|d| d.saturating_duration_since(tokio::time::Instant::now())),
            });
        }
        if self.stall {
            std::future::pending::<()>().await;
        }
        let state = Some(pb::TransportState {
            tempo_bpm: TEMPO,
            ..Default::default()
        });
        match payload {
            Payload::TransportStatus(_) => Ok(Payload::TransportStatusReply(pb::TransportStatusReply { state })),
            Payload::TransportPlay(_) => Ok(Payload::TransportPlayReply(pb::TransportPlayReply { state })),
            other => Err(Status::unimplemented(format!("not here: {}", other.name()))),
        }
    }
}

struct Garden {
    endpoint: String,
    recorder: Arc<Recorder>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Garden {
    fn start(stall: bool) -> Self {
        let server = Server::bind(ServerConfig::new("tcp://127.0.0.1:*")).expect("bind");
        let endpoint = server.local_endpoint().to_string();
        let recorder = Arc::new(Recorder {
            seen: Mutex::new(Vec::new()),
            stall,
        });
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(server.run(recorder.clone(), async move {
            let _ = stopped.await;
        }));
        Self {
            endpoint,
            recorder,
            _stop: stop,
        }
    }

    fn seen(&self) -> Vec<Seen> {
        self.recorder.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

struct Luanette {
    client: Client,
    _dir: tempfile::TempDir,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn luanette(configure: impl FnOnce(&mut luanette::Config)) -> Luanette {
    let dir = tempfile::tempdir().expect("tmp");
    let mut config = common::config(dir.path());
    configure(&mut config);
    let bound = luanette::bind(config).await.expect("luanette starts");
    let client = Client::connect(ClientConfig::new(bound.endpoint())).expect("client");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(bound.run(async move {
        let _ = stopped.await;
    }));
    client.call(PingRequest {}).await.expect("luanette answers ping");
    Luanette {
        client,
        _dir: dir,
        _stop: stop,
    }
}

fn with_garden(endpoint: &str, allow_transport: bool) -> impl FnOnce(&mut luanette::Config) {
    let endpoint = endpoint.to_string();
    move |config| {
        config.peers.chaosgarden = Some(endpoint);
        config.peers.allow_transport = allow_transport;
    }
}

async fn eval(client: &Client, code: &str) -> Result<pb::LuaEvalReply, Error> {
    let request = LuaEvalRequest {
        code: code.into(),
        ..Default::default()
    };
    let options = RequestOptions {
        timeout: Some(Duration::from_secs(60)),
        traceparent: Some(format!("00-{TRACE_ID}-00f067aa0ba902b7-01")),
        ..Default::default()
    };
    client.call_with(request, options).await
}

fn number(reply: &pb::LuaEvalReply) -> f64 {
    match reply.result.as_ref().and_then(|v| v.kind.clone()) {
        Some(prost_types::value::Kind::NumberValue(n)) => n,
        other => panic!("not a number: {other:?}"),
    }
}

fn refusal(result: Result<pb::LuaEvalReply, Error>) -> Status {
    match result {
        Err(Error::Remote(status)) => status,
        other => panic!("expected the script to fail, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_carry_the_runs_trace_and_a_deadline_within_its_limit() {
    let garden = Garden::start(false);
    let luanette = luanette(|config| {
        with_garden(&garden.endpoint, false)(config);
        config.limits.wall = Duration::from_secs(3);
    })
    .await;
    let reply = eval(&luanette.client, "return garden.status().tempo_bpm")
        .await
        .expect("eval");
    assert_eq!(number(&reply), TEMPO, "the reply reaches the script");
    let seen = garden.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].request, "transport_status");
    assert!(
        seen[0].traceparent.contains(TRACE_ID),
        "the call is in the caller's trace: {:?}",
        seen[0].traceparent
    );
    let deadline = seen[0].deadline_in.expect("the call says how long it will wait");
    assert!(
        deadline <= Duration::from_secs(3) && deadline > Duration::ZERO,
        "no longer than the run may still take: {deadline:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_service_fails_the_call_at_once_with_its_address() {
    let endpoint = format!("tcp://127.0.0.1:{}", testkit::free_port());
    let luanette = luanette(|config| {
        with_garden(&endpoint, false)(config);
        config.limits.wall = Duration::from_secs(30);
    })
    .await;
    let started = Instant::now();
    let status = refusal(eval(&luanette.client, "return garden.status()").await);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "reported at once, not at the 30 s limit: {:?}",
        started.elapsed()
    );
    assert!(
        status.message.contains("garden.status")
            && status.message.contains("not reachable")
            && status.message.contains(&endpoint),
        "{}",
        status.message
    );
    // pcall sees it as an ordinary error, so a script can carry on without the garden.
    let reply = eval(&luanette.client, "local ok = pcall(garden.status) return ok and 1 or 0")
        .await
        .expect("eval");
    assert_eq!(number(&reply), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_that_never_answers_cannot_hold_a_run_past_its_limit() {
    let garden = Garden::start(true);
    let luanette = luanette(|config| {
        with_garden(&garden.endpoint, false)(config);
        config.limits.wall = Duration::from_millis(1500);
    })
    .await;
    let started = Instant::now();
    let status = refusal(eval(&luanette.client, "return garden.status()").await);
    assert_eq!(status.code, ErrorCode::DeadlineExceeded, "{}", status.message);
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "stopped at its limit: {:?}",
        started.elapsed()
    );
    // A read is idempotent, so the SDK may have sent it again after its attempt timeout.
    assert!(
        garden.seen().iter().all(|s| s.request == "transport_status") && !garden.seen().is_empty(),
        "the request did reach the service: {:?}",
        garden.seen()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_a_job_waiting_on_a_service() {
    let garden = Garden::start(true);
    let luanette = luanette(|config| {
        with_garden(&garden.endpoint, false)(config);
        config.job_limits.wall = Duration::from_secs(120);
    })
    .await;
    let script = common::store_script(&luanette.client, "function main() return garden.status() end").await;
    let job = luanette
        .client
        .call(JobExecuteRequest {
            script_hash: script,
            ..Default::default()
        })
        .await
        .expect("execute")
        .job_id;
    let deadline = Instant::now() + Duration::from_secs(30);
    while garden.seen().is_empty() {
        assert!(Instant::now() < deadline, "the job never called the garden");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let cancelled = luanette
        .client
        .call(JobCancelRequest { job_id: job.clone() })
        .await
        .expect("cancel");
    assert_eq!(
        JobState::try_from(cancelled.state),
        Ok(JobState::Cancelled),
        "the wait on the service ends with the cancel"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moving_the_transport_needs_the_operators_permission() {
    let garden = Garden::start(false);
    let forbidden = luanette(with_garden(&garden.endpoint, false)).await;
    let status = refusal(eval(&forbidden.client, "return garden.play()").await);
    assert!(
        status.message.contains("--allow-transport-from-lua"),
        "{}",
        status.message
    );
    assert!(garden.seen().is_empty(), "nothing reached the garden");

    let allowed = luanette(with_garden(&garden.endpoint, true)).await;
    let reply = eval(&allowed.client, "return garden.play().tempo_bpm")
        .await
        .expect("eval");
    assert_eq!(number(&reply), TEMPO);
    let requests: Vec<&str> = garden.seen().iter().map(|s| s.request).collect();
    assert_eq!(requests, ["transport_play"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_endpoint_each_module_says_which_flag_sets_it() {
    let luanette = luanette(|_| {}).await;
    let garden = refusal(eval(&luanette.client, "return garden.status()").await);
    assert!(garden.message.contains("--chaosgarden"), "{}", garden.message);
    let hoot = refusal(eval(&luanette.client, "return hoot.list{}").await);
    assert!(hoot.message.contains("--hootenanny"), "{}", hoot.message);
    let bad = refusal(eval(&luanette.client, "return hoot.list{limit = 0}").await);
    assert!(
        bad.message.contains("limit"),
        "arguments are checked first: {}",
        bad.message
    );
}
