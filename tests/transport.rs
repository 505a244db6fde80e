//! Client and server over real libzmq tcp loopback sockets: concurrency, deadlines,
//! retries, size limits, keys, start order and graceful drain.

mod common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::{TestService, config, start, success_text};
use hooteproto::v1::envelope::Payload;
use hooteproto::v1::{CasInspectRequest, Envelope, ErrorCode, LuaEvalRequest, PingRequest, TransportStatusRequest};
use hooteproto::wire;
use hooteproto::{Client, ClientConfig, Error, Key, RequestOptions, Server, ServerConfig};

fn eval(code: impl Into<String>) -> Payload {
    Payload::LuaEval(LuaEvalRequest {
        code: code.into(),
        params: None,
    })
}

fn client(endpoint: &str) -> Client {
    Client::connect(ClientConfig::new(endpoint)).expect("connect")
}

fn remote_code(result: Result<Payload, Error>) -> ErrorCode {
    match result {
        Err(Error::Remote(status)) => status.code,
        other => panic!("expected a remote error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_ping_round_trip() {
    let server = start(config(), TestService::default());
    let pong = client(&server.endpoint).call(PingRequest {}).await.expect("ping");
    assert_eq!(pong.service, "test-service");
    let stats = server.shutdown().await;
    assert_eq!((stats.requests, stats.replies, stats.errors), (1, 1, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_get_their_own_replies_out_of_order() {
    let server = start(config(), TestService::default());
    let client = client(&server.endpoint);
    // Earlier requests sleep longer, so replies arrive in reverse order.
    let calls = (0..200u64).map(|i| {
        let client = client.clone();
        async move {
            let code = format!("sleep:{}", (200 - i) / 4);
            let reply = client.request(eval(code.clone())).await.expect("reply");
            assert_eq!(
                success_text(&reply),
                Some(code.as_str()),
                "request {i} got someone else's reply"
            );
            Instant::now()
        }
    });
    let started = Instant::now();
    let finished = futures_join_all(calls).await;
    // They ran concurrently: 200 sleeps of up to 50 ms took far less than their sum (~5 s).
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
    assert!(finished[0] > finished[199], "the longest sleep should finish last");
    let stats = server.shutdown().await;
    assert_eq!(stats.requests, 200);
}

async fn futures_join_all<F: std::future::Future + Send + 'static>(futures: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for handle in handles {
        out.push(handle.await.expect("task"));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_started_after_the_client_still_answers() {
    let port = common::free_port();
    let endpoint = format!("tcp://127.0.0.1:{port}");
    let client = client(&endpoint); // nothing listens yet: connect must not fail or block
    let pending = tokio::spawn({
        let client = client.clone();
        async move { client.call(PingRequest {}).await }
    });
    tokio::time::sleep(Duration::from_millis(400)).await;
    let server = start(ServerConfig::new(endpoint.clone()), TestService::default());
    let pong = pending.await.expect("task").expect("ping once the server is up");
    assert_eq!(pong.service, "test-service");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_payload_kind_is_unimplemented() {
    let server = start(config(), TestService::default());
    let result = client(&server.endpoint)
        .request(Payload::TransportStatus(TransportStatusRequest {}))
        .await;
    assert_eq!(remote_code(result), ErrorCode::Unimplemented);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handler_panic_is_answered_internal_and_server_keeps_serving() {
    let server = start(config(), TestService::default());
    let client = client(&server.endpoint);
    assert_eq!(remote_code(client.request(eval("panic")).await), ErrorCode::Internal);
    assert_eq!(
        remote_code(client.request(eval("panic-later")).await),
        ErrorCode::Internal
    );
    client.call(PingRequest {}).await.expect("still serving after a panic");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_deadline_ends_a_request_nobody_answers() {
    // Nothing listens here: the request is queued, never answered, and not retried.
    let client = client(&format!("tcp://127.0.0.1:{}", common::free_port()));
    let options = RequestOptions {
        timeout: Some(Duration::from_millis(300)),
        ..Default::default()
    };
    let started = Instant::now();
    let result = client.request_with(eval("anything"), options).await;
    assert!(
        matches!(result, Err(Error::DeadlineExceeded { attempts: 1, .. })),
        "{result:?}"
    );
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(300) && elapsed < Duration::from_millis(1000),
        "{elapsed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_stops_work_at_the_envelopes_timeout() {
    let server = start(config(), TestService::default());
    let endpoint = server.endpoint.clone();
    let (code, waited) = tokio::task::spawn_blocking(move || {
        let raw = common::raw_dealer(&endpoint);
        let envelope = Envelope {
            id: "slow".into(),
            timeout_ms: 200,
            payload: Some(eval("sleep:2000")),
            ..Default::default()
        };
        let started = Instant::now();
        let reply = common::raw_exchange(
            &raw,
            &wire::encode(&envelope, None, wire::DEFAULT_MAX_MESSAGE_SIZE).expect("encode"),
        )
        .expect("a reply");
        let reply = wire::decode(&reply, None, wire::DEFAULT_MAX_MESSAGE_SIZE).expect("decode");
        match reply.payload {
            Some(Payload::Error(e)) => (e.code, started.elapsed()),
            other => panic!("expected an error, got {other:?}"),
        }
    })
    .await
    .expect("raw peer");
    assert_eq!(code, ErrorCode::DeadlineExceeded as i32);
    assert!(
        waited < Duration::from_millis(1500),
        "answered after {waited:?}, not at timeout_ms"
    );
    let stats = server.shutdown().await;
    assert_eq!(stats.errors, 1, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_requests_are_retried_and_others_are_not() {
    let service = TestService {
        stall_first_ms: 1500,
        ..Default::default()
    };
    let server = start(config(), service);
    let mut config = ClientConfig::new(&server.endpoint);
    config.attempt_timeout = Duration::from_millis(300);
    let client = Client::connect(config).expect("connect");

    // cas_inspect is marked idempotent in the schema: the stalled first attempt is retried.
    let reply = client
        .call(CasInspectRequest { hash: "abc".into() })
        .await
        .expect("retried");
    assert_eq!(reply.object.map(|o| o.hash).as_deref(), Some("abc"));
    assert!(client.stats().retries >= 1, "{:?}", client.stats());

    // The same request marked non-idempotent by the caller is sent once and fails. (Which
    // side notices the deadline first, the client or the server honouring timeout_ms, is a
    // race; either way the caller sees DEADLINE_EXCEEDED.)
    let options = RequestOptions {
        idempotent: Some(false),
        timeout: Some(Duration::from_millis(600)),
        ..Default::default()
    };
    let calls_before = server.service.calls.load(Ordering::SeqCst);
    let result = client
        .call_with(CasInspectRequest { hash: "def".into() }, options)
        .await;
    assert_eq!(result.map_err(|e| e.code()).err(), Some(ErrorCode::DeadlineExceeded));
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        server.service.calls.load(Ordering::SeqCst) - calls_before,
        1,
        "sent exactly once"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_request_is_refused_by_the_sender() {
    let server = start(config(), TestService::default());
    let mut config = ClientConfig::new(&server.endpoint);
    config.max_message_size = 1024 * 1024;
    let client = Client::connect(config).expect("connect");
    let result = client.request(eval("x".repeat(2 * 1024 * 1024))).await;
    match result {
        Err(ref e @ Error::MessageTooLarge { max, .. }) => {
            assert_eq!(max, 1024 * 1024);
            assert_eq!(e.code(), ErrorCode::ResourceExhausted);
        }
        other => panic!("expected MessageTooLarge, got {other:?}"),
    }
    assert_eq!(client.stats().sent, 0, "nothing may reach the wire");
    let stats = server.shutdown().await;
    assert_eq!(stats.requests, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_message_from_a_careless_peer_does_not_hurt_the_server() {
    let mut server_config = config();
    server_config.max_message_size = 64 * 1024;
    let server = start(server_config, TestService::default());
    // This client allows 64 MiB, so it sends; libzmq's MAXMSGSIZE on the server cuts the
    // connection, which the client notices at once: the request is lost, not left waiting.
    let careless = client(&server.endpoint);
    let options = RequestOptions {
        timeout: Some(Duration::from_secs(5)),
        ..Default::default()
    };
    let started = std::time::Instant::now();
    let result = careless.request_with(eval("x".repeat(256 * 1024)), options).await;
    assert!(matches!(result, Err(Error::ConnectionLost { .. })), "{result:?}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "it waited {:?}",
        started.elapsed()
    );
    // Small requests, from this client and others, still work.
    careless.call(PingRequest {}).await.expect("careless client recovers");
    client(&server.endpoint)
        .call(PingRequest {})
        .await
        .expect("others unaffected");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reply_larger_than_the_limit_becomes_resource_exhausted() {
    let mut server_config = config();
    server_config.max_message_size = 64 * 1024;
    let server = start(server_config, TestService::default());
    let result = client(&server.endpoint).request(eval("big:100000")).await;
    match result {
        Err(Error::Remote(status)) => {
            assert_eq!(status.code, ErrorCode::ResourceExhausted);
            assert!(
                status.message.contains("exceeds the maximum message size"),
                "{}",
                status.message
            );
        }
        other => panic!("expected RESOURCE_EXHAUSTED, got {other:?}"),
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_beyond_max_in_flight_are_rejected_not_queued_forever() {
    let mut server_config = config();
    server_config.max_in_flight = 4;
    let server = start(server_config, TestService::default());
    let client = client(&server.endpoint);
    let slow: Vec<_> = (0..4)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { client.request(eval("sleep:800")).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        remote_code(client.request(eval("one more")).await),
        ErrorCode::ResourceExhausted
    );
    for handle in slow {
        handle.await.expect("task").expect("slow request answered");
    }
    let stats = server.shutdown().await;
    assert_eq!(stats.rejected_busy, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_key_signs_both_ways_and_a_wrong_key_gets_nothing() {
    let key = Key::new(b"0123456789abcdef-secret".to_vec()).expect("key");
    let mut server_config = config();
    server_config.key = Some(key.clone());
    let server = start(server_config, TestService::default());

    let mut good = ClientConfig::new(&server.endpoint);
    good.key = Some(key);
    Client::connect(good)
        .expect("connect")
        .call(PingRequest {})
        .await
        .expect("signed ping");

    let mut wrong = ClientConfig::new(&server.endpoint);
    wrong.key = Some(Key::new(b"another-key-entirely".to_vec()).expect("key"));
    wrong.timeout = Duration::from_millis(400);
    let result = Client::connect(wrong).expect("connect").call(PingRequest {}).await;
    assert!(matches!(result, Err(Error::DeadlineExceeded { .. })), "{result:?}");

    let mut unsigned = ClientConfig::new(&server.endpoint);
    unsigned.timeout = Duration::from_millis(400);
    let result = Client::connect(unsigned).expect("connect").call(PingRequest {}).await;
    assert!(matches!(result, Err(Error::DeadlineExceeded { .. })), "{result:?}");

    let stats = server.shutdown().await;
    assert_eq!(stats.requests, 1, "only the signed request may run: {stats:?}");
    assert!(stats.unauthenticated >= 2, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_loopback_bind_needs_a_key_or_insecure() {
    let port = common::free_port();
    let error = Server::bind(ServerConfig::new(format!("tcp://0.0.0.0:{port}")))
        .err()
        .expect("refused");
    assert!(
        matches!(error, Error::Config(ref m) if m.contains("--insecure")),
        "{error}"
    );
    let mut insecure = ServerConfig::new(format!("tcp://0.0.0.0:{port}"));
    insecure.insecure = true;
    assert!(Server::bind(insecure).is_ok());
    assert!(hooteproto::server::is_local_endpoint("tcp://127.0.0.1:5580"));
    assert!(hooteproto::server::is_local_endpoint("tcp://[::1]:5580"));
    assert!(!hooteproto::server::is_local_endpoint("tcp://*:5580"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_answers_every_accepted_request() {
    let mut running = start(config(), TestService::default());
    let client = client(&running.endpoint);
    let accepted: Vec<_> = (0..100)
        .map(|i| {
            let client = client.clone();
            tokio::spawn(async move { client.request(eval(format!("sleep:{}", 300 + i))).await })
        })
        .collect();
    // Wait until all 100 are running, then shut down while they are in flight.
    while running.stats.snapshot().requests < 100 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    running.begin_shutdown();
    tokio::time::sleep(Duration::from_millis(50)).await;
    // Arriving during the drain: answered UNAVAILABLE, not silently dropped.
    let late = client.request(eval("late")).await;
    assert_eq!(remote_code(late), ErrorCode::Unavailable);
    for (i, handle) in accepted.into_iter().enumerate() {
        let reply = handle
            .await
            .expect("task")
            .unwrap_or_else(|e| panic!("request {i} lost: {e}"));
        assert!(success_text(&reply).is_some_and(|t| t.starts_with("sleep:")));
    }
    let stats = running.join().await;
    assert_eq!((stats.requests, stats.rejected_draining), (100, 1), "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_deadline_answers_stragglers_unavailable() {
    let mut server_config = config();
    server_config.drain_timeout = Duration::from_millis(200);
    let mut running = start(server_config, TestService::default());
    let client = client(&running.endpoint);
    let stuck = tokio::spawn({
        let client = client.clone();
        async move { client.request(eval("sleep:5000")).await }
    });
    while running.stats.snapshot().requests < 1 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let started = Instant::now();
    running.begin_shutdown();
    assert_eq!(remote_code(stuck.await.expect("task")), ErrorCode::Unavailable);
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    let stats = running.join().await;
    assert_eq!((stats.replies, stats.errors), (1, 1), "{stats:?}");
}

#[test]
fn outside_a_runtime_is_a_clear_error_not_a_panic() {
    let client = Client::connect(ClientConfig::new("tcp://127.0.0.1:5599"));
    assert!(
        matches!(client, Err(Error::Config(ref m)) if m.contains("tokio runtime")),
        "{client:?}"
    );
    let server = Server::bind(ServerConfig::new("tcp://127.0.0.1:*"));
    assert!(matches!(server, Err(Error::Config(_))));
}
