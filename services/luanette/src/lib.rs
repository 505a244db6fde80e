//! # luanette — Lua orchestration
//!
//! A HOOT/1 service (ROUTER, default `tcp://127.0.0.1:5570`) that runs Lua safely: quick
//! evaluations, stored scripts, background jobs, and what an agent needs to discover them
//! (tools, resources, prompts, completions). Broadcasts go out on a PUB socket (default
//! `tcp://127.0.0.1:5572`).
//!
//! ## Map
//! - [`sandbox`]: a restricted Lua 5.4 VM with limits that really stop it, captured output,
//!   Lua ⇄ `google.protobuf.Value`, and a reset that makes a VM reusable.
//! - [`isolation`]: every run happens in a sandbox process (a copy of this binary), so no
//!   script can reach the service; binaries call [`isolation::run_if_requested`] first.
//! - [`stdlib`]: what scripts can call beyond standard Lua, with its generated reference.
//! - `runner`: the pools of sandbox processes scripts run in, killed at their deadline.
//! - `scripts`: stored scripts (source in the CAS, index in sled); `names`: script names
//!   and their versions (hot reload); `shared_scripts`: in cluster mode, the index in
//!   PostgreSQL that each front's sled index replicates.
//! - `jobs`: background runs of stored scripts, persisted in sled, long-polled; `slots`:
//!   which waiting job runs next (by priority).
//! - `workers`: who registered. - `catalog`: resources, prompts, completions.
//! - [`cluster`]: cluster mode's job queue in PostgreSQL and its workers; `queue`: the job
//!   requests' door to either queue.
//! - `service`: the request handler. - [`bind`] then [`Bound::run`] (or [`run`]): serve
//!   until shutdown, then drain.

mod catalog;
pub mod cluster;
pub mod isolation;
mod jobs;
mod names;
mod queue;
mod queue_metrics;
mod runner;
pub mod sandbox;
mod scripts;
mod service;
mod shared_scripts;
mod slots;
pub mod stdlib;
mod workers;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use hooteproto::broadcast::Publisher;
use hooteproto::defaults;
use hooteproto::health;
use hooteproto::server::Lifecycle;
use hooteproto::v1::{ShutdownNotice, broadcast};
use hooteproto::{Key, Server, ServerConfig, ServerStats};

/// Name under which gRPC health reports this service.
pub const HEALTH_SERVICE: &str = "luanette";

/// How to run. `Config::new` gives the documented defaults.
#[derive(Debug, Clone)]
pub struct Config {
    /// HOOT/1 ROUTER endpoint.
    pub bind: String,
    /// The name `ping` answers with (the worker id).
    pub name: String,
    /// PUB endpoint for broadcasts (None: no broadcasts).
    pub pub_bind: Option<String>,
    /// The shared CAS root.
    pub cas_root: PathBuf,
    /// Where blobs live beyond `cas_root`: object storage and its cache (cluster mode).
    pub blobs: cas::BlobConfig,
    /// The data directory; luanette keeps its index in `<data_dir>/luanette/`.
    pub data_dir: PathBuf,
    /// Where to serve grpc.health.v1 (None: not at all).
    pub health_bind: Option<SocketAddr>,
    /// Shared HMAC key.
    pub key: Option<Key>,
    /// Allow a non-loopback bind without a key.
    pub insecure: bool,
    /// Scripts that run at once.
    pub max_scripts: usize,
    /// Scripts that may wait for a free runner.
    pub max_queued: usize,
    /// Limits of one evaluation (a request's own deadline can only shorten the time).
    pub limits: sandbox::Limits,
    /// Jobs that run at once.
    pub max_jobs: usize,
    /// Jobs that may be unfinished at once.
    pub max_unfinished_jobs: usize,
    /// Unfinished jobs one client (routing id) may have at once.
    pub max_unfinished_jobs_per_client: usize,
    /// Largest job params, encoded.
    pub max_job_params: usize,
    /// Largest job result, encoded.
    pub max_job_result: usize,
    /// Limits of one job.
    pub job_limits: sandbox::Limits,
    /// How long finished jobs are kept.
    pub job_retention: Duration,
    /// The model services scripts can call.
    pub models: stdlib::Models,
    /// How long shutdown waits for accepted requests.
    pub drain_timeout: Duration,
    /// The executable sandbox processes run (None: see [`isolation::Program::locate`]).
    pub sandbox_program: Option<PathBuf>,
    /// Sandbox processes kept started while idle, per pool (evaluations, jobs).
    pub warm_sandboxes: usize,
    /// The services scripts reach with `garden.*` and `hoot.*` (a key of None: `key`).
    pub peers: stdlib::Peers,
    /// Cluster mode: jobs queue in PostgreSQL and run on workers (None: embedded, in sled
    /// and in this process).
    pub cluster: Option<cluster::ClusterConfig>,
    /// In cluster mode, workers this process runs itself (`max_jobs` jobs each at most).
    pub local_workers: usize,
    /// What this process's jobs can use (`--capability`): jobs requiring others are refused
    /// in embedded mode, and left to other workers in cluster mode.
    pub capabilities: Vec<String>,
}

