//! The `holler` commands. Every backend command becomes a tool call (the tool's name is
//! the request's oneof case, its arguments the request's proto3 JSON), sent straight to
//! the backend over ZMQ; `--json` prints the reply as JSON, otherwise it is shown for a
//! person. Exit codes:
//!
//! | code | meaning |
//! |---|---|
//! | 0 | success |
//! | 1 | any other failure |
//! | 2 | bad command line (from clap) |
//! | 3 | the request was refused as invalid (INVALID_ARGUMENT, FAILED_PRECONDITION, OUT_OF_RANGE) |
//! | 4 | NOT_FOUND |
//! | 5 | a backend is unavailable or did not answer in time |
//! | 6 | a job waited for ended failed or cancelled |
//! | 7 | UNAUTHENTICATED or PERMISSION_DENIED (check the key) |

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{CommandFactory, Parser, Subcommand};
use holler::backends::{Backend, Backends, CallError, Endpoints};
use hooteproto::v1::ErrorCode;
use serde_json::{Value, json};

#[derive(Parser)]
#[command(
    name = "holler",
    version,
    about = "Talk to Hootenanny: the CLI, the MCP gateway, and the whole stack in one command"
)]
pub struct Args {
    /// Luanette's endpoint.
    #[arg(long, global = true, env = "HOLLER_LUANETTE", default_value = "tcp://127.0.0.1:5570")]
    luanette: String,
    /// Hootenanny's endpoint.
    #[arg(
        long,
        global = true,
        env = "HOLLER_HOOTENANNY",
        default_value = "tcp://127.0.0.1:5580"
    )]
    hootenanny: String,
    /// Chaosgarden's endpoint.
    #[arg(
        long,
        global = true,
        env = "HOLLER_CHAOSGARDEN",
        default_value = "tcp://127.0.0.1:5555"
    )]
    chaosgarden: String,
    /// Print replies as JSON (for scripts).
    #[arg(long, global = true)]
    json: bool,
    /// How long to wait for a reply, in seconds.
    #[arg(long, global = true, default_value_t = 30.0)]
    timeout: f64,
    /// File holding the shared HMAC key.
    #[arg(long, global = true, env = "HOOT_KEY_FILE")]
    key_file: Option<PathBuf>,
    /// OTLP/HTTP collector for traces (`up` and `serve`), e.g. http://127.0.0.1:4318.
    #[arg(long, global = true, env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    otlp_endpoint: Option<String>,
    /// Log as JSON lines (`up` and `serve`).
    #[arg(long, global = true)]
    log_json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start Luanette, Hootenanny, Chaosgarden and the MCP gateway in this process.
    Up {
        /// Data directory [default: $HOOT_DATA_DIR or ~/.local/share/hootenanny].
        #[arg(long, env = "HOOT_DATA_DIR")]
        data_dir: Option<PathBuf>,
        /// The gateway's HTTP port.
        #[arg(long, env = "HOLLER_PORT", default_value_t = 8080)]
        port: u16,
        /// Chaosgarden's audio output: auto, none, or part of a device name.
        #[arg(long, default_value = "auto")]
        audio_device: String,
        /// File holding a bearer token the gateway requires.
        #[arg(long, env = "HOLLER_TOKEN_FILE")]
        token_file: Option<PathBuf>,
        /// Luanette's broadcast (PUB) endpoint, or "none".
        #[arg(long, default_value = "tcp://127.0.0.1:5572")]
        broadcasts: String,
        /// Do not serve grpc.health.v1 (:6570, :6580, :6555), e.g. to run a second stack.
        #[arg(long)]
        no_health: bool,
    },
    /// Serve MCP (Streamable HTTP) in front of running backends.
    Serve {
        /// HTTP port.
        #[arg(long, env = "HOLLER_PORT", default_value_t = 8080)]
        port: u16,
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1")]
        host: std::net::IpAddr,
        /// File holding a bearer token every request must carry.
        #[arg(long, env = "HOLLER_TOKEN_FILE")]
        token_file: Option<PathBuf>,
        /// A browser origin to allow besides loopback (e.g. https://app.example.com:443); repeatable.
        #[arg(long)]
        allowed_origin: Vec<String>,
        /// Luanette's broadcast (PUB) endpoint, forwarded to MCP sessions, or "none".
        #[arg(long, env = "HOLLER_LUANETTE_PUB", default_value = "tcp://127.0.0.1:5572")]
        broadcasts: String,
    },
    /// Is a backend (or every backend) alive?
    Ping {
        /// luanette, hootenanny or chaosgarden [default: all].
        backend: Option<String>,
    },
    /// List the tools of a backend (or all).
    Tools {
        /// luanette, hootenanny or chaosgarden [default: all].
        backend: Option<String>,
    },
    /// Call any tool with JSON arguments, e.g. `holler call lua_eval '{"code":"return 1"}'`.
    Call {
        /// The tool's name.
        tool: String,
        /// Its arguments (proto3 JSON of the request).
        #[arg(default_value = "{}")]
        arguments: String,
    },
    /// Send any payload as proto3 JSON to a backend, e.g. `holler send luanette '{"ping":{}}'`.
    Send {
        /// luanette, hootenanny or chaosgarden.
        backend: String,
        /// An envelope's JSON with one payload field.
        #[arg(value_name = "JSON")]
        payload: String,
    },
    /// Evaluate Lua on Luanette.
    Lua {
        /// The code (or use -f).
        code: Option<String>,
        /// Read the code from a file.
        #[arg(short = 'f', long)]
        file: Option<PathBuf>,
        /// Parameters (a JSON object).
        #[arg(long)]
        params: Option<String>,
    },
    /// Stored scripts.
    #[command(subcommand)]
    Script(ScriptCommand),
    /// Background jobs.
    #[command(subcommand)]
    Job(JobCommand),
    /// The content-addressed store.
    #[command(subcommand)]
    Cas(CasCommand),
    /// Artifacts.
    #[command(subcommand)]
    Artifact(ArtifactCommand),
    /// The graph.
    #[command(subcommand)]
    Graph(GraphCommand),
    /// The transport.
    #[command(subcommand)]
    Transport(TransportCommand),
    /// The timeline.
    #[command(subcommand)]
    Timeline(TimelineCommand),
    /// Print shell completions.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
}

