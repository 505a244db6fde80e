//! The state of one run: its limits, what tripped, its captured output and context, and
//! the hook that enforces the limits. [`RunHandle`] is what stdlib functions see of it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use hooteproto::v1::{LogEntry, LogLevel};
use mlua::{HookTriggers, Lua, VmState};

use super::{Limits, RunContext};

/// Instructions between two limit checks while running normally. One instruction can cost far
/// more than usual: with the heap at the memory limit and garbage churning, every allocation
/// runs an emergency full collection over the whole heap (the fuzzer found a pcall loop doing
/// that 1,152 times, 250 ms past a 2 ms deadline at 10,000 instructions per check).
const CHECK_EVERY: u32 = 1_000;
/// Deepest call nesting allowed. Lua's own limit inside a coroutine (where async runs
/// happen) is about 200,000 frames; unwinding that many after a limit trips took 21 s.
const MAX_CALL_DEPTH: usize = 1000;
/// Most output lines kept per evaluation, and most bytes in all.
const MAX_OUTPUT_LINES: usize = 10_000;
const MAX_OUTPUT_BYTES: usize = 1 << 20;

/// What tripped, if anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Trip {
    Time,
    Cancel,
}

/// Captured output, bounded.
#[derive(Default)]
pub(super) struct Output {
    pub(super) lines: Vec<LogEntry>,
    bytes: usize,
    truncated: bool,
}

impl Output {
    /// Keeps the line if there is room; returns what was kept (the line, the notice that
    /// output was truncated, or nothing).
    fn push(&mut self, level: LogLevel, message: String) -> Option<&LogEntry> {
        if self.lines.len() >= MAX_OUTPUT_LINES || self.bytes + message.len() > MAX_OUTPUT_BYTES {
            if self.truncated {
                return None;
            }
            self.truncated = true;
            self.lines.push(LogEntry {
                level: LogLevel::Warn as i32,
                message: "output truncated: more than 10,000 lines or 1 MiB".into(),
                time: Some(SystemTime::now().into()),
            });
        } else {
            self.bytes += message.len();
            self.lines.push(LogEntry {
                level: level as i32,
                message,
                time: Some(SystemTime::now().into()),
            });
        }
        self.lines.last()
    }
}

/// Per-run state shared with the hook and the captured functions.
pub(super) struct RunState {
    pub(super) limits: Limits,
    pub(super) deadline: Instant,
    pub(super) cancel: Arc<AtomicBool>,
    pub(super) tripped: Option<Trip>,
    /// `otel.event`s recorded so far in this run.
    pub(super) events: usize,
    pub(super) output: Output,
    pub(super) context: RunContext,
}

impl RunState {
    /// Keeps an output line (within the output's bounds) and tells the run's log follower.
    pub(super) fn record(&mut self, level: LogLevel, message: String) {
        if let Some(kept) = self.output.push(level, message)
            && let Some(follow) = &self.context.logs
        {
            follow(kept);
        }
    }
}

/// What a stdlib function may ask about the run that called it.
#[derive(Clone)]
pub struct RunHandle(pub(super) Arc<Mutex<RunState>>);

impl RunHandle {
    /// The run's memory limit (e.g. the most a read may bring into the VM).
    pub fn memory_limit(&self) -> usize {
        self.0.lock().map(|s| s.limits.memory).unwrap_or(0)
    }

    /// How long the run may still take.
    pub fn time_left(&self) -> Duration {
        self.0
            .lock()
            .map(|s| s.deadline.saturating_duration_since(Instant::now()))
            .unwrap_or_default()
    }

    /// Which job and script this run is.
    pub fn identity(&self) -> super::ScriptIdentity {
        self.0.lock().map(|s| s.context.identity.clone()).unwrap_or_default()
    }

    /// The traceparent the run was given (its job or request span).
    pub fn traceparent(&self) -> String {
        self.0.lock().map(|s| s.context.traceparent.clone()).unwrap_or_default()
    }

    /// Awaits `work` unless the run is cancelled or its time runs out first; then the VM is
    /// stopped exactly as the hook would stop it (no Lua runs while a call waits, so the hook
    /// cannot see it).
    pub async fn guard<T>(&self, lua: &Lua, work: impl std::future::Future<Output = T>) -> mlua::Result<T> {
        let (deadline, cancel) = {
            let state = self.0.lock().map_err(|_| mlua::Error::runtime("run state poisoned"))?;
            (state.deadline, state.cancel.clone())
        };
        let stopped = async {
            loop {
                if cancel.load(Ordering::Relaxed) {
                    return Trip::Cancel;
                }
                if Instant::now() >= deadline {
                    return Trip::Time;
                }
                let left = deadline.saturating_duration_since(Instant::now());
                tokio::time::sleep(left.min(Duration::from_millis(20))).await;
            }
        };
        let trip = tokio::select! {
            done = work => {
                // A call whose own timeout is the run's deadline can finish (with its own
                // timeout error) a moment before `stopped` sees the deadline; the run is out
                // of time either way, and must say so rather than report the call's error.
                if cancel.load(Ordering::Relaxed) {
                    Trip::Cancel
                } else if Instant::now() >= deadline {
                    Trip::Time
                } else {
                    return Ok(done);
                }
            }
            trip = stopped => trip,
        };
        self.stop(lua, trip)
    }

