//! The harness for the cross-service tests in `tests/`: Luanette, Hootenanny and Chaosgarden
//! as the real binaries (built by `cargo build --workspace`, which `cargo test --workspace`
//! does first), each a child process on a free loopback port, sharing one data directory and
//! one CAS as on a real host. Tests kill, stop and restart them while clients keep calling.
//!
//! - [`Cluster`]: the three services; `kill9`, `terminate` and `restart` one at a time.
//! - [`Gateway`]: `holler serve` in front of a cluster, the MCP gateway agents talk to.
//! - [`binary`]: where a workspace binary was built.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use hooteproto::v1::PingRequest;
use hooteproto::{Client, ClientConfig};

/// One of the services a [`Cluster`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Service {
    /// Lua orchestration (scripts, jobs).
    Luanette,
    /// CAS and artifacts.
    Hootenanny,
    /// Transport and timeline.
    Chaosgarden,
}

impl Service {
    /// All three, in the order they start.
    pub const ALL: [Service; 3] = [Service::Luanette, Service::Hootenanny, Service::Chaosgarden];

    /// The binary's name.
    pub fn name(self) -> &'static str {
        match self {
            Service::Luanette => "luanette",
            Service::Hootenanny => "hootenanny",
            Service::Chaosgarden => "chaosgarden",
        }
    }
}

/// Path of a binary of this workspace, built next to the test executable.
pub fn binary(name: &str) -> PathBuf {
    let mut dir = std::env::current_exe().expect("the test executable's path");
    dir.pop(); // the executable
    if dir.ends_with("deps") {
        dir.pop();
    }
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build the services first (`cargo build --workspace`)",
        path.display()
    );
    path
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

struct Process {
    service: Service,
    endpoint: String,
    args: Vec<String>,
    child: Option<Child>,
}

/// The three services as child processes; dropping it kills them.
pub struct Cluster {
    /// The shared data directory (its `cas/` is the shared CAS).
    pub dir: tempfile::TempDir,
    env: Vec<(String, String)>,
    processes: Vec<Process>,
}

impl Cluster {
    /// Starts all three and waits until each answers a ping. `env` is added to each child's
    /// environment (e.g. `HOOT_KEY`).
    pub async fn start(env: &[(&str, &str)]) -> Cluster {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let endpoint = || format!("tcp://127.0.0.1:{}", free_port());
        let (luanette, hootenanny, chaosgarden) = (endpoint(), endpoint(), endpoint());
        let data = dir.path().to_string_lossy().to_string();
        let common = |bind: &str| -> Vec<String> {
            ["--bind", bind, "--health-bind", "none", "--data-dir", &data]
                .iter()
                .map(|s| s.to_string())
                .collect()
        };
        let with = |mut args: Vec<String>, more: &[&str]| {
            args.extend(more.iter().map(|s| s.to_string()));
            args
        };
        let processes = vec![
            Process {
                service: Service::Luanette,
                args: with(common(&luanette), &["--pub-bind", "none"]),
                endpoint: luanette.clone(),
                child: None,
            },
            Process {
                service: Service::Hootenanny,
                args: common(&hootenanny),
                endpoint: hootenanny,
                child: None,
            },
            Process {
                service: Service::Chaosgarden,
                args: with(
                    common(&chaosgarden),
                    &["--luanette", &luanette, "--audio-device", "none"],
                ),
                endpoint: chaosgarden,
                child: None,
            },
        ];
        let mut cluster = Cluster {
            dir,
            env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            processes,
        };
        for service in Service::ALL {
            cluster.restart(service);
        }
        for service in Service::ALL {
            cluster.wait_ready(service).await;
        }
        cluster
    }

    fn process(&mut self, service: Service) -> &mut Process {
        self.processes
            .iter_mut()
            .find(|p| p.service == service)
            .expect("every service has a process")
    }

    /// The service's HOOT/1 endpoint.
    pub fn endpoint(&self, service: Service) -> String {
        self.processes
            .iter()
            .find(|p| p.service == service)
            .map(|p| p.endpoint.clone())
            .expect("every service has a process")
    }

