//! The built-in General MIDI SoundFont, so MIDI is heard on a machine without one.
//!
//! It is not a file: this code synthesizes it (harmonic single-cycle waveforms, drums from
//! sine sweeps and filtered noise) and writes it as SoundFont 2.01 bytes, the same bytes
//! every time, in a few milliseconds. Being generated here, it is this project's own work,
//! under the project's licence (docs/decisions/0002-builtin-soundfont.md says why).
//!
//! - Bank 0, programs 0–127: one instrument per General MIDI family of eight (a few
//!   programs borrow a neighbouring family's), each a looped waveform in six key ranges
//!   (fewer harmonics higher up, so nothing aliases) shaped by the volume envelope:
//!   pianos, guitars and mallets die away, organs sustain, strings and pads swell.
//! - Bank 128, program 0: a drum kit over keys 27–87 (`drums.rs`).
//!
//! Timbres are simple; a real SoundFont (`--soundfont FILE`, or Debian's
//! `fluid-soundfont-gm`) sounds better and is preferred whenever there is one.

mod drums;
mod sf2;

use std::f64::consts::PI;

use self::sf2::{Builder, Gen, Instrument, InstrumentZone, Preset, Sample, op, timecents};

/// The font's name (its INAM).
pub const NAME: &str = "Hootenanny built-in GM";

/// Sample rate of the tonal waveforms.
const RATE: u32 = 44_100;
/// Samples in one cycle: 44100 / 168 = 262.5 Hz, played as key 60 ...
const CYCLE: usize = 168;
/// ... 6 cents flat: 261.59 Hz, within 0.3 cents of C4 (261.63 Hz).
const CORRECTION: i8 = -6;
/// The key the waveforms sound at.
const ROOT: u8 = 60;
/// The highest key of each range a waveform is built for (the first starts at 0).
const RANGES: [u8; 6] = [59, 71, 83, 95, 107, 127];
/// The most harmonics any waveform has.
const MAX_HARMONICS: usize = 40;
/// Harmonics stop below this frequency at the top of their range (below Nyquist at 44.1 kHz).
const HARMONIC_CEILING_HZ: f64 = 18_000.0;

/// A timbre: the amplitude of harmonic `h` (1 = the fundamental).
struct Wave {
    name: &'static str,
    amplitude: fn(usize) -> f64,
}

const WAVES: [Wave; 11] = [
    Wave {
        name: "piano",
        amplitude: |h| match h {
            1 => 1.0,
            2 => 0.55,
            3 => 0.3,
            _ => (h as f64).powf(-1.4),
        },
    },
    Wave {
        name: "bell",
        amplitude: |h| {
            [1.0, 0.08, 0.3, 0.45, 0.05, 0.15, 0.0, 0.12, 0.0, 0.06]
                .get(h - 1)
                .copied()
                .unwrap_or(0.0)
        },
    },
    Wave {
        name: "organ",
        amplitude: |h| match h {
            1 => 1.0,
            2 => 0.8,
            3 => 0.55,
            4 => 0.45,
            6 => 0.3,
            8 => 0.25,
            10 | 12 => 0.1,
            _ => 0.0,
        },
    },
    Wave {
        name: "pluck",
        amplitude: |h| (PI * h as f64 * 0.18).sin().abs() / h as f64,
    },
    Wave {
        name: "bass",
        amplitude: |h| (h as f64).powi(-2),
    },
    Wave {
        name: "brass",
        amplitude: |h| (h as f64).powf(-0.9),
    },
    Wave {
        name: "strings",
        amplitude: |h| (1.0 + 0.8 * (-((h as f64 - 5.0).powi(2)) / 8.0).exp()) / h as f64,
    },
    Wave {
        name: "soft",
        amplitude: |h| (h as f64).powf(-1.8),
    },
    Wave {
        name: "reed",
        amplitude: |h| if h % 2 == 1 { 1.0 } else { 0.25 } / h as f64,
    },
    Wave {
        name: "flute",
        amplitude: |h| [1.0, 0.3, 0.12, 0.05, 0.03].get(h - 1).copied().unwrap_or(0.0),
    },
    Wave {
        name: "pulse",
        amplitude: |h| (PI * h as f64 * 0.3).sin().abs() / h as f64,
    },
];

