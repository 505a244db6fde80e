//! `hootenanny`: content-addressed storage, artifacts and graph queries over HOOT/1.

use std::net::SocketAddr;
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
    /// Log as JSON lines instead of human-readable text.
    #[arg(long)]
    log_json: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    if args.log_json {
        tracing_subscriber::fmt().json().with_env_filter(filter).init();
    } else {
        tracing_subscriber::fmt().with_env_filter(filter).init();
    }
    let data_dir = hooteproto::dirs::data_dir(args.data_dir);
    let mut config = hootenanny::Config::new(data_dir.clone());
    config.cas_root = hooteproto::dirs::cas_root(args.cas_root, &data_dir);
    config.bind = args.bind;
    config.health_bind = match args.health_bind.as_str() {
        "none" | "" => None,
        address => Some(
            address
                .parse::<SocketAddr>()
                .map_err(|e| anyhow::anyhow!("--health-bind {address}: {e}"))?,
        ),
    };
    config.key = hooteproto::Key::from_flag_or_env(args.key_file.as_deref())?;
    config.insecure = args.insecure;
    let stats = hootenanny::run(config, hooteproto::server::shutdown_signal()).await?;
    tracing::info!(?stats, "hootenanny stopped");
    Ok(())
}
