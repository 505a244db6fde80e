//! Turning CAS objects into sound: WAV files are decoded (and resampled to the output
//! rate), MIDI files are parsed once and rendered through a SoundFont at a region's place
//! on the tempo map. Everything here runs off the real-time thread, ahead of the playhead.
//!
//! Nothing here trusts a header: a WAV's rate, channel count and length are checked (and its
//! declared length against the bytes it really has) before anything is allocated for its
//! samples, and [`WavFile`] says what decoding will cost so the caller can refuse it first.
//!
//! MIDI always has a SoundFont to play through: the one asked for, else a system General
//! MIDI SoundFont, else the small one [`builtin_font`] generates ([`Synth::choose`]).

pub mod builtin_font;
mod synth;
mod wav;

pub use synth::*;
pub use wav::*;

use std::io::Cursor;
use std::sync::Arc;

use hooteproto::v1::RegionKind;

/// The longest region (and offline render) accepted, in seconds.
pub const MAX_SECONDS: f64 = 10.0 * 60.0;
/// The most beats a MIDI file may span (its rendered length is bounded by MAX_SECONDS too).
pub const MAX_MIDI_BEATS: f64 = 10_000.0;
/// The lowest sample rate a WAV may have.
pub const MIN_SAMPLE_RATE: u32 = 8_000;
/// The highest sample rate a WAV may have.
pub const MAX_SAMPLE_RATE: u32 = 384_000;
/// The most channels a WAV may have (the first two are heard).
pub const MAX_CHANNELS: u16 = 64;
/// The largest MIDI file read (real ones are kilobytes).
pub const MAX_MIDI_BYTES: u64 = 4 << 20;
/// The most channel messages a MIDI file may hold.
pub const MAX_MIDI_EVENTS: usize = 500_000;
/// What decoded media may hold in memory by default: 1 GiB.
pub const DEFAULT_BUDGET: u64 = 1 << 30;

/// A media budget as operators write it (`--media-budget`): "1073741824", "1GiB", "512 MiB",
/// "64M", in bytes (units are powers of 1024), at least 1 MiB.
pub fn parse_budget(text: &str) -> Result<u64, String> {
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
/// Bytes one decoded frame takes (stereo f32).
pub const FRAME_BYTES: u64 = 8;

/// What went wrong turning bytes into sound.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    /// Neither a Standard MIDI File nor a WAV.
    #[error("the object is neither a MIDI file (MThd) nor a WAV (RIFF/WAVE); starts with {0:02x?}")]
    UnknownFormat(Vec<u8>),
    /// A MIDI file that does not parse.
    #[error("the MIDI file does not parse: {0}")]
    Midi(String),
    /// A WAV file that does not decode.
    #[error("the WAV does not decode: {0}")]
    Wav(String),
    /// A WAV at a sample rate outside MIN_SAMPLE_RATE..=MAX_SAMPLE_RATE.
    #[error("the WAV's sample rate is {0} Hz; Chaosgarden plays WAVs at {MIN_SAMPLE_RATE} to {MAX_SAMPLE_RATE} Hz")]
    SampleRate(u32),
    /// A WAV with more than MAX_CHANNELS channels.
    #[error("the WAV has {0} channels; at most {MAX_CHANNELS} are accepted")]
    Channels(u16),
    /// A WAV whose header declares more sample data than the file holds.
    #[error("the WAV's header declares {declared} bytes of samples, but the whole file is {actual} bytes")]
    Truncated {
        /// Bytes of samples the header declares.
        declared: u64,
        /// Bytes in the file.
        actual: u64,
    },
    /// A MIDI file larger than MAX_MIDI_BYTES.
    #[error("the MIDI file is {0} bytes; at most {MAX_MIDI_BYTES} are read")]
    MidiTooLarge(u64),
    /// A MIDI file with more than MAX_MIDI_EVENTS channel messages.
    #[error("the MIDI file holds more than {MAX_MIDI_EVENTS} channel messages")]
    TooManyEvents,
    /// Longer than MAX_SECONDS.
    #[error("the material lasts {0:.0} s; regions are limited to {MAX_SECONDS} s")]
    TooLong(f64),
    /// The synthesizer refused its settings.
    #[error("the synthesizer failed: {0}")]
    Synth(String),
    /// The bytes could not be read (the store failed, or they no longer match the object's
    /// name): not the file's fault.
    #[error("the object could not be read: {0}")]
    Read(std::io::Error),
}

