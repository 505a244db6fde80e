//! The command line, as clap reads it.

use std::path::PathBuf;

use clap::builder::PossibleValuesParser;
use clap::{Parser, Subcommand, ValueHint};

/// The backends' names, for completion and checking.
fn backend_names() -> PossibleValuesParser {
    PossibleValuesParser::new(holler::backends::Backend::ALL.map(|b| b.name()))
}

/// Every tool the schema declares (`hooteproto::tools::TOOLS`), for completion and checking.
fn tool_names() -> PossibleValuesParser {
    PossibleValuesParser::new(hooteproto::tools::TOOLS.iter().map(|t| t.name))
}

/// An enum's values by their short names (`section_change`), from the schema, without the
/// zero `*_UNSPECIFIED`.
fn enum_values(full_name: &str) -> PossibleValuesParser {
    let values: Vec<clap::builder::PossibleValue> = hooteproto::json::descriptor_pool()
        .get_enum_by_name(full_name)
        .into_iter()
        .flat_map(|e| e.values().collect::<Vec<_>>())
        .filter(|v| v.number() != 0)
        // clap keeps `&'static str`s; these few names live as long as the program anyway.
        .map(|v| clap::builder::PossibleValue::new(&*hooteproto::json::enum_short_name(&v).leak()))
        .collect();
    PossibleValuesParser::new(values)
}

/// Parameters for a script: `--params JSON`, `--param key=value` (repeatable; `key=@FILE`
/// reads the file as a string, `@-` stdin) and `--params-file FILE` (`-`: stdin), merged in
/// that order (a later `--param` wins).
#[derive(clap::Args, Clone, Default)]
pub struct ParamArgs {
    /// Parameters as a JSON object.
    #[arg(long, value_name = "JSON")]
    pub params: Option<String>,
    /// One parameter: key=value (the value is JSON if it parses as JSON, else a string),
    /// key=@FILE for a file's contents as a string (@- for stdin). Repeatable.
    #[arg(long = "param", value_name = "KEY=VALUE")]
    pub param: Vec<String>,
    /// A JSON object of parameters in a file (- for stdin).
    #[arg(long, value_name = "FILE", value_hint = ValueHint::FilePath)]
    pub params_file: Option<PathBuf>,
}

#[derive(Parser)]
#[command(
    name = "holler",
    version,
    about = "Talk to Hootenanny: the CLI, the MCP gateway, and the whole stack in one command"
)]
pub struct Args {
    /// Luanette's endpoint.
    #[arg(long, global = true, env = "HOLLER_LUANETTE", default_value = hooteproto::defaults::LUANETTE.bind)]
    pub luanette: String,
    /// Hootenanny's endpoint.
    #[arg(
        long,
        global = true,
        env = "HOLLER_HOOTENANNY",
        default_value = hooteproto::defaults::HOOTENANNY.bind
    )]
    pub hootenanny: String,
    /// Chaosgarden's endpoint.
    #[arg(
        long,
        global = true,
        env = "HOLLER_CHAOSGARDEN",
        default_value = hooteproto::defaults::CHAOSGARDEN.bind
    )]
    pub chaosgarden: String,
    /// Print replies as JSON (for scripts).
    #[arg(long, global = true)]
    pub json: bool,
    /// How long to wait for a reply, in seconds.
    #[arg(long, global = true, default_value_t = 30.0)]
    pub timeout: f64,
    /// File holding the shared HMAC key [default: $HOOT_KEY, else <data dir>/hoot.key if it exists].
    #[arg(long, global = true, env = "HOOT_KEY_FILE")]
    pub key_file: Option<PathBuf>,
    /// Data directory: where `up` keeps its state and key, and where the other commands look
    /// for the key [default: $XDG_DATA_HOME/hootenanny, i.e. ~/.local/share/hootenanny].
    #[arg(long, global = true, env = "HOOT_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// OTLP/HTTP collector for traces (`up` and `serve`), e.g. http://127.0.0.1:4318.
    #[arg(long, global = true, env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
    /// Log as JSON lines (`up` and `serve`).
    #[arg(long, global = true)]
    pub log_json: bool,
    /// Say more: a script's traceback when it fails.
    #[arg(short, long, global = true)]
    pub verbose: bool,
    #[command(subcommand)]
    pub command: Command,
}

