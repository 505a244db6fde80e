//! The job queue's depth reaches an OpenTelemetry collector (a local HTTP server standing in for
//! one) as gauges per priority and capabilities, from the real binary in cluster mode.
//!
//! Needs PostgreSQL: `eval "$(scripts/postgres start DIR)"`, then
//! `cargo test -p luanette --test queue_metrics -- --ignored` (scripts/test does this).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hooteproto::v1::{JobExecuteRequest, JobPriority, PingRequest, ScriptStoreRequest};
use hooteproto::{Client, ClientConfig};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use opentelemetry_proto::tonic::metrics::v1::number_data_point::Value;
use prost::Message as _;

/// The `hoot.jobs.pending` points of one export: (priority, capabilities) → value.
fn pending_points(export: &ExportMetricsServiceRequest) -> Vec<(String, String, i64)> {
    let mut points = Vec::new();
    for resource in &export.resource_metrics {
        for scope in &resource.scope_metrics {
            for metric in scope.metrics.iter().filter(|m| m.name == "hoot.jobs.pending") {
                let Some(Data::Gauge(gauge)) = &metric.data else {
                    continue;
                };
                for point in &gauge.data_points {
                    let attribute = |key: &str| {
                        point
                            .attributes
                            .iter()
                            .find(|a| a.key == key)
                            .and_then(|a| a.value.as_ref()?.value.clone())
                            .map(|v| match v {
                                AnyValue::StringValue(s) => s,
                                other => format!("{other:?}"),
                            })
                            .unwrap_or_default()
                    };
                    let value = match point.value {
                        Some(Value::AsInt(v)) => v,
                        Some(Value::AsDouble(v)) => v as i64,
                        None => -1,
                    };
                    points.push((attribute("priority"), attribute("capabilities"), value));
                }
            }
        }
    }
    points
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL (scripts/postgres); scripts/test runs it"]
async fn queue_depth_reaches_the_collector_per_priority_and_capability() {
    let collector = testkit::HttpServer::accepting();
    let data = tempfile::tempdir().expect("tmp");
    let database_url = testkit::postgres::database_for(data.path())
        .expect("this test needs PostgreSQL: eval \"$(scripts/postgres start DIR)\"");
    let bind = format!("tcp://127.0.0.1:{}", testkit::free_port());
    let mut front = Command::new(env!("CARGO_BIN_EXE_luanette"))
        .args(["--bind", &bind, "--health-bind", "none", "--pub-bind", "none"])
        .arg("--data-dir")
        .arg(data.path())
        .args(["--database-url", &database_url, "--local-workers", "0"])
        .args(["--otlp-endpoint", &collector.url])
        .env("OTEL_METRIC_EXPORT_INTERVAL", "200")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map(testkit::KillOnDrop)
        .expect("spawn luanette");
    let client = Client::connect(ClientConfig::new(bind)).expect("client");
    client.call(PingRequest {}).await.expect("front answers");
    let script = client
        .call(ScriptStoreRequest {
            content: "function main() return 1 end".into(),
            ..Default::default()
        })
        .await
        .expect("store")
        .script
        .expect("script")
        .script_hash;
    // Nothing has `gpu`: these wait in the queue.
    for priority in [JobPriority::High, JobPriority::High, JobPriority::Low] {
        client
            .call(JobExecuteRequest {
                script_hash: script.clone(),
                priority: priority as i32,
                required_capabilities: vec!["gpu".into()],
                ..Default::default()
            })
            .await
            .expect("execute");
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    let wanted = [
        ("high".to_string(), "gpu".to_string(), 2),
        ("low".into(), "gpu".into(), 1),
    ];
    loop {
        let seen: Vec<(String, String, i64)> = collector
            .requests()
            .iter()
            .filter(|r| r.path == "/v1/metrics")
            .filter_map(|r| ExportMetricsServiceRequest::decode(r.body.as_slice()).ok())
            .flat_map(|export| pending_points(&export))
            .collect();
        if wanted.iter().all(|w| seen.contains(w)) {
            break;
        }
        assert!(Instant::now() < deadline, "the collector saw {seen:?}, not {wanted:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    testkit::signal(front.0.id(), testkit::SIGTERM).expect("SIGTERM");
    assert!(front.0.wait().expect("exit").success());
}