/// A channel message from a MIDI file, at a beat offset from the region's start.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MidiEvent {
    /// Beats from the start of the file.
    pub beats: f64,
    /// Status byte (with channel) and up to two data bytes.
    pub bytes: [u8; 3],
    /// How many of `bytes` are used.
    pub len: u8,
}

/// A parsed MIDI file: its channel messages in time order.
#[derive(Debug)]
pub struct MidiSong {
    /// Channel messages, by time.
    pub events: Vec<MidiEvent>,
    /// Beat of the last event (the region's musical length).
    pub length_beats: f64,
}

/// Decoded audio: interleaved stereo frames at `sample_rate`.
#[derive(Debug)]
pub struct Audio {
    /// Frames per second.
    pub sample_rate: u32,
    /// Left, right, left, right… (shared with the clips that play it when no resampling
    /// is needed).
    pub samples: Arc<Vec<f32>>,
}

impl Audio {
    /// Frames (samples per channel).
    pub fn frames(&self) -> u64 {
        (self.samples.len() / 2) as u64
    }

    /// Bytes its samples take.
    pub fn bytes(&self) -> u64 {
        self.frames() * FRAME_BYTES
    }
}

/// A CAS object understood.
#[derive(Debug, Clone)]
pub enum Media {
    /// A Standard MIDI File.
    Midi(Arc<MidiSong>),
    /// A WAV, decoded at its own rate.
    Audio(Arc<Audio>),
}

impl Media {
    /// The region kind on the wire.
    pub fn kind(&self) -> RegionKind {
        match self {
            Media::Midi(_) => RegionKind::Midi,
            Media::Audio(_) => RegionKind::Audio,
        }
    }

    /// Bytes it holds decoded.
    pub fn bytes(&self) -> u64 {
        match self {
            Media::Midi(song) => (song.events.len() * std::mem::size_of::<MidiEvent>()) as u64,
            Media::Audio(audio) => audio.bytes(),
        }
    }
}

/// What an object's first bytes say it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A Standard MIDI File (MThd).
    Midi,
    /// A RIFF/WAVE file.
    Wav,
}

/// Bytes [`sniff`] looks at.
pub const SNIFF_BYTES: usize = 12;

/// Recognises MIDI or WAV from an object's first [`SNIFF_BYTES`] bytes (or all of it, if shorter).
pub fn sniff(head: &[u8]) -> Result<Format, MediaError> {
    if head.starts_with(b"MThd") {
        Ok(Format::Midi)
    } else if head.len() >= 12 && &head[0..4] == b"RIFF" && &head[8..12] == b"WAVE" {
        Ok(Format::Wav)
    } else {
        Err(MediaError::UnknownFormat(head.iter().take(8).copied().collect()))
    }
}

/// Recognises and parses MIDI or WAV bytes (with the limits above; the caller's budget is
/// not consulted: see [`WavFile`] for that).
pub fn parse(bytes: &[u8]) -> Result<Media, MediaError> {
    match sniff(&bytes[..bytes.len().min(SNIFF_BYTES)])? {
        Format::Midi => parse_midi(bytes).map(|song| Media::Midi(Arc::new(song))),
        Format::Wav => {
            let (audio, _) = WavFile::open(Cursor::new(bytes), bytes.len() as u64)?.decode()?;
            Ok(Media::Audio(Arc::new(audio)))
        }
    }
}

