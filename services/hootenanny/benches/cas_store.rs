//! `cargo bench -p hootenanny --bench cas_store`: CasStore round trips per second over
//! HOOT/1 (tcp loopback) for 4 KiB and 16 MiB payloads, against the same durable store
//! done in-process with the `cas` crate (no transport), in the same run.
//! Every payload is unique: identical content would be a no-op.

use std::time::{Duration, Instant};

use hooteproto::v1::CasStoreRequest;
use hooteproto::{Client, ClientConfig, RequestOptions};

fn payload(size: usize, n: u64) -> Vec<u8> {
    let mut bytes = vec![0x5Au8; size];
    bytes[..8].copy_from_slice(&n.to_le_bytes());
    bytes
}

async fn over_hoot(client: &Client, size: usize, count: u64, in_flight: u64, offset: u64) -> f64 {
    let started = Instant::now();
    let tasks: Vec<_> = (0..in_flight)
        .map(|lane| {
            let client = client.clone();
            tokio::spawn(async move {
                let options = RequestOptions {
                    timeout: Some(Duration::from_secs(60)),
                    ..Default::default()
                };
                for i in (lane..count).step_by(in_flight as usize) {
                    let request = CasStoreRequest {
                        data: payload(size, offset + i),
                        mime_type: "application/x-bench".into(),
                    };
                    let reply = client.call_with(request, options.clone()).await.expect("store");
                    assert!(!reply.already_existed);
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("task");
    }
    count as f64 / started.elapsed().as_secs_f64()
}

fn direct(cas: &cas::Cas, size: usize, count: u64, offset: u64) -> f64 {
    let started = Instant::now();
    for i in 0..count {
        let stored = cas
            .store(&payload(size, offset + i), "application/x-bench")
            .expect("store");
        assert!(!stored.already_existed);
    }
    count as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("cas_store bench: run with `cargo bench -p hootenanny --bench cas_store`");
        return;
    }
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("hoot-cas-store-bench");
    let _ = std::fs::remove_dir_all(&dir);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("rt");
    runtime.block_on(async {
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("port").local_addr().expect("addr").port();
        let mut config = hootenanny::Config::new(dir.join("data"));
        config.bind = format!("tcp://127.0.0.1:{port}");
        config.health_bind = None;
        let client = Client::connect(ClientConfig::new(&config.bind)).expect("connect");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(hootenanny::run(config, async move {
            let _ = stopped.await;
        }));
        let peer = cas::Cas::open(dir.join("direct")).expect("direct store");
        println!("P4b CasStore round trips (each store durable: fsync + rename + fsync dir)");
        for (label, size, count) in [("4 KiB", 4 << 10, 2000u64), ("16 MiB", 16 << 20, 40)] {
            let direct_rate = tokio::task::block_in_place(|| direct(&peer, size, count, 0));
            let sequential = over_hoot(&client, size, count, 1, 1_000_000).await;
            let concurrent = over_hoot(&client, size, count, 16, 2_000_000).await;
            let mib = size as f64 / (1 << 20) as f64;
            println!("    {label:>6}: in-process cas {direct_rate:>8.0}/s | HOOT/1 1 in flight {sequential:>8.0}/s ({:.2}x) | 16 in flight {concurrent:>8.0}/s ({:.2}x)   [{:.0} MiB/s at 16]",
                sequential / direct_rate, concurrent / direct_rate, concurrent * mib);
        }
        let _ = stop.send(());
        let _ = server.await;
    });
    let _ = std::fs::remove_dir_all(&dir);
}
