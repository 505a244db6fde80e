//! The real binary exports request and job spans over OTLP/HTTP in the caller's trace, and
//! scripts see their own span through `otel.traceparent()`.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use hooteproto::v1::envelope::Payload;
use hooteproto::v1::{
    Envelope, JobExecuteRequest, JobPollRequest, LuaEvalRequest, PingRequest, PollMode, ScriptStoreRequest,
};
use hooteproto::wire;

const TRACE_ID: &str = "0af7651916cd43dd8448eb211c80319c";
const PARENT_SPAN: &str = "b7ad6b7169203331";

use testkit::hex;

struct Raw {
    dealer: zmq::Socket,
    _context: zmq::Context,
}

impl Raw {
    fn call(&self, payload: Payload) -> Payload {
        let envelope = Envelope {
            id: format!("{:?}", std::time::Instant::now()),
            traceparent: format!("00-{TRACE_ID}-{PARENT_SPAN}-01"),
            payload: Some(payload),
            ..Default::default()
        };
        let frames = wire::encode(&envelope, None, wire::DEFAULT_MAX_MESSAGE_SIZE).expect("encode");
        self.dealer.send_multipart(frames, 0).expect("send");
        let reply = self.dealer.recv_multipart(0).expect("reply");
        wire::decode(&reply, None, wire::DEFAULT_MAX_MESSAGE_SIZE)
            .expect("decode")
            .payload
            .expect("payload")
    }
}

/// `00-<trace>-<span>-01` -> (trace, span)
fn ids(traceparent: &str) -> (String, String) {
    let parts: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(parts.len(), 4, "a W3C traceparent: {traceparent:?}");
    (parts[1].to_string(), parts[2].to_string())
}

fn string_result(value: Option<prost_types::Value>) -> String {
    match hooteproto::wkt::value_to_json(value.expect("result")) {
        serde_json::Value::String(s) => s,
        other => panic!("expected a string, got {other}"),
    }
}

/// The traceparent a `lua_eval` of `code` returns, and the one a job's `main` sees.
fn traceparents_seen(raw: &Raw, code: &str) -> (String, String) {
    let Payload::LuaEvalReply(eval) = raw.call(Payload::LuaEval(LuaEvalRequest {
        code: code.into(),
        params: None,
    })) else {
        panic!("lua_eval failed");
    };
    let Payload::ScriptStoreReply(stored) = raw.call(Payload::ScriptStore(ScriptStoreRequest {
        content: "function main() return otel.traceparent() end".into(),
        tags: vec![],
        creator: String::new(),
        ..Default::default()
    })) else {
        panic!("store failed");
    };
    let Payload::JobExecuteReply(job) = raw.call(Payload::JobExecute(JobExecuteRequest {
        script_hash: stored.script.expect("script").script_hash,
        params: None,
        tags: vec![],
        ..Default::default()
    })) else {
        panic!("execute failed");
    };
    let Payload::JobPollReply(polled) = raw.call(Payload::JobPoll(JobPollRequest {
        job_ids: vec![job.job_id],
        timeout_ms: 5000,
        mode: PollMode::Any as i32,
    })) else {
        panic!("poll failed");
    };
    (
        string_result(eval.result),
        string_result(polled.completed[0].result.clone()),
    )
}

#[test]
fn eval_and_job_spans_join_the_callers_trace() {
    let collector = testkit::HttpServer::accepting();
    let data = tempfile::tempdir().expect("tmp");
    let port = testkit::free_port();
    let bind = format!("tcp://127.0.0.1:{port}");
    let mut child = Command::new(env!("CARGO_BIN_EXE_luanette"))
        .args(["--bind", &bind, "--health-bind", "none", "--pub-bind", "none"])
        .arg("--data-dir")
        .arg(data.path())
        .args(common::backend_args(data.path()))
        .args(["--otlp-endpoint", &collector.url])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn luanette");
    let context = zmq::Context::new();
    let dealer = context.socket(zmq::DEALER).expect("dealer");
    dealer.set_rcvtimeo(10_000).expect("timeout");
    dealer.set_sndtimeo(10_000).expect("timeout");
    dealer.connect(&bind).expect("connect");
    let raw = Raw {
        dealer,
        _context: context,
    };
    raw.call(Payload::Ping(PingRequest {}));

    let (eval_traceparent, job_traceparent) =
        traceparents_seen(&raw, "otel.event('marker.hit', {beat = 4}) return otel.traceparent()");
    let (trace, eval_span) = ids(&eval_traceparent);
    assert_eq!(trace, TRACE_ID, "the script runs in the caller's trace");
    assert_ne!(eval_span, PARENT_SPAN, "under the request's own span");
    let (trace, job_span) = ids(&job_traceparent);

    assert_eq!(trace, TRACE_ID, "the job runs in the caller's trace");
    assert_ne!(job_span, PARENT_SPAN);
    assert_ne!(job_span, eval_span);

    testkit::signal(child.id(), testkit::SIGTERM).expect("SIGTERM");
    assert!(
        child.wait().expect("exit").success(),
        "luanette exits cleanly on SIGTERM"
    );
    collector.wait_for(1, Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(500)); // a second batch may follow the first
    let mut exported = Vec::new();
    for export in collector.requests() {
        assert_eq!(export.path, "/v1/traces");
        exported.extend(export.body);
    }
    let contains = |needle: &[u8]| exported.windows(needle.len()).any(|w| w == needle);
    assert!(contains(&hex(TRACE_ID)), "spans were exported in the caller's trace");
    assert!(
        contains(&hex(&eval_span)),
        "the request span the script saw was exported"
    );
    assert!(contains(&hex(&job_span)), "the job span was exported");
    assert!(contains(b"luanette"), "the resource names the service");
    assert!(contains(b"marker.hit"), "otel.event reached the trace");
}

/// With no exporter configured (this process has none), scripts still hand on the caller's
/// trace, so model services can join it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_tracing_scripts_see_the_callers_traceparent() {
    let data = tempfile::tempdir().expect("tmp");
    let config = common::config(data.path());
    let bound = luanette::bind(config).await.expect("luanette starts");
    let bind = bound.endpoint().to_string();
    let (_stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(bound.run(async move {
        let _ = stopped.await;
    }));
    let caller = format!("00-{TRACE_ID}-{PARENT_SPAN}-01");
    let results = tokio::task::spawn_blocking(move || {
        let context = zmq::Context::new();
        let dealer = context.socket(zmq::DEALER).expect("dealer");
        dealer.set_rcvtimeo(10_000).expect("timeout");
        dealer.set_sndtimeo(10_000).expect("timeout");
        dealer.connect(&bind).expect("connect");
        let raw = Raw {
            dealer,
            _context: context,
        };
        traceparents_seen(&raw, "return otel.traceparent()")
    })
    .await
    .expect("client");
    assert_eq!(results, (caller.clone(), caller));
}
