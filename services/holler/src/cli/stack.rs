//! `holler up` and `holler serve`: the commands that run servers rather than call them; and
//! `holler open`, which points a browser at one.

use std::path::{Path, PathBuf};

use hooteproto::Key;
use hooteproto::auth::KeySource;

use super::args::{Command, GatewayArgs, StackArgs};
use super::{Context, Failure, init_telemetry, usage};

/// Hands `url` to the desktop's opener (xdg-open, or `open` on macOS); says so when there is none.
fn open_in_browser(url: &str) {
    let opener = if cfg!(target_os = "macos") { "open" } else { "xdg-open" };
    let started = std::process::Command::new(opener)
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    if let Err(error) = started {
        eprintln!("holler: could not start {opener} ({error}); open the address above in a browser");
    }
}

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

/// The key `holler up` gives every service: `--key-file` (or `HOOT_KEY_FILE`, `HOOT_KEY`), else
/// `<data dir>/hoot.key`, created (mode 0600, in a 0700 data directory) if missing. None with
/// `--insecure`, which must not be combined with a key.
pub fn up_key(flag: Option<&Path>, data_dir: &Path, insecure: bool) -> Result<Option<(Key, KeySource)>, Failure> {
    // Everything `up` writes under the data directory from here on is private to this user.
    hooteproto::dirs::prepare(data_dir).map_err(|e| Failure::from(anyhow::Error::from(e)))?;
    let configured = |name: &str| std::env::var_os(name).is_some_and(|v| !v.is_empty());
    if insecure {
        if flag.is_some() || configured(hooteproto::auth::KEY_FILE_ENV) || configured(hooteproto::auth::KEY_ENV) {
            return Err(usage(
                "--insecure runs without a key, but a key was given (--key-file, HOOT_KEY_FILE or HOOT_KEY)",
            ));
        }
        return Ok(None);
    }
    if let Some(found) = Key::locate(flag, data_dir).map_err(|e| usage(e.to_string()))? {
        return Ok(Some(found));
    }
    let path = hooteproto::auth::default_key_file(data_dir);
    let (key, created) = Key::load_or_create(&path).map_err(|e| Failure::from(anyhow::Error::from(e)))?;
    Ok(Some((
        key,
        if created {
            KeySource::Created(path)
        } else {
            KeySource::DataDir(path)
        },
    )))
}

/// A start-up failure; an endpoint already bound or a data dir already locked (a second
/// `holler up`) says so plainly.
fn already_running(
    error: anyhow::Error,
    endpoints: &holler::backends::Endpoints,
    data_dir: &Path,
    listen: Option<std::net::SocketAddr>,
) -> Failure {
    let locked = error
        .chain()
        .any(|cause| cause.to_string().contains("could not acquire lock"));
    if locked {
        return Failure::new(
            1,
            format!(
                "a stack is already running on the data dir {} (holler status shows it): stop it, \
                 or pass another --data-dir and other endpoints (--luanette, --hootenanny, --chaosgarden) and --port",
                data_dir.display()
            ),
        );
    }
    let in_use = error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::AddrInUse)
            || cause.to_string().to_lowercase().contains("address already in use")
    });
    if !in_use {
        return Failure::from(error);
    }
    let text = format!("{error:#}");
    let service = holler::backends::Backend::ALL
        .into_iter()
        .find(|b| text.contains(&format!("starting {}", b.name())));
    let message = match (service, listen) {
        (Some(service), _) => format!(
            "a stack is already running at {} ({}'s endpoint is in use; holler status shows it): stop it, \
             or pass other endpoints (--luanette, --hootenanny, --chaosgarden) and --port",
            endpoints.of(service),
            service.name()
        ),
        (None, Some(listen)) => format!(
            "{listen} is in use (another holler up or serve? holler status shows a stack): stop it, or pass --port"
        ),
        (None, None) => format!("an endpoint is in use (holler status shows a running stack): {text}"),
    };
    Failure::new(1, message)
}

/// Where `up` and `serve` send their traces and how they log.
pub struct Telemetry {
    /// OTLP/HTTP collector, if any.
    pub otlp_endpoint: Option<String>,
    /// JSON log lines instead of text.
    pub log_json: bool,
}