/// Indices into [`WAVES`].
const PIANO: usize = 0;
const BELL: usize = 1;
const ORGAN: usize = 2;
const PLUCK: usize = 3;
const BASS: usize = 4;
const BRASS: usize = 5;
const STRINGS: usize = 6;
const SOFT: usize = 7;
const REED: usize = 8;
const FLUTE: usize = 9;
const PULSE: usize = 10;
/// Not in [`WAVES`]: looped white noise (sound effects).
const NOISE: usize = usize::MAX;

/// A tonal instrument: a waveform and how its volume moves.
struct Voice {
    name: &'static str,
    wave: usize,
    /// Seconds to full level.
    attack: f64,
    /// Seconds from full level down 80 dB (or to `sustain_db`, if that comes first).
    decay: f64,
    /// Level held while the key is down, dB below full (100: none; the note dies away).
    sustain_db: f64,
    /// Seconds from note-off down 80 dB.
    release: f64,
    /// How much faster a key decays per key above 60 (timecents per key).
    key_decay: i32,
    /// Vibrato depth in cents (after 0.25 s, at 5.5 Hz).
    vibrato: i32,
}

/// One voice per General MIDI family of eight programs, in program order.
const FAMILIES: [Voice; 16] = [
    voice("Piano", PIANO, 0.002, 7.0, 100.0, 0.3, 25, 0),
    voice("Chromatic Perc", BELL, 0.001, 3.0, 100.0, 0.5, 30, 0),
    voice("Organ", ORGAN, 0.008, 1.0, 0.0, 0.08, 0, 0),
    voice("Guitar", PLUCK, 0.002, 5.0, 100.0, 0.25, 25, 0),
    voice("Bass", BASS, 0.003, 4.0, 100.0, 0.12, 20, 0),
    voice("Strings", STRINGS, 0.15, 1.0, 0.0, 0.4, 0, 12),
    voice("Ensemble", SOFT, 0.3, 1.0, 0.0, 0.6, 0, 6),
    voice("Brass", BRASS, 0.04, 0.6, 3.0, 0.15, 0, 8),
    voice("Reed", REED, 0.03, 1.0, 0.0, 0.1, 0, 8),
    voice("Pipe", FLUTE, 0.06, 1.0, 0.0, 0.15, 0, 10),
    voice("Synth Lead", PULSE, 0.005, 1.0, 0.0, 0.1, 0, 0),
    voice("Synth Pad", SOFT, 0.6, 1.0, 0.0, 1.2, 0, 4),
    voice("Synth FX", BELL, 0.15, 4.0, 10.0, 1.5, 0, 0),
    voice("Ethnic", PLUCK, 0.002, 4.0, 100.0, 0.25, 25, 0),
    voice("Percussive", BELL, 0.001, 1.2, 100.0, 0.2, 20, 0),
    voice("Sound FX", NOISE, 0.08, 1.0, 0.0, 0.5, 0, 0),
];

#[allow(clippy::too_many_arguments)]
const fn voice(
    name: &'static str,
    wave: usize,
    attack: f64,
    decay: f64,
    sustain_db: f64,
    release: f64,
    key_decay: i32,
    vibrato: i32,
) -> Voice {
    Voice {
        name,
        wave,
        attack,
        decay,
        sustain_db,
        release,
        key_decay,
        vibrato,
    }
}

/// The family whose voice a program plays: its own, but for the programs that sound more
/// like another family's.
fn family_of(program: u8) -> usize {
    match program {
        6 | 7 | 15 | 45 | 46 => 3, // harpsichord, clavinet, dulcimer, pizzicato, harp: plucked
        21..=23 | 109 | 111 => 8,  // accordion, harmonica, bandoneon, bagpipe, shanai: reeds
        47 => 4,                   // timpani: a decaying low voice
        110 => 5,                  // fiddle
        _ => program as usize / 8,
    }
}

