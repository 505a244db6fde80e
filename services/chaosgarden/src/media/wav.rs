//! WAV files: the header checked against limits and the file's size ([`WavFile`]), decoding
//! to stereo, and the outline drawn from the samples ([`WavFile::peaks`]).

use std::io::Read;
use std::sync::Arc;

use super::{Audio, FRAME_BYTES, MAX_CHANNELS, MAX_SAMPLE_RATE, MAX_SECONDS, MIN_SAMPLE_RATE, MediaError};

/// A WAV whose header has been read and checked, its samples not yet decoded: its rate is
/// within [`MIN_SAMPLE_RATE`]..=[`MAX_SAMPLE_RATE`], it has at most [`MAX_CHANNELS`]
/// channels, it lasts at most [`MAX_SECONDS`], and the file really holds the samples its
/// header declares. [`WavFile::decoded_bytes`] is what [`WavFile::decode`] will allocate.
pub struct WavFile<R: Read> {
    reader: hound::WavReader<R>,
}

impl<R: Read> WavFile<R> {
    /// Reads and checks the header of a WAV that is `size` bytes long in all.
    pub fn open(input: R, size: u64) -> Result<Self, MediaError> {
        let reader = hound::WavReader::new(input).map_err(wav_error)?;
        let spec = reader.spec();
        if !(MIN_SAMPLE_RATE..=MAX_SAMPLE_RATE).contains(&spec.sample_rate) {
            return Err(MediaError::SampleRate(spec.sample_rate));
        }
        if spec.channels == 0 {
            return Err(MediaError::Wav("the header says 0 channels".into()));
        }
        if spec.channels > MAX_CHANNELS {
            return Err(MediaError::Channels(spec.channels));
        }
        // The least the declared samples can take (hound has checked the container size
        // holds `bits_per_sample`).
        let declared = reader.len() as u64 * (spec.bits_per_sample as u64).div_ceil(8);
        if declared > size {
            return Err(MediaError::Truncated { declared, actual: size });
        }
        let seconds = reader.duration() as f64 / spec.sample_rate as f64;
        if seconds > MAX_SECONDS {
            return Err(MediaError::TooLong(seconds));
        }
        Ok(Self { reader })
    }

    /// Frames per second.
    pub fn sample_rate(&self) -> u32 {
        self.reader.spec().sample_rate
    }

    /// Frames the header declares (checked against the file's size).
    pub fn frames(&self) -> u64 {
        self.reader.duration() as u64
    }

    /// Bytes the decoded audio will take.
    pub fn decoded_bytes(&self) -> u64 {
        self.frames() * FRAME_BYTES
    }

    /// Decodes to interleaved stereo (mono doubled, channels past the second dropped), and
    /// hands back the input positioned after the samples.
    pub fn decode(mut self) -> Result<(Audio, R), MediaError> {
        let spec = self.reader.spec();
        let channels = spec.channels as usize;
        let mut samples = Vec::with_capacity(self.frames() as usize * 2);
        match spec.sample_format {
            hound::SampleFormat::Float => stereo(self.reader.samples::<f32>(), channels, &mut samples)?,
            hound::SampleFormat::Int => {
                let scale = 1.0 / (1u64 << (spec.bits_per_sample.clamp(1, 32) - 1)) as f32;
                let scaled = self.reader.samples::<i32>().map(|s| s.map(|v| v as f32 * scale));
                stereo(scaled, channels, &mut samples)?
            }
        }
        let audio = Audio {
            sample_rate: spec.sample_rate,
            samples: Arc::new(samples),
        };
        Ok((audio, self.reader.into_inner()))
    }
}

