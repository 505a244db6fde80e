//! What the real-time thread tells everyone else, without locks: a seqlock'd snapshot of
//! where the playhead was at the start of the block being played ([`Anchor`]), and a
//! ring of transitions (play, stop, seek, loop wrap, tempo remap) so the marker scheduler
//! sees every one of them in order, even when it falls behind.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering, fence};
use std::time::{Duration, Instant};

/// The instant all `nanos` fields count from.
pub fn base() -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

/// Nanoseconds from [`base`] to `instant`.
pub fn nanos(instant: Instant) -> u64 {
    instant.saturating_duration_since(base()).as_nanos() as u64
}

/// The instant `nanos` after [`base`].
pub fn instant(nanos: u64) -> Instant {
    base() + Duration::from_nanos(nanos)
}

/// The playhead at the start of a block.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Snapshot {
    /// Bumped at every discontinuity (see [`Transition`]).
    pub epoch: u64,
    /// The arrangement version the block was rendered from.
    pub version: u64,
    /// The block's first frame.
    pub frame: u64,
    /// Frames in the block.
    pub block: u64,
    /// When the block's first frame is heard, in [`nanos`].
    pub nanos: u64,
    /// Whether the transport is rolling.
    pub playing: bool,
    /// Commands the real-time side has applied so far.
    pub applied: u64,
}

/// A seqlock over [`Snapshot`]: one writer (the real-time thread, which never waits),
/// any number of readers (which retry on a torn read).
#[derive(Debug, Default)]
pub struct Anchor {
    seq: AtomicU64,
    epoch: AtomicU64,
    version: AtomicU64,
    frame: AtomicU64,
    block: AtomicU64,
    nanos: AtomicU64,
    playing: AtomicU64,
    applied: AtomicU64,
    /// Under- and overruns reported by the backend.
    pub xruns: AtomicU64,
}

impl Anchor {
    /// Publishes a snapshot (real-time safe: a handful of atomic stores).
    pub fn publish(&self, s: &Snapshot) {
        let seq = self.seq.load(Ordering::Relaxed);
        self.seq.store(seq.wrapping_add(1), Ordering::Relaxed);
        fence(Ordering::Release);
        self.epoch.store(s.epoch, Ordering::Relaxed);
        self.version.store(s.version, Ordering::Relaxed);
        self.frame.store(s.frame, Ordering::Relaxed);
        self.block.store(s.block, Ordering::Relaxed);
        self.nanos.store(s.nanos, Ordering::Relaxed);
        self.playing.store(s.playing as u64, Ordering::Relaxed);
        self.applied.store(s.applied, Ordering::Relaxed);
        self.seq.store(seq.wrapping_add(2), Ordering::Release);
    }

    /// The latest consistent snapshot.
    pub fn read(&self) -> Snapshot {
        loop {
            let before = self.seq.load(Ordering::Acquire);
            if before % 2 == 1 {
                std::hint::spin_loop();
                continue;
            }
            let snapshot = Snapshot {
                epoch: self.epoch.load(Ordering::Relaxed),
                version: self.version.load(Ordering::Relaxed),
                frame: self.frame.load(Ordering::Relaxed),
                block: self.block.load(Ordering::Relaxed),
                nanos: self.nanos.load(Ordering::Relaxed),
                playing: self.playing.load(Ordering::Relaxed) == 1,
                applied: self.applied.load(Ordering::Relaxed),
            };
            fence(Ordering::Acquire);
            if self.seq.load(Ordering::Relaxed) == before {
                return snapshot;
            }
        }
    }
}

/// Why the playhead jumped or stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// Play from a stop, without moving.
    Resume,
    /// Stop.
    Stop,
    /// A seek (while playing or not).
    Seek,
    /// The loop's end was reached; playback continues from its start.
    Wrap,
    /// The tempo map changed; the beat position is kept, the frame moves.
    Remap,
}

/// One discontinuity of the playhead, in beats (which survive tempo changes).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Transition {
    /// The epoch that starts here.
    pub epoch: u64,
    /// What happened.
    pub cause: Cause,
    /// Whether the old epoch was playing.
    pub was_playing: bool,
    /// Where the old epoch ended (exclusive): everything before it was heard.
    pub end_beats: f64,
    /// Whether the new epoch plays.
    pub playing: bool,
    /// Where the new epoch starts.
    pub start_beats: f64,
    /// When it takes effect, in [`nanos`] (a loop wrap can lie a block in the future).
    pub nanos: u64,
}
