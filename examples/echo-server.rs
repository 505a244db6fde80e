//! A minimal HOOT/1 service: answers `ping` with a `ping_reply` and echoes `lua_eval`
//! code back as a `success`. Everything else gets `UNIMPLEMENTED`.
//!
//! ```text
//! cargo run --example echo-server -- --bind tcp://127.0.0.1:5599
//! ```

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use clap::Parser;
use hooteproto::v1::envelope::Payload;
use hooteproto::v1::{PingReply, Success};
use hooteproto::{Handler, Key, RequestContext, Server, ServerConfig, Status};
use prost_types::value::Kind;

#[derive(Parser)]
#[command(about = "HOOT/1 echo server (SDK example)")]
struct Args {
    /// Endpoint to bind.
    #[arg(long, env = "HOOT_ECHO_BIND", default_value = "tcp://127.0.0.1:5599")]
    bind: String,
    /// File holding the shared HMAC key (else HOOT_KEY_FILE, HOOT_KEY, then <data dir>/hoot.key
    /// if it exists, the data dir being $HOOT_DATA_DIR or ~/.local/share/hootenanny; none = unsigned).
    #[arg(long)]
    key_file: Option<PathBuf>,
    /// Allow a non-loopback bind without a key.
    #[arg(long)]
    insecure: bool,
}

struct Echo {
    started: Instant,
    worker_id: String,
}

impl Handler for Echo {
    async fn handle(&self, _context: RequestContext, payload: Payload) -> Result<Payload, Status> {
        match payload {
            Payload::Ping(_) => Ok(Payload::PingReply(PingReply {
                worker_id: self.worker_id.clone(),
                uptime_secs: self.started.elapsed().as_secs(),
                service: "echo-server".into(),
                version: env!("CARGO_PKG_VERSION").into(),
            })),
            Payload::LuaEval(eval) => Ok(Payload::Success(Success {
                result: Some(prost_types::Value {
                    kind: Some(Kind::StringValue(eval.code)),
                }),
            })),
            other => Err(Status::unimplemented(format!(
                "echo-server does not serve `{}`",
                other.name()
            ))),
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let args = Args::parse();
    let mut config = ServerConfig::new(args.bind);
    // Found as every Hootenanny program finds it; the key itself is never printed.
    let data_dir = hooteproto::dirs::data_dir(None);
    if let Some((key, source)) = Key::locate(args.key_file.as_deref(), &data_dir)? {
        eprintln!("echo-server: unsigned messages are dropped (key: {source})");
        config.key = Some(key);
    }
    config.insecure = args.insecure;
    let server = Server::bind(config)?;
    println!("echo-server listening on {}", server.local_endpoint());
    let handler = Arc::new(Echo {
        started: Instant::now(),
        worker_id: format!("echo-{}", std::process::id()),
    });
    let stats = server.run(handler, hooteproto::server::shutdown_signal()).await?;
    println!("echo-server stopped: {stats:?}");
    Ok(())
}
