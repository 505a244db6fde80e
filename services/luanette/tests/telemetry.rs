//! The real binary exports request and job spans over OTLP/HTTP in the caller's trace, and
//! scripts see their own span through `otel.traceparent()`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use hooteproto::v1::envelope::Payload;
use hooteproto::v1::{
    Envelope, JobExecuteRequest, JobPollRequest, LuaEvalRequest, PingRequest, PollMode, ScriptStoreRequest,
};
use hooteproto::wire;

const TRACE_ID: &str = "0af7651916cd43dd8448eb211c80319c";
const PARENT_SPAN: &str = "b7ad6b7169203331";

/// Accepts HTTP requests, sends each (path, body) down the channel, answers 200.
fn collector() -> (u16, mpsc::Receiver<(String, Vec<u8>)>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let tx = tx.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream);
                loop {
                    let mut request_line = String::new();
                    if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
                        return;
                    }
                    let path = request_line.split_whitespace().nth(1).unwrap_or_default().to_string();
                    let mut length = 0usize;
                    loop {
                        let mut header = String::new();
                        if reader.read_line(&mut header).unwrap_or(0) == 0 || header == "\r\n" {
                            break;
                        }
                        if let Some(value) = header.to_ascii_lowercase().strip_prefix("content-length:") {
                            length = value.trim().parse().unwrap_or(0);
                        }
                    }
                    let mut body = vec![0; length];
                    if reader.read_exact(&mut body).is_err() {
                        return;
                    }
                    let _ = tx.send((path, body));
                    let _ = reader
                        .get_mut()
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
                }
            });
        }
    });
    (port, rx)
}

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
        .collect()
}

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

#[test]
fn eval_and_job_spans_join_the_callers_trace() {
    let (collector_port, requests) = collector();
    let data = tempfile::tempdir().expect("tmp");
    let port = TcpListener::bind("127.0.0.1:0")
        .expect("p")
        .local_addr()
        .expect("a")
        .port();
    let bind = format!("tcp://127.0.0.1:{port}");
    let mut child = Command::new(env!("CARGO_BIN_EXE_luanette"))
        .args(["--bind", &bind, "--health-bind", "none", "--pub-bind", "none"])
        .arg("--data-dir")
        .arg(data.path())
        .args(["--otlp-endpoint", &format!("http://127.0.0.1:{collector_port}")])
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

    let Payload::LuaEvalReply(reply) = raw.call(Payload::LuaEval(LuaEvalRequest {
        code: "otel.event('marker.hit', {beat = 4}) return otel.traceparent()".into(),
        params: None,
    })) else {
        panic!("lua_eval failed");
    };
    let (trace, eval_span) = ids(&string_result(reply.result));
    assert_eq!(trace, TRACE_ID, "the script runs in the caller's trace");
    assert_ne!(eval_span, PARENT_SPAN, "under the request's own span");

    let Payload::ScriptStoreReply(stored) = raw.call(Payload::ScriptStore(ScriptStoreRequest {
        content: "function main() return otel.traceparent() end".into(),
        tags: vec![],
        creator: String::new(),
    })) else {
        panic!("store failed");
    };
    let Payload::JobExecuteReply(job) = raw.call(Payload::JobExecute(JobExecuteRequest {
        script_hash: stored.script.expect("script").script_hash,
        params: None,
        tags: vec![],
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
    let (trace, job_span) = ids(&string_result(polled.completed[0].result.clone()));
    assert_eq!(trace, TRACE_ID, "the job runs in the caller's trace");
    assert_ne!(job_span, PARENT_SPAN);
    assert_ne!(job_span, eval_span);

    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill -TERM");
    assert!(
        child.wait().expect("exit").success(),
        "luanette exits cleanly on SIGTERM"
    );
    let mut exported = Vec::new();
    let mut wait = Duration::from_secs(10);
    while let Ok((path, body)) = requests.recv_timeout(wait) {
        wait = Duration::from_millis(500);
        assert_eq!(path, "/v1/traces");
        exported.extend(body);
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