/// How `up` and `mcp --up` run the services.
#[derive(clap::Args, Clone)]
pub struct StackArgs {
    /// Run without a key: the services obey unsigned messages from any local process
    /// (by default `up` uses --key-file, else creates <data dir>/hoot.key, mode 0600).
    #[arg(long)]
    pub insecure: bool,
    /// Chaosgarden's audio output: auto, none, or part of a device name.
    #[arg(long, default_value = "auto")]
    pub audio_device: String,
    /// SoundFont (.sf2) MIDI regions play through, or "builtin" [default: a General MIDI
    /// SoundFont under /usr/share/sounds/sf2, else the small one built into holler].
    #[arg(long, env = "CHAOSGARDEN_SOUNDFONT")]
    pub soundfont: Option<PathBuf>,
    /// The most memory Chaosgarden's decoded media may take: bytes, or with a unit (KiB, MiB,
    /// GiB). Edits and renders past it are refused with RESOURCE_EXHAUSTED.
    #[arg(long, env = "CHAOSGARDEN_MEDIA_BUDGET", default_value = "1GiB", value_parser = chaosgarden::media::parse_budget)]
    pub media_budget: u64,
    /// Luanette's broadcast (PUB) endpoint, or "none".
    #[arg(long, default_value = hooteproto::defaults::LUANETTE_PUB)]
    pub broadcasts: String,
    /// Do not serve grpc.health.v1 (:6570, :6580, :6555), e.g. to run a second stack.
    #[arg(long)]
    pub no_health: bool,
    /// Let Lua scripts move the transport (`garden.play/stop/seek`); `=false` to forbid it.
    #[arg(long, env = "LUANETTE_ALLOW_TRANSPORT_FROM_LUA", default_value_t = true, action = clap::ArgAction::Set,
          num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub allow_transport_from_lua: bool,
    /// Cluster mode: keep artifacts and the job queue in this PostgreSQL (postgres://...);
    /// jobs run on this stack's worker and on `luanette worker`s elsewhere (docs/cluster.md)
    /// [default: embedded, sled under the data directory].
    #[arg(long, env = "HOOT_DATABASE_URL")]
    pub database_url: Option<String>,
    /// Cluster mode: blobs on object storage (s3://bucket[/prefix]), read through a cache.
    #[command(flatten)]
    pub blobs: hooteproto::cli::BlobArgs,
}

/// Where the gateway is (`serve` listens there, `open` points a browser at it).
#[derive(clap::Args)]
pub struct GatewayArgs {
    /// The gateway's HTTP port.
    #[arg(long, env = "HOLLER_PORT", default_value_t = hooteproto::defaults::HOLLER_PORT)]
    pub port: u16,
    /// The gateway's address.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: std::net::IpAddr,
    /// File holding the gateway's token: every request must carry it (for `open`, the link
    /// then signs the browser in).
    #[arg(long, env = "HOLLER_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
}

