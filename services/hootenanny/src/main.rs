//! `hootenanny`: content-addressed storage, artifacts and graph queries over HOOT/1.

use std::path::PathBuf;

use clap::Parser;

#[derive(Parser)]
#[command(
    version,
    about = "Hootenanny: content-addressed storage, artifacts with lineage, and graph queries over HOOT/1"
)]
struct Args {
    /// HOOT/1 ROUTER endpoint.
    #[arg(long, env = "HOOTENANNY_BIND", default_value = "tcp://127.0.0.1:5580")]
    bind: String,
    /// The shared CAS root [default: <data dir>/cas].
    #[arg(long, env = "HOOT_CAS_ROOT")]
    cas_root: Option<PathBuf>,
    /// Data directory [default: $XDG_DATA_HOME/hootenanny].
    #[arg(long, env = "HOOT_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// grpc.health.v1 address, or "none".
    #[arg(long, env = "HOOTENANNY_HEALTH_BIND", default_value = "127.0.0.1:6580")]
    health_bind: String,
    /// File holding the shared HMAC key [default: $HOOT_KEY, else <data dir>/hoot.key if it exists].
    #[arg(long, env = "HOOT_KEY_FILE")]
    key_file: Option<PathBuf>,
    /// Allow binding a non-loopback address without a key.
    #[arg(long)]
    insecure: bool,
    /// OTLP/HTTP collector for traces, e.g. http://127.0.0.1:4318 (none: spans are not exported).
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    otlp_endpoint: Option<String>,
    /// Log as JSON lines instead of human-readable text.
    #[arg(long)]
    log_json: bool,
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
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let _telemetry = hooteproto::telemetry::init("hootenanny", args.otlp_endpoint.as_deref(), args.log_json)?;
    let data_dir = hooteproto::dirs::data_dir(args.data_dir);
    let mut config = hootenanny::Config::new(data_dir.clone());
    config.cas_root = hooteproto::dirs::cas_root(args.cas_root, &data_dir);
    config.bind = args.bind;
    config.health_bind = hooteproto::health::parse_bind(&args.health_bind)?;
    config.key = hooteproto::auth::key_for_service(args.key_file.as_deref(), &data_dir)?;
    config.insecure = args.insecure;
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
