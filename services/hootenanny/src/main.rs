//! `hootenanny`: content-addressed storage, artifacts and graph queries over HOOT/1.

use clap::Parser;

#[derive(Parser)]
#[command(
    version,
    about = "Hootenanny: content-addressed storage, artifacts with lineage, and graph queries over HOOT/1"
)]
struct Args {
    #[command(flatten)]
    common: hooteproto::cli::ServiceArgs<hooteproto::cli::Hootenanny>,
    /// Highest price of a graph query: a field costs 1 plus what it selects, a list field its
    /// bound (`first`, or 64 parents, 1000 ancestors, ...) times what each item selects.
    #[arg(long, env = "HOOTENANNY_GRAPH_MAX_COST", default_value_t = 100_000)]
    graph_max_cost: usize,
    /// Deepest nesting of fields in a graph query.
    #[arg(long, env = "HOOTENANNY_GRAPH_MAX_DEPTH", default_value_t = 16)]
    graph_max_depth: usize,
    /// Most aliased fields in a graph query (fragments expanded).
    #[arg(long, env = "HOOTENANNY_GRAPH_MAX_ALIASES", default_value_t = 32)]
    graph_max_aliases: usize,
    /// Most artifacts, CAS objects, bindings, tags and creators one graph query reads.
    #[arg(long, env = "HOOTENANNY_GRAPH_MAX_NODES", default_value_t = 10_000)]
    graph_max_nodes: usize,
    /// Most bytes of text one graph query returns.
    #[arg(long, env = "HOOTENANNY_GRAPH_MAX_BYTES", default_value_t = 8 * 1024 * 1024)]
    graph_max_bytes: usize,
    /// How long one graph query may run, in milliseconds.
    #[arg(long, env = "HOOTENANNY_GRAPH_TIMEOUT_MS", default_value_t = 5_000)]
    graph_timeout_ms: u64,
    /// Graph queries run at once (off the threads that answer requests); more wait.
    #[arg(long, env = "HOOTENANNY_GRAPH_MAX_CONCURRENT", default_value_t = 4)]
    graph_max_concurrent: usize,
    /// PostgreSQL for artifacts, lineage and bindings, e.g. postgres://hoot@db-host/hoot
    /// (cluster mode: several Hootenanny processes may share it) [default: sled under the
    /// data directory].
    #[arg(long, env = "HOOT_DATABASE_URL")]
    database_url: Option<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let _telemetry = args.common.telemetry()?;
    let common = args.common.resolve()?;
    let mut config = hootenanny::Config::new(common.data_dir);
    config.cas_root = common.cas_root;
    config.blobs = cas::BlobConfig::from_env(common.blob_url, Some(common.cache_dir), common.cache_max);
    config.bind = common.bind;
    config.health_bind = common.health_bind;
    config.key = common.key;
    config.insecure = common.insecure;
    config.database_url = args.database_url.clone();
    config.graph = hootenanny::GraphLimits {
        max_cost: args.graph_max_cost,
        max_depth: args.graph_max_depth,
        max_aliases: args.graph_max_aliases,
        max_nodes: args.graph_max_nodes,
        max_bytes: args.graph_max_bytes,
        timeout: std::time::Duration::from_millis(args.graph_timeout_ms),
        max_concurrent: args.graph_max_concurrent.max(1),
    };
    let stats = hootenanny::run(config, hooteproto::server::shutdown_signal()).await?;
    tracing::info!(?stats, "hootenanny stopped");
    Ok(())
}