#[derive(Subcommand)]
enum ScriptCommand {
    /// Store a Lua file; prints its hash.
    Store {
        /// The file.
        file: PathBuf,
        /// Tags (repeatable).
        #[arg(long = "tag")]
        tags: Vec<String>,
        /// Who made it.
        #[arg(long, default_value = "holler")]
        creator: String,
    },
    /// Find scripts.
    Search {
        /// By tag.
        #[arg(long, default_value = "")]
        tag: String,
        /// By creator.
        #[arg(long, default_value = "")]
        creator: String,
    },
    /// A script's description and parameter schema.
    Describe {
        /// Its hash.
        hash: String,
    },
}

#[derive(Subcommand)]
enum JobCommand {
    /// Run a stored script as a job (add --wait to wait for it with a progress bar).
    Run {
        /// The script's hash.
        hash: String,
        /// Parameters (a JSON object).
        #[arg(long)]
        params: Option<String>,
        /// Wait for the job to finish.
        #[arg(long)]
        wait: bool,
    },
    /// A job's state, result, logs.
    Status {
        /// The job id.
        id: String,
    },
    /// Wait until any (or --all) of some jobs finish.
    Poll {
        /// Job ids.
        ids: Vec<String>,
        /// Wait for all of them.
        #[arg(long)]
        all: bool,
        /// How long to wait, in milliseconds.
        #[arg(long, default_value_t = 10_000)]
        timeout_ms: u32,
    },
    /// Wait for one job, showing its progress.
    Wait {
        /// The job id.
        id: String,
    },
    /// Cancel a job.
    Cancel {
        /// The job id.
        id: String,
    },
    /// Recent jobs, newest first.
    List {
        /// pending, running, succeeded, failed or cancelled.
        #[arg(long)]
        state: Option<String>,
    },
}