#[derive(Subcommand)]
pub enum Command {
    /// Start Luanette, Hootenanny, Chaosgarden and the MCP gateway in this process.
    Up {
        #[command(flatten)]
        stack: StackArgs,
        /// The gateway's HTTP port.
        #[arg(long, env = "HOLLER_PORT", default_value_t = hooteproto::defaults::HOLLER_PORT)]
        port: u16,
        /// File holding a bearer token the gateway requires (not with --insecure).
        #[arg(long, env = "HOLLER_TOKEN_FILE")]
        token_file: Option<PathBuf>,
    },
    /// Speak MCP over stdin/stdout, for MCP hosts that launch their servers as a command:
    /// in front of a running stack, or with --up in front of one started in this process.
    Mcp {
        /// Start Luanette, Hootenanny and Chaosgarden in this process first (as `holler up`,
        /// without the HTTP gateway); they stop when the host closes the session.
        #[arg(long)]
        up: bool,
        #[command(flatten)]
        stack: StackArgs,
    },
    /// Open the studio (the gateway's web page) in a browser, or print its address.
    Open {
        #[command(flatten)]
        gateway: GatewayArgs,
        /// Print the address only.
        #[arg(long)]
        print: bool,
    },
    /// Serve MCP (Streamable HTTP) in front of running backends.
    Serve {
        #[command(flatten)]
        gateway: GatewayArgs,
        /// SoundFont (.sf2) the studio plays MIDI artifacts through, or "builtin" [default: as
        /// Chaosgarden chooses: a General MIDI SoundFont under /usr/share/sounds/sf2, else the
        /// built-in one]
        #[arg(long, env = "CHAOSGARDEN_SOUNDFONT")]
        soundfont: Option<PathBuf>,
        /// A browser origin to allow besides loopback (e.g. https://app.example.com:443); repeatable.
        #[arg(long)]
        allowed_origin: Vec<String>,
        /// Luanette's broadcast (PUB) endpoint, forwarded to MCP sessions, or "none".
        #[arg(long, env = "HOLLER_LUANETTE_PUB", default_value = hooteproto::defaults::LUANETTE_PUB)]
        broadcasts: String,
    },
    /// Which services answer at the configured endpoints (versions, uptime), and the data
    /// dir and key file this CLI uses.
    Status,
    /// Is a backend (or every backend) alive?
    Ping {
        /// luanette, hootenanny or chaosgarden [default: all].
        #[arg(value_parser = backend_names())]
        backend: Option<String>,
    },
    /// List the tools of a backend (or all), or print one tool's input and output schema.
    Tools {
        /// luanette, hootenanny or chaosgarden [default: all].
        #[arg(value_parser = backend_names())]
        backend: Option<String>,
        /// Print this tool's description and its input and output JSON Schemas.
        #[arg(long, value_name = "TOOL", value_parser = tool_names(), conflicts_with = "backend")]
        schema: Option<String>,
    },
    /// Call any tool with JSON arguments, e.g. `holler call lua_eval '{"code":"return 1"}'`.
    Call {
        /// The tool's name.
        #[arg(value_parser = tool_names(), hide_possible_values = true)]
        tool: String,
        /// Its arguments (the request's JSON; field names as in the schema or camelCase,
        /// enums by short name), or - for stdin.
        #[arg(default_value = "{}")]
        arguments: String,
    },
    /// Send any payload as proto3 JSON to a backend, e.g. `holler send luanette '{"ping":{}}'`.
    Send {
        /// luanette, hootenanny or chaosgarden.
        #[arg(value_parser = backend_names())]
        backend: String,
        /// An envelope's JSON with one payload field.
        #[arg(value_name = "JSON")]
        payload: String,
    },
    /// Evaluate Lua on Luanette: what `print` and `log.*` write goes to stderr, the result to
    /// stdout. Code that defines `main(params)` and returns nothing has `main(params)` called.
    Lua {
        /// The code (or use -f).
        code: Option<String>,
        /// Read the code from a file (- for stdin).
        #[arg(short = 'f', long, value_hint = ValueHint::FilePath, conflicts_with = "code")]
        file: Option<PathBuf>,
        #[command(flatten)]
        params: ParamArgs,
    },
    /// Resources: the Lua stdlib reference, scripts, jobs, the graph's schema.
    #[command(subcommand)]
    Resource(ResourceCommand),
    /// List the prompts, or render one: `holler prompt write-script goal="a bass line"`.
    Prompt {
        /// The prompt's name [default: list them].
        name: Option<String>,
        /// Its arguments, as key=value.
        #[arg(value_name = "KEY=VALUE")]
        arguments: Vec<String>,
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
    /// Print shell completions (commands, flags, tool names, backends and enum values).
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
}

#[derive(Subcommand)]
pub enum ResourceCommand {
    /// The resources and resource templates the backends offer.
    List,
    /// Print a resource, e.g. `holler resource read lua://stdlib`.
    Read {
        /// Its URI.
        uri: String,
    },
}

#[derive(Subcommand)]
pub enum ScriptCommand {
    /// Store a Lua file; prints its hash (with --name, the name's new version too).
    Store {
        /// The file (- for stdin).
        #[arg(value_hint = ValueHint::FilePath)]
        file: PathBuf,
        /// Tags (repeatable).
        #[arg(long = "tag")]
        tags: Vec<String>,
        /// Who made it.
        #[arg(long, default_value = "holler")]
        creator: String,
        /// Store it as the newest version of this name: jobs and markers that name it run
        /// this version from now on.
        #[arg(long, default_value = "")]
        name: String,
    },
    /// Find scripts; with --name, every version of that name, newest first.
    Search {
        /// By tag.
        #[arg(long, default_value = "")]
        tag: String,
        /// By creator.
        #[arg(long, default_value = "")]
        creator: String,
        /// The versions of this script name.
        #[arg(long, default_value = "")]
        name: String,
    },
    /// A script's name, description and parameters.
    Describe {
        /// Its hash, a unique prefix, a script name or name@<hash prefix>.
        script: String,
    },
}

#[derive(Subcommand)]
pub enum JobCommand {
    /// Run a stored script as a job (add --wait to wait for it with a progress bar).
    Run {
        /// The script: its hash, a unique prefix, a script name (its newest version) or
        /// name@<hash prefix>.
        script: String,
        /// Which waiting jobs start first when every runner is busy.
        #[arg(long, value_parser = enum_values("hooteproto.v1.JobPriority"), default_value = "normal")]
        priority: String,
        /// A capability the worker must have, e.g. gpu (repeatable; cluster mode).
        #[arg(long = "capability")]
        capabilities: Vec<String>,
        #[command(flatten)]
        params: ParamArgs,
        /// Wait for the job to finish: its id first, then progress, then its logs, duration
        /// and result (Ctrl-C stops waiting, not the job).
        #[arg(long)]
        wait: bool,
    },
    /// The queue: waiting and running jobs by priority and capabilities, and how long the
    /// oldest has waited.
    Stats,
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
        /// Only jobs in this state.
        #[arg(long, value_parser = enum_values("hooteproto.v1.JobState"))]
        state: Option<String>,
    },
}