impl<R: Read> WavFile<R> {
    /// The waveform's outline for drawing: `buckets` (at least 1) spans of equal length,
    /// each the lowest and highest sample over all channels. Streams the samples in blocks
    /// (memory is the buckets and one block, whatever the file's length), decoding them in
    /// bulk rather than one `Result` per sample: ten times hound's iterator. Also the RMS of
    /// every sample, for playing takes at the same loudness.
    ///
    /// Returns the reader too, standing after the samples: read it to its end to have a
    /// verifying reader check the whole object.
    pub fn peaks(self, buckets: usize) -> Result<(Outline, R), MediaError> {
        let spec = self.reader.spec();
        let channels = spec.channels.max(1) as u64;
        let frames = self.frames().max(1);
        let total = self.reader.len() as u64;
        let buckets = buckets.clamp(1, frames as usize);
        let width = (spec.bits_per_sample as usize).div_ceil(8);
        let decode: fn(&[u8]) -> f32 = match (spec.sample_format, width) {
            (hound::SampleFormat::Float, 4) => |b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            (hound::SampleFormat::Int, 1) => |b| (b[0] as f32 - 128.0) / 128.0,
            (hound::SampleFormat::Int, 2) => |b| i16::from_le_bytes([b[0], b[1]]) as f32 / 32_768.0,
            (hound::SampleFormat::Int, 3) => |b| i32::from_le_bytes([0, b[0], b[1], b[2]]) as f32 / 2_147_483_648.0,
            (hound::SampleFormat::Int, 4) => |b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f32 / 2_147_483_648.0,
            (format, _) => {
                return Err(MediaError::Wav(format!(
                    "{format:?} samples of {} bits are not read",
                    spec.bits_per_sample
                )));
            }
        };
        // hound has read the header: the input now stands at the first sample.
        let mut input = self.reader.into_inner();
        let mut peaks = vec![[f32::INFINITY, f32::NEG_INFINITY]; buckets];
        let mut block = vec![0u8; (64 * 1024 / width) * width];
        let mut index = 0u64;
        let mut squares = 0.0f64;
        while index < total {
            let want = (((total - index) as usize).saturating_mul(width)).min(block.len());
            input.read_exact(&mut block[..want]).map_err(|e| {
                if cas::status::is_store_failure(&e) {
                    MediaError::Read(e)
                } else {
                    MediaError::Wav(format!("the samples end early: {e}"))
                }
            })?;
            for sample in block[..want].chunks_exact(width) {
                let value = decode(sample);
                squares += (value as f64) * (value as f64);
                let bucket = ((index / channels) * buckets as u64 / frames) as usize;
                if let Some(peak) = peaks.get_mut(bucket) {
                    peak[0] = peak[0].min(value);
                    peak[1] = peak[1].max(value);
                }
                index += 1;
            }
        }
        for peak in &mut peaks {
            if peak[0] > peak[1] {
                *peak = [0.0, 0.0];
            }
        }
        let rms = (squares / total.max(1) as f64).sqrt() as f32;
        Ok((Outline { peaks, rms }, input))
    }
}

/// hound's error: the store's failure to give the bytes is [`MediaError::Read`]; a file that
/// ends early or does not decode is the file's fault.
fn wav_error(error: hound::Error) -> MediaError {
    match error {
        hound::Error::IoError(e) if cas::status::is_store_failure(&e) => MediaError::Read(e),
        other => MediaError::Wav(other.to_string()),
    }
}

/// A WAV's outline: [`WavFile::peaks`].
#[derive(Debug, Clone, PartialEq)]
pub struct Outline {
    /// Lowest and highest sample in each bucket.
    pub peaks: Vec<[f32; 2]>,
    /// Root mean square of every sample (0 to 1).
    pub rms: f32,
}

