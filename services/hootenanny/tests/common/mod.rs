//! What the black-box tests share: Hootenanny started in-process on a free loopback port.

use hooteproto::v1::PingRequest;
use hooteproto::{Client, ClientConfig};

/// A Hootenanny serving in this process, and a client of it.
pub struct Running {
    pub client: Client,
    pub stop: tokio::sync::oneshot::Sender<()>,
    pub task: tokio::task::JoinHandle<anyhow::Result<hooteproto::ServerStats>>,
}

impl Running {
    /// Shuts it down and returns what it served.
    pub async fn stop(self) -> hooteproto::ServerStats {
        let _ = self.stop.send(());
        self.task.await.expect("task").expect("run")
    }
}

/// The defaults, on a free loopback port, without health; on a PostgreSQL database of this
/// directory's own when the suite runs against PostgreSQL (`scripts/postgres`), and on a
/// bucket prefix of its own when it runs against object storage (`scripts/garage`).
pub fn config(dir: &std::path::Path) -> hootenanny::Config {
    let mut config = hootenanny::Config::new(dir.to_path_buf());
    config.bind = format!("tcp://127.0.0.1:{}", testkit::free_port());
    config.health_bind = None;
    config.database_url = testkit::postgres::database_for(dir);
    config.blobs = cas::BlobConfig::from_env(testkit::blobs::url_for(dir), Some(dir.join("cache")), 0);
    config
}

/// Where the objects of a service configured by [`config`] are on this host: the CAS, or the
/// blob cache when the suite runs against object storage.
#[allow(dead_code, reason = "used by some of the test binaries that include this module")]
pub fn local_objects(dir: &std::path::Path) -> std::path::PathBuf {
    if testkit::blobs::enabled() {
        dir.join("cache/objects")
    } else {
        dir.join("cas/objects")
    }
}

/// Binds it, starts it and waits until it answers a ping.
pub async fn start(config: hootenanny::Config) -> Running {
    let bound = hootenanny::bind(config).await.expect("bind");
    let client = Client::connect(ClientConfig::new(bound.endpoint())).expect("connect");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(bound.run(async move {
        let _ = stopped.await;
    }));
    client.call(PingRequest {}).await.expect("hootenanny answers ping");
    Running { client, stop, task }
}
