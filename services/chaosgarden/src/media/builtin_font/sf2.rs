//! A SoundFont 2.01 writer: just what the built-in font needs (mono 16-bit samples,
//! instruments and presets made of zones of generators, no modulators).

/// Generator operators (SoundFont 2.01, section 8.1.2).
pub mod op {
    pub const PAN: u16 = 17;
    pub const INITIAL_FILTER_FC: u16 = 8;
    pub const DELAY_VIB_LFO: u16 = 23;
    pub const FREQ_VIB_LFO: u16 = 24;
    pub const VIB_LFO_TO_PITCH: u16 = 6;
    pub const ATTACK_VOL_ENV: u16 = 34;
    pub const DECAY_VOL_ENV: u16 = 36;
    pub const SUSTAIN_VOL_ENV: u16 = 37;
    pub const RELEASE_VOL_ENV: u16 = 38;
    pub const KEYNUM_TO_VOL_ENV_DECAY: u16 = 40;
    pub const INSTRUMENT: u16 = 41;
    pub const KEY_RANGE: u16 = 43;
    pub const INITIAL_ATTENUATION: u16 = 48;
    pub const COARSE_TUNE: u16 = 51;
    pub const FINE_TUNE: u16 = 52;
    pub const SAMPLE_ID: u16 = 53;
    pub const SAMPLE_MODES: u16 = 54;
    pub const SCALE_TUNING: u16 = 56;
    pub const EXCLUSIVE_CLASS: u16 = 57;
}

/// Zeros after each sample's data (the format's minimum, room for interpolation).
const GUARD: usize = 46;

/// A generator: an operator and its amount (signed, or a range as low | high << 8).
#[derive(Debug, Clone, Copy)]
pub struct Gen(pub u16, pub u16);

impl Gen {
    /// A signed amount (timecents, centibels, cents, tenths of a percent).
    pub fn signed(op: u16, amount: i32) -> Self {
        Gen(op, amount.clamp(i16::MIN as i32, i16::MAX as i32) as i16 as u16)
    }

    /// A key range, both ends included.
    pub fn keys(low: u8, high: u8) -> Self {
        Gen(op::KEY_RANGE, low as u16 | (high as u16) << 8)
    }
}

/// Seconds as timecents (1200 × log2 s), the unit of envelope and LFO times.
pub fn timecents(seconds: f64) -> i32 {
    (1200.0 * seconds.max(0.001).log2()).round() as i32
}

/// One mono sample.
pub struct Sample {
    pub name: &'static str,
    /// The waveform, -1.0..=1.0.
    pub data: Vec<f32>,
    /// Loop start and end (exclusive), as offsets into `data`.
    pub looped: Option<(usize, usize)>,
    pub rate: u32,
    /// The MIDI key the data sounds at, played back unchanged.
    pub root: u8,
    /// Cents to add to be in tune.
    pub correction: i8,
}

/// A zone of an instrument: its generators (key range first, if any) and its sample.
pub struct InstrumentZone {
    pub gens: Vec<Gen>,
    pub sample: u16,
}

/// An instrument: generators every zone shares (its global zone), and its zones.
pub struct Instrument {
    pub name: &'static str,
    pub global: Vec<Gen>,
    pub zones: Vec<InstrumentZone>,
}

/// A preset: a bank and program, and the one instrument it plays.
pub struct Preset {
    pub name: &'static str,
    pub bank: u16,
    pub program: u16,
    pub instrument: u16,
}

/// A SoundFont being assembled.
#[derive(Default)]
pub struct Builder {
    samples: Vec<Sample>,
    instruments: Vec<Instrument>,
    presets: Vec<Preset>,
}

impl Builder {
    /// Adds a sample, returning its index.
    pub fn sample(&mut self, sample: Sample) -> u16 {
        self.samples.push(sample);
        (self.samples.len() - 1) as u16
    }

    /// Adds an instrument, returning its index.
    pub fn instrument(&mut self, instrument: Instrument) -> u16 {
        self.instruments.push(instrument);
        (self.instruments.len() - 1) as u16
    }

    /// Adds a preset.
    pub fn preset(&mut self, preset: Preset) {
        self.presets.push(preset);
    }

    /// The SoundFont file's bytes.
    pub fn write(&self, name: &str, comment: &str) -> Vec<u8> {
        let mut out = Vec::new();
        riff(&mut out, b"RIFF", b"sfbk", |out| {
            riff(out, b"LIST", b"INFO", |out| {
                chunk(out, b"ifil", |out| {
                    out.extend_from_slice(&2u16.to_le_bytes());
                    out.extend_from_slice(&1u16.to_le_bytes());
                });
                text(out, b"isng", "EMU8000");
                text(out, b"INAM", name);
                text(out, b"ICMT", comment);
                text(out, b"ISFT", concat!("chaosgarden ", env!("CARGO_PKG_VERSION")));
            });
            riff(out, b"LIST", b"sdta", |out| self.write_samples(out));
            riff(out, b"LIST", b"pdta", |out| self.write_parameters(out));
        });
        out
    }

    fn write_samples(&self, out: &mut Vec<u8>) {
        chunk(out, b"smpl", |out| {
            for sample in &self.samples {
                for &v in &sample.data {
                    let v = (v.clamp(-1.0, 1.0) * i16::MAX as f32).round() as i16;
                    out.extend_from_slice(&v.to_le_bytes());
                }
                out.extend(std::iter::repeat_n(0u8, GUARD * 2));
            }
        });
    }