fn stack_config(stack: StackArgs, context: &Context, key: Option<(Key, KeySource)>) -> holler::up::StackConfig {
    holler::up::StackConfig {
        data_dir: context.data_dir.clone(),
        endpoints: context.backends.endpoints().clone(),
        key,
        audio: match stack.audio_device.as_str() {
            "auto" => chaosgarden::Output::Auto,
            "none" | "null" => chaosgarden::Output::Null,
            name => chaosgarden::Output::Device(name.into()),
        },
        soundfont: stack.soundfont,
        media_budget: stack.media_budget,
        health: !stack.no_health,
        broadcasts: endpoint_or_none(&stack.broadcasts),
        allow_transport_from_lua: stack.allow_transport_from_lua,
        database_url: stack.database_url,
        blobs: {
            let (url, cache_dir) = stack.blobs.resolve(&context.data_dir);
            cas::BlobConfig::from_env(url, Some(cache_dir), stack.blobs.cache_max)
        },
    }
}

/// Runs `up`, `serve` or `mcp` until Ctrl-C or SIGTERM (or, for `mcp`, until the host closes stdin).
pub async fn run(
    command: Command,
    telemetry: Telemetry,
    context: &Context,
    key: Option<(Key, KeySource)>,
) -> Result<(), Failure> {
    let _telemetry = init_telemetry(telemetry.otlp_endpoint.as_deref(), telemetry.log_json)?;
    match command {
        Command::Up {
            stack,
            port,
            token_file,
        } => {
            let token = read_token(token_file)?;
            if token.is_some() && key.is_none() {
                return Err(usage(
                    "--token-file with --insecure would leave the services' ZMQ ports open to unsigned requests \
                     (code runs without a credential): drop --insecure",
                ));
            }
            let config = holler::up::UpConfig {
                stack: stack_config(stack, context, key),
                listen: std::net::SocketAddr::from(([127, 0, 0, 1], port)),
                token,
            };
            let endpoints = config.stack.endpoints.clone();
            let data_dir = config.stack.data_dir.clone();
            let listen = config.listen;
            holler::up::run(config, hooteproto::server::shutdown_signal())
                .await
                .map_err(|e| already_running(e, &endpoints, &data_dir, Some(listen)))
        }
        Command::Mcp { up: false, stack } => {
            // Flags only (the SoundFont and media budget may also come from the environment,
            // which a forwarding `holler mcp` simply does not use).
            if stack.insecure || stack.no_health || stack.audio_device != "auto" {
                return Err(usage(
                    "--insecure, --no-health and --audio-device configure the services it starts: add --up \
                     (without it, `holler mcp` talks to a stack already running)",
                ));
            }
            let key = key.map(|(key, _)| key);
            let broadcasts = endpoint_or_none(&stack.broadcasts);
            let shutdown = hooteproto::server::shutdown_signal();
            Ok(holler::stdio::run(context.backends.clone(), broadcasts, key, shutdown).await?)
        }
        Command::Mcp { up: true, stack } => {
            let config = stack_config(stack, context, key);
            let running = holler::up::start(&config)
                .await
                .map_err(|e| already_running(e, &config.endpoints, &config.data_dir, None))?;
            tracing::info!(soundfont = %running.soundfont, "the stack is up; MCP on stdio");
            if let Some(hint) = holler::up::devices_hint() {
                tracing::info!("{hint}");
            }
            let key = config.key.map(|(key, _)| key);
            let shutdown = hooteproto::server::shutdown_signal();
            let served = holler::stdio::run(running.backends.clone(), config.broadcasts, key, shutdown).await;
            let stopped = running.stop().await;
            served?;
            Ok(stopped?)
        }
        Command::Serve {
            gateway: GatewayArgs { port, host, token_file },
            soundfont,
            allowed_origin,
            broadcasts,
        } => {
            let config = holler::serve::ServeConfig {
                listen: std::net::SocketAddr::new(host, port),
                allowed_origins: allowed_origin,
                token: read_token(token_file)?,
                broadcasts: endpoint_or_none(&broadcasts),
                key: key.map(|(key, _)| key),
                soundfont,
                // Separate from Hootenanny (perhaps on another host): media comes through it.
                cas: None,
                transport: None,
            };
            let token = config.token.clone();
            let bound = holler::serve::bind(config, context.backends.clone()).await?;
            let address = bound.local_addr().map_err(anyhow::Error::from)?;
            eprintln!("holler: MCP on http://{address}/mcp");
            eprintln!(
                "holler: studio on {}",
                holler::up::studio_url(address, token.as_deref())
            );
            Ok(bound.run(hooteproto::server::shutdown_signal()).await?)
        }
        Command::Open {
            gateway: GatewayArgs { port, host, token_file },
            print,
        } => {
            let url = holler::up::studio_url(
                std::net::SocketAddr::new(host, port),
                read_token(token_file)?.as_deref(),
            );
            println!("{url}");
            if !print {
                open_in_browser(&url);
            }
            Ok(())
        }
        _ => unreachable!("only up, serve and open are dispatched here"),
    }
}
