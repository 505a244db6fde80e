//! One client cannot starve the others (over real tcp loopback sockets): a client that floods
//! a server is refused `RESOURCE_EXHAUSTED` naming the cap it hit, while other clients' requests
//! are still taken and a ping answers at once; `ping`, `register` and `timeline_event` have
//! capacity of their own that no flood of other requests can take.

mod common;

use std::time::{Duration, Instant};

use common::{TestService, config, start};
use hooteproto::v1::envelope::Payload;
use hooteproto::v1::{ErrorCode, LuaEvalRequest, PingRequest, RegisterRequest, ShutdownRequest, TimelineEventRequest};
use hooteproto::{Client, ClientConfig, Error, Status};

fn eval(code: impl Into<String>) -> Payload {
    Payload::LuaEval(LuaEvalRequest {
        code: code.into(),
        params: None,
    })
}

fn client(endpoint: &str, name: &str) -> Client {
    let mut config = ClientConfig::new(endpoint);
    config.name = name.into();
    config.timeout = Duration::from_secs(30);
    Client::connect(config).expect("connect")
}

/// Sends `count` requests that each hold a slot for `hold_ms`, all at once; returns their tasks
/// once the client has handed every one to the socket.
async fn flood(client: &Client, count: usize, hold_ms: u64) -> Vec<tokio::task::JoinHandle<Result<Payload, Error>>> {
    let sent_before = client.stats().sent;
    let tasks: Vec<_> = (0..count)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { client.request(eval(format!("sleep:{hold_ms}"))).await })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    while client.stats().sent < sent_before + count as u64 {
        assert!(Instant::now() < deadline, "the flood was not sent");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    tasks
}

/// How many of `tasks` were answered, and the refusals among them.
async fn outcomes(tasks: Vec<tokio::task::JoinHandle<Result<Payload, Error>>>) -> (usize, Vec<Status>) {
    let (mut answered, mut refused) = (0, Vec::new());
    for task in tasks {
        match task.await.expect("a request task") {
            Ok(_) => answered += 1,
            Err(Error::Remote(status)) if status.code == ErrorCode::ResourceExhausted => refused.push(status),
            Err(other) => panic!("a flood request neither answered nor refused: {other}"),
        }
    }
    (answered, refused)
}

fn refused_by(result: Result<Payload, Error>) -> Option<String> {
    match result {
        Err(Error::Remote(status)) if status.code == ErrorCode::ResourceExhausted => Some(status.message),
        _ => None,
    }
}