impl Config {
    /// Defaults from the project conventions.
    pub fn new(data_dir: PathBuf) -> Self {
        Self {
            bind: defaults::LUANETTE.bind.into(),
            name: "lua-orchestrator".into(),
            pub_bind: Some(defaults::LUANETTE_PUB.into()),
            cas_root: data_dir.join("cas"),
            blobs: cas::BlobConfig::default(),
            data_dir,
            health_bind: Some(defaults::LUANETTE.health_addr()),
            key: None,
            insecure: false,
            max_scripts: 16,
            max_queued: 1024,
            limits: sandbox::Limits::default(),
            max_jobs: 8,
            max_unfinished_jobs: 10_000,
            max_unfinished_jobs_per_client: jobs::JobsConfig::DEFAULT_MAX_UNFINISHED_PER_CLIENT,
            max_job_params: jobs::JobsConfig::DEFAULT_MAX_PARAMS,
            max_job_result: jobs::JobsConfig::DEFAULT_MAX_RESULT,
            job_limits: sandbox::Limits::default(),
            job_retention: Duration::from_secs(7 * 24 * 3600),
            models: stdlib::Models::default(),
            drain_timeout: Duration::from_secs(10),
            sandbox_program: None,
            warm_sandboxes: 2,
            peers: stdlib::Peers::default(),
            cluster: None,
            local_workers: 1,
            capabilities: Vec::new(),
        }
    }
}

/// Serves until `shutdown` completes (or a `shutdown` request arrives), then drains:
/// broadcasts a shutdown notice, stops running jobs (recorded as interrupted), and waits
/// for accepted requests; scripts still running at the drain deadline are cancelled.
pub async fn run(config: Config, shutdown: impl Future<Output = ()> + Send) -> anyhow::Result<ServerStats> {
    bind(config).await?.run(shutdown).await
}

/// A luanette whose sockets are bound (so `tcp://127.0.0.1:*` has become a real port) and
/// whose stores are open, ready to [`Bound::run`].
pub struct Bound {
    server: Server,
    service: Arc<service::Service>,
    jobs: queue::Queue,
    local_workers: Vec<Arc<cluster::Worker>>,
    publisher: Option<Arc<Publisher>>,
    health: Option<health::HealthServer>,
    lifecycle: Arc<Lifecycle>,
    drain_timeout: Duration,
}

