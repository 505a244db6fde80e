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
    #[arg(long, env = "CHAOSGARDEN_MEDIA_BUDGET", default_value = "1GiB", value_parser = parse_size)]
    media_budget: u64,
}

/// "1073741824", "1GiB", "512 MiB", "64M": a size in bytes (units are powers of 1024).
fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size (e.g. 1GiB, 512MiB, 1073741824)"))?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        other => return Err(format!("unknown size unit {other:?} (use KiB, MiB or GiB)")),
    };
    let bytes = number
        .checked_mul(1 << shift)
        .ok_or_else(|| format!("{text:?} is too large"))?;
    if bytes < 1 << 20 {
        return Err(format!("{text:?} is below the smallest media budget, 1 MiB"));
    }
    Ok(bytes)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let _telemetry = args.common.telemetry()?;
    let common = args.common.resolve()?;
    let mut config = chaosgarden::Config::new(common.data_dir);
    config.cas_root = common.cas_root;
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

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn media_budget_sizes_take_units_and_refuse_nonsense() {
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("512 MiB"), Ok(512 << 20));
        assert_eq!(parse_size("64m"), Ok(64 << 20));
        assert_eq!(parse_size("1073741824"), Ok(1 << 30));
        assert!(parse_size("12 parsecs").is_err());
        assert!(parse_size("-1G").is_err());
        assert!(parse_size("100K").is_err(), "below 1 MiB");
        assert!(parse_size("99999999999G").is_err(), "overflows");
    }
}