#[derive(Subcommand)]
enum CasCommand {
    /// Store a file; prints its hash. On the CAS's own host the file is imported directly.
    Put {
        /// The file.
        file: PathBuf,
        /// Its MIME type.
        #[arg(long, default_value = "application/octet-stream")]
        mime: String,
        /// The shared CAS root to import into when it is on this host [default: $HOOT_CAS_ROOT or <data dir>/cas].
        #[arg(long, env = "HOOT_CAS_ROOT")]
        cas_root: Option<PathBuf>,
    },
    /// Fetch an object (to stdout, or -o FILE).
    Get {
        /// Hash or unique prefix.
        hash: String,
        /// Write here instead of stdout.
        #[arg(short = 'o', long)]
        output: Option<PathBuf>,
    },
    /// Size, type and age of an object.
    Inspect {
        /// Hash or unique prefix.
        hash: String,
    },
}

#[derive(Subcommand)]
enum ArtifactCommand {
    /// Name a CAS object as an artifact.
    Create {
        /// The CAS hash.
        hash: String,
        /// Its name.
        #[arg(long)]
        name: String,
        /// Tags (repeatable).
        #[arg(long = "tag")]
        tags: Vec<String>,
        /// Parent artifact ids (repeatable).
        #[arg(long = "parent")]
        parents: Vec<String>,
    },
    /// One artifact.
    Get {
        /// Its id.
        id: String,
    },
    /// Artifacts, newest first.
    List {
        /// By tag.
        #[arg(long, default_value = "")]
        tag: String,
    },
}

#[derive(Subcommand)]
enum GraphCommand {
    /// Run a GraphQL query.
    Query {
        /// The query.
        query: String,
    },
    /// Bind an identity to device hints (JSON).
    Bind {
        /// The identity, e.g. bass-synth.
        identity: String,
        /// DeviceHints as JSON.
        hints: String,
    },
}

#[derive(Subcommand)]
enum TransportCommand {
    /// Start playback.
    Play,
    /// Stop playback.
    Stop,
    /// Move the playhead to a beat.
    Seek {
        /// The beat.
        beats: f64,
    },
    /// Where the playhead is.
    Status,
}

#[derive(Subcommand)]
enum TimelineCommand {
    /// What is on the timeline.
    Query {
        /// From beat.
        #[arg(long, default_value_t = 0.0)]
        from: f64,
        /// To beat (0: the end).
        #[arg(long, default_value_t = 0.0)]
        to: f64,
    },
    /// Add a marker: section_change, beat_marker, cue_point or generate_transition.
    Marker {
        /// The kind.
        kind: String,
        /// Where, in beats.
        beats: f64,
        /// Metadata (JSON object), e.g. '{"script_hash":"…"}'.
        #[arg(long)]
        metadata: Option<String>,
    },
    /// Place a CAS object (MIDI or WAV) at a beat.
    Region {
        /// The CAS hash.
        hash: String,
        /// Where, in beats.
        beats: f64,
        /// Gain in dB.
        #[arg(long, default_value_t = 0.0)]
        gain_db: f64,
    },
    /// Remove a marker or region.
    Remove {
        /// Its id.
        id: String,
    },
    /// Set the tempo from a beat on.
    Tempo {
        /// Beats per minute.
        bpm: f64,
        /// From this beat.
        #[arg(long, default_value_t = 0.0)]
        at: f64,
    },
    /// Render a range to a WAV in the CAS.
    Render {
        /// From beat.
        #[arg(long, default_value_t = 0.0)]
        from: f64,
        /// To beat (0: the end of the last region).
        #[arg(long, default_value_t = 0.0)]
        to: f64,
    },
}

/// A command's failure, with the exit code it maps to.
struct Failure {
    code: u8,
    message: String,
}

impl From<CallError> for Failure {
    fn from(error: CallError) -> Self {
        let code = match error.code() {
            ErrorCode::InvalidArgument | ErrorCode::FailedPrecondition | ErrorCode::OutOfRange => 3,
            ErrorCode::NotFound => 4,
            ErrorCode::Unavailable | ErrorCode::DeadlineExceeded => 5,
            ErrorCode::Unauthenticated | ErrorCode::PermissionDenied => 7,
            _ => 1,
        };
        let message = match &error {
            // A backend's own error already names its code.
            CallError::Remote(_) => error.to_string(),
            _ => format!("{}: {error}", hooteproto::error::code_name(error.code())),
        };
        Failure { code, message }
    }
}

