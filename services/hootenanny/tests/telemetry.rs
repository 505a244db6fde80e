//! The real binary exports its request spans over OTLP/HTTP, as children of the caller's
//! traceparent, to a collector (a small local HTTP server standing in for one).

use std::process::{Command, Stdio};
use std::time::Duration;

use hooteproto::v1::envelope::Payload;
use hooteproto::v1::{Envelope, PingRequest};
use hooteproto::wire;

const TRACE_ID: &str = "0af7651916cd43dd8448eb211c80319c";
const PARENT_SPAN: &str = "b7ad6b7169203331";

use testkit::hex;

#[test]
fn request_spans_reach_the_collector_as_children_of_the_callers_span() {
    let collector = testkit::HttpServer::accepting();
    let data = tempfile::tempdir().expect("tmp");
    let port = testkit::free_port();
    let bind = format!("tcp://127.0.0.1:{port}");
    let mut child = Command::new(env!("CARGO_BIN_EXE_hootenanny"))
        .args([
            "--bind",
            &bind,
            "--health-bind",
            "none",
            "--data-dir",
            data.path().to_str().expect("utf8"),
        ])
        .args(["--otlp-endpoint", &collector.url])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn hootenanny");

    let context = zmq::Context::new();
    let dealer = context.socket(zmq::DEALER).expect("dealer");
    dealer.set_rcvtimeo(10_000).expect("timeout");
    dealer.set_sndtimeo(10_000).expect("timeout");
    dealer.connect(&bind).expect("connect");
    let envelope = Envelope {
        id: "traced".into(),
        traceparent: format!("00-{TRACE_ID}-{PARENT_SPAN}-01"),
        payload: Some(Payload::Ping(PingRequest {})),
        ..Default::default()
    };
    dealer
        .send_multipart(
            wire::encode(&envelope, None, wire::DEFAULT_MAX_MESSAGE_SIZE).expect("encode"),
            0,
        )
        .expect("send");
    dealer.recv_multipart(0).expect("pong");

    // A graceful stop flushes the batch exporter.
    testkit::signal(child.id(), testkit::SIGTERM).expect("SIGTERM");
    assert!(
        child.wait().expect("exit").success(),
        "hootenanny exits cleanly on SIGTERM"
    );

    let exports = collector.wait_for(1, Duration::from_secs(10));
    let export = exports.first().expect("an OTLP export arrived");
    assert_eq!(export.path, "/v1/traces");
    let body = &export.body;
    let contains = |needle: &[u8]| body.windows(needle.len()).any(|w| w == needle);
    assert!(contains(&hex(TRACE_ID)), "the exported span is in the caller's trace");
    assert!(contains(&hex(PARENT_SPAN)), "and its parent is the caller's span");
    assert!(contains(b"hootenanny"), "the resource names the service");
}
