//! `luanette`: sandboxed Lua orchestration over HOOT/1.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

#[derive(Parser)]
#[command(version, about = "Luanette: sandboxed Lua orchestration over HOOT/1")]
struct Args {
    /// `worker`: only run cluster jobs taken from --database-url's queue, serving no requests
    /// (a front `luanette` with the same --database-url takes them). Default: the service.
    #[arg(value_enum)]
    mode: Option<Mode>,
    #[command(flatten)]
    common: hooteproto::cli::ServiceArgs<hooteproto::cli::Luanette>,
    /// Cluster mode: keep the job queue in this PostgreSQL (postgres://...) and run jobs on
    /// workers, here (--local-workers) and on any host (`luanette worker`) [default: embedded,
    /// in sled and in this process].
    #[arg(long, env = "HOOT_DATABASE_URL")]
    database_url: Option<String>,
    /// In cluster mode, workers this process runs besides serving requests (0: only enqueue).
    #[arg(long, env = "LUANETTE_LOCAL_WORKERS", default_value_t = 1)]
    local_workers: usize,
    /// In cluster mode, how long a worker's claim on a job holds without a heartbeat, in seconds.
    #[arg(long, env = "LUANETTE_LEASE_SECS", default_value_t = 10)]
    lease_secs: u64,
    /// In cluster mode, how many times a job whose worker vanished is run at most; past it
    /// the job fails "interrupted".
    #[arg(long, env = "LUANETTE_MAX_ATTEMPTS", default_value_t = 1)]
    max_attempts: u32,
    /// What this process's jobs can use, e.g. `--capability gpu --capability orpheus`: jobs
    /// that require a capability run only on workers that have it (repeatable; the variable
    /// takes a comma-separated list).
    #[arg(long = "capability", env = "LUANETTE_CAPABILITIES", value_delimiter = ',')]
    capabilities: Vec<String>,
    /// The name this instance answers `ping` with.
    #[arg(long, env = "LUANETTE_NAME", default_value = "lua-orchestrator")]
    name: String,
    /// PUB endpoint for broadcasts (script invalidation, job state and progress, shutdown), or "none".
    #[arg(long, env = "LUANETTE_PUB_BIND", default_value = hooteproto::defaults::LUANETTE_PUB)]
    pub_bind: String,
    /// Scripts that run at once.
    #[arg(long, env = "LUANETTE_MAX_SCRIPTS", default_value_t = 16)]
    max_scripts: usize,
    /// Wall-clock limit of one evaluation, in seconds (a request's own deadline can shorten it).
    #[arg(long, env = "LUANETTE_SCRIPT_TIMEOUT_SECS", default_value_t = 30)]
    script_timeout_secs: u64,
    /// Memory limit of one Lua VM, in MiB.
    #[arg(long, env = "LUANETTE_MEMORY_LIMIT_MIB", default_value_t = 256)]
    memory_limit_mib: usize,
    /// Jobs that run at once.
    #[arg(long, env = "LUANETTE_MAX_JOBS", default_value_t = 8)]
    max_jobs: usize,
    /// Wall-clock limit of one job, in seconds.
    #[arg(long, env = "LUANETTE_JOB_TIMEOUT_SECS", default_value_t = 30)]
    job_timeout_secs: u64,
    /// Jobs that may be unfinished (pending or running) at once.
    #[arg(long, env = "LUANETTE_MAX_UNFINISHED_JOBS", default_value_t = 10_000)]
    max_unfinished_jobs: usize,
    /// Unfinished jobs one client (one routing id) may have at once.
    #[arg(long, env = "LUANETTE_MAX_UNFINISHED_JOBS_PER_CLIENT", default_value_t = 256)]
    max_unfinished_jobs_per_client: usize,
    /// Largest params a job may be started with, in bytes (larger data goes to the CAS by hash).
    #[arg(long, env = "LUANETTE_MAX_JOB_PARAMS", default_value_t = 1 << 20)]
    max_job_params: usize,
    /// Largest result a job may finish with, in bytes; a larger one fails the job.
    #[arg(long, env = "LUANETTE_MAX_JOB_RESULT", default_value_t = 1 << 20)]
    max_job_result: usize,
    /// How long finished jobs are kept, in seconds (default: 7 days).
    #[arg(long, env = "LUANETTE_JOB_RETENTION_SECS", default_value_t = 7 * 24 * 3600)]
    job_retention_secs: u64,
    /// Orpheus (MIDI models) base URL, e.g. http://gpu-box:8000.
    #[arg(long, env = "ORPHEUS_URL")]
    orpheus_url: Option<String>,
    /// MusicGen (text to audio) base URL.
    #[arg(long, env = "MUSICGEN_URL")]
    musicgen_url: Option<String>,
    /// OpenAI-compatible chat API base URL (the key comes from DEEPSEEK_API_KEY).
    #[arg(long, env = "DEEPSEEK_URL", default_value = "https://api.deepseek.com")]
    deepseek_url: String,
    /// How long one model call attempt may take, in seconds (a script can shorten or lengthen it per call).
    #[arg(long, env = "LUANETTE_MODEL_TIMEOUT_SECS", default_value_t = 120)]
    model_timeout_secs: u64,
    /// Extra attempts of a model call after a connection failure or HTTP 429/502/503/504.
    #[arg(long, env = "LUANETTE_MODEL_RETRIES", default_value_t = 2)]
    model_retries: u32,
    /// The executable Lua sandbox processes run [default: this one].
    #[arg(long, env = "LUANETTE_SANDBOX_PROGRAM")]
    sandbox_program: Option<PathBuf>,
    /// Sandbox processes kept started while idle, for evaluations and for jobs each.
    #[arg(long, env = "LUANETTE_WARM_SANDBOXES", default_value_t = 2)]
    warm_sandboxes: usize,
    /// Chaosgarden's HOOT/1 endpoint, for scripts' `garden.*` (unset: `garden.*` says so).
    #[arg(long, env = "LUANETTE_CHAOSGARDEN")]
    chaosgarden: Option<String>,
    /// Hootenanny's HOOT/1 endpoint, for scripts' `hoot.*` (unset: `hoot.*` says so).
    #[arg(long, env = "LUANETTE_HOOTENANNY")]
    hootenanny: Option<String>,
    /// Let scripts move the transport (`garden.play/stop/seek`); off unless given.
    #[arg(long, env = "LUANETTE_ALLOW_TRANSPORT_FROM_LUA")]
    allow_transport_from_lua: bool,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Mode {
    /// Only run cluster jobs.
    Worker,
}

fn main() -> anyhow::Result<()> {
    // Before anything else: this process may have been started as a Lua sandbox.
    luanette::isolation::run_if_requested();
    tokio::runtime::Runtime::new()?.block_on(serve(Args::parse()))
}

async fn serve(args: Args) -> anyhow::Result<()> {
    let _telemetry = args.common.telemetry()?;
    let common = args.common.resolve()?;
    let mut config = luanette::Config::new(common.data_dir);
    config.cas_root = common.cas_root;
    config.blobs = cas::BlobConfig::from_env(common.blob_url, Some(common.cache_dir), common.cache_max);
    config.bind = common.bind;
    config.health_bind = common.health_bind;
    config.key = common.key;
    config.insecure = common.insecure;
    config.name = args.name;
    config.pub_bind = match args.pub_bind.as_str() {
        "" | "none" => None,
        endpoint => Some(endpoint.to_string()),
    };
    config.max_scripts = args.max_scripts;
    config.limits.wall = Duration::from_secs(args.script_timeout_secs);
    config.limits.memory = args.memory_limit_mib << 20;
    config.max_jobs = args.max_jobs;
    config.job_limits.wall = Duration::from_secs(args.job_timeout_secs);
    config.job_limits.memory = args.memory_limit_mib << 20;
    config.job_retention = Duration::from_secs(args.job_retention_secs);
    config.max_unfinished_jobs = args.max_unfinished_jobs;
    config.max_unfinished_jobs_per_client = args.max_unfinished_jobs_per_client;
    config.max_job_params = args.max_job_params;
    config.max_job_result = args.max_job_result;
    config.sandbox_program = args.sandbox_program.clone();
    config.warm_sandboxes = args.warm_sandboxes;
    config.peers = luanette::stdlib::Peers {
        chaosgarden: args.chaosgarden.clone(),
        hootenanny: args.hootenanny.clone(),
        key: None, // the service's own key
        allow_transport: args.allow_transport_from_lua,
    };
    let backend = |url: Option<String>| luanette::stdlib::Backend {
        url,
        timeout: Duration::from_secs(args.model_timeout_secs),
        retries: args.model_retries,
    };
    config.models.orpheus = backend(args.orpheus_url.clone());
    config.models.musicgen = backend(args.musicgen_url.clone());
    config.models.deepseek = backend(Some(args.deepseek_url.clone()));
    config.models.deepseek_key = std::env::var("DEEPSEEK_API_KEY").ok().filter(|k| !k.is_empty());
    if let Some(bad) = args
        .capabilities
        .iter()
        .find(|c| !luanette::cluster::valid_capability(c))
    {
        anyhow::bail!("--capability {bad:?}: use 1-64 characters of [A-Za-z0-9._-]");
    }
    config.capabilities = args.capabilities.clone();
    if let Some(url) = &args.database_url {
        config.cluster = Some(luanette::cluster::ClusterConfig {
            database_url: url.clone(),
            lease: Duration::from_secs(args.lease_secs.max(1)),
            max_attempts: args.max_attempts.max(1),
        });
        config.local_workers = args.local_workers;
    }
    if let Some(Mode::Worker) = args.mode {
        luanette::worker(config, hooteproto::server::shutdown_signal()).await?;
        tracing::info!("worker stopped");
        return Ok(());
    }
    let stats = luanette::run(config, hooteproto::server::shutdown_signal()).await?;
    tracing::info!(?stats, "luanette stopped");
    Ok(())
}
