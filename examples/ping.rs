//! Pings a HOOT/1 service and prints who answered and the round-trip time.
//! Exits non-zero when no reply arrives.
//!
//! ```text
//! cargo run --example ping -- --connect tcp://127.0.0.1:5599
//! ```

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Parser;
use hooteproto::v1::PingRequest;
use hooteproto::{Client, ClientConfig, Key, RequestOptions};

#[derive(Parser)]
#[command(about = "Ping a HOOT/1 service (SDK example)")]
struct Args {
    /// Endpoint of the service.
    #[arg(long, env = "HOOT_PING_CONNECT", default_value = "tcp://127.0.0.1:5599")]
    connect: String,
    /// How many pings to send.
    #[arg(long, default_value_t = 1)]
    count: u32,
    /// How long to wait for each reply, in milliseconds.
    #[arg(long, default_value_t = 5000)]
    timeout_ms: u64,
    /// File holding the shared HMAC key (else HOOT_KEY_FILE, HOOT_KEY, then <data dir>/hoot.key
    /// if it exists, the data dir being $HOOT_DATA_DIR or ~/.local/share/hootenanny; none = unsigned).
    #[arg(long)]
    key_file: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let args = Args::parse();
    let mut config = ClientConfig::new(&args.connect);
    config.name = "ping".into();
    // Found as every Hootenanny program finds it; the key itself is never printed.
    let data_dir = hooteproto::dirs::data_dir(None);
    if let Some((key, source)) = Key::locate(args.key_file.as_deref(), &data_dir)? {
        tracing::info!(key = %source, "signing with the shared key");
        config.key = Some(key);
    }
    let client = Client::connect(config)?;
    let options = RequestOptions {
        timeout: Some(Duration::from_millis(args.timeout_ms)),
        ..Default::default()
    };
    for _ in 0..args.count {
        let started = Instant::now();
        let pong = client.call_with(PingRequest {}, options.clone()).await?;
        println!(
            "pong from {} ({}, up {} s) in {:.3} ms",
            pong.service,
            pong.worker_id,
            pong.uptime_secs,
            started.elapsed().as_secs_f64() * 1e3
        );
    }
    Ok(())
}
