//! MIDI through a SoundFont: [`Synth`] (which font, loaded once) and how long a render of a
//! song takes ([`midi_render_frames`]).

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rustysynth::{SoundFont, Synthesizer, SynthesizerSettings};

use super::{MAX_SECONDS, MediaError, MidiSong, builtin_font};
use crate::time::TempoMap;

/// The longest a MIDI region may ring on after its last event.
const MAX_TAIL_SECONDS: f64 = 3.0;
/// Below this peak a rendered tail counts as silence.
const SILENCE: f32 = 1e-5;

/// Frames a song placed at `start_beats` on `map` renders to at most, tail included (what
/// [`Synth::render`] allocates).
pub fn midi_render_frames(song: &MidiSong, map: &TempoMap, start_beats: f64, sample_rate: u32) -> u64 {
    let origin = map.sample_at(start_beats, sample_rate);
    let end = song
        .events
        .last()
        .map(|e| map.sample_at(start_beats + e.beats, sample_rate).saturating_sub(origin))
        .unwrap_or(0);
    let longest = (MAX_SECONDS * sample_rate as f64) as u64;
    end.min(longest) + tail_frames(sample_rate)
}

/// Frames a render may add after the last event (the tail, rounded up to whole blocks).
fn tail_frames(sample_rate: u32) -> u64 {
    let block = (sample_rate / 50).max(1) as u64;
    ((MAX_TAIL_SECONDS * sample_rate as f64) as u64).div_ceil(block) * block + block
}

/// A loaded SoundFont, shared by every render.
#[derive(Clone)]
pub struct Synth {
    font: Arc<SoundFont>,
    effects: bool,
    description: Arc<str>,
    builtin: bool,
}

impl std::fmt::Debug for Synth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Synth({})", self.description)
    }
}

/// The `--soundfont` value (and [`Synth::choose`] path) that asks for the built-in font.
pub const BUILTIN_SOUNDFONT: &str = "builtin";

/// How the built-in font is described ([`Synth::description`]).
pub const BUILTIN_DESCRIPTION: &str = "built-in General MIDI (generated)";

/// Where Debian and others put General MIDI SoundFonts, tried in order when none is given.
pub const SOUNDFONT_SEARCH: &[&str] = &[
    "/usr/share/sounds/sf2/default-GM.sf2",
    "/usr/share/sounds/sf2/TimGM6mb.sf2",
    "/usr/share/sounds/sf2/FluidR3_GM.sf2",
    "/usr/share/soundfonts/default.sf2",
];

impl Synth {
    /// Loads a SoundFont file.
    pub fn load(path: &Path) -> Result<Self, MediaError> {
        let mut file = std::fs::File::open(path).map_err(|e| MediaError::Synth(format!("{}: {e}", path.display())))?;
        let font = SoundFont::new(&mut file).map_err(|e| MediaError::Synth(format!("{}: {e:?}", path.display())))?;
        Ok(Self {
            font: Arc::new(font),
            effects: true,
            description: path.display().to_string().into(),
            builtin: false,
        })
    }

    /// The built-in General MIDI font ([`builtin_font`]), generated on first use and
    /// shared after that.
    pub fn builtin() -> Result<Self, MediaError> {
        static FONT: OnceLock<Result<Arc<SoundFont>, String>> = OnceLock::new();
        let font = FONT.get_or_init(|| {
            let bytes = builtin_font::generate();
            SoundFont::new(&mut bytes.as_slice())
                .map(Arc::new)
                .map_err(|e| format!("the built-in SoundFont does not parse: {e:?}"))
        });
        match font {
            Ok(font) => Ok(Self {
                font: font.clone(),
                effects: true,
                description: BUILTIN_DESCRIPTION.into(),
                builtin: true,
            }),
            Err(e) => Err(MediaError::Synth(e.clone())),
        }
    }

