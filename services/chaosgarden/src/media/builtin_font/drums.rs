//! The built-in kit (bank 128, program 0): kick, snare, clap, side stick, toms pitched by
//! key, closed, pedal and open hi-hat (one exclusive class, so a closed hi-hat cuts an open
//! one), crashes, rides, and hand percussion, over General MIDI's keys 27–87; other keys
//! play a small pitched drum.
//!
//! Each key is a zone of its own: a sample, a fixed pitch (scale tuning 0, the key only
//! chooses), a level, a pan and, for the looped metal and noise, a decay.

use std::f64::consts::PI;

use super::sf2::{Builder, Gen, Instrument, InstrumentZone, Sample, op, timecents};
use super::{Biquad, Rng, normalize};

/// Tonal samples the kit borrows from the melodic instruments.
pub struct Borrowed {
    /// A bell waveform (looped, few harmonics): cowbell, agogo, triangle, bells.
    pub bell: u16,
    /// A flute waveform (looped, few harmonics): whistles.
    pub whistle: u16,
    /// Looped white noise: shakers, guiro, scratches.
    pub noise: u16,
}

/// What sounds a key.
#[derive(Clone, Copy, PartialEq)]
enum Source {
    Kick,
    Snare,
    Clap,
    Rim,
    Tom,
    Perc,
    Metal,
    Noise,
    Bell,
    Whistle,
}

impl Source {
    /// Looped sources sound until their envelope's decay ends them.
    fn looped(self) -> bool {
        matches!(self, Source::Metal | Source::Noise | Source::Bell | Source::Whistle)
    }
}

/// One key of the kit.
#[derive(Clone, Copy)]
struct Hit {
    source: Source,
    /// Pitch from the sample's own, in cents.
    cents: i32,
    /// Seconds to fall 80 dB (looped sources; one-shots ring as long as their sample).
    decay: f64,
    /// Hits of one class on one channel cut each other off (0: none).
    class: u16,
    /// Attenuation in centibels.
    attenuation: i32,
    /// Pan in tenths of a percent, -500 (left) to 500 (right).
    pan: i32,
    /// A low-pass cutoff in Hz (darker cymbals).
    cutoff: Option<f64>,
}

const fn hit(source: Source, cents: i32) -> Hit {
    Hit {
        source,
        cents,
        decay: 0.0,
        class: 0,
        attenuation: 0,
        pan: 0,
        cutoff: None,
    }
}

impl Hit {
    const fn decay(mut self, seconds: f64) -> Self {
        self.decay = seconds;
        self
    }
    const fn class(mut self, class: u16) -> Self {
        self.class = class;
        self
    }
    const fn quieter(mut self, centibels: i32) -> Self {
        self.attenuation = centibels;
        self
    }
    const fn pan(mut self, pan: i32) -> Self {
        self.pan = pan;
        self
    }
    const fn cutoff(mut self, hz: f64) -> Self {
        self.cutoff = Some(hz);
        self
    }
}

/// The hi-hats' exclusive class.
const HI_HAT: u16 = 1;
/// The triangles'.
const TRIANGLE: u16 = 2;