impl From<anyhow::Error> for Failure {
    fn from(error: anyhow::Error) -> Self {
        Failure {
            code: 1,
            message: format!("{error:#}"),
        }
    }
}

fn usage(message: impl Into<String>) -> Failure {
    Failure {
        code: 2,
        message: message.into(),
    }
}

fn parse_json(what: &str, text: &str) -> Result<Value, Failure> {
    serde_json::from_str(text).map_err(|e| usage(format!("{what} is not JSON: {e}")))
}

fn backend(name: &str) -> Result<Backend, Failure> {
    Backend::parse(name).ok_or_else(|| usage(format!("no backend {name:?}: luanette, hootenanny or chaosgarden")))
}

/// Runs the command; the exit code follows the table above.
pub async fn main(args: Args) -> ExitCode {
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("holler: {}", failure.message);
            ExitCode::from(failure.code)
        }
    }
}

struct Context {
    backends: Arc<Backends>,
    json: bool,
    timeout: Duration,
}

impl Context {
    async fn call(&self, tool: &str, arguments: Value) -> Result<Value, Failure> {
        Ok(self.backends.call_tool(tool, &arguments, self.timeout).await?)
    }

    fn print(&self, value: &Value) {
        if self.json {
            println!("{value}");
        } else {
            println!("{}", serde_json::to_string_pretty(value).unwrap_or_default());
        }
    }

    /// Prints a reply: as JSON with --json, else `human` (or pretty JSON).
    fn show(&self, value: &Value, human: impl FnOnce(&Value) -> Option<String>) {
        if self.json {
            println!("{value}");
        } else if let Some(text) = human(value) {
            println!("{text}");
        } else {
            self.print(value);
        }
    }
}

fn init_telemetry(otlp: Option<&str>, json: bool) -> Result<hooteproto::telemetry::TelemetryGuard, Failure> {
    hooteproto::telemetry::init("holler", otlp, json).map_err(|e| Failure::from(anyhow::anyhow!("telemetry: {e}")))
}