/// General MIDI's program names (cut to the format's 19 characters where longer).
const PROGRAMS: [&str; 128] = [
    "Acoustic Grand Piano",
    "Bright Acoustic Piano",
    "Electric Grand Piano",
    "Honky-tonk Piano",
    "Electric Piano 1",
    "Electric Piano 2",
    "Harpsichord",
    "Clavinet",
    "Celesta",
    "Glockenspiel",
    "Music Box",
    "Vibraphone",
    "Marimba",
    "Xylophone",
    "Tubular Bells",
    "Dulcimer",
    "Drawbar Organ",
    "Percussive Organ",
    "Rock Organ",
    "Church Organ",
    "Reed Organ",
    "Accordion",
    "Harmonica",
    "Tango Accordion",
    "Acoustic Guitar Nylon",
    "Acoustic Guitar Steel",
    "Electric Guitar Jazz",
    "Electric Guitar Clean",
    "Electric Guitar Muted",
    "Overdriven Guitar",
    "Distortion Guitar",
    "Guitar Harmonics",
    "Acoustic Bass",
    "Electric Bass Finger",
    "Electric Bass Pick",
    "Fretless Bass",
    "Slap Bass 1",
    "Slap Bass 2",
    "Synth Bass 1",
    "Synth Bass 2",
    "Violin",
    "Viola",
    "Cello",
    "Contrabass",
    "Tremolo Strings",
    "Pizzicato Strings",
    "Orchestral Harp",
    "Timpani",
    "String Ensemble 1",
    "String Ensemble 2",
    "Synth Strings 1",
    "Synth Strings 2",
    "Choir Aahs",
    "Voice Oohs",
    "Synth Choir",
    "Orchestra Hit",
    "Trumpet",
    "Trombone",
    "Tuba",
    "Muted Trumpet",
    "French Horn",
    "Brass Section",
    "Synth Brass 1",
    "Synth Brass 2",
    "Soprano Sax",
    "Alto Sax",
    "Tenor Sax",
    "Baritone Sax",
    "Oboe",
    "English Horn",
    "Bassoon",
    "Clarinet",
    "Piccolo",
    "Flute",
    "Recorder",
    "Pan Flute",
    "Blown Bottle",
    "Shakuhachi",
    "Whistle",
    "Ocarina",
    "Lead 1 Square",
    "Lead 2 Sawtooth",
    "Lead 3 Calliope",
    "Lead 4 Chiff",
    "Lead 5 Charang",
    "Lead 6 Voice",
    "Lead 7 Fifths",
    "Lead 8 Bass + Lead",
    "Pad 1 New Age",
    "Pad 2 Warm",
    "Pad 3 Polysynth",
    "Pad 4 Choir",
    "Pad 5 Bowed",
    "Pad 6 Metallic",
    "Pad 7 Halo",
    "Pad 8 Sweep",
    "FX 1 Rain",
    "FX 2 Soundtrack",
    "FX 3 Crystal",
    "FX 4 Atmosphere",
    "FX 5 Brightness",
    "FX 6 Goblins",
    "FX 7 Echoes",
    "FX 8 Sci-fi",
    "Sitar",
    "Banjo",
    "Shamisen",
    "Koto",
    "Kalimba",
    "Bagpipe",
    "Fiddle",
    "Shanai",
    "Tinkle Bell",
    "Agogo",
    "Steel Drums",
    "Woodblock",
    "Taiko Drum",
    "Melodic Tom",
    "Synth Drum",
    "Reverse Cymbal",
    "Guitar Fret Noise",
    "Breath Noise",
    "Seashore",
    "Bird Tweet",
    "Telephone Ring",
    "Helicopter",
    "Applause",
    "Gunshot",
];

