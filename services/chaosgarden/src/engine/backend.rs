//! The null backend: no sound card, but a real-time clock. A thread renders one block per
//! block-duration against absolute deadlines (start + frames / rate), so the clock never
//! drifts, markers fire on time, and the audio is discarded.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::clock::{self, Anchor};
use super::playhead::Playhead;

pub(super) fn spawn_null(
    mut playhead: Playhead,
    block: usize,
    stop: Arc<AtomicBool>,
    anchor: Arc<Anchor>,
) -> std::io::Result<JoinHandle<()>> {
    let block = block.clamp(16, 8192);
    std::thread::Builder::new()
        .name("chaosgarden-null-audio".into())
        .spawn(move || {
            let rate = playhead.sample_rate() as u64;
            let mut buffer = vec![0.0f32; block * 2];
            let mut start = Instant::now();
            let mut frames: u64 = 0;
            while !stop.load(Ordering::Relaxed) {
                let deadline = start + Duration::from_nanos(frames * 1_000_000_000 / rate);
                let now = Instant::now();
                if deadline > now {
                    std::thread::sleep(deadline - now);
                } else if now - deadline > Duration::from_nanos(block as u64 * 1_000_000_000 / rate) {
                    // More than a block late (the machine stalled us): an underrun on a real
                    // card. Restart the clock from now rather than rush to catch up.
                    anchor.xruns.fetch_add(1, Ordering::Relaxed);
                    start = now;
                    frames = 0;
                    continue;
                }
                let deadline = start + Duration::from_nanos(frames * 1_000_000_000 / rate);
                playhead.process(&mut buffer, clock::nanos(deadline));
                frames += block as u64;
            }
        })
}
