//! The marker scheduler: a thread that fires each cue (marker or outgoing MIDI message)
//! when the playhead reaches it, timed against the real-time side's [`Anchor`] rather
//! than by polling, so a marker fires within a fraction of a millisecond of its ideal time.
//!
//! Exactly once: a cursor (in beats, which survive tempo changes) marks what has fired in
//! the current pass. Every discontinuity arrives, in order, as a [`Transition`]; before
//! applying one, cues the old pass crossed but did not yet fire are fired (late, not lost).
//! Resuming without moving keeps the cursor; a seek or loop wrap re-arms from the new
//! position, so a marker fires once per crossing and never twice for one.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hooteproto::v1 as pb;

use super::clock::{self, Anchor, Cause, Snapshot, Transition};
use super::playhead::{Arrangement, CueKind};

/// A marker the playhead crossed.
#[derive(Debug, Clone)]
pub struct Fired {
    /// The marker.
    pub marker: Arc<pb::TimelineMarker>,
    /// The tempo at the marker.
    pub tempo: f64,
    /// When the playhead reached it, in [`clock::nanos`].
    pub ideal_nanos: u64,
    /// When it was fired.
    pub fired_nanos: u64,
    /// Whether it was fired after the fact (a stop, seek or wrap came first).
    pub late: bool,
}

/// Where MIDI cues go (a midir port, or anything else that takes raw messages).
pub trait MidiSink: Send {
    /// Sends one message, now.
    fn send(&mut self, message: &[u8]);
}

/// How long the scheduler sleeps at most between looks at the clock.
const IDLE: Duration = Duration::from_millis(2);
/// How long the scheduler parks at most while the transport is stopped and nothing is in
/// flight (any command unparks it at once; this is only a safety net).
const PARKED: Duration = Duration::from_millis(500);
/// Sleep until this long before a deadline, then spin.
const SPIN: Duration = Duration::from_micros(250);

pub(crate) struct Scheduler {
    pub transitions: rtrb::Consumer<Transition>,
    pub anchor: Arc<Anchor>,
    pub latest: Arc<Mutex<Arc<Arrangement>>>,
    pub fires: tokio::sync::broadcast::Sender<Fired>,
    pub trigger: Option<tokio::sync::mpsc::Sender<Fired>>,
    pub midi: Option<Box<dyn MidiSink>>,
    pub stop: Arc<AtomicBool>,
    /// The last epoch whose transition the scheduler has handled (late markers fired, MIDI
    /// silenced), so a `transport_stop` or `transport_seek` can answer after its effects.
    pub settled: Arc<AtomicU64>,
    /// Commands the control side has queued (the engine unparks this thread after each).
    pub queued: Arc<AtomicU64>,
}

fn sleep_until(deadline: Instant) {
    let now = Instant::now();
    if deadline <= now {
        return;
    }
    if deadline - now > SPIN {
        std::thread::sleep(deadline - now - SPIN);
    }
    // Busy-wait the last stretch: yielding would hand the core to whatever else runs and
    // come back a scheduler slice (milliseconds) later on a loaded machine.
    while Instant::now() < deadline {
        std::hint::spin_loop();
    }
}

