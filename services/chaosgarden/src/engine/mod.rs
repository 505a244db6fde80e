//! The engine: a playhead on a real-time thread (a sound card's callback, or the null
//! backend's clock), the marker scheduler beside it, and the control side that sends them
//! commands and arrangements without ever making them wait.
//!
//! - [`clock`]: the lock-free snapshot and transition ring the real-time side publishes.
//! - [`playhead`]: what runs every block; [`playhead::mix`] is shared with offline render.
//! - [`scheduler`]: fires markers and MIDI cues on time, exactly once per crossing.
//! - `backend`: the null backend; `device` (feature `devices`): cpal and midir.

pub mod clock;
pub mod playhead;
pub mod scheduler;

mod backend;
#[cfg(feature = "devices")]
pub mod device;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hooteproto::Status;
use hooteproto::v1 as pb;

use self::clock::{Anchor, Snapshot, Transition};
use self::playhead::{Arrangement, Command, Playhead};
pub use self::scheduler::{Fired, MidiSink};

/// Commands that may wait for the real-time side at once.
const COMMAND_RING: usize = 256;
/// Transitions the scheduler may be behind by.
const TRANSITION_RING: usize = 1024;

/// Where the audio goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// No sound card: a thread that advances the clock in real time and discards the audio.
    Null,
    /// The default sound card, falling back to `Null` (with a warning) when there is none
    /// or when chaosgarden is built without the `devices` feature.
    Auto,
    /// A sound card whose name contains this text (an error if there is none).
    Device(String),
}

/// How to start the engine.
pub struct EngineConfig {
    /// Output frames per second (a sound card may impose its own).
    pub sample_rate: u32,
    /// Frames per block on the null backend.
    pub block: usize,
    /// Where the audio goes.
    pub output: Output,
    /// Where MIDI cues go, if anywhere.
    pub midi: Option<Box<dyn MidiSink>>,
    /// Where fired markers go for the trigger flow.
    pub trigger: Option<tokio::sync::mpsc::Sender<Fired>>,
}

struct Control {
    commands: rtrb::Producer<Command>,
    sent: u64,
    /// Every arrangement the real-time side may still hold, so it never frees one.
    history: Vec<Arc<Arrangement>>,
}

/// The control side's ends of a playhead's rings, and its backend thread.
struct Started {
    commands: rtrb::Producer<Command>,
    transitions: rtrb::Consumer<Transition>,
    arrangement: Arc<Arrangement>,
    thread: Option<JoinHandle<()>>,
}

/// `Started` before its backend thread exists.
struct Unstarted {
    commands: rtrb::Producer<Command>,
    transitions: rtrb::Consumer<Transition>,
    arrangement: Arc<Arrangement>,
}

impl Started {
    fn prepare(sample_rate: u32, anchor: &Arc<Anchor>) -> (Playhead, Unstarted) {
        let (commands, command_rx) = rtrb::RingBuffer::new(COMMAND_RING);
        let (transition_tx, transitions) = rtrb::RingBuffer::new(TRANSITION_RING);
        let arrangement = Arc::new(Arrangement::empty(sample_rate));
        let playhead = Playhead::new(command_rx, transition_tx, anchor.clone(), arrangement.clone());
        (
            playhead,
            Unstarted {
                commands,
                transitions,
                arrangement,
            },
        )
    }
}

impl Unstarted {
    fn with(self, thread: JoinHandle<()>) -> Started {
        Started {
            commands: self.commands,
            transitions: self.transitions,
            arrangement: self.arrangement,
            thread: Some(thread),
        }
    }
}

