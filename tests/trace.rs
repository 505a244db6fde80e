//! W3C traceparent continuity: a client span, a relay server that calls a second
//! server, and that server's span all share one trace, each the child of the last.
//! Own test binary: it installs a global tracing subscriber.

mod common;

use std::sync::Arc;

use common::{TestService, config, start};
use hooteproto::v1::envelope::Payload;
use hooteproto::v1::{LuaEvalRequest, PingRequest, Success};
use hooteproto::{Client, ClientConfig, Handler, RequestContext, Server, Status};
use opentelemetry::trace::{SpanId, TracerProvider as _};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use tracing::Instrument as _;
use tracing_subscriber::layer::SubscriberExt as _;

/// Answers lua_eval by pinging the next service, inside its own handling span.
struct Relay {
    next: Client,
}

impl Handler for Relay {
    async fn handle(&self, context: RequestContext, _payload: Payload) -> Result<Payload, Status> {
        assert!(
            !context.traceparent.is_empty(),
            "the caller's traceparent reaches the handler"
        );
        self.next
            .call(PingRequest {})
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        Ok(Payload::Success(Success { result: None }))
    }
}

fn span<'a>(spans: &'a [SpanData], name: &str) -> &'a SpanData {
    spans
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no span {name:?} in {spans:#?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_spans_client_relay_and_backend() {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let subscriber =
        tracing_subscriber::registry().with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
    tracing::subscriber::set_global_default(subscriber).expect("global subscriber");

    let backend = start(config(), TestService::default());
    let relay_server = Server::bind(config()).expect("bind relay");
    let relay_endpoint = relay_server.local_endpoint().to_string();
    let relay = Arc::new(Relay {
        next: Client::connect(ClientConfig::new(&backend.endpoint)).expect("connect"),
    });
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let relay_task = tokio::spawn(relay_server.run(relay, async move {
        let _ = stopped.await;
    }));

    let client = Client::connect(ClientConfig::new(&relay_endpoint)).expect("connect");
    let root = tracing::info_span!("agent-request");
    client
        .request(Payload::LuaEval(LuaEvalRequest {
            code: "relay".into(),
            params: None,
        }))
        .instrument(root.clone())
        .await
        .expect("relayed call");
    drop(root);
    let _ = stop.send(());
    relay_task.await.expect("relay task").expect("relay run");
    backend.shutdown().await;
    provider.force_flush().expect("flush");

    let spans = exporter.get_finished_spans().expect("spans");
    let root = span(&spans, "agent-request");
    let relay = span(&spans, "lua_eval");
    let backend = span(&spans, "ping");
    let trace = root.span_context.trace_id();
    assert_eq!(relay.span_context.trace_id(), trace, "relay span in the caller's trace");
    assert_eq!(backend.span_context.trace_id(), trace, "backend span in the same trace");
    assert_eq!(
        relay.parent_span_id,
        root.span_context.span_id(),
        "relay is the child of the caller"
    );
    assert_eq!(
        backend.parent_span_id,
        relay.span_context.span_id(),
        "backend is the child of the relay"
    );
    assert_ne!(root.parent_span_id, relay.span_context.span_id());
    assert_eq!(root.parent_span_id, SpanId::INVALID, "the caller's span is the root");
}