async fn run(args: Args) -> Result<(), Failure> {
    let endpoints = Endpoints {
        luanette: args.luanette.clone(),
        hootenanny: args.hootenanny.clone(),
        chaosgarden: args.chaosgarden.clone(),
    };
    let key = hooteproto::Key::from_flag_or_env(args.key_file.as_deref()).map_err(|e| usage(e.to_string()))?;
    if !(args.timeout.is_finite() && args.timeout > 0.0) {
        return Err(usage("--timeout must be a positive number of seconds"));
    }
    let context = Context {
        backends: Arc::new(Backends::connect(endpoints.clone(), key, "holler")?),
        json: args.json,
        timeout: Duration::from_secs_f64(args.timeout),
    };
    match args.command {
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Args::command(), "holler", &mut std::io::stdout());
            Ok(())
        }
        Command::Up {
            data_dir,
            port,
            audio_device,
            token_file,
            broadcasts,
            no_health,
        } => {
            let _telemetry = init_telemetry(args.otlp_endpoint.as_deref(), args.log_json)?;
            let audio = match audio_device.as_str() {
                "auto" => chaosgarden::Output::Auto,
                "none" | "null" => chaosgarden::Output::Null,
                name => chaosgarden::Output::Device(name.into()),
            };
            let config = holler::up::UpConfig {
                data_dir: hooteproto::dirs::data_dir(data_dir),
                listen: std::net::SocketAddr::from(([127, 0, 0, 1], port)),
                endpoints,
                token: read_token(token_file)?,
                audio,
                health: !no_health,
                broadcasts: match broadcasts.as_str() {
                    "" | "none" => None,
                    endpoint => Some(endpoint.to_string()),
                },
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
            let _telemetry = init_telemetry(args.otlp_endpoint.as_deref(), args.log_json)?;
            let config = holler::serve::ServeConfig {
                listen: std::net::SocketAddr::new(host, port),
                allowed_origins: allowed_origin,
                token: read_token(token_file)?,
                broadcasts: match broadcasts.as_str() {
                    "" | "none" => None,
                    endpoint => Some(endpoint.to_string()),
                },
                key: hooteproto::Key::from_flag_or_env(args.key_file.as_deref()).map_err(|e| usage(e.to_string()))?,
            };
            let bound = holler::serve::bind(config, context.backends.clone()).await?;
            eprintln!(
                "holler: MCP on http://{}/mcp",
                bound.local_addr().map_err(anyhow::Error::from)?
            );
            Ok(bound.run(hooteproto::server::shutdown_signal()).await?)
        }
        Command::Ping { backend: which } => ping(&context, which).await,
        Command::Tools { backend: which } => tools(&context, which).await,
        Command::Call { tool, arguments } => {
            let arguments = parse_json("the arguments", &arguments)?;
            let reply = context.call(&tool, arguments).await?;
            context.print(&reply);
            Ok(())
        }
        Command::Send {
            backend: which,
            payload,
        } => {
            let which = backend(&which)?;
            let envelope = hooteproto::json::envelope_from_json(&payload).map_err(|e| usage(e.to_string()))?;
            let payload = envelope
                .payload
                .ok_or_else(|| usage("the JSON names no payload, e.g. {\"ping\": {}}"))?;
            let options = hooteproto::RequestOptions {
                timeout: Some(context.timeout),
                ..Default::default()
            };
            let reply = context.backends.request(which, payload, options).await?;
            context.print(&holler::backends::payload_to_json(reply));
            Ok(())
        }
        Command::Lua { code, file, params } => {
            let code = match (code, file) {
                (Some(code), None) => code,
                (None, Some(file)) => {
                    std::fs::read_to_string(&file).map_err(|e| usage(format!("cannot read {}: {e}", file.display())))?
                }
                _ => return Err(usage("give the code, or -f FILE")),
            };
            let mut arguments = json!({"code": code});
            if let Some(params) = params {
                arguments["params"] = parse_json("--params", &params)?;
            }
            let reply = context.call("lua_eval", arguments).await?;
            context.show(&reply, |r| {
                let mut text = String::new();
                for line in r["output"].as_array().into_iter().flatten() {
                    text.push_str(&format!("{}\n", line["message"].as_str().unwrap_or_default()));
                }
                text.push_str(&serde_json::to_string_pretty(&r["result"]).unwrap_or_default());
                Some(text)
            });
            Ok(())
        }
        Command::Script(command) => script(&context, command).await,
        Command::Job(command) => job(&context, command).await,
        Command::Cas(command) => cas(&context, command).await,
        Command::Artifact(command) => {
            let (tool, arguments) = match command {
                ArtifactCommand::Create {
                    hash,
                    name,
                    tags,
                    parents,
                } => (
                    "artifact_create",
                    json!({"cas_hash": hash, "name": name, "tags": tags, "parent_ids": parents, "creator": "holler"}),
                ),
                ArtifactCommand::Get { id } => ("artifact_get", json!({"artifact_id": id})),
                ArtifactCommand::List { tag } => ("artifact_list", json!({"tag": tag})),
            };
            let reply = context.call(tool, arguments).await?;
            context.print(&reply);
            Ok(())
        }
        Command::Graph(command) => {
            let (tool, arguments) = match command {
                GraphCommand::Query { query } => ("graph_query", json!({"query": query})),
                GraphCommand::Bind { identity, hints } => (
                    "graph_bind",
                    json!({"identity": identity, "hints": parse_json("the hints", &hints)?}),
                ),
            };
            let reply = context.call(tool, arguments).await?;
            context.print(&reply);
            Ok(())
        }
        Command::Transport(command) => {
            let (tool, arguments) = match command {
                TransportCommand::Play => ("transport_play", json!({})),
                TransportCommand::Stop => ("transport_stop", json!({})),
                TransportCommand::Seek { beats } => ("transport_seek", json!({"position_beats": beats})),
                TransportCommand::Status => ("transport_status", json!({})),
            };
            let reply = context.call(tool, arguments).await?;
            context.show(&reply, |r| {
                let s = &r["state"];
                Some(format!(
                    "{} at beat {:.3} ({:.3} s), {} bpm, {} Hz on {}",
                    s["playback"]
                        .as_str()
                        .unwrap_or("PLAYBACK_STATE_STOPPED")
                        .trim_start_matches("PLAYBACK_STATE_")
                        .to_lowercase(),
                    s["positionBeats"].as_f64().unwrap_or(0.0),
                    s["positionSeconds"].as_f64().unwrap_or(0.0),
                    s["tempoBpm"].as_f64().unwrap_or(0.0),
                    s["sampleRate"].as_u64().unwrap_or(0),
                    s["backend"].as_str().unwrap_or("?"),
                ))
            });
            Ok(())
        }
        Command::Timeline(command) => {
            let (tool, arguments) = match command {
                TimelineCommand::Query { from, to } => ("timeline_query", json!({"from_beats": from, "to_beats": to})),
                TimelineCommand::Marker { kind, beats, metadata } => {
                    let metadata = match metadata {
                        Some(m) => parse_json("--metadata", &m)?,
                        None => json!({}),
                    };
                    let kind = format!("TIMELINE_EVENT_TYPE_{}", kind.to_uppercase());
                    (
                        "timeline_add_marker",
                        json!({"event_type": kind, "position_beats": beats, "metadata": metadata}),
                    )
                }
                TimelineCommand::Region { hash, beats, gain_db } => (
                    "timeline_add_region",
                    json!({"cas_hash": hash, "position_beats": beats, "gain_db": gain_db}),
                ),
                TimelineCommand::Remove { id } => ("timeline_remove", json!({"id": id})),
                TimelineCommand::Tempo { bpm, at } => (
                    "timeline_set_tempo",
                    json!({"change": {"position_beats": at, "tempo_bpm": bpm}}),
                ),
                TimelineCommand::Render { from, to } => {
                    ("timeline_render", json!({"from_beats": from, "to_beats": to}))
                }
            };
            let reply = context.call(tool, arguments).await?;
            context.print(&reply);
            Ok(())
        }
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

async fn ping(context: &Context, which: Option<String>) -> Result<(), Failure> {
    let targets = match which {
        Some(name) => vec![backend(&name)?],
        None => Backend::ALL.to_vec(),
    };
    let mut results = serde_json::Map::new();
    let mut down = None;
    for target in targets {
        let started = Instant::now();
        let options = hooteproto::RequestOptions {
            timeout: Some(context.timeout.min(Duration::from_secs(3))),
            ..Default::default()
        };
        let reply = context
            .backends
            .request(
                target,
                hooteproto::v1::envelope::Payload::Ping(Default::default()),
                options,
            )
            .await;
        let value = match reply {
            Ok(reply) => {
                let mut value = holler::backends::payload_to_json(reply);
                value["latency_ms"] = json!(started.elapsed().as_secs_f64() * 1e3);
                value
            }
            Err(error) => {
                let value = json!({"error": error.to_string()});
                down = Some(Failure::from(error));
                value
            }
        };
        results.insert(target.name().into(), value);
    }
    let results = Value::Object(results);
    context.show(&results, |r| {
        let mut text = String::new();
        for (name, value) in r.as_object().into_iter().flatten() {
            match value.get("error") {
                Some(error) => text.push_str(&format!("{name:<12} down: {}\n", error.as_str().unwrap_or_default())),
                None => text.push_str(&format!(
                    "{name:<12} up   {} {} ({:.2} ms, up {} s)\n",
                    value["workerId"].as_str().unwrap_or_default(),
                    value["version"].as_str().unwrap_or_default(),
                    value["latency_ms"].as_f64().unwrap_or_default(),
                    value["uptimeSecs"]
                        .as_str()
                        .or(value["uptimeSecs"].as_u64().map(|_| ""))
                        .unwrap_or("0"),
                )),
            }
        }
        Some(text.trim_end().to_string())
    });
    match down {
        Some(failure) => Err(Failure {
            code: failure.code,
            message: "a backend is down".into(),
        }),
        None => Ok(()),
    }
}

async fn tools(context: &Context, which: Option<String>) -> Result<(), Failure> {
    let targets = match which {
        Some(name) => vec![backend(&name)?],
        None => Backend::ALL.to_vec(),
    };
    let mut all = Vec::new();
    for target in targets {
        match context
            .backends
            .tools(target, context.timeout.min(Duration::from_secs(3)))
            .await
        {
            Ok(tools) => all.extend(tools.into_iter().map(|t| (target, t))),
            Err(error) => eprintln!("holler: {} left out: {error}", target.name()),
        }
    }
    if context.json {
        let list: Vec<Value> = all
            .iter()
            .map(|(b, t)| json!({"backend": b.name(), "name": t.name, "description": t.description}))
            .collect();
        println!("{}", Value::Array(list));
    } else {
        for (b, t) in &all {
            let summary = t.description.split(". ").next().unwrap_or_default();
            println!("{:<22} {:<12} {summary}", t.name, b.name());
        }
    }
    Ok(())
}

async fn script(context: &Context, command: ScriptCommand) -> Result<(), Failure> {
    let (tool, arguments) = match command {
        ScriptCommand::Store { file, tags, creator } => {
            let content =
                std::fs::read_to_string(&file).map_err(|e| usage(format!("cannot read {}: {e}", file.display())))?;
            (
                "script_store",
                json!({"content": content, "tags": tags, "creator": creator}),
            )
        }
        ScriptCommand::Search { tag, creator } => ("script_search", json!({"tag": tag, "creator": creator})),
        ScriptCommand::Describe { hash } => ("lua_describe", json!({"script_hash": hash})),
    };
    let reply = context.call(tool, arguments).await?;
    context.show(&reply, |r| r["script"]["scriptHash"].as_str().map(str::to_string));
    Ok(())
}

async fn job(context: &Context, command: JobCommand) -> Result<(), Failure> {
    match command {
        JobCommand::Run { hash, params, wait } => {
            let mut arguments = json!({"script_hash": hash});
            if let Some(params) = params {
                arguments["params"] = parse_json("--params", &params)?;
            }
            let reply = context.call("job_execute", arguments).await?;
            let id = reply["jobId"].as_str().unwrap_or_default().to_string();
            if wait {
                wait_for(context, &id).await
            } else {
                context.show(&reply, |_| Some(id.clone()));
                Ok(())
            }
        }
        JobCommand::Wait { id } => wait_for(context, &id).await,
        JobCommand::Status { id } => {
            let reply = context.call("job_status", json!({"job_id": id})).await?;
            context.print(&reply);
            Ok(())
        }
        JobCommand::Poll { ids, all, timeout_ms } => {
            let mode = if all { "POLL_MODE_ALL" } else { "POLL_MODE_ANY" };
            let wait = Duration::from_millis(timeout_ms as u64) + Duration::from_secs(5);
            let reply = context
                .backends
                .call_tool(
                    "job_poll",
                    &json!({"job_ids": ids, "timeout_ms": timeout_ms, "mode": mode}),
                    wait.max(context.timeout),
                )
                .await?;
            context.print(&reply);
            Ok(())
        }
        JobCommand::Cancel { id } => {
            let reply = context.call("job_cancel", json!({"job_id": id})).await?;
            context.show(&reply, |r| {
                r["state"]
                    .as_str()
                    .map(|s| s.trim_start_matches("JOB_STATE_").to_lowercase())
            });
            Ok(())
        }
        JobCommand::List { state } => {
            let mut arguments = json!({});
            if let Some(state) = state {
                arguments["status"] = json!(format!("JOB_STATE_{}", state.to_uppercase()));
            }
            let reply = context.call("job_list", arguments).await?;
            context.print(&reply);
            Ok(())
        }
    }
}

/// Follows a job to its end with a progress bar (on a terminal), then prints its record.
async fn wait_for(context: &Context, id: &str) -> Result<(), Failure> {
    let bar = indicatif::ProgressBar::new(1000);
    if context.json {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:40} {percent:>3}% {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let job = loop {
        let reply = context.call("job_status", json!({"job_id": id})).await?;
        let job = reply["job"].clone();
        let state = job["state"].as_str().unwrap_or_default().to_string();
        bar.set_position((job["progress"].as_f64().unwrap_or(0.0) * 1000.0) as u64);
        bar.set_message(job["progressMessage"].as_str().unwrap_or(&state).to_string());
        if matches!(
            state.as_str(),
            "JOB_STATE_SUCCEEDED" | "JOB_STATE_FAILED" | "JOB_STATE_CANCELLED"
        ) {
            break job;
        }
        // A long poll returns as soon as the job ends; progress is refreshed every half second.
        let _ = context
            .backends
            .call_tool(
                "job_poll",
                &json!({"job_ids": [id], "timeout_ms": 500}),
                Duration::from_secs(5),
            )
            .await;
    };
    bar.finish_and_clear();
    let state = job["state"].as_str().unwrap_or_default().to_string();
    context.show(&job, |j| {
        Some(match state.as_str() {
            "JOB_STATE_SUCCEEDED" => serde_json::to_string_pretty(&j["result"]).unwrap_or_default(),
            _ => format!(
                "{}: {}",
                state.trim_start_matches("JOB_STATE_").to_lowercase(),
                j["error"]["message"].as_str().unwrap_or_default()
            ),
        })
    });
    if state == "JOB_STATE_SUCCEEDED" {
        Ok(())
    } else {
        Err(Failure {
            code: 6,
            message: format!(
                "job {id} ended {}",
                state.trim_start_matches("JOB_STATE_").to_lowercase()
            ),
        })
    }
}

async fn cas(context: &Context, command: CasCommand) -> Result<(), Failure> {
    match command {
        CasCommand::Put { file, mime, cas_root } => {
            let root = cas_root.unwrap_or_else(|| hooteproto::dirs::data_dir(None).join("cas"));
            if root.join("objects").is_dir() {
                // Same host: import straight into the shared store, no bytes over ZMQ.
                let cas = cas::Cas::open(&root).map_err(|e| Failure::from(anyhow::Error::from(e)))?;
                let stored = cas
                    .import_file(&file, &mime)
                    .map_err(|e| Failure::from(anyhow::anyhow!("importing {}: {e}", file.display())))?;
                let reply = json!({"hash": stored.info.hash.to_string(), "size": stored.info.size, "already_existed": stored.already_existed, "imported_into": root});
                context.show(&reply, |r| r["hash"].as_str().map(str::to_string));
                return Ok(());
            }
            let data = std::fs::read(&file).map_err(|e| usage(format!("cannot read {}: {e}", file.display())))?;
            use base64::Engine as _;
            let encoded = base64::engine::general_purpose::STANDARD.encode(data);
            let reply = context
                .call("cas_store", json!({"data": encoded, "mime_type": mime}))
                .await?;
            context.show(&reply, |r| r["hash"].as_str().map(str::to_string));
            Ok(())
        }
        CasCommand::Get { hash, output } => {
            let reply = context.call("cas_get", json!({"hash": hash})).await?;
            use base64::Engine as _;
            let data = base64::engine::general_purpose::STANDARD
                .decode(reply["data"].as_str().unwrap_or_default())
                .map_err(|e| Failure::from(anyhow::anyhow!("the reply's data is not base64: {e}")))?;
            match output {
                Some(path) => std::fs::write(&path, &data)
                    .map_err(|e| Failure::from(anyhow::anyhow!("writing {}: {e}", path.display())))?,
                None => std::io::stdout()
                    .write_all(&data)
                    .map_err(|e| Failure::from(anyhow::anyhow!("writing to stdout: {e}")))?,
            }
            Ok(())
        }
        CasCommand::Inspect { hash } => {
            let reply = context.call("cas_inspect", json!({"hash": hash})).await?;
            context.print(&reply);
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    #[test]
    fn the_command_line_is_consistent() {
        // Catches clashes such as a subcommand argument shadowing a global flag.
        super::Args::command().debug_assert();
    }
}
