//! A real server process is killed with SIGKILL and restarted while a client keeps
//! sending; the client recovers by itself, with no action by the caller.

mod common;

use std::time::{Duration, Instant};

use common::{free_port, spawn_echo_server};
use hooteproto::v1::envelope::Payload;
use hooteproto::v1::{LuaEvalRequest, PingRequest};
use hooteproto::{Client, ClientConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_recovers_after_its_server_is_killed_and_restarted() {
    let endpoint = format!("tcp://127.0.0.1:{}", free_port());
    let server = spawn_echo_server(&endpoint);
    let client = Client::connect(ClientConfig::new(&endpoint)).expect("connect");
    client.call(PingRequest {}).await.expect("first ping");

    // A steady stream of pings; each records when it was sent, when it ended and how.
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let pinger = tokio::spawn({
        let client = client.clone();
        async move {
            let mut log = Vec::new();
            while !*stop_rx.borrow_and_update() {
                let sent = Instant::now();
                let result = client.call(PingRequest {}).await;
                log.push((sent, Instant::now(), result.map(|pong| pong.worker_id)));
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            log
        }
    });

    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(server); // SIGKILL, then reaped
    tokio::time::sleep(Duration::from_millis(500)).await;
    let restarted_at = Instant::now();
    let _server = spawn_echo_server(&endpoint);
    tokio::time::sleep(Duration::from_millis(3000)).await;
    stop_tx.send(true).expect("stop");
    let log = pinger.await.expect("pinger");

    let failures: Vec<_> = log.iter().filter(|(_, _, r)| r.is_err()).collect();
    assert!(
        failures.is_empty(),
        "idempotent pings must survive a restart: {failures:?}"
    );
    let workers: std::collections::BTreeSet<_> = log.iter().filter_map(|(_, _, r)| r.as_ref().ok()).collect();
    assert_eq!(workers.len(), 2, "answered by the old and the new process: {workers:?}");
    let first_after = log
        .iter()
        .filter(|(_, done, _)| *done > restarted_at)
        .map(|(_, done, _)| *done)
        .min()
        .expect("answers after the restart");
    let recovery = first_after - restarted_at;
    eprintln!(
        "recovered {recovery:?} after the restart; {} pings; client {:?}",
        log.len(),
        client.stats()
    );
    assert!(
        recovery < Duration::from_secs(2),
        "recovered {recovery:?} after the restart"
    );
    let slowest = log
        .iter()
        .map(|(sent, done, _)| *done - *sent)
        .max()
        .unwrap_or_default();
    assert!(
        slowest < Duration::from_secs(5),
        "no call may hang: slowest took {slowest:?}"
    );

    // Non-idempotent requests work again on the same client, too.
    let reply = client
        .request(Payload::LuaEval(LuaEvalRequest {
            code: "after restart".into(),
            params: None,
        }))
        .await
        .expect("lua_eval after restart");
    assert!(matches!(reply, Payload::Success(_)));
}

/// SIGSTOP then SIGKILL: the server takes in a request and dies without answering. The
/// caller hears at once: a request that may not be sent twice fails with ConnectionLost
/// (UNAVAILABLE) instead of waiting out its 10 s deadline, and an idempotent one is sent
/// again and answered by the restarted server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_in_flight_when_the_server_dies_does_not_wait_out_its_deadline() {
    let endpoint = format!("tcp://127.0.0.1:{}", free_port());
    let mut server = spawn_echo_server(&endpoint);
    let client = Client::connect(ClientConfig::new(&endpoint)).expect("connect");
    client.call(PingRequest {}).await.expect("first ping");

    let pid = server.0.id().to_string();
    testkit::signal(server.0.id(), testkit::SIGSTOP).expect("SIGSTOP");
    // A signal takes effect asynchronously: wait until no thread of it can still answer.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !all_threads_stopped(&pid) {
        assert!(Instant::now() < deadline, "the server never stopped");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let eval = tokio::spawn({
        let client = client.clone();
        async move {
            let started = Instant::now();
            let result = client
                .request(Payload::LuaEval(LuaEvalRequest {
                    code: "never answered".into(),
                    params: None,
                }))
                .await;
            (result, started.elapsed())
        }
    });
    let ping = tokio::spawn({
        let client = client.clone();
        async move { client.call(PingRequest {}).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.0.kill().expect("SIGKILL");
    server.0.wait().expect("reap");
    let (result, took) = eval.await.expect("eval task");
    let error = result.expect_err("nobody answered the eval");
    assert!(matches!(error, hooteproto::Error::ConnectionLost { .. }), "{error}");
    assert_eq!(error.code(), hooteproto::v1::ErrorCode::Unavailable);
    assert!(took < Duration::from_secs(2), "the eval waited {took:?}");

    let _server = spawn_echo_server(&endpoint);
    let pong = ping.await.expect("ping task");
    assert!(pong.is_ok(), "the idempotent ping is sent again and answered: {pong:?}");
}

/// Whether every thread of process `pid` is stopped (state `T` in /proc/PID/task/TID/stat).
fn all_threads_stopped(pid: &str) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    tasks.flatten().all(|task| {
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        stat.rsplit_once(") ").is_some_and(|(_, rest)| rest.starts_with('T'))
    })
}