    /// The SoundFont to play MIDI through: `soundfont` if given (a file, or
    /// [`BUILTIN_SOUNDFONT`]), else the first of [`SOUNDFONT_SEARCH`] found, else the
    /// built-in font. Fails only for a file that cannot be read as a SoundFont.
    pub fn choose(soundfont: Option<&Path>) -> Result<Self, MediaError> {
        match soundfont {
            Some(path) if path == Path::new(BUILTIN_SOUNDFONT) => Self::builtin(),
            Some(path) => Self::load(path),
            None => match Self::find() {
                Some((_, synth)) => Ok(synth),
                None => Self::builtin(),
            },
        }
    }

    /// Which SoundFont this is: its path, or [`BUILTIN_DESCRIPTION`].
    pub fn description(&self) -> &str {
        &self.description
    }

    /// Whether this is the built-in font.
    pub fn is_builtin(&self) -> bool {
        self.builtin
    }

    /// Turns the synthesizer's reverb and chorus on (the default) or off. Off renders
    /// about 1.7× faster and dry.
    pub fn with_effects(mut self, effects: bool) -> Self {
        self.effects = effects;
        self
    }

    /// The first SoundFont found in `SOUNDFONT_SEARCH`.
    pub fn find() -> Option<(PathBuf, Self)> {
        SOUNDFONT_SEARCH.iter().find_map(|p| {
            let path = Path::new(p);
            Self::load(path).ok().map(|synth| (path.to_path_buf(), synth))
        })
    }

    /// Renders a song placed at `start_beats` on `map`, as interleaved stereo at `sample_rate`.
    /// Event times follow the timeline's tempo map (the file's own tempo is ignored), so a
    /// region stays in time when the tempo changes.
    pub fn render(
        &self,
        song: &MidiSong,
        map: &TempoMap,
        start_beats: f64,
        sample_rate: u32,
    ) -> Result<Vec<f32>, MediaError> {
        let mut settings = SynthesizerSettings::new(sample_rate as i32);
        settings.enable_reverb_and_chorus = self.effects;
        let mut synth = Synthesizer::new(&self.font, &settings).map_err(|e| MediaError::Synth(format!("{e:?}")))?;
        let origin = map.sample_at(start_beats, sample_rate);
        let end = song
            .events
            .last()
            .map(|e| map.sample_at(start_beats + e.beats, sample_rate) - origin)
            .unwrap_or(0);
        if end as f64 / sample_rate as f64 > MAX_SECONDS {
            return Err(MediaError::TooLong(end as f64 / sample_rate as f64));
        }
        // Room for the tail too, so the buffer never grows (and doubles) while rendering it.
        let mut out = Vec::with_capacity((end + tail_frames(sample_rate)) as usize * 2);
        let mut left = vec![0.0f32; 1024];
        let mut right = vec![0.0f32; 1024];
        let mut cursor: u64 = 0;
        let mut render = |frames: usize, out: &mut Vec<f32>, synth: &mut Synthesizer| -> f32 {
            let mut peak = 0.0f32;
            let mut remaining = frames;
            while remaining > 0 {
                let n = remaining.min(left.len());
                synth.render(&mut left[..n], &mut right[..n]);
                for i in 0..n {
                    out.push(left[i]);
                    out.push(right[i]);
                    peak = peak.max(left[i].abs()).max(right[i].abs());
                }
                remaining -= n;
            }
            peak
        };
        for event in &song.events {
            let at = map.sample_at(start_beats + event.beats, sample_rate) - origin;
            if at > cursor {
                render((at - cursor) as usize, &mut out, &mut synth);
                cursor = at;
            }
            let [status, a, b] = event.bytes;
            synth.process_midi_message((status & 0x0F) as i32, (status & 0xF0) as i32, a as i32, b as i32);
        }
        // Let the last notes ring out, until silence or MAX_TAIL_SECONDS.
        let block = (sample_rate / 50).max(1) as usize;
        let max_tail = (MAX_TAIL_SECONDS * sample_rate as f64) as usize;
        let mut tail = 0;
        synth.note_off_all(false);
        while tail < max_tail {
            if render(block, &mut out, &mut synth) < SILENCE {
                break;
            }
            tail += block;
        }
        out.shrink_to_fit();
        Ok(out)
    }
}