/// Parses a Standard MIDI File (at most [`MAX_MIDI_BYTES`] and [`MAX_MIDI_EVENTS`]).
pub fn parse_midi(bytes: &[u8]) -> Result<MidiSong, MediaError> {
    if bytes.len() as u64 > MAX_MIDI_BYTES {
        return Err(MediaError::MidiTooLarge(bytes.len() as u64));
    }
    check_midi_chunks(bytes)?;
    let smf = midly::Smf::parse(bytes).map_err(|e| MediaError::Midi(e.to_string()))?;
    // Ticks to beats. SMPTE-timed files have no beats; they are read at 120 bpm.
    let beats_per_tick = match smf.header.timing {
        midly::Timing::Metrical(ppq) if ppq.as_int() > 0 => 1.0 / ppq.as_int() as f64,
        midly::Timing::Metrical(_) => return Err(MediaError::Midi("the header's ticks per beat is 0".into())),
        midly::Timing::Timecode(fps, subframe) => 2.0 / (fps.as_f32() as f64 * subframe.max(1) as f64),
    };
    let mut events = Vec::new();
    for track in &smf.tracks {
        let mut tick: u64 = 0;
        for event in track {
            tick += event.delta.as_int() as u64;
            if let midly::TrackEventKind::Midi { channel, message } = event.kind {
                if events.len() >= MAX_MIDI_EVENTS {
                    return Err(MediaError::TooManyEvents);
                }
                let beats = tick as f64 * beats_per_tick;
                let ch = channel.as_int();
                let (status, a, b, len) = match message {
                    midly::MidiMessage::NoteOff { key, vel } => (0x80, key.as_int(), vel.as_int(), 3),
                    midly::MidiMessage::NoteOn { key, vel } => (0x90, key.as_int(), vel.as_int(), 3),
                    midly::MidiMessage::Aftertouch { key, vel } => (0xA0, key.as_int(), vel.as_int(), 3),
                    midly::MidiMessage::Controller { controller, value } => {
                        (0xB0, controller.as_int(), value.as_int(), 3)
                    }
                    midly::MidiMessage::ProgramChange { program } => (0xC0, program.as_int(), 0, 2),
                    midly::MidiMessage::ChannelAftertouch { vel } => (0xD0, vel.as_int(), 0, 2),
                    midly::MidiMessage::PitchBend { bend } => {
                        let raw = bend.0.as_int();
                        (0xE0, (raw & 0x7F) as u8, (raw >> 7) as u8, 3)
                    }
                };
                events.push(MidiEvent {
                    beats,
                    bytes: [status | ch, a, b],
                    len,
                });
            }
        }
    }
    // Stable: simultaneous events keep file order (a note-off before the next note-on).
    events.sort_by(|x, y| x.beats.total_cmp(&y.beats));
    let length_beats = events.last().map(|e| e.beats).unwrap_or(0.0);
    if length_beats > MAX_MIDI_BEATS {
        return Err(MediaError::Midi(format!(
            "the file lasts {length_beats:.0} beats; a region holds at most {MAX_MIDI_BEATS} (and {MAX_SECONDS} s once rendered)"
        )));
    }
    Ok(MidiSong { events, length_beats })
}

