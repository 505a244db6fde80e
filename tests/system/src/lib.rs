//! The harness for the cross-service tests in `tests/`: Luanette, Hootenanny and Chaosgarden
//! as the real binaries (built by `cargo build --workspace`, which `cargo test --workspace`
//! does first), each a child process on a free loopback port, sharing one data directory and
//! one CAS as on a real host. Tests kill, stop and restart them while clients keep calling.
//!
//! - [`Cluster`]: the three services; `kill9`, `terminate` and `restart` one at a time.
//! - [`Gateway`]: `holler serve` in front of a cluster, the MCP gateway agents talk to.
//! - [`Up`]: `holler up` (everything in one process) as a user runs it.
//! - [`binary`]: where a workspace binary was built.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use hooteproto::v1::PingRequest;
use hooteproto::{Client, ClientConfig, Key};

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

// ------------------------------------------------------------------ holler up

/// Variables that would hand a process a key or a data dir behind the test's back.
pub const AMBIENT: [&str; 8] = [
    "HOOT_KEY",
    "HOOT_KEY_FILE",
    "HOOT_DATA_DIR",
    "HOLLER_TOKEN_FILE",
    "HOLLER_LUANETTE",
    "HOLLER_HOOTENANNY",
    "HOLLER_CHAOSGARDEN",
    "HOOT_CAS_ROOT",
];

pub const BACKENDS: [&str; 3] = ["luanette", "hootenanny", "chaosgarden"];

/// `holler up` as a child process on free ports; killed when dropped.
pub struct Up {
    /// The process.
    pub child: Child,
    /// The gateway's HTTP port.
    pub port: u16,
    /// Its data directory.
    pub data: PathBuf,
    /// luanette, hootenanny, chaosgarden.
    pub endpoints: [String; 3],
    /// Where its output goes.
    pub log: PathBuf,
}

/// A command for `program` without the ambient variables that would hand it a key or data dir.
pub fn command(program: &Path) -> Command {
    let mut command = Command::new(program);
    for name in AMBIENT {
        command.env_remove(name);
    }
    command
}

impl Up {
    /// Spawns `holler up` with `args` after `up`; does not wait.
    pub fn spawn(dir: &Path, args: &[&str]) -> Up {
        let endpoint = || format!("tcp://127.0.0.1:{}", free_port());
        let endpoints = [endpoint(), endpoint(), endpoint()];
        let port = free_port();
        let data = dir.join("data");
        let log = dir.join(format!("holler-{port}.log"));
        let out = std::fs::File::create(&log).expect("a log file");
        let err = out.try_clone().expect("a log file");
        let broadcasts = if args.contains(&"--broadcasts") {
            &[][..]
        } else {
            &["--broadcasts", "none"][..]
        };
        let child = command(&binary("holler"))
            .args(["--luanette", &endpoints[0], "--hootenanny", &endpoints[1]])
            .args(["--chaosgarden", &endpoints[2], "up", "--data-dir"])
            .arg(&data)
            .args(["--port", &port.to_string(), "--audio-device", "none"])
            .args(broadcasts)
            .arg("--no-health")
            .args(args)
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .expect("spawn holler up");
        Up {
            child,
            port,
            data,
            endpoints,
            log,
        }
    }

    /// Spawns `holler up` and waits until the gateway listens and every backend answers a ping
    /// signed with `key` (None: unsigned).
    pub async fn start(dir: &Path, args: &[&str], key: impl Fn(&Up) -> Option<Key>) -> Up {
        let mut up = Up::spawn(dir, args);
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", up.port)).is_err() {
            if let Ok(Some(status)) = up.child.try_wait() {
                panic!("holler up exited {status}:\n{}", up.output());
            }
            assert!(Instant::now() < deadline, "holler up did not come up:\n{}", up.output());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let key = key(&up);
        for endpoint in &up.endpoints {
            let client = client(endpoint, key.clone(), Duration::from_secs(1));
            while client.call(PingRequest {}).await.is_err() {
                assert!(Instant::now() < deadline, "{endpoint} did not answer:\n{}", up.output());
            }
        }
        up
    }