impl Scheduler {
    pub fn run(mut self) {
        let mut epoch = 0u64;
        let mut cursor = 0.0f64;
        let mut current: Option<Snapshot> = None;
        let mut pending: Option<Transition> = None;
        while !self.stop.load(Ordering::Relaxed) {
            let arrangement = match self.latest.lock() {
                Ok(latest) => latest.clone(),
                Err(poisoned) => poisoned.into_inner().clone(),
            };
            let now = clock::nanos(Instant::now());
            // Discontinuities that have taken effect, in order.
            while let Some(t) = pending.take().or_else(|| self.transitions.pop().ok()) {
                if t.nanos > now {
                    pending = Some(t);
                    break;
                }
                if t.was_playing {
                    self.fire_late(&arrangement, cursor, t.end_beats, now);
                }
                cursor = if t.cause == Cause::Resume {
                    cursor.max(t.start_beats)
                } else {
                    t.start_beats
                };
                if t.was_playing && t.cause != Cause::Remap {
                    self.all_notes_off();
                }
                epoch = t.epoch;
                current = None;
            }
            self.settled.store(epoch, Ordering::Release);
            let anchor = self.anchor.read();
            if anchor.epoch == epoch {
                current = Some(anchor);
            }
            let wake_by = pending
                .map(|t| clock::instant(t.nanos))
                .unwrap_or_else(|| Instant::now() + IDLE)
                .min(Instant::now() + IDLE);
            let Some(snapshot) = current.filter(|s| s.playing && s.version == arrangement.version) else {
                // Stopped with every command applied and every transition handled: nothing
                // can happen until the next command, which unparks this thread. Otherwise
                // (a command on its way to the real-time side) keep looking every 0.5 ms.
                let idle = !anchor.playing
                    && anchor.epoch == epoch
                    && pending.is_none()
                    && self.transitions.is_empty()
                    && anchor.applied >= self.queued.load(Ordering::Acquire);
                if idle {
                    std::thread::park_timeout(PARKED);
                } else {
                    sleep_until(wake_by.min(Instant::now() + Duration::from_micros(500)));
                }
                continue;
            };
            // Cues in this pass end where a pending transition ends it, or at the loop's end.
            let limit = match (pending, arrangement.loop_range) {
                (Some(t), _) => t.end_beats,
                (None, Some(((_, to), _))) if cursor < to => to,
                _ => f64::INFINITY,
            };
            let horizon = snapshot.frame + 2 * snapshot.block.max(1);
            let rate = arrangement.sample_rate as u64;
            let mut next_due = None;
            let first = arrangement.cues.partition_point(|c| c.beats < cursor);
            for cue in &arrangement.cues[first..] {
                if cue.beats >= limit {
                    break;
                }
                let frame = arrangement.frame_at(cue.beats);
                if frame > horizon {
                    break;
                }
                let due = if frame >= snapshot.frame {
                    snapshot.nanos + (frame - snapshot.frame) * 1_000_000_000 / rate
                } else {
                    snapshot
                        .nanos
                        .saturating_sub((snapshot.frame - frame) * 1_000_000_000 / rate)
                };
                let now = clock::nanos(Instant::now());
                if due > now {
                    next_due = Some(due);
                    break;
                }
                self.fire(&arrangement, &cue.kind, cue.beats, due, now, false);
                cursor = cue.beats.next_up();
            }
            let wake = next_due.map(clock::instant).unwrap_or(wake_by).min(wake_by);
            sleep_until(wake);
        }
        self.all_notes_off();
    }

    fn fire(&mut self, arrangement: &Arrangement, kind: &CueKind, beats: f64, ideal: u64, now: u64, late: bool) {
        match kind {
            CueKind::Marker(marker) => {
                let fired = Fired {
                    marker: marker.clone(),
                    tempo: arrangement.map.tempo_at(beats),
                    ideal_nanos: ideal,
                    fired_nanos: now,
                    late,
                };
                if let Some(trigger) = &self.trigger
                    && trigger.try_send(fired.clone()).is_err()
                {
                    tracing::warn!(marker = %marker.marker_id, "the trigger queue is full; this marker is not sent to Luanette");
                }
                let _ = self.fires.send(fired);
            }
            CueKind::Midi(event) => {
                if !late && let Some(midi) = &mut self.midi {
                    midi.send(&event.bytes[..event.len as usize]);
                }
            }
        }
    }

    fn fire_late(&mut self, arrangement: &Arrangement, from: f64, to: f64, now: u64) {
        let first = arrangement.cues.partition_point(|c| c.beats < from);
        for cue in &arrangement.cues[first..] {
            if cue.beats >= to {
                break;
            }
            self.fire(arrangement, &cue.kind, cue.beats, now, now, true);
        }
    }

    fn all_notes_off(&mut self) {
        if let Some(midi) = &mut self.midi {
            for channel in 0..16u8 {
                midi.send(&[0xB0 | channel, 123, 0]);
            }
        }
    }
}
