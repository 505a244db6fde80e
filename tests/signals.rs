//! Signals landing on the threads that drive libzmq sockets. A graceful shutdown starts with
//! SIGTERM, and libzmq answers even a non-blocking call with EINTR when a signal interrupts its
//! internal wait; that once made a service exit 1 instead of draining. Here a thread rains a
//! handled signal on the process while a client and a server trade thousands of messages.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::{TestService, config, start, success_text};
use hooteproto::v1::LuaEvalRequest;
use hooteproto::v1::envelope::Payload;
use hooteproto::{Client, ClientConfig, RequestOptions};
use tokio::signal::unix::{SignalKind, signal};

const REQUESTS: usize = 20000;

/// Sends SIGUSR2 to each thread of this process in turn until `stop`. A signal sent to the
/// process would nearly always land on its main thread, which in a test harness only waits;
/// in a service the main thread drives the server, so here every thread gets its share.
fn rain_signals(stop: Arc<AtomicBool>, sent: Arc<AtomicU64>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        // SAFETY: plain libc calls; tgkill signals a thread of our own process, and SIGUSR2
        // has a handler installed (threads that block it, like libzmq's, keep it pending).
        let (pid, me) = unsafe { (libc::getpid(), libc::gettid()) };
        while !stop.load(Ordering::Relaxed) {
            let tasks = std::fs::read_dir("/proc/self/task").expect("/proc/self/task");
            for tid in tasks
                .flatten()
                .filter_map(|t| t.file_name().to_str()?.parse::<i32>().ok())
            {
                if tid != me {
                    unsafe { libc::syscall(libc::SYS_tgkill, pid, tid, libc::SIGUSR2) };
                    sent.fetch_add(1, Ordering::Relaxed);
                }
            }
            std::thread::sleep(Duration::from_micros(20));
        }
    })
}

/// Long enough for any request here; a server that stopped answering fails the test in time.
fn deadline() -> RequestOptions {
    RequestOptions {
        timeout: Some(Duration::from_secs(5)),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signals_do_not_break_a_server_or_its_clients() {
    // Installing a listener gives SIGUSR2 a handler, as SIGTERM has in every service.
    let mut handled = signal(SignalKind::user_defined2()).expect("a SIGUSR2 handler");
    let server = start(config(), TestService::default());
    let client = Client::connect(ClientConfig::new(&server.endpoint)).expect("connect");

    let (stop, sent) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)));
    let rain = rain_signals(stop.clone(), sent.clone());
    let mut failures = Vec::new();
    for batch in 0..REQUESTS / 100 {
        let calls: Vec<_> = (0..100)
            .map(|i| {
                let client = client.clone();
                let code = format!("request {batch}/{i}");
                tokio::spawn(async move {
                    let request = Payload::LuaEval(LuaEvalRequest {
                        code: code.clone(),
                        params: None,
                    });
                    let reply = client
                        .request_with(request, deadline())
                        .await
                        .map_err(|e| format!("{code}: {e}"))?;
                    match success_text(&reply) {
                        Some(text) if text == code => Ok(()),
                        other => Err(format!("{code}: answered {other:?}")),
                    }
                })
            })
            .collect();
        for call in calls {
            if let Err(failure) = call.await.expect("a request task") {
                failures.push(failure);
            }
        }
        if !failures.is_empty() {
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    rain.join().expect("the signalling thread");
    let stats = server.shutdown().await;

    assert!(handled.recv().await.is_some(), "the handler saw the signals");
    let sent = sent.load(Ordering::Relaxed);
    eprintln!("{sent} signals during {REQUESTS} requests; {} failed", failures.len());
    assert!(sent > 1000, "too few signals to mean anything: {sent}");
    assert!(
        failures.is_empty(),
        "{} requests failed, first: {}",
        failures.len(),
        failures[0]
    );
    assert_eq!(stats.requests, REQUESTS as u64);
}