/// Walks a MIDI file's chunks: each must fit in the file, and the header may not promise
/// more tracks than there are. (midly itself tolerates both, quietly reading less.)
fn check_midi_chunks(bytes: &[u8]) -> Result<(), MediaError> {
    let mut rest = bytes;
    let mut declared_tracks = None;
    let mut tracks = 0u32;
    // Fewer than 8 bytes at the end is padding, not a chunk.
    while rest.len() >= 8 {
        let id = &rest[0..4];
        let len = u32::from_be_bytes([rest[4], rest[5], rest[6], rest[7]]) as u64;
        let available = (rest.len() - 8) as u64;
        if len > available {
            return Err(MediaError::Midi(format!(
                "a {} chunk declares {len} bytes, but only {available} follow",
                String::from_utf8_lossy(id)
            )));
        }
        let body = &rest[8..8 + len as usize];
        match id {
            b"MThd" if body.len() >= 6 => declared_tracks = Some(u16::from_be_bytes([body[2], body[3]])),
            b"MThd" => return Err(MediaError::Midi("the header chunk is shorter than 6 bytes".into())),
            b"MTrk" => tracks += 1,
            _ => {}
        }
        rest = &rest[8 + len as usize..];
    }
    match declared_tracks {
        None => Err(MediaError::Midi("no header chunk (MThd)".into())),
        Some(declared) if declared as u32 > tracks => Err(MediaError::Midi(format!(
            "the header declares {declared} tracks, but the file holds {tracks}"
        ))),
        Some(_) => Ok(()),
    }
}

/// Asks glibc to allocate buffers of 1 MiB and more with their own mmap, always, so freeing
/// decoded audio gives it back to the OS. By default glibc raises that threshold (up to
/// 32 MiB) after freeing a large buffer and then serves buffers below it from its per-thread
/// heaps, whose free top it keeps: a render at 192 kHz then left ~37 MB resident per heap
/// it ran on, even after `malloc_trim`. Process-wide (so also for an embedding process, e.g.
/// `holler up`); called once by [`crate::bind`]. A no-op where the allocator is not glibc's.
pub fn keep_large_buffers_out_of_the_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            // SAFETY: mallopt only changes the allocator's tuning; any thread may call it.
            if unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20) } != 1 {
                tracing::warn!("glibc refused M_MMAP_THRESHOLD; freed audio may stay resident");
            }
        });
    }
}

/// Hands memory the allocator holds free back to the OS (what is left in its heaps below
/// the mmap threshold). Called after a render or a region's removal, never on the
/// real-time side. A no-op where the allocator is not glibc's.
pub fn return_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists; any thread may call it.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Frames `frames` frames at `from` Hz become at `to` Hz (what [`resample`] returns).
pub fn resampled_frames(frames: u64, from: u32, to: u32) -> u64 {
    if from == to {
        return frames;
    }
    let ratio = from as f64 / to as f64;
    (frames as f64 / ratio).floor() as u64
}

/// The audio at another sample rate (linear interpolation; shared, not copied, when the
/// rates match).
pub fn resample(audio: &Audio, sample_rate: u32) -> Audio {
    if audio.sample_rate == sample_rate {
        return Audio {
            sample_rate,
            samples: audio.samples.clone(),
        };
    }
    let frames = resampled_frames(audio.frames(), audio.sample_rate, sample_rate);
    Audio {
        sample_rate,
        samples: Arc::new(resample_span(audio, sample_rate, 0, frames)),
    }
}

