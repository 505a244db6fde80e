//! Graceful shutdown: SIGTERM to each service with 300 requests in flight. Every request the
//! service had taken in is answered (its result, or UNAVAILABLE) before the process exits 0.

use std::time::{Duration, Instant};

use hooteproto::v1::{self as pb, ErrorCode, PingRequest};
use hooteproto::{Client, Error, RequestOptions};
use system_tests::{Cluster, Service};

const IN_FLIGHT: usize = 300;

fn patient() -> RequestOptions {
    RequestOptions {
        timeout: Some(Duration::from_secs(60)),
        idempotent: Some(false),
        ..Default::default()
    }
}

/// Sends request `i` of the burst: work that takes the service a while, so most are in flight.
async fn request(client: Client, service: Service, i: usize) -> Result<(), Error> {
    match service {
        Service::Luanette => {
            let code = "local t = os.clock() while os.clock() - t < 0.01 do end return 1".into();
            client
                .call_with(pb::LuaEvalRequest { code, params: None }, patient())
                .await
                .map(drop)
        }
        Service::Hootenanny => {
            let data = format!("object {i} of the burst ").repeat(2048).into_bytes();
            let request = pb::CasStoreRequest {
                data,
                mime_type: "text/plain".into(),
            };
            client.call_with(request, patient()).await.map(drop)
        }
        Service::Chaosgarden => {
            let request = pb::TimelineAddMarkerRequest {
                event_type: pb::TimelineEventType::CuePoint as i32,
                position_beats: i as f64,
                metadata: None,
            };
            client.call_with(request, patient()).await.map(drop)
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_answers_every_request_in_flight_before_exit() {
    let mut cluster = Cluster::start(&[]).await;
    // Chaosgarden first: it talks to Luanette, which must still be up when it stops.
    for service in [Service::Chaosgarden, Service::Hootenanny, Service::Luanette] {
        let client = cluster.client(service);
        let burst: Vec<_> = (0..IN_FLIGHT)
            .map(|i| tokio::spawn(request(client.clone(), service, i)))
            .collect();
        let deadline = Instant::now() + Duration::from_secs(10);
        while client.stats().sent < IN_FLIGHT as u64 {
            assert!(Instant::now() < deadline, "the burst was not sent");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // One socket delivers in order: once this ping is answered, the service has read the burst.
        client.call(PingRequest {}).await.expect("ping behind the burst");
        let status = cluster.terminate(service);
        assert!(
            status.success(),
            "{} exits 0 after SIGTERM: {status}\n{}",
            service.name(),
            cluster.log(service)
        );
        let (mut answered, mut unavailable) = (0, 0);
        for outcome in burst {
            match outcome.await.expect("a request task") {
                Ok(()) => answered += 1,
                Err(Error::Remote(status)) if status.code == ErrorCode::Unavailable => unavailable += 1,
                Err(other) => panic!("{}: a request in flight was not answered: {other}", service.name()),
            }
        }
        eprintln!(
            "{}: {answered} answered with their result, {unavailable} with UNAVAILABLE",
            service.name()
        );
        assert_eq!(answered + unavailable, IN_FLIGHT);
        assert!(answered > 0, "{}: the drain let nothing finish", service.name());
    }
}
