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

/// Parses a `--health-bind` value: an address, or `none` (or empty) for no endpoint.
pub fn parse_bind(value: &str) -> Result<Option<SocketAddr>, Error> {
    match value {
        "none" | "" => Ok(None),
        address => address
            .parse()
            .map(Some)
            .map_err(|e| Error::Config(format!("--health-bind {address}: {e}"))),
    }
}

/// Starts an endpoint if an address is configured.
pub async fn start_if(address: Option<SocketAddr>, service: &str) -> Result<Option<HealthServer>, Error> {
    match address {
        Some(address) => HealthServer::start(address, service).await.map(Some),
        None => Ok(None),
    }
}

/// The usual `shutdown` future of a service's [`Server::run`](crate::Server::run): completes when
/// `signal` does or a `shutdown` request arrives, after reporting NOT_SERVING.
pub async fn drain_trigger(
    signal: impl std::future::Future<Output = ()>,
    lifecycle: &crate::server::Lifecycle,
    health: Option<&HealthServer>,
) {
    tokio::select! {
        () = signal => {}
        () = lifecycle.requested() => {}
    }
    if let Some(health) = health {
        health.not_serving().await;
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn health_bind_is_an_address_or_none() {
        assert_eq!(super::parse_bind("none").ok(), Some(None));
        assert_eq!(super::parse_bind("").ok(), Some(None));
        assert_eq!(
            super::parse_bind("127.0.0.1:6580").ok(),
            Some(Some(([127, 0, 0, 1], 6580).into()))
        );
        let error = super::parse_bind("localhost").expect_err("not an address");
        assert!(error.to_string().contains("--health-bind localhost"), "{error}");
    }
}
