//! The null backend: no sound card, but a real-time clock. A thread renders one block per
//! block-duration against absolute deadlines (start + frames / rate), so the clock never
//! drifts, markers fire on time, and the audio is discarded. When the machine stalls the
//! thread, it catches up block by block (as a card's buffer would absorb it); only a stall
//! longer than `MAX_CATCH_UP` counts as an xrun and restarts the clock from now. While the
//! transport is stopped and no command waits, the thread parks (a stopped clock costs
//! nothing) until the engine unparks it with the next command.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::clock::{self, Anchor};
use super::playhead::Playhead;

/// The longest stall the clock catches up from.
const MAX_CATCH_UP: Duration = Duration::from_millis(100);
/// How long the thread parks at most while stopped (commands unpark it at once).
const IDLE_PARK: Duration = Duration::from_millis(500);

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
            super::promote_to_realtime(45);
            let rate = playhead.sample_rate() as u64;
            let mut buffer = vec![0.0f32; block * 2];
            let mut start = Instant::now();
            let mut frames: u64 = 0;
            while !stop.load(Ordering::Relaxed) {
                if playhead.idle() {
                    // Stopped: nothing to hear, so no clock to keep. The engine unparks this
                    // thread with every command (and at shutdown); the clock restarts then.
                    std::thread::park_timeout(IDLE_PARK);
                    if playhead.idle() {
                        continue;
                    }
                    start = Instant::now();
                    frames = 0;
                }
                let deadline = start + Duration::from_nanos(frames * 1_000_000_000 / rate);
                let now = Instant::now();
                if deadline > now {
                    std::thread::sleep(deadline - now);
                } else if now - deadline > MAX_CATCH_UP {
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
