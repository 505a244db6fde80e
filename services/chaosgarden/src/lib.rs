//! # chaosgarden — real-time transport and timeline
//!
//! A HOOT/1 service (ROUTER, default `tcp://127.0.0.1:5555`) that keeps musical time,
//! plays what is on the timeline, and when the playhead crosses a marker asks Luanette
//! (DEALER to `tcp://127.0.0.1:5570`) to generate what comes next, then plays that too.
//!
//! ## Map
//! - [`time`]: the tempo map; beats ⇄ ticks ⇄ seconds ⇄ samples, exact on samples and ticks.
//! - [`media`]: MIDI and WAV from the CAS into audio (SoundFont synth, decoder, resampler);
//!   [`media::builtin_font`] generates the General MIDI SoundFont used when there is no other.
//! - [`timeline`]: markers, regions, tempo and loop; saved on every edit; arranged for playback.
//! - [`engine`]: the real-time playhead (lock-free, allocation-free), its backends (null,
//!   and cpal with the `devices` feature) and the marker scheduler.
//! - [`render`]: offline render of a beat range to a WAV.
//! - [`trigger`]: marker → Luanette (events, transition jobs, placing results), registration.
//! - `service`: the request handler. [`bind`] then [`Bound::run`] (or [`run`]).

pub mod engine;
pub mod media;
pub mod render;
mod service;
pub mod time;
pub mod timeline;
pub mod trigger;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use hooteproto::client::ClientConfig;
use hooteproto::defaults;
use hooteproto::health;
use hooteproto::server::Lifecycle;
use hooteproto::v1 as pb;
use hooteproto::{Client, Key, Server, ServerConfig, ServerStats};

pub use engine::{Engine, EngineConfig, Fired, MidiSink, Output};
pub use service::Studio;

/// Name under which gRPC health reports this service.
pub const HEALTH_SERVICE: &str = "chaosgarden";

/// How to run. `Config::new` gives the documented defaults.
pub struct Config {
    /// HOOT/1 ROUTER endpoint.
    pub bind: String,
    /// The name `ping` answers with and Luanette lists this worker under.
    pub name: String,
    /// Luanette's ROUTER (None: markers fire but go nowhere).
    pub luanette: Option<String>,
    /// The shared CAS root.
    pub cas_root: PathBuf,
    /// Where blobs live beyond `cas_root`: object storage and its cache (cluster mode).
    pub blobs: cas::BlobConfig,
    /// The data directory; the timeline is saved in `<data_dir>/chaosgarden/`.
    pub data_dir: PathBuf,
    /// Where the audio goes.
    pub output: Output,
    /// A MIDI output port name (or part of one).
    pub midi_out: Option<String>,
    /// A MIDI sink to use instead of a port (tests, embedding).
    pub midi_sink: Option<Box<dyn MidiSink>>,
    /// The SoundFont MIDI regions play through: a .sf2 file (an error at [`bind`] if it
    /// cannot be read), or [`media::BUILTIN_SOUNDFONT`] (`builtin`) for the built-in General
    /// MIDI font. None: the first of [`media::SOUNDFONT_SEARCH`] found, else the built-in
    /// font, so MIDI is always heard.
    pub soundfont: Option<PathBuf>,
    /// Reverb and chorus on MIDI regions.
    pub synth_effects: bool,
    /// Output frames per second.
    pub sample_rate: u32,
    /// The most bytes decoded media (decoded, resampled and rendered audio, renders in
    /// progress) may hold; edits and renders past it are refused with RESOURCE_EXHAUSTED.
    pub media_budget: u64,
    /// Frames per block on the null backend.
    pub block: usize,
    /// Where to serve grpc.health.v1 (None: not at all).
    pub health_bind: Option<SocketAddr>,
    /// Shared HMAC key.
    pub key: Option<Key>,
    /// Allow a non-loopback bind without a key.
    pub insecure: bool,
    /// How long shutdown waits for accepted requests.
    pub drain_timeout: Duration,
}

impl Config {
    /// Defaults from the project conventions.
    pub fn new(data_dir: PathBuf) -> Self {
        Self {
            bind: defaults::CHAOSGARDEN.bind.into(),
            name: "chaosgarden".into(),
            luanette: Some(defaults::LUANETTE.bind.into()),
            cas_root: data_dir.join("cas"),
            blobs: cas::BlobConfig::default(),
            data_dir,
            output: Output::Auto,
            midi_out: None,
            midi_sink: None,
            soundfont: None,
            synth_effects: true,
            sample_rate: 48_000,
            media_budget: media::DEFAULT_BUDGET,
            block: 256,
            health_bind: Some(defaults::CHAOSGARDEN.health_addr()),
            key: None,
            insecure: false,
            drain_timeout: Duration::from_secs(5),
        }
    }
}

/// Serves until `shutdown` completes (or a `shutdown` request arrives), then drains.
pub async fn run(config: Config, shutdown: impl Future<Output = ()> + Send) -> anyhow::Result<ServerStats> {
    bind(config).await?.run(shutdown).await
}

/// A chaosgarden whose sockets are bound, whose engine runs and whose timeline is loaded,
/// ready to [`Bound::run`].
pub struct Bound {
    server: Server,
    studio: Arc<Studio>,
    luanette: Option<(Client, tokio::sync::mpsc::Receiver<Fired>)>,
    registration: pb::WorkerRegistration,
    health: Option<health::HealthServer>,
    lifecycle: Arc<Lifecycle>,
    soundfont: String,
}