/// A running engine. Dropping it stops its threads.
pub struct Engine {
    anchor: Arc<Anchor>,
    sample_rate: u32,
    backend: String,
    control: Mutex<Control>,
    latest: Arc<Mutex<Arc<Arrangement>>>,
    fires: tokio::sync::broadcast::Sender<Fired>,
    stop: Arc<AtomicBool>,
    /// The epoch the scheduler has caught up with (see `Scheduler::settled`).
    settled: Arc<AtomicU64>,
    /// Commands queued so far (what `Control::sent` says, readable without its lock).
    queued: Arc<AtomicU64>,
    /// The scheduler and the backend thread, which park while the transport is stopped and
    /// are unparked by every command.
    wake: Vec<std::thread::Thread>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

/// Asks the OS to run the calling thread at real-time priority (`SCHED_FIFO`), as audio
/// software does, so a busy machine cannot delay the clock or a marker by a scheduler
/// slice. Without the privilege (no `CAP_SYS_NICE` or `rtprio` limit) it stays a normal
/// thread, which is logged once per thread.
pub(crate) fn promote_to_realtime(priority: i32) {
    #[cfg(target_os = "linux")]
    {
        let param = libc::sched_param {
            sched_priority: priority,
        };
        // SAFETY: pthread_self() is the calling thread; param is a valid sched_param.
        let result = unsafe { libc::pthread_setschedparam(libc::pthread_self(), libc::SCHED_FIFO, &param) };
        let name = std::thread::current().name().unwrap_or("unnamed").to_string();
        if result == 0 {
            tracing::debug!(thread = %name, priority, "real-time priority (SCHED_FIFO)");
        } else {
            tracing::info!(thread = %name, error = %std::io::Error::from_raw_os_error(result), "no real-time priority; timing may suffer on a busy machine");
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = priority;
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Engine {
    /// Starts the playhead on its backend and the scheduler.
    pub fn start(config: EngineConfig) -> anyhow::Result<Self> {
        let anchor = Arc::new(Anchor::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (started, backend) = Self::start_backend(&config, &anchor, &stop)?;
        Self::assemble(config, anchor, stop, started, backend)
    }

    /// Starts the scheduler and hands the playhead to the caller, whose own audio callback
    /// (a plugin host, a test) calls [`Playhead::process`] for every block.
    pub fn start_driven(config: EngineConfig) -> anyhow::Result<(Self, Playhead)> {
        let anchor = Arc::new(Anchor::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (playhead, unstarted) = Started::prepare(config.sample_rate, &anchor);
        let started = Started {
            commands: unstarted.commands,
            transitions: unstarted.transitions,
            arrangement: unstarted.arrangement,
            thread: None,
        };
        let engine = Self::assemble(config, anchor, stop, started, "external".into())?;
        Ok((engine, playhead))
    }

    fn assemble(
        config: EngineConfig,
        anchor: Arc<Anchor>,
        stop: Arc<AtomicBool>,
        started: Started,
        backend: String,
    ) -> anyhow::Result<Self> {
        let Started {
            commands,
            transitions,
            arrangement,
            thread,
        } = started;
        let (fires, _) = tokio::sync::broadcast::channel(1024);
        let sample_rate = arrangement.sample_rate;
        let latest = Arc::new(Mutex::new(arrangement.clone()));
        let settled = Arc::new(AtomicU64::new(0));
        let queued = Arc::new(AtomicU64::new(0));
        let scheduler = scheduler::Scheduler {
            transitions,
            anchor: anchor.clone(),
            latest: latest.clone(),
            fires: fires.clone(),
            trigger: config.trigger,
            midi: config.midi,
            stop: stop.clone(),
            settled: settled.clone(),
            queued: queued.clone(),
        };
        let scheduler = std::thread::Builder::new()
            .name("chaosgarden-scheduler".into())
            .spawn(move || {
                promote_to_realtime(40);
                scheduler.run()
            })?;
        let wake = thread.iter().chain([&scheduler]).map(|t| t.thread().clone()).collect();
        Ok(Self {
            anchor,
            sample_rate,
            backend,
            control: Mutex::new(Control {
                commands,
                sent: 0,
                history: vec![arrangement],
            }),
            latest,
            fires,
            stop,
            settled,
            queued,
            wake,
            threads: Mutex::new(thread.into_iter().chain([scheduler]).collect()),
        })
    }

    /// Opens the sound card asked for (or the null backend) with a playhead of its own.
    fn start_backend(
        config: &EngineConfig,
        anchor: &Arc<Anchor>,
        stop: &Arc<AtomicBool>,
    ) -> anyhow::Result<(Started, String)> {
        #[cfg(feature = "devices")]
        if config.output != Output::Null
            && let Some(device) = device::open(&config.output, config.sample_rate)?
        {
            let name = device.name.clone();
            let (playhead, started) = Started::prepare(device.sample_rate, anchor);
            match device.spawn(playhead, stop.clone(), anchor.clone()) {
                Ok(thread) => return Ok((started.with(thread), name)),
                Err(e) if config.output == Output::Auto => {
                    tracing::warn!(device = %name, error = %e, "the default audio device cannot play; using the null backend");
                }
                Err(e) => return Err(e),
            }
        }
        #[cfg(not(feature = "devices"))]
        match &config.output {
            Output::Null => {}
            Output::Auto => tracing::info!(
                "built without sound card support, so the null backend keeps time silently; to hear it, rebuild \
                 with `--features devices` (needs Debian's libasound2-dev)"
            ),
            Output::Device(name) => anyhow::bail!(
                "audio device {name:?} asked for, but chaosgarden was built without sound card support: rebuild \
                 it with `--features devices` (needs Debian's libasound2-dev)"
            ),
        }
        let (playhead, started) = Started::prepare(config.sample_rate, anchor);
        let thread = backend::spawn_null(playhead, config.block, stop.clone(), anchor.clone())?;
        Ok((started.with(thread), "null".to_string()))
    }

    /// Output frames per second.
    pub fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    /// The backend's name ("null", or the sound card's).
    pub fn backend(&self) -> &str {
        &self.backend
    }

    /// Every marker fired from now on (for tests, benchmarks and monitoring).
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Fired> {
        self.fires.subscribe()
    }

    /// The arrangement playing (or about to).
    pub fn arrangement(&self) -> Arc<Arrangement> {
        lock(&self.latest).clone()
    }

    /// Queues a command for the real-time side without waiting; returns its number for
    /// [`Engine::applied`].
    pub fn send(&self, command: Command) -> Result<u64, Status> {
        let mut control = lock(&self.control);
        if let Command::Adopt(arrangement) = &command {
            *lock(&self.latest) = arrangement.clone();
            control.history.push(arrangement.clone());
            // Only the history holds these now: freeing them here is safe.
            control.history.retain(|a| Arc::strong_count(a) > 1);
        }
        control
            .commands
            .push(command)
            .map_err(|_| Status::unavailable("the audio thread is not taking commands (its queue is full)"))?;
        control.sent += 1;
        let sent = control.sent;
        self.queued.store(sent, Ordering::Release);
        drop(control);
        self.wake();
        Ok(sent)
    }

    /// Unparks the threads that sleep while the transport is stopped.
    fn wake(&self) {
        for thread in &self.wake {
            thread.unpark();
        }
    }

    /// Frees the arrangements the real-time side has let go of (it never frees one
    /// itself), so a removed region's audio is freed when the removal has taken effect
    /// rather than at the next edit.
    fn release(&self) {
        let released: Vec<Arc<Arrangement>> = {
            let mut control = lock(&self.control);
            let (held, released) = std::mem::take(&mut control.history)
                .into_iter()
                .partition(|a| Arc::strong_count(a) > 1);
            control.history = held;
            released
        };
        drop(released);
    }

    /// Hands a new arrangement to the real-time side; returns the command's number for
    /// [`Engine::applied`].
    pub fn adopt(&self, arrangement: Arrangement) -> Result<u64, Status> {
        self.send(Command::Adopt(Arc::new(arrangement)))
    }

    /// Waits (briefly) until the real-time side has applied command number `sent` and the
    /// scheduler has handled the transition it caused, so a reply describes the state the
    /// command produced: after `transport_stop` answers, the MIDI port has been silenced and
    /// the markers the stop cut short have fired.
    pub async fn applied(&self, sent: u64) {
        let deadline = Instant::now() + Duration::from_millis(500);
        while Instant::now() < deadline {
            let snapshot = self.anchor.read();
            if snapshot.applied >= sent && self.settled.load(Ordering::Acquire) >= snapshot.epoch {
                self.release();
                return;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// Sends a command and waits for it to take effect.
    pub async fn command(&self, command: Command) -> Result<(), Status> {
        let sent = self.send(command)?;
        self.applied(sent).await;
        Ok(())
    }

    /// The next arrangement version.
    pub fn next_version(&self) -> u64 {
        lock(&self.latest).version + 1
    }

    /// Where the playhead is now: frame, beats, playing.
    pub fn position(&self) -> (u64, f64, bool) {
        let s: Snapshot = self.anchor.read();
        let arrangement = self.arrangement();
        let mut frame = s.frame;
        if s.playing {
            let now = clock::nanos(Instant::now());
            let ahead = now.saturating_sub(s.nanos) * arrangement.sample_rate as u64 / 1_000_000_000;
            frame += ahead.min(2 * s.block.max(1));
        }
        (frame, arrangement.beats_at(frame), s.playing)
    }

    /// The transport's state now.
    pub fn state(&self) -> pb::TransportState {
        let arrangement = self.arrangement();
        let (frame, beats, playing) = self.position();
        pb::TransportState {
            playback: if playing {
                pb::PlaybackState::Playing
            } else {
                pb::PlaybackState::Stopped
            } as i32,
            position_beats: beats,
            position_seconds: frame as f64 / arrangement.sample_rate as f64,
            tempo_bpm: arrangement.map.tempo_at(beats),
            time_signature: Some(arrangement.map.meter_at(beats).to_proto()),
            sample_rate: arrangement.sample_rate,
            backend: self.backend.clone(),
            xruns: self.anchor.xruns.load(Ordering::Relaxed),
            loop_range: arrangement.loop_range.map(|((from, to), _)| pb::LoopRange {
                enabled: true,
                from_beats: from,
                to_beats: to,
            }),
            position_samples: frame,
        }
    }

    /// Stops the threads (also done on drop).
    pub fn shutdown(&self) {
        self.stop.store(true, Ordering::Relaxed);
        self.wake();
        let threads = std::mem::take(&mut *lock(&self.threads));
        for thread in threads {
            let _ = thread.join();
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.shutdown();
    }
}