/// The whole font, as SoundFont 2.01 bytes (the same every time).
pub fn generate() -> Vec<u8> {
    let mut font = Builder::default();
    // Each waveform in each key range.
    let waves: Vec<[u16; RANGES.len()]> = WAVES
        .iter()
        .enumerate()
        .map(|(i, wave)| add_wave(&mut font, wave, 0x5eed_0000 + i as u64))
        .collect();
    let noise = font.sample(looped_noise());
    let instruments: Vec<u16> = FAMILIES
        .iter()
        .map(|voice| {
            let zones = match voice.wave {
                NOISE => vec![InstrumentZone {
                    gens: vec![],
                    sample: noise,
                }],
                wave => ranges()
                    .zip(waves[wave])
                    .map(|((low, high), sample)| InstrumentZone {
                        gens: vec![Gen::keys(low, high)],
                        sample,
                    })
                    .collect(),
            };
            font.instrument(Instrument {
                name: voice.name,
                global: envelope(voice),
                zones,
            })
        })
        .collect();
    for (program, name) in PROGRAMS.iter().enumerate() {
        font.preset(Preset {
            name,
            bank: 0,
            program: program as u16,
            instrument: instruments[family_of(program as u8)],
        });
    }
    let kit = drums::kit(
        &mut font,
        drums::Borrowed {
            bell: waves[BELL][4],
            whistle: waves[FLUTE][4],
            noise,
        },
    );
    font.preset(Preset {
        name: "Standard Kit",
        bank: 128,
        program: 0,
        instrument: kit,
    });
    font.write(
        NAME,
        "Generated by chaosgarden (Hootenanny), MIT OR Apache-2.0: a small General MIDI set so MIDI is heard without a SoundFont installed",
    )
}

/// The key ranges, low and high key.
fn ranges() -> impl Iterator<Item = (u8, u8)> {
    RANGES.iter().scan(0u8, |low, &high| {
        let range = (*low, high);
        *low = high.saturating_add(1);
        Some(range)
    })
}

/// How many harmonics stay below [`HARMONIC_CEILING_HZ`] at `key`.
fn harmonics_at(key: u8) -> usize {
    let fundamental = RATE as f64 / CYCLE as f64 * 2f64.powf((key as f64 - ROOT as f64) / 12.0);
    ((HARMONIC_CEILING_HZ / fundamental) as usize).clamp(1, MAX_HARMONICS)
}

/// Adds `wave` once per key range (each band-limited for the top of its range), all at one
/// scale: an RMS of 0.4 for the fullest, no peak above 0.95.
fn add_wave(font: &mut Builder, wave: &Wave, seed: u64) -> [u16; RANGES.len()] {
    let mut rng = Rng::new(seed);
    // Harmonic h at sample n: a·sin(2π·hn/CYCLE + φ) = a·cos φ·sin(…) + a·sin φ·cos(…), the
    // sines and cosines from one table.
    let partials: Vec<(f64, f64)> = (1..=MAX_HARMONICS)
        .map(|h| {
            let (phase, amplitude) = (rng.next() * PI, (wave.amplitude)(h));
            (amplitude * phase.cos(), amplitude * phase.sin())
        })
        .collect();
    let table: Vec<(f64, f64)> = (0..CYCLE)
        .map(|k| (2.0 * PI * k as f64 / CYCLE as f64).sin_cos())
        .collect();
    let cycles: Vec<Vec<f64>> = RANGES
        .iter()
        .map(|&top| {
            let harmonics = harmonics_at(top);
            (0..CYCLE)
                .map(|n| {
                    partials[..harmonics]
                        .iter()
                        .enumerate()
                        .map(|(i, (a_cos, a_sin))| {
                            let (sin, cos) = table[(i + 1) * n % CYCLE];
                            a_cos * sin + a_sin * cos
                        })
                        .sum()
                })
                .collect()
        })
        .collect();
    let rms = (cycles[0].iter().map(|v| v * v).sum::<f64>() / CYCLE as f64).sqrt();
    let peak = cycles.iter().flatten().fold(0.0f64, |p, v| p.max(v.abs()));
    let scale = (0.4 / rms.max(1e-9)).min(0.95 / peak.max(1e-9));
    let mut ids = [0; RANGES.len()];
    for (id, cycle) in ids.iter_mut().zip(&cycles) {
        // A cycle before the loop and one after it, so playback starts and interpolates
        // on the waveform itself.
        let data = cycle
            .iter()
            .cycle()
            .take(3 * CYCLE)
            .map(|v| (v * scale) as f32)
            .collect();
        *id = font.sample(Sample {
            name: wave.name,
            data,
            looped: Some((CYCLE, 2 * CYCLE)),
            rate: RATE,
            root: ROOT,
            correction: CORRECTION,
        });
    }
    ids
}