/// Keeps the first two channels of interleaved `samples` (doubling mono) in `out`.
fn stereo(
    samples: impl Iterator<Item = Result<f32, hound::Error>>,
    channels: usize,
    out: &mut Vec<f32>,
) -> Result<(), MediaError> {
    let mut left = 0.0;
    for (i, sample) in samples.enumerate() {
        let sample = sample.map_err(wav_error)?;
        match i % channels {
            0 if channels == 1 => {
                out.push(sample);
                out.push(sample);
            }
            0 => left = sample,
            1 => {
                out.push(left);
                out.push(sample);
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use super::*;

    /// A WAV of `frames` frames in this format, its samples a ramp with a spike.
    fn wav(spec: hound::WavSpec, frames: u32) -> Vec<u8> {
        let mut bytes = Vec::new();
        let mut writer = hound::WavWriter::new(Cursor::new(&mut bytes), spec).expect("writer");
        for i in 0..frames * spec.channels as u32 {
            let x = (i as f32 / (frames * spec.channels as u32) as f32) * 1.6 - 0.8;
            let x = if i == 777 { 0.95 } else { x };
            match (spec.sample_format, spec.bits_per_sample) {
                (hound::SampleFormat::Float, _) => writer.write_sample(x).expect("sample"),
                (_, 8) => writer.write_sample((x * 127.0) as i8).expect("sample"),
                (_, 16) => writer.write_sample((x * 32_767.0) as i16).expect("sample"),
                (_, bits) => writer
                    .write_sample((x * ((1i64 << (bits - 1)) - 1) as f32) as i32)
                    .expect("sample"),
            }
        }
        writer.finalize().expect("finalize");
        bytes
    }

    #[test]
    fn peaks_match_the_samples_hound_decodes_in_every_format() {
        for (format, bits, channels) in [
            (hound::SampleFormat::Int, 8, 1),
            (hound::SampleFormat::Int, 16, 2),
            (hound::SampleFormat::Int, 24, 2),
            (hound::SampleFormat::Int, 32, 3),
            (hound::SampleFormat::Float, 32, 2),
        ] {
            let spec = hound::WavSpec {
                channels,
                sample_rate: 8_000,
                bits_per_sample: bits,
                sample_format: format,
            };
            let bytes = wav(spec, 10_000);
            let buckets = 37;
            let outline = WavFile::open(Cursor::new(&bytes), bytes.len() as u64)
                .expect("open")
                .peaks(buckets)
                .expect("peaks")
                .0;
            let peaks = outline.peaks;
            // The reference: every sample through hound, bucketed by frame.
            let mut reader = hound::WavReader::new(Cursor::new(&bytes)).expect("reader");
            let scale = 1.0 / (1u64 << (bits - 1)) as f32;
            let samples: Vec<f32> = match format {
                hound::SampleFormat::Float => reader.samples::<f32>().map(|s| s.expect("s")).collect(),
                hound::SampleFormat::Int => reader.samples::<i32>().map(|s| s.expect("s") as f32 * scale).collect(),
            };
            let mut expected = vec![[f32::INFINITY, f32::NEG_INFINITY]; buckets];
            for (i, sample) in samples.iter().enumerate() {
                let bucket = (i / channels as usize) * buckets / 10_000;
                expected[bucket][0] = expected[bucket][0].min(*sample);
                expected[bucket][1] = expected[bucket][1].max(*sample);
            }
            for (got, want) in peaks.iter().zip(&expected) {
                assert!(
                    (got[0] - want[0]).abs() < 1e-2 && (got[1] - want[1]).abs() < 1e-2,
                    "{format:?} {bits} bits: {got:?} vs {want:?}"
                );
            }
            assert!(peaks.iter().any(|p| p[1] > 0.9), "{format:?} {bits}: the spike shows");
            let rms = (samples.iter().map(|s| (*s as f64).powi(2)).sum::<f64>() / samples.len() as f64).sqrt();
            assert!(
                (outline.rms as f64 - rms).abs() < 1e-2,
                "{format:?} {bits}: rms {} vs {rms}",
                outline.rms
            );
        }
    }

    #[test]
    fn a_wav_whose_samples_end_early_is_refused_by_peaks() {
        let spec = hound::WavSpec {
            channels: 2,
            sample_rate: 8_000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let bytes = wav(spec, 1_000);
        let cut = &bytes[..bytes.len() - 100];
        // The size given is the header's claim, as a lying object would pass the size check.
        let error = WavFile::open(Cursor::new(cut), bytes.len() as u64)
            .expect("header")
            .peaks(10)
            .expect_err("cut short");
        assert!(error.to_string().contains("end early"), "{error}");
    }
}
