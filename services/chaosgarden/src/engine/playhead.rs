//! The real-time side: what an audio callback (or the null backend's thread, or nothing at
//! all for offline render) runs every block. It never allocates, locks or blocks: commands
//! arrive on an SPSC ring, arrangements arrive as `Arc`s whose last reference the control
//! side keeps (so dropping one here is a counter decrement, never a free), and what it
//! reports leaves through atomics and another SPSC ring.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use hooteproto::v1 as pb;

use super::clock::{Anchor, Cause, Snapshot, Transition};
use crate::media::MidiEvent;
use crate::time::TempoMap;

/// Audio placed on the sample clock: interleaved stereo from frame `start`.
#[derive(Debug, Clone)]
pub struct Placed {
    /// First frame.
    pub start: u64,
    /// Linear gain.
    pub gain: f32,
    /// Left, right, left, right…
    pub samples: Arc<Vec<f32>>,
}

impl Placed {
    /// One past the last frame.
    pub fn end(&self) -> u64 {
        self.start + (self.samples.len() / 2) as u64
    }
}

/// Something the scheduler does when the playhead reaches a beat.
#[derive(Debug, Clone)]
pub enum CueKind {
    /// Fire a marker (to Luanette and subscribers).
    Marker(Arc<pb::TimelineMarker>),
    /// Send a MIDI message to the MIDI output port.
    Midi(MidiEvent),
}

/// A cue at a beat.
#[derive(Debug, Clone)]
pub struct Cue {
    /// Where.
    pub beats: f64,
    /// What.
    pub kind: CueKind,
}

/// Everything the real-time side and the scheduler need, immutable once built.
#[derive(Debug)]
pub struct Arrangement {
    /// Bumped at every rebuild.
    pub version: u64,
    /// Output frames per second.
    pub sample_rate: u32,
    /// The tempo map.
    pub map: TempoMap,
    /// Audio to play, by start frame.
    pub clips: Vec<Placed>,
    /// The loop, in beats and frames.
    pub loop_range: Option<((f64, f64), (u64, u64))>,
    /// Markers and MIDI messages, by beat.
    pub cues: Vec<Cue>,
}

impl Arrangement {
    /// An empty timeline.
    pub fn empty(sample_rate: u32) -> Self {
        Self {
            version: 0,
            sample_rate,
            map: TempoMap::default(),
            clips: Vec::new(),
            loop_range: None,
            cues: Vec::new(),
        }
    }

    /// The beat position of a frame.
    pub fn beats_at(&self, frame: u64) -> f64 {
        self.map.beats_at_sample(frame, self.sample_rate)
    }

    /// The frame of a beat position.
    pub fn frame_at(&self, beats: f64) -> u64 {
        self.map.sample_at(beats, self.sample_rate)
    }
}

/// Adds every clip's audio for frames `from..from + out.len() / 2` into `out`.
pub fn mix(clips: &[Placed], from: u64, out: &mut [f32]) {
    let to = from + (out.len() / 2) as u64;
    for clip in clips {
        if clip.start >= to {
            break;
        }
        let end = clip.end();
        if end <= from {
            continue;
        }
        let (first, last) = (from.max(clip.start), to.min(end));
        let src = &clip.samples[((first - clip.start) * 2) as usize..((last - clip.start) * 2) as usize];
        let dst = &mut out[((first - from) * 2) as usize..((last - from) * 2) as usize];
        for (d, s) in dst.iter_mut().zip(src) {
            *d += s * clip.gain;
        }
    }
}

/// A request from the control side, applied at the start of the next block.
#[derive(Debug)]
pub enum Command {
    /// Start rolling from the current position.
    Play,
    /// Stop, keeping the position.
    Stop,
    /// Move to a beat.
    Seek(f64),
    /// Switch to a new arrangement (a tempo change keeps the beat position).
    Adopt(Arc<Arrangement>),
}

/// The playhead, owned by whatever drives the audio.
pub struct Playhead {
    commands: rtrb::Consumer<Command>,
    transitions: rtrb::Producer<Transition>,
    anchor: Arc<Anchor>,
    arrangement: Arc<Arrangement>,
    playing: bool,
    frame: u64,
    epoch: u64,
    applied: u64,
}