    /// What `holler up` printed and logged so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The `holler` CLI as a user on this host runs it: the data dir in `HOOT_DATA_DIR`, no key
    /// named anywhere (it finds `<data dir>/hoot.key` by itself).
    pub fn cli(&self, args: &[&str]) -> Output {
        command(&binary("holler"))
            .env("HOOT_DATA_DIR", &self.data)
            .env("HOLLER_LUANETTE", &self.endpoints[0])
            .env("HOLLER_HOOTENANNY", &self.endpoints[1])
            .env("HOLLER_CHAOSGARDEN", &self.endpoints[2])
            .args(["--timeout", "10"])
            .args(args)
            .output()
            .expect("run holler")
    }

    /// The key `holler up` created in its data dir.
    pub fn key(&self) -> Key {
        Key::from_file(&self.data.join("hoot.key")).expect("the stack's key")
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A client of `endpoint` signing with `key`, each call waiting at most `timeout`.
pub fn client(endpoint: &str, key: Option<Key>, timeout: Duration) -> Client {
    let mut config = ClientConfig::new(endpoint);
    config.key = key;
    config.timeout = timeout;
    Client::connect(config).expect("a client")
}

// ------------------------------------------------------------ checks shared by the tests

/// Pings each client in turn until [`Pinger::finish`]; every ping must be answered (5 s).
pub struct Pinger {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<Vec<(String, Vec<Duration>)>>,
}

impl Pinger {
    /// Starts pinging `clients` (a name for messages, the client), `pause` apart.
    pub fn start(clients: Vec<(String, Client)>, pause: Duration) -> Pinger {
        use std::sync::atomic::Ordering;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let task = tokio::spawn({
            let stop = stop.clone();
            async move {
                let mut seen: Vec<(String, Vec<Duration>)> =
                    clients.iter().map(|(name, _)| (name.clone(), Vec::new())).collect();
                while !stop.load(Ordering::Relaxed) {
                    for (i, (name, client)) in clients.iter().enumerate() {
                        let started = Instant::now();
                        let options = hooteproto::RequestOptions {
                            timeout: Some(Duration::from_secs(5)),
                            ..Default::default()
                        };
                        let pong = client.call_with(PingRequest {}, options).await;
                        assert!(pong.is_ok(), "{name} did not answer a ping: {pong:?}");
                        seen[i].1.push(started.elapsed());
                    }
                    tokio::time::sleep(pause).await;
                }
                seen
            }
        });
        Pinger { stop, task }
    }

    /// Stops; each client's latencies, sorted.
    pub async fn finish(self) -> Vec<(String, Vec<Duration>)> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut seen = self.task.await.expect("the pinger");
        for (_, latencies) in &mut seen {
            latencies.sort();
        }
        seen
    }
}

/// The `q` quantile (0..=1) of sorted latencies.
pub fn percentile(sorted: &[Duration], q: f64) -> Duration {
    let index = ((sorted.len() as f64 * q) as usize).min(sorted.len().saturating_sub(1));
    sorted.get(index).copied().unwrap_or_default()
}

/// Asserts that `service` answers a ping within 2 s (5 s at most), with its log if not.
pub async fn still_serving(cluster: &Cluster, service: Service) {
    let started = Instant::now();
    let options = hooteproto::RequestOptions {
        timeout: Some(Duration::from_secs(5)),
        ..Default::default()
    };
    let pong = cluster.client(service).call_with(PingRequest {}, options).await;
    assert!(
        pong.is_ok(),
        "{} stopped answering: {pong:?}\n{}",
        service.name(),
        cluster.log(service)
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{} answers, but slowly",
        service.name()
    );
}

/// `details.kind` of a remote error ("" when it has none).
pub fn error_kind(error: &hooteproto::Error) -> String {
    match error {
        hooteproto::Error::Remote(status) => status
            .details
            .as_ref()
            .and_then(|d| d.to_json().ok())
            .and_then(|d| d.get("kind").and_then(|k| k.as_str()).map(str::to_string))
            .unwrap_or_default(),
        _ => String::new(),
    }
}

/// A field of `/proc/<pid>/status` given in kB (`VmRSS:`, `VmHWM:`), in bytes; 0 if absent.
pub fn proc_status_bytes(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map(|kib| kib << 10)
        .unwrap_or(0)
}