/// What each key from 27 to 87 plays (General MIDI's percussion map).
fn key(key: u8) -> Hit {
    use Source::*;
    match key {
        27 => hit(Rim, 1200),                                                    // High Q
        28 => hit(Clap, 500),                                                    // Slap
        29 => hit(Noise, 0).decay(0.15).quieter(100),                            // Scratch Push
        30 => hit(Noise, -500).decay(0.2).quieter(100),                          // Scratch Pull
        31 => hit(Rim, 700),                                                     // Sticks
        32 => hit(Rim, 1900),                                                    // Square Click
        33 => hit(Rim, 300),                                                     // Metronome Click
        34 => hit(Bell, 2400).decay(1.0).quieter(100),                           // Metronome Bell
        35 => hit(Kick, -200),                                                   // Acoustic Bass Drum
        36 => hit(Kick, 0),                                                      // Bass Drum 1
        37 => hit(Rim, 0),                                                       // Side Stick
        38 => hit(Snare, 0),                                                     // Acoustic Snare
        39 => hit(Clap, 0),                                                      // Hand Clap
        40 => hit(Snare, 300),                                                   // Electric Snare
        41 => hit(Tom, -500).quieter(50).pan(-250),                              // Low Floor Tom
        42 => hit(Metal, 0).decay(0.25).class(HI_HAT).quieter(90).pan(-150),     // Closed Hi-Hat
        43 => hit(Tom, -300).quieter(50).pan(-150),                              // High Floor Tom
        44 => hit(Metal, -200).decay(0.35).class(HI_HAT).quieter(140).pan(-150), // Pedal Hi-Hat
        45 => hit(Tom, 0).quieter(50).pan(-50),                                  // Low Tom
        46 => hit(Metal, 0).decay(2.5).class(HI_HAT).quieter(90).pan(-150),      // Open Hi-Hat
        47 => hit(Tom, 200).quieter(50).pan(50),                                 // Low-Mid Tom
        48 => hit(Tom, 400).quieter(50).pan(150),                                // Hi-Mid Tom
        49 => hit(Metal, -600).decay(3.5).quieter(60).pan(-200),                 // Crash Cymbal 1
        50 => hit(Tom, 700).quieter(50).pan(250),                                // High Tom
        51 => hit(Metal, -300).decay(3.0).quieter(100).pan(200).cutoff(7000.0),  // Ride Cymbal 1
        52 => hit(Metal, -900).decay(2.5).quieter(70).pan(250),                  // Chinese Cymbal
        53 => hit(Bell, 2300).decay(1.5).quieter(120).pan(200),                  // Ride Bell
        54 => hit(Metal, 300).decay(0.4).quieter(110),                           // Tambourine
        55 => hit(Metal, 100).decay(1.5).quieter(70).pan(-250),                  // Splash Cymbal
        56 => hit(Bell, 1300).decay(0.5).quieter(100),                           // Cowbell
        57 => hit(Metal, -400).decay(3.5).quieter(60).pan(250),                  // Crash Cymbal 2
        58 => hit(Noise, 0).decay(0.9).quieter(120),                             // Vibraslap
        59 => hit(Metal, -500).decay(3.0).quieter(100).pan(200).cutoff(6000.0),  // Ride Cymbal 2
        60 => hit(Perc, 700).pan(100),                                           // Hi Bongo
        61 => hit(Perc, 200).pan(100),                                           // Low Bongo
        62 => hit(Perc, 0).pan(-100),                                            // Mute Hi Conga
        63 => hit(Perc, -100).pan(-100),                                         // Open Hi Conga
        64 => hit(Perc, -500).pan(-100),                                         // Low Conga
        65 => hit(Perc, 1000),                                                   // High Timbale
        66 => hit(Perc, 500),                                                    // Low Timbale
        67 => hit(Bell, 1900).decay(0.6).quieter(100),                           // High Agogo
        68 => hit(Bell, 1400).decay(0.6).quieter(100),                           // Low Agogo
        69 => hit(Noise, 0).decay(0.12).quieter(100),                            // Cabasa
        70 => hit(Noise, 500).decay(0.08).quieter(100),                          // Maracas
        71 => hit(Whistle, 3200).decay(0.25).quieter(150),                       // Short Whistle
        72 => hit(Whistle, 3200).decay(1.0).quieter(150),                        // Long Whistle
        73 => hit(Noise, -300).decay(0.12).quieter(100),                         // Short Guiro
        74 => hit(Noise, -300).decay(0.35).quieter(100),                         // Long Guiro
        75 => hit(Rim, 1400),                                                    // Claves
        76 => hit(Perc, 1500),                                                   // Hi Wood Block
        77 => hit(Perc, 1000),                                                   // Low Wood Block
        78 => hit(Perc, 300),                                                    // Mute Cuica
        79 => hit(Perc, -200),                                                   // Open Cuica
        80 => hit(Bell, 3600).decay(0.3).class(TRIANGLE).quieter(120),           // Mute Triangle
        81 => hit(Bell, 3600).decay(2.0).class(TRIANGLE).quieter(120),           // Open Triangle
        82 => hit(Noise, 700).decay(0.1).quieter(100),                           // Shaker
        83 => hit(Metal, 500).decay(0.6).quieter(110),                           // Jingle Bell
        84 => hit(Bell, 3000).decay(2.0).quieter(120),                           // Bell Tree
        85 => hit(Rim, 500),                                                     // Castanets
        86 | 87 => hit(Tom, -1200).quieter(50),                                  // Mute and Open Surdo
        // Outside General MIDI's map: a small drum, a quarter tone per key.
        _ => hit(Perc, (key as i32 - 60) * 50),
    }
}