fn cap_named(status: &Status) -> Option<String> {
    let details = status.details.as_ref()?.to_json().ok()?;
    details.get("cap")?.as_str().map(str::to_string)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_client_is_capped_and_another_clients_ping_still_answers_fast() {
    // The defaults: 512 requests in flight from one client, 1024 in all.
    let server = start(config(), TestService::default());
    let flooder = client(&server.endpoint, "flooder");
    let other = client(&server.endpoint, "other");
    other.call(PingRequest {}).await.expect("warm-up ping");

    let flood = flood(&flooder, 600, 2_000).await;
    // Once the flooder's own ping is answered, the server has read the whole flood (one socket
    // delivers in order); reserved capacity answers it even though the flooder is at its cap.
    flooder.call(PingRequest {}).await.expect("the flooder's own ping");

    let mut pings = Vec::new();
    for _ in 0..20 {
        let asked = Instant::now();
        other.call(PingRequest {}).await.expect("another client's ping");
        pings.push(asked.elapsed());
    }
    pings.sort();
    let (median, worst) = (pings[pings.len() / 2], pings[pings.len() - 1]);
    eprintln!("another client's ping during a 600-request flood: median {median:?}, worst {worst:?}");
    assert!(
        worst < Duration::from_millis(500),
        "pings were held up: worst {worst:?}"
    );
    // Another client's ordinary request is still taken (the flooder holds 512 of 1024).
    let reply = other.request(eval("sleep:10")).await;
    assert!(refused_by(reply).is_none(), "another client's request was refused");

    let (answered, refused) = outcomes(flood).await;
    assert_eq!(
        (answered, refused.len()),
        (512, 88),
        "one client gets max_in_flight_per_client"
    );
    for status in &refused {
        assert!(
            status.message.contains("max_in_flight_per_client = 512"),
            "the refusal names the cap: {}",
            status.message
        );
        assert_eq!(cap_named(status).as_deref(), Some("max_in_flight_per_client"));
    }
    let stats = server.shutdown().await;
    assert_eq!((stats.rejected_client_busy, stats.rejected_busy), (88, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_register_and_timeline_event_get_through_when_every_slot_is_taken() {
    let mut config = config();
    config.max_in_flight = 8;
    config.max_in_flight_per_client = 4;
    let server = start(config, TestService::default());
    // Three clients, four each: the first two fill the server, the third is refused by the total.
    let (a, b, c) = (
        client(&server.endpoint, "a"),
        client(&server.endpoint, "b"),
        client(&server.endpoint, "c"),
    );
    let mut held = flood(&a, 4, 1_500).await;
    a.call(PingRequest {}).await.expect("a's ping");
    held.extend(flood(&b, 4, 1_500).await);
    b.call(PingRequest {}).await.expect("b's ping");
    let third = flood(&c, 4, 1_500).await;
    c.call(PingRequest {}).await.expect("c's ping");
    let (answered, refused) = outcomes(third).await;
    assert_eq!((answered, refused.len()), (0, 4));
    assert!(
        refused.iter().all(|s| s.message.contains("max_in_flight = 8")),
        "refused by the total, and it says so: {:?}",
        refused[0].message
    );

    // Every ordinary slot is taken; the reserved payloads still reach the handler.
    let fresh = client(&server.endpoint, "fresh");
    assert!(
        refused_by(fresh.request(eval("one more")).await).is_some(),
        "ordinary: refused"
    );
    fresh.call(PingRequest {}).await.expect("ping is answered");
    for payload in [
        Payload::Register(RegisterRequest::default()),
        Payload::TimelineEvent(TimelineEventRequest::default()),
        Payload::Shutdown(ShutdownRequest::default()),
    ] {
        let name = payload.name();
        match fresh.request(payload).await {
            // The test service does not serve these: UNIMPLEMENTED means the handler got it.
            Err(Error::Remote(status)) if status.code == ErrorCode::Unimplemented => {}
            other => panic!("{name} should reach the handler, got {other:?}"),
        }
    }
    let (answered, refused) = outcomes(held).await;
    assert_eq!((answered, refused.len()), (8, 0));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reserve_is_capped_per_client_too() {
    // Make lua_eval a reserved payload, so reserved requests can be held in flight.
    let mut config = config();
    config.reserved_payloads = vec!["ping".into(), "lua_eval".into()];
    config.reserved_in_flight = 4;
    config.reserved_in_flight_per_client = 2;
    let server = start(config, TestService::default());
    let (a, b, c) = (
        client(&server.endpoint, "a"),
        client(&server.endpoint, "b"),
        client(&server.endpoint, "c"),
    );
    let (answered, refused) = outcomes(flood(&a, 3, 500).await).await;
    assert_eq!((answered, refused.len()), (2, 1));
    assert!(
        refused[0].message.contains("reserved_in_flight_per_client = 2"),
        "{}",
        refused[0].message
    );

    // a and b hold two each: the reserve (4) is full, so c is refused by the total.
    let mut held = flood(&a, 2, 1_000).await;
    held.extend(flood(&b, 2, 1_000).await);
    for full in [&a, &b] {
        // Refused by its own cap, behind its held requests: the server has read them.
        let message = refused_by(full.request(eval("sleep:1")).await).expect("this client's reserve is full");
        assert!(message.contains("reserved_in_flight_per_client = 2"), "{message}");
    }
    let message = refused_by(c.request(eval("sleep:1")).await).expect("the reserve is full");
    assert!(message.contains("reserved_in_flight = 4"), "{message}");
    let (answered, _) = outcomes(held).await;
    assert_eq!(answered, 4);
    server.shutdown().await;
}
