//! Offline render: a range of the timeline mixed to a WAV as fast as the machine goes,
//! with the same mixer the real-time side uses, so what it renders is what plays.

use std::io::Cursor;

use hooteproto::Status;

use crate::engine::playhead::{Arrangement, mix};
use crate::media::MAX_SECONDS;

/// A rendered range.
pub struct Rendered {
    /// The WAV file (32-bit float, stereo).
    pub wav: Vec<u8>,
    /// Frames in it.
    pub frames: u64,
    /// The frame on the timeline's clock where it starts.
    pub start_frame: u64,
}

/// Frames mixed per step.
const CHUNK: usize = 8192;

/// Renders beats `from..to` of `arrangement` (`to == 0`: to the end of the last region).
pub fn render(arrangement: &Arrangement, from: f64, to: f64) -> Result<Rendered, Status> {
    let rate = arrangement.sample_rate;
    if !from.is_finite() || from < 0.0 || !to.is_finite() || to < 0.0 {
        return Err(Status::invalid_argument(format!("cannot render {from}..{to} beats")));
    }
    let start_frame = arrangement.frame_at(from);
    let end_frame = if to == 0.0 {
        let end = arrangement.clips.iter().map(|c| c.end()).max().unwrap_or(0);
        if end <= start_frame {
            return Err(Status::invalid_argument(
                "nothing sounds after from_beats; place a region first or give to_beats",
            ));
        }
        end
    } else if to <= from {
        return Err(Status::invalid_argument(format!(
            "to_beats ({to}) must be after from_beats ({from})"
        )));
    } else {
        arrangement.frame_at(to)
    };
    let frames = end_frame - start_frame;
    if frames as f64 / rate as f64 > MAX_SECONDS {
        return Err(Status::invalid_argument(format!(
            "the range lasts {:.0} s; renders are limited to {MAX_SECONDS} s",
            frames as f64 / rate as f64
        )));
    }
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: rate,
        bits_per_sample: 32,
        sample_format: hound::SampleFormat::Float,
    };
    let mut wav = Vec::with_capacity(frames as usize * 8 + 64);
    {
        let mut writer = hound::WavWriter::new(Cursor::new(&mut wav), spec)
            .map_err(|e| Status::internal(format!("WAV writer: {e}")))?;
        let mut buffer = vec![0.0f32; CHUNK * 2];
        let mut at = start_frame;
        while at < end_frame {
            let n = ((end_frame - at) as usize).min(CHUNK);
            let block = &mut buffer[..n * 2];
            block.fill(0.0);
            mix(&arrangement.clips, at, block);
            for &sample in block.iter() {
                writer
                    .write_sample(sample)
                    .map_err(|e| Status::internal(format!("WAV writer: {e}")))?;
            }
            at += n as u64;
        }
        writer
            .finalize()
            .map_err(|e| Status::internal(format!("WAV writer: {e}")))?;
    }
    Ok(Rendered {
        wav,
        frames,
        start_frame,
    })
}