    fn write_parameters(&self, out: &mut Vec<u8>) {
        // Presets: one zone each, holding only its instrument.
        chunk(out, b"phdr", |out| {
            for (i, preset) in self.presets.iter().enumerate() {
                name20(out, preset.name);
                out.extend_from_slice(&preset.program.to_le_bytes());
                out.extend_from_slice(&preset.bank.to_le_bytes());
                out.extend_from_slice(&(i as u16).to_le_bytes());
                out.extend_from_slice(&[0; 12]);
            }
            name20(out, "EOP");
            out.extend_from_slice(&[0; 4]);
            out.extend_from_slice(&(self.presets.len() as u16).to_le_bytes());
            out.extend_from_slice(&[0; 12]);
        });
        chunk(out, b"pbag", |out| {
            for i in 0..=self.presets.len() {
                bag(out, i);
            }
        });
        chunk(out, b"pmod", |out| out.extend_from_slice(&[0; 10]));
        chunk(out, b"pgen", |out| {
            for preset in &self.presets {
                generator(out, Gen(op::INSTRUMENT, preset.instrument));
            }
            generator(out, Gen(0, 0));
        });
        // Instruments: the global zone (when there is one), then a zone per sample.
        let mut bags = 0;
        let mut gens = Vec::new();
        let mut bag_starts = Vec::new();
        chunk(out, b"inst", |out| {
            for instrument in &self.instruments {
                name20(out, instrument.name);
                out.extend_from_slice(&(bags as u16).to_le_bytes());
                if !instrument.global.is_empty() {
                    bag_starts.push(gens.len());
                    gens.extend_from_slice(&instrument.global);
                    bags += 1;
                }
                for zone in &instrument.zones {
                    bag_starts.push(gens.len());
                    gens.extend_from_slice(&zone.gens);
                    gens.push(Gen(op::SAMPLE_ID, zone.sample));
                    bags += 1;
                }
            }
            name20(out, "EOI");
            out.extend_from_slice(&(bags as u16).to_le_bytes());
        });
        bag_starts.push(gens.len());
        chunk(out, b"ibag", |out| {
            for start in &bag_starts {
                bag(out, *start);
            }
        });
        chunk(out, b"imod", |out| out.extend_from_slice(&[0; 10]));
        chunk(out, b"igen", |out| {
            for g in &gens {
                generator(out, *g);
            }
            generator(out, Gen(0, 0));
        });
        chunk(out, b"shdr", |out| {
            let mut start = 0usize;
            for sample in &self.samples {
                let end = start + sample.data.len();
                let (loop_start, loop_end) = sample.looped.unwrap_or((0, 0));
                name20(out, sample.name);
                for v in [start, end, start + loop_start, start + loop_end] {
                    out.extend_from_slice(&(v as u32).to_le_bytes());
                }
                out.extend_from_slice(&sample.rate.to_le_bytes());
                out.push(sample.root);
                out.push(sample.correction as u8);
                out.extend_from_slice(&0u16.to_le_bytes()); // no linked sample
                out.extend_from_slice(&1u16.to_le_bytes()); // mono
                start = end + GUARD;
            }
            name20(out, "EOS");
            out.extend_from_slice(&[0; 26]);
        });
    }
}

/// A chunk: its id, its size, its body (padded to an even length).
fn chunk(out: &mut Vec<u8>, id: &[u8; 4], body: impl FnOnce(&mut Vec<u8>)) {
    out.extend_from_slice(id);
    let at = out.len();
    out.extend_from_slice(&[0; 4]);
    body(out);
    let size = out.len() - at - 4;
    out[at..at + 4].copy_from_slice(&(size as u32).to_le_bytes());
    if size % 2 == 1 {
        out.push(0);
    }
}

/// A RIFF or LIST chunk of `kind`.
fn riff(out: &mut Vec<u8>, id: &[u8; 4], kind: &[u8; 4], body: impl FnOnce(&mut Vec<u8>)) {
    chunk(out, id, |out| {
        out.extend_from_slice(kind);
        body(out);
    });
}

/// An INFO string: zero-terminated, padded to an even length.
fn text(out: &mut Vec<u8>, id: &[u8; 4], value: &str) {
    let mut body: Vec<u8> = value.bytes().filter(|b| (32..127).contains(b)).collect();
    body.push(0);
    if body.len() % 2 == 1 {
        body.push(0);
    }
    chunk(out, id, |out| out.extend_from_slice(&body));
}

/// A 20-byte name field (at most 19 characters and a zero).
fn name20(out: &mut Vec<u8>, name: &str) {
    let mut field = [0u8; 20];
    for (slot, b) in field.iter_mut().zip(name.bytes().take(19)) {
        *slot = b;
    }
    out.extend_from_slice(&field);
}

fn bag(out: &mut Vec<u8>, generator_index: usize) {
    out.extend_from_slice(&(generator_index as u16).to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
}

fn generator(out: &mut Vec<u8>, Gen(op, amount): Gen) {
    out.extend_from_slice(&op.to_le_bytes());
    out.extend_from_slice(&amount.to_le_bytes());
}