/// Adds the kit's samples and its instrument; returns the instrument.
pub fn kit(font: &mut Builder, borrowed: Borrowed) -> u16 {
    let kick = font.sample(one_shot("kick", 22_050, 0.5, kick));
    let snare = font.sample(one_shot("snare", 32_000, 0.3, snare));
    let clap = font.sample(one_shot("clap", 32_000, 0.35, clap));
    let rim = font.sample(one_shot("rim", 32_000, 0.07, rim));
    let tom = font.sample(one_shot("tom", 22_050, 0.7, tom));
    let perc = font.sample(one_shot("perc", 22_050, 0.3, perc));
    let metal = font.sample(metal());
    let zones = (0..=127u8)
        .map(|k| {
            let hit = key(k);
            let sample = match hit.source {
                Source::Kick => kick,
                Source::Snare => snare,
                Source::Clap => clap,
                Source::Rim => rim,
                Source::Tom => tom,
                Source::Perc => perc,
                Source::Metal => metal,
                Source::Noise => borrowed.noise,
                Source::Bell => borrowed.bell,
                Source::Whistle => borrowed.whistle,
            };
            let mut gens = vec![Gen::keys(k, k)];
            if hit.pan != 0 {
                gens.push(Gen::signed(op::PAN, hit.pan));
            }
            if hit.attenuation != 0 {
                gens.push(Gen::signed(op::INITIAL_ATTENUATION, hit.attenuation));
            }
            if let Some(hz) = hit.cutoff {
                gens.push(Gen::signed(op::INITIAL_FILTER_FC, super::hz_to_cents(hz)));
            }
            gens.push(Gen::signed(op::COARSE_TUNE, hit.cents / 100));
            gens.push(Gen::signed(op::FINE_TUNE, hit.cents % 100));
            if hit.source.looped() {
                // Dies away over `decay` whether or not the key is let go.
                gens.extend([
                    Gen(op::SAMPLE_MODES, 1),
                    Gen::signed(op::DECAY_VOL_ENV, timecents(hit.decay)),
                    Gen::signed(op::SUSTAIN_VOL_ENV, 1000),
                    Gen::signed(op::RELEASE_VOL_ENV, timecents(hit.decay)),
                ]);
            }
            if hit.class != 0 {
                gens.push(Gen(op::EXCLUSIVE_CLASS, hit.class));
            }
            InstrumentZone { gens, sample }
        })
        .collect();
    font.instrument(Instrument {
        name: "Standard Kit",
        // Fixed pitch per key; one-shots ring out after note-off (release 8 s: their
        // sample ends first).
        global: vec![
            Gen::signed(op::SCALE_TUNING, 0),
            Gen::signed(op::RELEASE_VOL_ENV, timecents(8.0)),
        ],
        zones,
    })
}

/// A sample played once: `seconds` of `shape(t, noise)` at `rate`, peak 0.95, the last
/// 5 ms faded out.
fn one_shot(name: &'static str, rate: u32, seconds: f64, shape: fn(&mut Shaper) -> f64) -> Sample {
    let length = (rate as f64 * seconds) as usize;
    let mut shaper = Shaper {
        rate: rate as f64,
        t: 0.0,
        phase: 0.0,
        rng: Rng::new(name.bytes().fold(0xd3u64, |h, b| h.wrapping_mul(131) ^ b as u64)),
        filters: Vec::new(),
    };
    let mut data: Vec<f64> = (0..length)
        .map(|n| {
            shaper.t = n as f64 / shaper.rate;
            shape(&mut shaper)
        })
        .collect();
    let fade = (rate as usize / 200).min(length);
    for (i, v) in data[length - fade..].iter_mut().enumerate() {
        *v *= 1.0 - (i + 1) as f64 / fade as f64;
    }
    normalize(&mut data, 0.95);
    Sample {
        name,
        data: data.into_iter().map(|v| v as f32).collect(),
        looped: None,
        rate,
        root: 60,
        correction: 0,
    }
}

/// The state a one-shot's shape keeps between samples.
struct Shaper {
    rate: f64,
    /// Seconds from the start.
    t: f64,
    /// A swept oscillator's phase, in radians.
    phase: f64,
    rng: Rng,
    /// Filters, created on the first sample in the order the shape asks for them.
    filters: Vec<Biquad>,
}

impl Shaper {
    /// A sine whose frequency follows `hz` (a sweep keeps its phase continuous).
    fn sweep(&mut self, hz: f64) -> f64 {
        self.phase += 2.0 * PI * hz / self.rate;
        self.phase.sin()
    }

    /// Noise through the `index`th filter (made by `make` the first time).
    fn filtered(&mut self, index: usize, make: impl FnOnce(f64) -> Biquad) -> f64 {
        if self.filters.len() == index {
            self.filters.push(make(self.rate));
        }
        let noise = self.rng.next();
        self.filters[index].run(noise)
    }