/// Loads the SoundFont, starts the engine, opens the timeline and binds every socket.
pub async fn bind(mut config: Config) -> anyhow::Result<Bound> {
    media::keep_large_buffers_out_of_the_heap();
    let cas = cas::Cas::open_with(&config.cas_root, &config.blobs)
        .with_context(|| format!("opening the CAS at {}", config.cas_root.display()))?;
    let synth = media::Synth::choose(config.soundfont.as_deref())?.with_effects(config.synth_effects);
    let soundfont = synth.description().to_string();
    if synth.is_builtin() && config.soundfont.is_none() {
        tracing::info!(
            "no General MIDI SoundFont on this system: MIDI plays through the small built-in one \
             (for better sound: apt install fluid-soundfont-gm, or --soundfont FILE)"
        );
    } else {
        tracing::info!(soundfont = %soundfont, "SoundFont loaded");
    }
    let midi = match (config.midi_sink.take(), &config.midi_out) {
        (Some(sink), _) => Some(sink),
        #[cfg(feature = "devices")]
        (None, Some(port)) => Some(Box::new(engine::device::open_midi(port)?) as Box<dyn MidiSink>),
        #[cfg(not(feature = "devices"))]
        (None, Some(port)) => anyhow::bail!(
            "MIDI port {port:?} asked for, but chaosgarden was built without MIDI ports: rebuild it with \
             `--features devices` (needs Debian's libasound2-dev)"
        ),
        (None, None) => None,
    };
    let midi_cues = midi.is_some();
    let (trigger_tx, trigger_rx) = tokio::sync::mpsc::channel(1024);
    let engine = Engine::start(EngineConfig {
        sample_rate: config.sample_rate,
        block: config.block,
        output: config.output.clone(),
        midi,
        trigger: config.luanette.as_ref().map(|_| trigger_tx),
    })?;
    let path = config.data_dir.join("chaosgarden").join("timeline.binpb");
    let editor_config = timeline::EditorConfig {
        synth: Some(synth),
        path: Some(path),
        midi_cues,
        sample_rate: engine.sample_rate(),
        media_budget: config.media_budget,
    };
    let editor = tokio::task::spawn_blocking(move || timeline::Editor::open_with(cas, editor_config)).await??;
    let studio = Arc::new(Studio {
        engine,
        editor: tokio::sync::Mutex::new(editor),
    });
    studio
        .arrange()
        .await
        .map_err(|s| anyhow::anyhow!("arranging the saved timeline: {s}"))?;
    let mut server_config = ServerConfig::new(config.bind.clone());
    server_config.key = config.key.clone();
    server_config.insecure = config.insecure;
    server_config.drain_timeout = config.drain_timeout;
    let server = Server::bind(server_config)?;
    let luanette = match &config.luanette {
        Some(endpoint) => {
            let mut client_config = ClientConfig::new(endpoint.clone());
            client_config.key = config.key.clone();
            client_config.name = config.name.clone();
            Some((Client::connect(client_config)?, trigger_rx))
        }
        None => None,
    };
    let health = health::start_if(config.health_bind, HEALTH_SERVICE).await?;
    let lifecycle = Arc::new(
        Lifecycle::new("chaosgarden", env!("CARGO_PKG_VERSION"), config.drain_timeout).with_name(config.name.clone()),
    );
    let mut capabilities = vec!["transport".to_string(), "timeline".into(), "offline-render".into()];
    capabilities.push(format!("audio:{}", studio.engine.backend()));
    if midi_cues {
        capabilities.push("midi-out".into());
    }
    let registration = pb::WorkerRegistration {
        worker_id: config.name.clone(),
        worker_type: "chaosgarden".into(),
        name: config.name.clone(),
        capabilities,
        endpoint: server.local_endpoint().to_string(),
        version: env!("CARGO_PKG_VERSION").into(),
    };
    tracing::info!(
        endpoint = %server.local_endpoint(),
        backend = studio.engine.backend(),
        sample_rate = studio.engine.sample_rate(),
        soundfont = %soundfont,
        media_budget = config.media_budget,
        luanette = config.luanette.as_deref().unwrap_or("none"),
        "chaosgarden ready"
    );
    Ok(Bound {
        server,
        studio,
        luanette,
        registration,
        health,
        lifecycle,
        soundfont,
    })
}

impl Bound {
    /// The HOOT/1 endpoint actually bound.
    pub fn endpoint(&self) -> &str {
        self.server.local_endpoint()
    }

    /// Which SoundFont MIDI regions play through: its path, or
    /// [`media::BUILTIN_DESCRIPTION`] ("built-in General MIDI (generated)").
    pub fn soundfont(&self) -> &str {
        &self.soundfont
    }

    /// The timeline and engine (for embedding and tests).
    pub fn studio(&self) -> Arc<Studio> {
        self.studio.clone()
    }

    /// Serves until `shutdown` (see [`run`]).
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> anyhow::Result<ServerStats> {
        let Bound {
            server,
            studio,
            luanette,
            registration,
            health,
            lifecycle,
            soundfont: _,
        } = self;
        let mut tasks = Vec::new();
        if let Some((client, fires)) = luanette {
            tasks.push(tokio::spawn(trigger::register_forever(client.clone(), registration)));
            tasks.push(tokio::spawn(trigger::run(studio.clone(), client, fires)));
        }
        let service = Arc::new(service::Service {
            studio: studio.clone(),
            lifecycle: lifecycle.clone(),
        });
        let stop = health::drain_trigger(shutdown, &lifecycle, health.as_ref());
        let stats = server.run(service, stop).await;
        for task in tasks {
            task.abort();
        }
        studio.engine.shutdown();
        if let Some(health) = health {
            health.stop().await;
        }
        Ok(stats?)
    }
}