/// A third of a second of white noise, looped after its first 50 ms.
fn looped_noise() -> Sample {
    let mut rng = Rng::new(0x0015_e000);
    let length = RATE as usize / 3;
    let mut highpass = Biquad::highpass(RATE as f64, 200.0, 0.7);
    let mut data: Vec<f64> = (0..length + 8).map(|_| highpass.run(rng.next())).collect();
    normalize(&mut data, 0.9);
    Sample {
        name: "noise",
        data: data.into_iter().map(|v| v as f32).collect(),
        looped: Some((RATE as usize / 20, length)),
        rate: RATE,
        root: ROOT,
        correction: 0,
    }
}

/// A voice's global zone: looping, its envelope and vibrato.
fn envelope(voice: &Voice) -> Vec<Gen> {
    let mut gens = vec![
        Gen::signed(op::ATTACK_VOL_ENV, timecents(voice.attack)),
        Gen::signed(op::DECAY_VOL_ENV, timecents(voice.decay)),
        Gen::signed(op::SUSTAIN_VOL_ENV, (voice.sustain_db * 10.0).round() as i32),
        Gen::signed(op::RELEASE_VOL_ENV, timecents(voice.release)),
        Gen(op::SAMPLE_MODES, 1),
    ];
    if voice.key_decay != 0 {
        gens.push(Gen::signed(op::KEYNUM_TO_VOL_ENV_DECAY, voice.key_decay));
    }
    if voice.vibrato != 0 {
        gens.extend([
            Gen::signed(op::DELAY_VIB_LFO, timecents(0.25)),
            Gen::signed(op::FREQ_VIB_LFO, hz_to_cents(5.5)),
            Gen::signed(op::VIB_LFO_TO_PITCH, voice.vibrato),
        ]);
    }
    gens
}

/// A frequency as the format's absolute cents (relative to 8.176 Hz).
fn hz_to_cents(hz: f64) -> i32 {
    (1200.0 * (hz / 8.176).log2()).round() as i32
}

/// Scales `data` so its peak is `peak`.
fn normalize(data: &mut [f64], peak: f64) {
    let max = data.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    if max > 0.0 {
        data.iter_mut().for_each(|v| *v *= peak / max);
    }
}

/// xorshift64*: the same noise every time.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed | 1)
    }

    /// Uniform in -1.0..1.0.
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let bits = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11;
        bits as f64 / (1u64 << 52) as f64 - 1.0
    }
}

/// A second-order filter (the Audio EQ Cookbook's).
struct Biquad {
    b: [f64; 3],
    a: [f64; 2],
    x: [f64; 2],
    y: [f64; 2],
}

impl Biquad {
    fn new(b: [f64; 3], a: [f64; 3]) -> Self {
        Self {
            b: b.map(|v| v / a[0]),
            a: [a[1] / a[0], a[2] / a[0]],
            x: [0.0; 2],
            y: [0.0; 2],
        }
    }

    fn highpass(rate: f64, hz: f64, q: f64) -> Self {
        let (cos, alpha) = Self::angle(rate, hz, q);
        Self::new(
            [(1.0 + cos) / 2.0, -(1.0 + cos), (1.0 + cos) / 2.0],
            [1.0 + alpha, -2.0 * cos, 1.0 - alpha],
        )
    }

    fn lowpass(rate: f64, hz: f64, q: f64) -> Self {
        let (cos, alpha) = Self::angle(rate, hz, q);
        Self::new(
            [(1.0 - cos) / 2.0, 1.0 - cos, (1.0 - cos) / 2.0],
            [1.0 + alpha, -2.0 * cos, 1.0 - alpha],
        )
    }

    /// Unity gain at `hz`.
    fn bandpass(rate: f64, hz: f64, q: f64) -> Self {
        let (cos, alpha) = Self::angle(rate, hz, q);
        Self::new([alpha, 0.0, -alpha], [1.0 + alpha, -2.0 * cos, 1.0 - alpha])
    }

    fn angle(rate: f64, hz: f64, q: f64) -> (f64, f64) {
        let w = 2.0 * PI * hz / rate;
        (w.cos(), w.sin() / (2.0 * q))
    }

    fn run(&mut self, x: f64) -> f64 {
        let y = self.b[0] * x + self.b[1] * self.x[0] + self.b[2] * self.x[1]
            - self.a[0] * self.y[0]
            - self.a[1] * self.y[1];
        self.x = [x, self.x[0]];
        self.y = [y, self.y[0]];
        y
    }
}