#[derive(Subcommand)]
pub enum CasCommand {
    /// Store a file; prints its hash. On the CAS's own host the file is imported directly.
    Put {
        /// The file (- for stdin).
        #[arg(value_hint = ValueHint::FilePath)]
        file: PathBuf,
        /// Its MIME type.
        #[arg(long, default_value = "application/octet-stream")]
        mime: String,
        /// The shared CAS root to import into when it is on this host [default: $HOOT_CAS_ROOT or <data dir>/cas].
        #[arg(long, env = "HOOT_CAS_ROOT")]
        cas_root: Option<PathBuf>,
        /// With object storage, the file goes straight to the bucket.
        #[command(flatten)]
        blobs: hooteproto::cli::BlobArgs,
    },
    /// Fetch an object (to stdout, or -o FILE).
    Get {
        /// Hash or unique prefix.
        hash: String,
        /// Write here instead of stdout.
        #[arg(short = 'o', long, value_hint = ValueHint::FilePath)]
        output: Option<PathBuf>,
    },
    /// Size, type and age of an object.
    Inspect {
        /// Hash or unique prefix.
        hash: String,
    },
}

#[derive(Subcommand)]
pub enum ArtifactCommand {
    /// Name a CAS object as an artifact.
    Create {
        /// The CAS hash or a unique prefix.
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
        /// By creator, e.g. lua:transition-by-ear.
        #[arg(long, default_value = "")]
        creator: String,
        /// Only those naming this CAS object (64 hex characters).
        #[arg(long, default_value = "")]
        hash: String,
    },
}

#[derive(Subcommand)]
pub enum GraphCommand {
    /// Run a GraphQL query.
    Query {
        /// The query (- for stdin).
        query: String,
    },
    /// Bind an identity to device hints (JSON).
    Bind {
        /// The identity, e.g. bass-synth.
        identity: String,
        /// DeviceHints as JSON, e.g. '{"midi_port_patterns":["JD-Xi"]}'.
        hints: String,
    },
}

#[derive(Subcommand)]
pub enum TransportCommand {
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
pub enum TimelineCommand {
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
        #[arg(value_parser = enum_values("hooteproto.v1.TimelineEventType"))]
        kind: String,
        /// Where, in beats.
        beats: f64,
        /// Metadata (JSON object), e.g. '{"script":"transition-by-ear"}' (a script name,
        /// resolved at each crossing, or a hash).
        #[arg(long)]
        metadata: Option<String>,
    },
    /// Place a CAS object (MIDI or WAV) at a beat.
    Region {
        /// The CAS hash or a unique prefix.
        hash: String,
        /// Where, in beats.
        beats: f64,
        /// Gain in dB.
        #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
        gain_db: f64,
        /// Add it even when the same object is already placed at the same beat.
        #[arg(long)]
        allow_duplicate: bool,
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