/// Opens the stores and binds every socket, without serving yet.
pub async fn bind(config: Config) -> anyhow::Result<Bound> {
    let mut server_config = ServerConfig::new(config.bind.clone());
    server_config.key = config.key.clone();
    server_config.insecure = config.insecure;
    server_config.drain_timeout = config.drain_timeout;
    let cas = cas::Cas::open_with(&config.cas_root, &config.blobs)
        .with_context(|| format!("opening the CAS at {}", config.cas_root.display()))?;
    let index_dir = config.data_dir.join("luanette").join("db");
    let mut peers = config.peers.clone();
    if peers.key.is_none() {
        peers.key = config.key.clone();
    }
    let services = stdlib::Services {
        cas: Some(cas.clone()),
        models: Arc::new(config.models.clone()),
        peers: Arc::new(peers),
        ..stdlib::Services::default()
    };
    let mut scripts =
        scripts::Scripts::open(cas, &index_dir).with_context(|| format!("opening sled at {}", index_dir.display()))?;
    // Cluster mode: one pool and one listener for the script index, the queue and any local
    // workers.
    let database = match &config.cluster {
        Some(cluster) => {
            let pool = cluster::connect(&cluster.database_url).await?;
            let mut channels = shared_scripts::CHANNELS.to_vec();
            channels.extend(cluster::FRONT_CHANNELS);
            if config.local_workers > 0 {
                channels.extend(cluster::WORKER_CHANNELS);
            }
            let notifications = cluster::Notifications::start(&pool, &channels)
                .await
                .context("listening for notifications on the job database")?;
            // Several fronts share one script index: this one replicates it.
            scripts
                .share(pool.clone(), &notifications)
                .await
                .map_err(|status| anyhow::anyhow!("reading the shared script index: {}", status.message))?;
            Some((pool, notifications))
        }
        None => None,
    };
    let program = isolation::Program::locate(config.sandbox_program.clone()).map_err(anyhow::Error::msg)?;
    let pool = |name, concurrency, queue, limits: sandbox::Limits| {
        runner::Runner::new(
            runner::PoolConfig {
                name,
                concurrency,
                queue,
                warm: config.warm_sandboxes.min(concurrency),
                memory: limits.memory,
                max_reply: max_reply(limits.memory),
            },
            program.clone(),
            &services,
        )
    };
    let server = Server::bind(server_config)?;
    let publisher = match &config.pub_bind {
        Some(endpoint) => Some(Arc::new(
            Publisher::bind(endpoint, "luanette", config.key.clone(), config.insecure)
                .with_context(|| format!("binding the broadcast socket {endpoint}"))?,
        )),
        None => None,
    };
    let jobs_config = jobs_config(&config);
    let mut local_workers = Vec::new();
    let jobs = match &config.cluster {
        None => queue::Queue::Embedded(jobs::Jobs::open(
            scripts.db(),
            jobs_config,
            publisher.clone(),
            pool("job", config.max_jobs, config.max_unfinished_jobs, config.job_limits),
        )?),
        Some(cluster) => {
            let (database, notifications) = database.context("cluster mode without its database")?;
            let queue = cluster::ClusterJobs::open(
                cluster.clone(),
                jobs_config,
                publisher.clone(),
                database.clone(),
                &notifications,
            )
            .await?;
            for index in 0..config.local_workers {
                local_workers.push(Arc::new(cluster::Worker {
                    pool: database.clone(),
                    notifications: notifications.clone(),
                    runner: pool("job", config.max_jobs, config.max_jobs, config.job_limits),
                    name: format!("{}-local-{index}", worker_name()),
                    concurrency: config.max_jobs,
                    capabilities: config.capabilities.clone(),
                    cluster: cluster.clone(),
                    config: jobs_config,
                }));
            }
            queue::Queue::Cluster(queue)
        }
    };
    let health = health::start_if(config.health_bind, HEALTH_SERVICE).await?;
    let lifecycle = Arc::new(
        Lifecycle::new("luanette", env!("CARGO_PKG_VERSION"), config.drain_timeout).with_name(config.name.clone()),
    );
    let service = Arc::new(service::Service {
        runner: pool("lua", config.max_scripts, config.max_queued, config.limits),
        scripts,
        jobs: jobs.clone(),
        workers: workers::Workers::default(),
        publisher: publisher.clone(),
        limits: config.limits,
        lifecycle: lifecycle.clone(),
        capabilities: match &config.cluster {
            None => Some(config.capabilities.clone()),
            Some(_) => None,
        },
    });
    tracing::info!(
        endpoint = %server.local_endpoint(),
        broadcasts = publisher.as_ref().map(|p| p.local_endpoint()).unwrap_or("off"),
        scripts = config.max_scripts,
        sandbox = %program.path().display(),
        jobs = config.max_jobs,
        "luanette ready"
    );
    Ok(Bound {
        server,
        service,
        jobs,
        local_workers,
        publisher,
        health,
        lifecycle,
        drain_timeout: config.drain_timeout,
    })
}

fn jobs_config(config: &Config) -> jobs::JobsConfig {
    jobs::JobsConfig {
        concurrency: config.max_jobs,
        max_unfinished: config.max_unfinished_jobs,
        limits: config.job_limits,
        retention: config.job_retention,
        max_unfinished_per_client: config.max_unfinished_jobs_per_client,
        max_params: config.max_job_params,
        max_result: config.max_job_result,
    }
}

