//! `holler up` and `holler serve`: the commands that run servers rather than call them.

use std::path::PathBuf;

use super::args::Command;
use super::{Context, Failure, init_telemetry, usage};

/// `"none"` (or empty) turns an optional endpoint off.
fn endpoint_or_none(text: &str) -> Option<String> {
    match text {
        "" | "none" => None,
        endpoint => Some(endpoint.to_string()),
    }
}

fn read_token(file: Option<PathBuf>) -> Result<Option<String>, Failure> {
    match file {
        None => Ok(None),
        Some(file) => {
            let token = std::fs::read_to_string(&file)
                .map_err(|e| usage(format!("cannot read the token file {}: {e}", file.display())))?;
            let token = token.trim().to_string();
            if token.is_empty() {
                return Err(usage(format!("the token file {} is empty", file.display())));
            }
            Ok(Some(token))
        }
    }
}

/// Where `up` and `serve` send their traces and how they log.
pub struct Telemetry {
    /// OTLP/HTTP collector, if any.
    pub otlp_endpoint: Option<String>,
    /// JSON log lines instead of text.
    pub log_json: bool,
}

/// Runs `up` or `serve` until Ctrl-C or SIGTERM.
pub async fn run(
    command: Command,
    telemetry: Telemetry,
    context: &Context,
    key: Option<hooteproto::Key>,
) -> Result<(), Failure> {
    let _telemetry = init_telemetry(telemetry.otlp_endpoint.as_deref(), telemetry.log_json)?;
    match command {
        Command::Up {
            data_dir,
            port,
            audio_device,
            token_file,
            broadcasts,
            no_health,
        } => {
            let audio = match audio_device.as_str() {
                "auto" => chaosgarden::Output::Auto,
                "none" | "null" => chaosgarden::Output::Null,
                name => chaosgarden::Output::Device(name.into()),
            };
            let config = holler::up::UpConfig {
                data_dir: hooteproto::dirs::data_dir(data_dir),
                listen: std::net::SocketAddr::from(([127, 0, 0, 1], port)),
                endpoints: context.backends.endpoints().clone(),
                token: read_token(token_file)?,
                audio,
                health: !no_health,
                broadcasts: endpoint_or_none(&broadcasts),
            };
            Ok(holler::up::run(config, hooteproto::server::shutdown_signal()).await?)
        }
        Command::Serve {
            port,
            host,
            token_file,
            allowed_origin,
            broadcasts,
        } => {
            let config = holler::serve::ServeConfig {
                listen: std::net::SocketAddr::new(host, port),
                allowed_origins: allowed_origin,
                token: read_token(token_file)?,
                broadcasts: endpoint_or_none(&broadcasts),
                key,
            };
            let bound = holler::serve::bind(config, context.backends.clone()).await?;
            eprintln!(
                "holler: MCP on http://{}/mcp",
                bound.local_addr().map_err(anyhow::Error::from)?
            );
            Ok(bound.run(hooteproto::server::shutdown_signal()).await?)
        }
        _ => unreachable!("only up and serve are dispatched here"),
    }
}
