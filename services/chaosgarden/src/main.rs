//! `chaosgarden`: real-time transport and timeline over HOOT/1.

use std::path::PathBuf;

use clap::Parser;

#[derive(Parser)]
#[command(
    version,
    about = "Chaosgarden: real-time transport and timeline that triggers Luanette and plays the results"
)]
struct Args {
    #[command(flatten)]
    common: hooteproto::cli::ServiceArgs<hooteproto::cli::Chaosgarden>,
    /// Luanette's ROUTER endpoint, or "none".
    #[arg(long, env = "HOLLER_LUANETTE", default_value = hooteproto::defaults::LUANETTE.bind)]
    luanette: String,
    /// The name this instance answers `ping` with and registers under.
    #[arg(long, env = "CHAOSGARDEN_NAME", default_value = "chaosgarden")]
    name: String,
    /// Audio output: "auto" (the default sound card, else the null backend), "none" (the
    /// null backend: a real-time clock without sound), or part of a device's name. Sound
    /// cards need a build with `--features devices` (and Debian's libasound2-dev).
    #[arg(long, env = "CHAOSGARDEN_AUDIO_DEVICE", default_value = "auto")]
    audio_device: String,
    /// MIDI output port (part of its name) that MIDI regions are also sent to (needs a build
    /// with `--features devices`).
    #[arg(long, env = "CHAOSGARDEN_MIDI_OUT")]
    midi_out: Option<String>,
    /// SoundFont (.sf2) for MIDI regions, or "builtin" for the small General MIDI font built
    /// into chaosgarden [default: the first GM SoundFont under /usr/share/sounds/sf2, else
    /// the built-in one; `apt install fluid-soundfont-gm` sounds better].
    #[arg(long, env = "CHAOSGARDEN_SOUNDFONT")]
    soundfont: Option<PathBuf>,
    /// Reverb and chorus on MIDI regions (false renders dry, about 1.7× faster).
    #[arg(long, env = "CHAOSGARDEN_SYNTH_EFFECTS", default_value_t = true, action = clap::ArgAction::Set)]
    synth_effects: bool,
    /// Output sample rate in Hz (a sound card may impose its own).
    #[arg(long, env = "CHAOSGARDEN_SAMPLE_RATE", default_value_t = 48_000, value_parser = clap::value_parser!(u32).range(8_000..=192_000))]
    sample_rate: u32,
    /// The most memory decoded media may take (decoded and resampled WAVs, rendered MIDI,
    /// renders in progress): bytes, or with a unit (KiB, MiB, GiB; K, M, G). Edits and
    /// renders past it are refused with RESOURCE_EXHAUSTED.
    #[arg(long, env = "CHAOSGARDEN_MEDIA_BUDGET", default_value = "1GiB", value_parser = chaosgarden::media::parse_budget)]
    media_budget: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let _telemetry = args.common.telemetry()?;
    let common = args.common.resolve()?;
    let mut config = chaosgarden::Config::new(common.data_dir);
    config.cas_root = common.cas_root;
    config.blobs = cas::BlobConfig::from_env(common.blob_url, Some(common.cache_dir), common.cache_max);
    config.bind = common.bind;
    config.health_bind = common.health_bind;
    config.key = common.key;
    config.insecure = common.insecure;
    config.name = args.name;
    config.luanette = match args.luanette.as_str() {
        "" | "none" => None,
        endpoint => Some(endpoint.to_string()),
    };
    config.output = match args.audio_device.as_str() {
        "auto" => chaosgarden::Output::Auto,
        "none" | "null" => chaosgarden::Output::Null,
        name => chaosgarden::Output::Device(name.to_string()),
    };
    config.midi_out = args.midi_out;
    config.soundfont = args.soundfont;
    config.sample_rate = args.sample_rate;
    config.media_budget = args.media_budget;
    config.synth_effects = args.synth_effects;
    let stats = chaosgarden::run(config, hooteproto::server::shutdown_signal()).await?;
    tracing::info!(?stats, "chaosgarden stopped");
    Ok(())
}