    /// The service's process id, while it runs.
    pub fn pid(&self, service: Service) -> Option<u32> {
        self.processes
            .iter()
            .find(|p| p.service == service)
            .and_then(|p| p.child.as_ref())
            .map(Child::id)
    }

    /// The shared data directory.
    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// Starts the service (again); returns when the process was spawned.
    pub fn restart(&mut self, service: Service) -> Instant {
        let env = self.env.clone();
        let log = self.dir.path().join(format!("{}.log", service.name()));
        let process = self.process(service);
        assert!(process.child.is_none(), "{} is already running", service.name());
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("a log file");
        let err = out.try_clone().expect("a log file");
        let child = Command::new(binary(service.name()))
            .args(&process.args)
            .envs(env)
            .env_remove("HOOT_KEY_FILE")
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .expect("spawn a service");
        process.child = Some(child);
        Instant::now()
    }

    /// SIGKILL: the service dies with whatever it had in hand.
    pub fn kill9(&mut self, service: Service) {
        if let Some(mut child) = self.process(service).child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then waits (up to 60 s) for the exit.
    pub fn terminate(&mut self, service: Service) -> ExitStatus {
        let mut child = self.process(service).child.take().expect("the service is running");
        signal(&child, libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not exit after SIGTERM",
                service.name()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits (up to 30 s) until the service answers a ping.
    pub async fn wait_ready(&self, service: Service) {
        let client = self.client(service);
        let deadline = Instant::now() + Duration::from_secs(30);
        while client.call(PingRequest {}).await.is_err() {
            assert!(Instant::now() < deadline, "{} did not come up", service.name());
        }
    }

    /// A new SDK client of the service, with the cluster's key if it has one.
    pub fn client(&self, service: Service) -> Client {
        let mut config = ClientConfig::new(self.endpoint(service));
        if let Some((_, key)) = self.env.iter().find(|(k, _)| k == "HOOT_KEY") {
            config.key = Some(hooteproto::Key::new(key.as_bytes().to_vec()).expect("a valid key"));
        }
        Client::connect(config).expect("a client")
    }

    /// The service's log so far (for assertion messages).
    pub fn log(&self, service: Service) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("{}.log", service.name()))).unwrap_or_default()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for process in &mut self.processes {
            if let Some(mut child) = process.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// `holler serve` (the MCP gateway) in front of a [`Cluster`]; dropping it kills it.
pub struct Gateway {
    child: Child,
    /// The MCP endpoint, `http://127.0.0.1:<port>/mcp`.
    pub url: String,
}

impl Gateway {
    /// Starts the gateway and waits (up to 30 s) until it listens.
    pub fn start(cluster: &Cluster) -> Gateway {
        let port = free_port();
        let log = cluster.dir.path().join("holler.log");
        let out = std::fs::File::create(&log).expect("a log file");
        let err = out.try_clone().expect("a log file");
        let child = Command::new(binary("holler"))
            .args(["--luanette", &cluster.endpoint(Service::Luanette)])
            .args(["--hootenanny", &cluster.endpoint(Service::Hootenanny)])
            .args(["--chaosgarden", &cluster.endpoint(Service::Chaosgarden)])
            .args(["serve", "--port", &port.to_string(), "--broadcasts", "none"])
            // The cluster's data dir, so it finds the cluster's key (if any) and never the
            // key of a stack in this user's default data dir.
            .env("HOOT_DATA_DIR", cluster.data_dir())
            .envs(cluster.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .expect("spawn holler serve");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "holler serve did not come up");
            std::thread::sleep(Duration::from_millis(50));
        }
        Gateway {
            child,
            url: format!("http://127.0.0.1:{port}/mcp"),
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn signal(child: &Child, signal: i32) {
    let pid = i32::try_from(child.id()).expect("a pid fits in pid_t");
    // SAFETY: kill(2) on our own child's pid; it has not been reaped, so the pid is still its.
    unsafe {
        libc::kill(pid, signal);
    }
}
