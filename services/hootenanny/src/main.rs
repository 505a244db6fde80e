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
    /// File holding the shared HMAC key.
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
    config.key = hooteproto::Key::from_flag_or_env(args.key_file.as_deref())?;
    config.insecure = args.insecure;
    let stats = hootenanny::run(config, hooteproto::server::shutdown_signal()).await?;
    tracing::info!(?stats, "hootenanny stopped");
    Ok(())
}