/// This host and process, as workers name themselves in the queue.
fn worker_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "host".into());
    format!("{host}-{}", std::process::id())
}

/// Runs only a cluster worker (`luanette worker`): claims jobs from `config.cluster`'s
/// database and runs `config.max_jobs` of them at a time, until `shutdown`. It serves no
/// requests; a front `luanette` takes them.
pub async fn worker(config: Config, shutdown: impl Future<Output = ()> + Send) -> anyhow::Result<()> {
    let cluster = config
        .cluster
        .clone()
        .context("a worker needs --database-url: the job queue it takes jobs from")?;
    let cas = cas::Cas::open_with(&config.cas_root, &config.blobs)
        .with_context(|| format!("opening the CAS at {}", config.cas_root.display()))?;
    let mut peers = config.peers.clone();
    if peers.key.is_none() {
        peers.key = config.key.clone();
    }
    let services = stdlib::Services {
        cas: Some(cas),
        models: Arc::new(config.models.clone()),
        peers: Arc::new(peers),
        ..stdlib::Services::default()
    };
    let program = isolation::Program::locate(config.sandbox_program.clone()).map_err(anyhow::Error::msg)?;
    let runner = runner::Runner::new(
        runner::PoolConfig {
            name: "job",
            concurrency: config.max_jobs,
            queue: config.max_jobs,
            warm: config.warm_sandboxes.min(config.max_jobs),
            memory: config.job_limits.memory,
            max_reply: max_reply(config.job_limits.memory),
        },
        program,
        &services,
    );
    let pool = cluster::connect(&cluster.database_url).await?;
    let notifications = cluster::Notifications::start(&pool, &cluster::WORKER_CHANNELS)
        .await
        .context("listening for notifications on the job database")?;
    let worker = Arc::new(cluster::Worker {
        pool,
        notifications,
        runner,
        name: if config.name == Config::new(config.data_dir.clone()).name {
            worker_name()
        } else {
            config.name.clone()
        },
        concurrency: config.max_jobs,
        capabilities: config.capabilities.clone(),
        cluster,
        config: jobs_config(&config),
    });
    let stop = tokio_util::sync::CancellationToken::new();
    let running = tokio::spawn(worker.run(stop.clone()));
    shutdown.await;
    stop.cancel();
    running.await.context("the worker task")?
}

/// The largest answer read back from one run: a result that fits in a HOOT/1 message
/// (larger data belongs in the CAS), its captured output, and room for the framing.
fn max_reply(memory: usize) -> usize {
    memory.min(hooteproto::wire::DEFAULT_MAX_MESSAGE_SIZE) + (2 << 20)
}

impl Bound {
    /// The HOOT/1 endpoint actually bound.
    pub fn endpoint(&self) -> &str {
        self.server.local_endpoint()
    }

    /// The broadcast endpoint actually bound, if broadcasts are on.
    pub fn broadcast_endpoint(&self) -> Option<&str> {
        self.publisher.as_ref().map(|p| p.local_endpoint())
    }

    /// Serves until `shutdown` (see [`run`]).
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> anyhow::Result<ServerStats> {
        let Bound {
            server,
            service,
            jobs,
            local_workers,
            publisher,
            health,
            lifecycle,
            drain_timeout,
        } = self;
        jobs.spawn_garbage_collector();
        let scripts = service.scripts.clone();
        let workers_stop = tokio_util::sync::CancellationToken::new();
        let workers: Vec<_> = local_workers
            .into_iter()
            .map(|worker| tokio::spawn(worker.run(workers_stop.clone())))
            .collect();
        let stop = async {
            health::drain_trigger(shutdown, &lifecycle, health.as_ref()).await;
            if let Some(publisher) = &publisher {
                let _ = publisher.publish(broadcast::Event::Shutdown(ShutdownNotice {
                    reason: "luanette is shutting down".into(),
                }));
            }
            jobs.shutdown(drain_timeout).await;
            scripts.stop_following();
            workers_stop.cancel();
            for worker in workers {
                match worker.await {
                    Ok(Ok(())) => {}
                    Ok(Err(error)) => tracing::warn!(%error, "a local worker failed"),
                    Err(error) => tracing::warn!(%error, "a local worker panicked"),
                }
            }
        };
        let stats = server.run(service, stop).await?;
        if let Some(health) = health {
            health.stop().await;
        }
        Ok(stats)
    }
}