/// Output frames `from..to` of [`resample`]`(audio, sample_rate)` (the same values, without
/// computing the rest), clamped to its length.
pub fn resample_span(audio: &Audio, sample_rate: u32, from: u64, to: u64) -> Vec<f32> {
    let to = to.min(resampled_frames(audio.frames(), audio.sample_rate, sample_rate));
    let from = from.min(to);
    let mut samples = Vec::with_capacity((to - from) as usize * 2);
    if audio.sample_rate == sample_rate {
        samples.extend_from_slice(&audio.samples[from as usize * 2..to as usize * 2]);
        return samples;
    }
    let ratio = audio.sample_rate as f64 / sample_rate as f64;
    for i in from as usize..to as usize {
        let at = i as f64 * ratio;
        let j = at.floor() as usize;
        let frac = (at - j as f64) as f32;
        for channel in 0..2 {
            let a = audio.samples[j * 2 + channel];
            let b = audio.samples.get((j + 1) * 2 + channel).copied().unwrap_or(a);
            samples.push(a + (b - a) * frac);
        }
    }
    samples
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_refused_with_what_it_starts_with() {
        let error = parse(b"hello, world").expect_err("not media");
        assert!(error.to_string().contains("neither a MIDI file"), "{error}");
        assert!(matches!(parse(b"MThd\0\0\0\x06junk"), Err(MediaError::Midi(_))));
        assert!(matches!(parse(b"RIFF\0\0\0\0WAVEjunk"), Err(MediaError::Wav(_))));
    }

    #[test]
    fn a_midi_file_longer_than_a_region_is_refused_in_beats() {
        use midly::num::{u4, u7, u15, u28};
        let note = |delta: u32, vel: u8| midly::TrackEvent {
            delta: u28::new(delta),
            kind: midly::TrackEventKind::Midi {
                channel: u4::new(0),
                message: midly::MidiMessage::NoteOn {
                    key: u7::new(60),
                    vel: u7::new(vel),
                },
            },
        };
        let smf = midly::Smf {
            header: midly::Header::new(midly::Format::SingleTrack, midly::Timing::Metrical(u15::new(1))),
            tracks: vec![vec![note(0, 100), note(20_000, 0)]],
        };
        let mut bytes = Vec::new();
        smf.write_std(&mut bytes).expect("write");
        let error = parse(&bytes).expect_err("20,000 beats");
        assert!(error.to_string().contains("20000 beats"), "{error}");
    }

    #[test]
    fn mono_wav_becomes_stereo_and_resamples() {
        let mut bytes = Vec::new();
        {
            let spec = hound::WavSpec {
                channels: 1,
                sample_rate: 24_000,
                bits_per_sample: 16,
                sample_format: hound::SampleFormat::Int,
            };
            let mut writer = hound::WavWriter::new(Cursor::new(&mut bytes), spec).expect("writer");
            for i in 0..2400 {
                writer.write_sample(if i == 0 { i16::MAX } else { 0 }).expect("sample");
            }
            writer.finalize().expect("finalize");
        }
        let Media::Audio(audio) = parse(&bytes).expect("wav") else {
            panic!("a WAV is audio")
        };
        assert_eq!(audio.frames(), 2400);
        assert!((audio.samples[0] - 1.0).abs() < 1e-4 && (audio.samples[1] - 1.0).abs() < 1e-4);
        let up = resample(&audio, 48_000);
        assert_eq!(up.frames(), 4800);
        assert!((up.samples[2] - 0.5).abs() < 1e-3, "halfway between 1 and 0");
    }

    #[test]
    fn a_resampled_span_is_the_same_frames_as_the_whole() {
        let audio = Audio {
            sample_rate: 44_100,
            samples: Arc::new((0..2 * 44_100).map(|i| ((i as f32) * 0.37).sin()).collect()),
        };
        let whole = resample(&audio, 96_000);
        assert_eq!(whole.frames(), resampled_frames(audio.frames(), 44_100, 96_000));
        for (from, to) in [(0, 10), (1_000, 5_000), (95_990, 96_000), (95_990, 200_000)] {
            let span = resample_span(&audio, 96_000, from, to);
            let to = to.min(whole.frames());
            assert_eq!(
                span[..],
                whole.samples[from as usize * 2..to as usize * 2],
                "{from}..{to}"
            );
        }
        let same = resample(&audio, 44_100);
        assert!(Arc::ptr_eq(&same.samples, &audio.samples), "no copy at the same rate");
    }

    #[test]
    fn media_budget_sizes_take_units_and_refuse_nonsense() {
        assert_eq!(parse_budget("1GiB"), Ok(1 << 30));
        assert_eq!(parse_budget("512 MiB"), Ok(512 << 20));
        assert_eq!(parse_budget("64m"), Ok(64 << 20));
        assert_eq!(parse_budget("1073741824"), Ok(1 << 30));
        assert!(parse_budget("12 parsecs").is_err());
        assert!(parse_budget("-1G").is_err());
        assert!(parse_budget("100K").is_err(), "below 1 MiB");
        assert!(parse_budget("99999999999G").is_err(), "overflows");
    }
}