    fn sine(&self, hz: f64) -> f64 {
        (2.0 * PI * hz * self.t).sin()
    }

    /// exp(-t / tau): a decay with time constant `tau` seconds, from `start`.
    fn decay(&self, start: f64, tau: f64) -> f64 {
        if self.t < start {
            0.0
        } else {
            (-(self.t - start) / tau).exp()
        }
    }
}

/// A sine falling from about 150 Hz to 48 Hz, with a click.
fn kick(s: &mut Shaper) -> f64 {
    let hz = 48.0 + 100.0 * s.decay(0.0, 0.035);
    let body = s.sweep(hz) * s.decay(0.0, 0.16);
    let click = s.filtered(0, |r| Biquad::lowpass(r, 3000.0, 0.7)) * s.decay(0.0, 0.003);
    body + 0.8 * click
}

/// A short two-mode drum body and a longer burst of bright noise (the snares).
fn snare(s: &mut Shaper) -> f64 {
    let body = (s.sine(185.0) + 0.5 * s.sine(330.0)) * s.decay(0.0, 0.045);
    let wires = s.filtered(0, |r| Biquad::bandpass(r, 4000.0, 0.6)) * s.decay(0.0, 0.075);
    0.6 * body + 2.0 * wires
}

/// Three quick bursts of mid-range noise, then a short tail.
fn clap(s: &mut Shaper) -> f64 {
    let bursts = (0..3).map(|k| s.decay(k as f64 * 0.011, 0.005)).fold(0.0, f64::max);
    let envelope = bursts.max(0.7 * s.decay(0.033, 0.09));
    s.filtered(0, |r| Biquad::bandpass(r, 1200.0, 1.2)) * envelope
}

/// A woody click: two damped high modes and a tick of noise.
fn rim(s: &mut Shaper) -> f64 {
    let modes = 0.7 * s.sine(1750.0) * s.decay(0.0, 0.01) + 0.5 * s.sine(520.0) * s.decay(0.0, 0.02);
    let tick = s.filtered(0, |r| Biquad::highpass(r, 2000.0, 0.7)) * s.decay(0.0, 0.002);
    modes + 0.4 * tick
}

/// A sine settling to 110 Hz, and a thud of low noise.
fn tom(s: &mut Shaper) -> f64 {
    let hz = 110.0 * (1.0 + 0.35 * s.decay(0.0, 0.06));
    let body = s.sweep(hz) * s.decay(0.0, 0.22);
    let thud = s.filtered(0, |r| Biquad::lowpass(r, 1500.0, 0.7)) * s.decay(0.0, 0.02);
    body + 0.3 * thud
}

/// A small hand drum at 400 Hz with an inharmonic overtone.
fn perc(s: &mut Shaper) -> f64 {
    let hz = 400.0 * (1.0 + 0.1 * s.decay(0.0, 0.01));
    let fundamental = s.sweep(hz);
    let overtone = (2.7 * s.phase).sin();
    fundamental * s.decay(0.0, 0.07) + 0.35 * overtone * s.decay(0.0, 0.025)
}

/// Hi-hats and cymbals: six detuned square waves (the TR-808's recipe) and noise, kept
/// above 5 kHz; a steady sound, looped, that the key's envelope shapes.
fn metal() -> Sample {
    const RATE: u32 = 44_100;
    const SQUARES: [f64; 6] = [205.3, 304.4, 369.6, 522.7, 540.0, 800.0];
    let length = RATE as usize * 2 / 5;
    let mut rng = Rng::new(0x00c4_a5e5);
    let mut band = Biquad::bandpass(RATE as f64, 8500.0, 0.9);
    let mut high = Biquad::highpass(RATE as f64, 5500.0, 0.7);
    let mut data: Vec<f64> = (0..length + 8)
        .map(|n| {
            let t = n as f64 / RATE as f64;
            let squares: f64 = SQUARES
                .iter()
                .map(|hz| if (hz * t).fract() < 0.5 { 1.0 } else { -1.0 })
                .sum();
            high.run(band.run(0.65 * squares / 6.0 + 0.5 * rng.next()))
        })
        .collect();
    normalize(&mut data, 0.95);
    Sample {
        name: "metal",
        data: data.into_iter().map(|v| v as f32).collect(),
        looped: Some((RATE as usize / 20, length)),
        rate: RATE,
        root: 60,
        correction: 0,
    }
}