    /// Stops the run at its time limit now: for a call that gave up because the time it was
    /// given (the run's remaining time) ran out, which may be a moment before the deadline.
    pub fn out_of_time<T>(&self, lua: &Lua) -> mlua::Result<T> {
        self.stop(lua, Trip::Time)
    }

    fn stop<T>(&self, lua: &Lua, trip: Trip) -> mlua::Result<T> {
        if let Ok(mut state) = self.0.lock() {
            state.tripped.get_or_insert(trip);
        }
        poison(lua)?;
        Err(mlua::Error::runtime("stopped by a limit"))
    }
}

impl RunHandle {
    /// Stops the run if its time is up or it was cancelled, as the hook would. Functions
    /// that do work proportional to their input call it first: the hook counts
    /// instructions, and a short loop around such a call (`for i = 1, 30 do s =
    /// json.encode({s}) end`) runs too few of them to be checked in time.
    pub fn check(&self, lua: &Lua) -> mlua::Result<()> {
        let trip = {
            let state = self.0.lock().map_err(|_| mlua::Error::runtime("run state poisoned"))?;
            match state.tripped {
                Some(trip) => trip,
                None if state.cancel.load(Ordering::Relaxed) => Trip::Cancel,
                None if Instant::now() >= state.deadline => Trip::Time,
                None => return Ok(()),
            }
        };
        self.stop(lua, trip)
    }
}

/// The hook that enforces the deadline and the cancel flag, and poisons the VM once tripped.
pub(super) fn install_limits(lua: &Lua, state: Arc<Mutex<RunState>>) -> mlua::Result<()> {
    install_checks(
        lua,
        state,
        HookTriggers::new().every_nth_instruction(CHECK_EVERY),
        false,
    )
}

/// Whether the heap is close enough to its limit (within an eighth) that allocations may start
/// running emergency full collections.
fn near_memory_limit(lua: &Lua, limit: usize) -> bool {
    lua.used_memory() >= limit - limit / 8
}

/// Installs the limit checks with `triggers`. Once the heap nears its limit they move to every
/// instruction and every call (`dense`): there one instruction, or the entry to a Rust function,
/// can cost a full collection of the whole heap, and a loop that catches the memory errors
/// would otherwise run thousands of them between two checks (a fuzzer finding: 800 ms past a
/// 2 ms deadline). Far from the limit, checks stay cheap.
fn install_checks(lua: &Lua, state: Arc<Mutex<RunState>>, triggers: HookTriggers, dense: bool) -> mlua::Result<()> {
    lua.set_global_hook(triggers, move |lua, _debug| {
        let mut run = state.lock().map_err(|_| mlua::Error::runtime("limit state poisoned"))?;
        if run.tripped.is_none() {
            if run.cancel.load(Ordering::Relaxed) {
                run.tripped = Some(Trip::Cancel);
            } else if Instant::now() >= run.deadline {
                run.tripped = Some(Trip::Time);
            } else if lua.inspect_stack(MAX_CALL_DEPTH, |_| ()).is_some() {
                // Not a limit trip: an ordinary error the script may catch, raised before
                // the stack grows so deep that unwinding it would take seconds.
                return Err(mlua::Error::runtime(format!(
                    "stack overflow: more than {MAX_CALL_DEPTH} nested calls"
                )));
            } else {
                if !dense && near_memory_limit(lua, run.limits.memory) {
                    drop(run);
                    let every = HookTriggers::new().every_nth_instruction(1).on_calls();
                    install_checks(lua, state.clone(), every, true)?;
                }
                return Ok(VmState::Continue);
            }
            drop(run);
            poison(lua)?;
        }
        Err(mlua::Error::runtime("stopped by a limit"))
    })
}

/// From now on, fail at every instruction, so pcall cannot resume the script.
pub(super) fn poison(lua: &Lua) -> mlua::Result<()> {
    // Ask to yield first: where the running coroutine can yield, the run's future sees the
    // trip and abandons the coroutine at once (see `Vm::until_tripped`). Unwinding by errors
    // costs a stack reallocation per caught level inside a coroutine (Lua shrinks the stack
    // after each pcall), which a recursive pcall loop turned into 20 s. Where it cannot
    // yield (inside a C boundary such as a sort comparator), mlua ignores the request and
    // the hook is called again at the next instruction: then fail that instruction.
    let asked = AtomicBool::new(false);
    lua.set_global_hook(HookTriggers::new().every_nth_instruction(1), move |_, _| {
        if asked.swap(true, Ordering::Relaxed) {
            asked.store(false, Ordering::Relaxed);
            Err(mlua::Error::runtime("stopped by a limit"))
        } else {
            Ok(VmState::Yield)
        }
    })
}
