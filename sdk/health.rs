//! grpc.health.v1 for service binaries (feature `health`), via tonic-health.
//!
//! [`HealthServer::start`] reports SERVING for the empty name and the service's own name;
//! call [`HealthServer::not_serving`] when draining begins and [`HealthServer::stop`] at the
//! end. A graceful gRPC shutdown waits for open streams and a health Watch never ends by
//! itself, so watchers get [`GRACE`] to see NOT_SERVING before the server stops regardless.

use std::net::SocketAddr;
use std::time::Duration;

use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::Error;

/// How long health watchers get to see NOT_SERVING before the server stops.
pub const GRACE: Duration = Duration::from_secs(1);

/// A running health endpoint.
pub struct HealthServer {
    reporter: HealthReporter,
    names: Vec<String>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
}

impl HealthServer {
    /// Binds `address` and reports SERVING for "" and `service`.
    pub async fn start(address: SocketAddr, service: &str) -> Result<Self, Error> {
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .map_err(|e| Error::Transport(format!("binding gRPC health on {address}: {e}")))?;
        let (reporter, health_service) = tonic_health::server::health_reporter();
        let names = vec![String::new(), service.to_string()];
        for name in &names {
            reporter.set_service_status(name, ServingStatus::Serving).await;
        }
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let incoming = tonic::transport::server::TcpIncoming::from(listener);
        let task = tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(health_service)
                .serve_with_incoming_shutdown(incoming, async {
                    let _ = stopped.await;
                }),
        );
        Ok(Self {
            reporter,
            names,
            stop: Some(stop),
            task,
        })
    }

    /// Reports NOT_SERVING (draining).
    pub async fn not_serving(&self) {
        for name in &self.names {
            self.reporter.set_service_status(name, ServingStatus::NotServing).await;
        }
    }

    /// Stops the endpoint, waiting at most [`GRACE`] for open streams.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if tokio::time::timeout(GRACE, &mut self.task).await.is_err() {
            self.task.abort();
        }
    }
}