impl Playhead {
    pub(crate) fn new(
        commands: rtrb::Consumer<Command>,
        transitions: rtrb::Producer<Transition>,
        anchor: Arc<Anchor>,
        arrangement: Arc<Arrangement>,
    ) -> Self {
        Self {
            commands,
            transitions,
            anchor,
            arrangement,
            playing: false,
            frame: 0,
            epoch: 0,
            applied: 0,
        }
    }

    /// The output sample rate.
    pub fn sample_rate(&self) -> u32 {
        self.arrangement.sample_rate
    }

    /// Whether a block would do nothing: stopped, with no command waiting. A backend that
    /// owns its clock (the null one) may then sleep until the control side wakes it.
    pub fn idle(&self) -> bool {
        !self.playing && self.commands.is_empty()
    }

    fn transition(&mut self, cause: Cause, was_playing: bool, end_beats: f64, nanos: u64) {
        self.epoch += 1;
        let transition = Transition {
            epoch: self.epoch,
            cause,
            was_playing,
            end_beats,
            playing: self.playing,
            start_beats: self.arrangement.beats_at(self.frame),
            nanos,
        };
        // The scheduler drains this ring every few milliseconds; a full ring means it is
        // stuck, and waiting here would stall the audio, so the transition is counted lost.
        if self.transitions.push(transition).is_err() {
            self.anchor.xruns.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Renders one block of interleaved stereo into `out`; `nanos` is when its first frame
    /// will be heard (see [`super::clock::nanos`]).
    pub fn process(&mut self, out: &mut [f32], nanos: u64) {
        let frames = (out.len() / 2) as u64;
        let was_playing = self.playing;
        let end_beats = self.arrangement.beats_at(self.frame);
        let (mut seeked, mut remapped) = (false, false);
        while let Ok(command) = self.commands.pop() {
            self.applied += 1;
            match command {
                Command::Play => self.playing = true,
                Command::Stop => self.playing = false,
                Command::Seek(beats) => {
                    self.frame = self.arrangement.frame_at(beats);
                    seeked = true;
                }
                Command::Adopt(arrangement) => {
                    if arrangement.map != self.arrangement.map
                        || arrangement.sample_rate != self.arrangement.sample_rate
                    {
                        let beats = self.arrangement.beats_at(self.frame);
                        self.frame = arrangement.frame_at(beats);
                        remapped = true;
                    }
                    // The control side still holds this Arc, so this is not the last reference.
                    self.arrangement = arrangement;
                }
            }
        }
        let cause = if seeked {
            Some(Cause::Seek)
        } else if remapped {
            Some(Cause::Remap)
        } else if self.playing != was_playing {
            Some(if self.playing { Cause::Resume } else { Cause::Stop })
        } else {
            None
        };
        if let Some(cause) = cause {
            self.transition(cause, was_playing, end_beats, nanos);
        }
        self.anchor.publish(&Snapshot {
            epoch: self.epoch,
            version: self.arrangement.version,
            frame: self.frame,
            block: frames,
            nanos,
            playing: self.playing,
            applied: self.applied,
        });
        out.fill(0.0);
        if !self.playing {
            return;
        }
        let sample_rate = self.arrangement.sample_rate as u64;
        let mut done = 0u64;
        while done < frames {
            let mut n = frames - done;
            let looping = self
                .arrangement
                .loop_range
                .filter(|&(_, (from, to))| self.frame < to && to > from);
            if let Some((_, (_, to))) = looping {
                n = n.min(to - self.frame);
            }
            let arrangement = &self.arrangement;
            mix(
                &arrangement.clips,
                self.frame,
                &mut out[(done * 2) as usize..((done + n) * 2) as usize],
            );
            self.frame += n;
            done += n;
            if let Some(((from_beats, to_beats), (from, to))) = looping
                && self.frame == to
            {
                self.frame = from;
                let at = nanos + done * 1_000_000_000 / sample_rate;
                let _ = from_beats;
                self.transition(Cause::Wrap, true, to_beats, at);
                self.anchor.publish(&Snapshot {
                    epoch: self.epoch,
                    version: self.arrangement.version,
                    frame: self.frame,
                    block: frames - done,
                    nanos: at,
                    playing: true,
                    applied: self.applied,
                });
            }
        }
    }
}
