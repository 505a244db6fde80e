//! The Lua sandbox: a restricted Lua 5.4 VM with limits that really stop it, reusable
//! between runs without one run seeing another ([`Vm`] says how).
//!
//! - Libraries: `table`, `string` (without `dump`), `math`, `utf8`, `coroutine`, and an `os`
//!   with only `clock`, `time` and `date`. No `io`, `package`/`require`, `debug`, `load`,
//!   `loadfile`, `dofile` or `collectgarbage`, so no file access and no bytecode.
//! - Limits: memory per VM (allocation fails beyond it), and a wall-clock deadline plus a
//!   cancel flag checked by a global hook (it covers coroutines too). Once a limit trips, the
//!   VM is poisoned: the hook fires on every instruction and fails each time, so a script's
//!   own `pcall` can only delay the unwinding by one frame at a time, never continue.
//! - `print`, `warn` and `log.debug/info/warn/error` are captured (bounded), not written anywhere.
//! - [`Vm::eval_slice`] runs a script speculatively for a short slice; one that needs longer
//!   is stopped as if by a limit and can be run again exactly.
//! - Values cross as `google.protobuf.Value`: [`to_lua`] and [`from_lua`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use hooteproto::v1::{LogEntry, LogLevel};
use mlua::{HookTriggers, Lua, LuaOptions, StdLib, Value as LuaValue, VmState};
use prost_types::value::Kind;

use crate::stdlib;

/// Instructions between two limit checks while running normally.
const CHECK_EVERY: u32 = 10_000;
/// Most output lines kept per evaluation, and most bytes in all.
const MAX_OUTPUT_LINES: usize = 10_000;
const MAX_OUTPUT_BYTES: usize = 1 << 20;
/// Deepest value converted in either direction (also what stops cycles).
const MAX_DEPTH: usize = 64;

/// Per-evaluation limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Wall-clock time the script may run.
    pub wall: Duration,
    /// Bytes the VM may allocate.
    pub memory: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            wall: Duration::from_secs(30),
            memory: 256 << 20,
        }
    }
}

/// Why a script stopped without a result.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// The wall-clock limit passed.
    #[error("the script ran past its time limit of {0:?} and was stopped")]
    TimeLimit(Duration),
    /// It was cancelled.
    #[error("the script was cancelled")]
    Cancelled,
    /// It tried to allocate beyond its memory limit.
    #[error("the script exceeded its memory limit of {0} bytes")]
    MemoryLimit(usize),
    /// Lua syntax error.
    #[error("syntax error: {message}")]
    Syntax {
        /// Lua's message (includes the line).
        message: String,
        /// The line, if Lua named one.
        line: Option<u32>,
    },
    /// A runtime error raised by the script or a library function.
    #[error("runtime error: {message}")]
    Runtime {
        /// Lua's message (includes the line).
        message: String,
        /// The line, if Lua named one.
        line: Option<u32>,
        /// Lua's stack traceback.
        traceback: String,
    },
    /// The result (or params) cannot be represented as JSON.
    #[error("cannot convert value: {0}")]
    Conversion(String),
    /// Only from [`Vm::eval_slice`]: the script needs more than the slice; run it again
    /// with [`Vm::eval`] (nothing it did is visible anywhere).
    #[error("the script needs more than a slice; run it on a worker")]
    SliceExhausted,
    /// The VM could not be set up (a bug).
    #[error("sandbox setup failed: {0}")]
    Setup(String),
}

/// What tripped, if anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trip {
    /// A speculative slice ran out (see [`Vm::eval_slice`]); not the script's fault.
    Slice,
    Time,
    Cancel,
}

/// The result of a successful evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalOutput {
    /// The chunk's first return value as JSON (null when it returned nothing).
    pub result: prost_types::Value,
    /// Captured `print` / `log.*` lines.
    pub output: Vec<LogEntry>,
}

/// Captured output, bounded.
#[derive(Default)]
struct Output {
    lines: Vec<LogEntry>,
    bytes: usize,
    truncated: bool,
}

impl Output {
    fn push(&mut self, level: LogLevel, message: String) {
        if self.lines.len() >= MAX_OUTPUT_LINES || self.bytes + message.len() > MAX_OUTPUT_BYTES {
            if !self.truncated {
                self.truncated = true;
                self.lines.push(LogEntry {
                    level: LogLevel::Warn as i32,
                    message: "output truncated: more than 10,000 lines or 1 MiB".into(),
                    time: Some(SystemTime::now().into()),
                });
            }
            return;
        }
        self.bytes += message.len();
        self.lines.push(LogEntry {
            level: level as i32,
            message,
            time: Some(SystemTime::now().into()),
        });
    }
}

fn setup(e: mlua::Error) -> EvalError {
    EvalError::Setup(e.to_string())
}

/// Runs `code` in a fresh sandbox with `params` as the global `params`. Blocking: run it
/// on a thread where spinning for up to `limits.wall` harms nobody.
pub fn eval(
    code: &str,
    params: Option<&prost_types::Struct>,
    limits: Limits,
    cancel: Arc<AtomicBool>,
) -> Result<EvalOutput, EvalError> {
    Vm::new()?.eval(code, params, limits, cancel, RunContext::default())
}

/// Runs a stored script's top level, then its `describe()` if it defines one, and returns
/// what that returned (JSON), or `None` when there is no `describe`. Syntax errors surface here.
pub fn describe(code: &str, limits: Limits) -> Result<Option<prost_types::Value>, EvalError> {
    Vm::new()?.describe(code, limits)
}

/// Called with (fraction, message) when a job reports progress.
pub type ProgressFn = Arc<dyn Fn(f64, &str) + Send + Sync>;

/// What a run may tell the script about itself.
#[derive(Clone, Default)]
pub struct RunContext {
    /// W3C traceparent of the span the script runs under (`otel.traceparent()`).
    pub traceparent: String,
    /// Where `job.progress(fraction, message)` goes (None: progress is ignored).
    pub progress: Option<ProgressFn>,
}

/// Per-run state shared with the hook and the captured functions.
struct RunState {
    limits: Limits,
    deadline: Instant,
    cancel: Arc<AtomicBool>,
    tripped: Option<Trip>,
    /// Set while running speculatively: the time and memory the slice may use.
    slice: Option<(Instant, usize)>,
    output: Output,
    context: RunContext,
}

/// What a stdlib function may ask about the run that called it.
#[derive(Clone)]
pub struct RunHandle(Arc<Mutex<RunState>>);

impl RunHandle {
    /// The run's memory limit (e.g. the most a read may bring into the VM).
    pub fn memory_limit(&self) -> usize {
        self.0.lock().map(|s| s.limits.memory).unwrap_or(0)
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
        tokio::select! {
            done = work => Ok(done),
            trip = stopped => {
                if let Ok(mut state) = self.0.lock() {
                    state.tripped = Some(trip);
                }
                poison(lua)?;
                Err(mlua::Error::runtime("stopped by a limit"))
            }
        }
    }

    /// Call before anything that blocks, waits or has effects beyond the run: a speculative
    /// slice ([`Vm::eval_slice`]) is stopped here, so the script runs again on a worker
    /// thread, where such calls belong. Outside a slice it does nothing.
    pub fn settle(&self, lua: &Lua) -> mlua::Result<()> {
        let mut state = self.0.lock().map_err(|_| mlua::Error::runtime("run state poisoned"))?;
        if state.slice.is_none() {
            return Ok(());
        }
        state.tripped = Some(Trip::Slice);
        drop(state);
        poison(lua)?;
        Err(mlua::Error::runtime("stopped by a limit"))
    }
}

/// A sandboxed VM that can run many scripts one after another without one seeing another.
///
/// How runs are kept apart:
/// - Each run gets a fresh global table (`_ENV`, also its `_G`) whose protected metatable
///   reads through to the shared globals. Writes land in the fresh table and die with it.
/// - Library tables (`string`, `math`, ...) are reached through empty proxies with protected
///   metatables; a `rawset` on a proxy is the only write possible, and [`Vm::reset`] empties
///   every proxy. The string metatable is protected too, so `getmetatable('')` gives nothing.
/// - `math.random` is reseeded, finalizers (`__gc`) cannot be registered (so no code of one
///   run executes during another), and garbage beyond a small slack is collected.
/// - A VM whose run tripped a limit is poisoned and never reused.
pub struct Vm {
    lua: Lua,
    state: Arc<Mutex<RunState>>,
    /// Metatable of every run's fresh globals: reads go to the shared (proxied) globals.
    env_meta: mlua::Table,
    proxies: Vec<mlua::Table>,
    reseed: mlua::Function,
    baseline_memory: usize,
    api: Vec<stdlib::Module>,
}

impl Vm {
    /// Builds a sandboxed VM with the stdlib installed and no services (so `cas.*` raises
    /// an error when called).
    pub fn new() -> Result<Self, EvalError> {
        Self::with_services(&stdlib::Services::default())
    }

    /// Builds a sandboxed VM whose stdlib uses `services`.
    pub fn with_services(services: &stdlib::Services) -> Result<Self, EvalError> {
        let lua = Lua::new_with(
            StdLib::TABLE | StdLib::STRING | StdLib::MATH | StdLib::UTF8 | StdLib::COROUTINE | StdLib::OS,
            LuaOptions::default(),
        )
        .map_err(setup)?;
        restrict(&lua).map_err(setup)?;
        let state = Arc::new(Mutex::new(RunState {
            limits: Limits::default(),
            deadline: Instant::now(),
            cancel: Arc::new(AtomicBool::new(false)),
            tripped: None,
            slice: None,
            output: Output::default(),
            context: RunContext::default(),
        }));
        let mut api = stdlib::Registrar::new(&lua);
        install_output(&mut api, &state).map_err(setup)?;
        install_context(&mut api, &state).map_err(setup)?;
        stdlib::install(&mut api, services, &RunHandle(state.clone())).map_err(setup)?;
        let api = api.finish();
        let (env_meta, proxies) = shield(&lua).map_err(setup)?;
        let reseed = lua
            .globals()
            .get::<mlua::Table>("math")
            .and_then(|math| math.get::<mlua::Function>("randomseed"))
            .map_err(setup)?;
        install_limits(&lua, state.clone()).map_err(setup)?;
        lua.gc_collect().map_err(setup)?;
        let baseline_memory = lua.used_memory();
        Ok(Self {
            lua,
            state,
            env_meta,
            proxies,
            reseed,
            baseline_memory,
            api,
        })
    }

    /// The documented functions this VM has beyond standard Lua.
    pub fn api(&self) -> &[stdlib::Module] {
        &self.api
    }

    /// The Lua state, for installing more of the stdlib.
    pub fn lua(&self) -> &Lua {
        &self.lua
    }

    /// Starts a run: fresh limits, empty output, the run's context.
    fn arm(&self, limits: Limits, cancel: Arc<AtomicBool>, context: RunContext) -> Result<(), EvalError> {
        let mut state = self.lock()?;
        state.limits = limits;
        state.deadline = Instant::now() + limits.wall;
        state.cancel = cancel;
        state.tripped = None;
        state.slice = None;
        state.output = Output::default();
        state.context = context;
        drop(state);
        self.lua.set_memory_limit(limits.memory).map_err(setup)?;
        Ok(())
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, RunState>, EvalError> {
        self.state
            .lock()
            .map_err(|_| EvalError::Setup("run state lock poisoned".into()))
    }

    /// `code` as a text chunk whose globals are `env`.
    fn load<'a>(&'a self, code: &'a str, env: &mlua::Table) -> mlua::chunk::Chunk<'a> {
        self.lua
            .load(code)
            .set_name("script")
            .set_mode(mlua::prelude::LuaChunkMode::Text)
            .set_environment(env.clone())
    }

    /// A run's own global table, holding `params`.
    fn new_env(&self, params: Option<&prost_types::Struct>) -> Result<mlua::Table, EvalError> {
        let env = self.lua.create_table().map_err(setup)?;
        env.raw_set("_G", env.clone()).map_err(setup)?;
        let params = match params {
            Some(params) => struct_to_lua(&self.lua, params, 0)?,
            None => LuaValue::Table(self.lua.create_table().map_err(setup)?),
        };
        env.raw_set("params", params).map_err(setup)?;
        env.set_metatable(Some(self.env_meta.clone())).map_err(setup)?;
        Ok(env)
    }

    /// Runs `code` with `params` as the global `params` and returns its first value.
    pub fn eval(
        &self,
        code: &str,
        params: Option<&prost_types::Struct>,
        limits: Limits,
        cancel: Arc<AtomicBool>,
        context: RunContext,
    ) -> Result<EvalOutput, EvalError> {
        self.arm(limits, cancel, context)?;
        let env = self.new_env(params)?;
        let result = self.finish(self.load(code, &env).eval::<LuaValue>())?;
        let result = from_lua(&result, 0)?;
        Ok(EvalOutput {
            result,
            output: self.take_output()?,
        })
    }

    /// Runs `code` like [`Vm::eval`] but only for a slice: if it would run longer than
    /// `slice` or hold more than `slice_memory`, it is stopped and `SliceExhausted` returned.
    /// A script can neither observe nor survive the stop (pcall cannot catch it), and
    /// nothing it did outlives the run, so running it again from the start is exact. This
    /// lets quick scripts run where the request arrived, without a thread hand-off.
    pub fn eval_slice(
        &self,
        code: &str,
        params: Option<&prost_types::Struct>,
        limits: Limits,
        (slice, slice_memory): (Duration, usize),
        context: RunContext,
    ) -> Result<EvalOutput, EvalError> {
        self.arm(limits, Arc::new(AtomicBool::new(false)), context)?;
        self.lock()?.slice = Some((Instant::now() + slice, slice_memory));
        let env = self.new_env(params)?;
        let result = self.finish(self.load(code, &env).eval::<LuaValue>());
        let result = match result {
            // Out of memory within a slice is decided again by the real limit.
            Err(EvalError::MemoryLimit(_)) => Err(EvalError::SliceExhausted),
            other => other,
        }?;
        let result = from_lua(&result, 0)?;
        Ok(EvalOutput {
            result,
            output: self.take_output()?,
        })
    }

    /// Runs a stored script as a job: its top level, then `main(params)` if it defines
    /// `main` (otherwise the top level's first value is the result).
    pub fn run_main(
        &self,
        code: &str,
        params: Option<&prost_types::Struct>,
        limits: Limits,
        cancel: Arc<AtomicBool>,
        context: RunContext,
    ) -> Result<EvalOutput, EvalError> {
        self.arm(limits, cancel, context)?;
        let env = self.new_env(params)?;
        let top = self.finish(self.load(code, &env).eval::<LuaValue>())?;
        let result = match env.raw_get::<LuaValue>("main").map_err(setup)? {
            LuaValue::Function(main) => {
                let params: LuaValue = env.raw_get("params").map_err(setup)?;
                self.finish(main.call::<LuaValue>(params))?
            }
            LuaValue::Nil => top,
            other => {
                return Err(EvalError::Conversion(format!(
                    "`main` is a {}, not a function",
                    other.type_name()
                )));
            }
        };
        let result = from_lua(&result, 0)?;
        Ok(EvalOutput {
            result,
            output: self.take_output()?,
        })
    }

    /// [`Vm::eval`] on an async runtime: stdlib functions that wait (HTTP) yield to it
    /// instead of blocking the thread. The limits and cancel still apply while they wait.
    pub async fn eval_async(
        &self,
        code: &str,
        params: Option<&prost_types::Struct>,
        limits: Limits,
        cancel: Arc<AtomicBool>,
        context: RunContext,
    ) -> Result<EvalOutput, EvalError> {
        self.arm(limits, cancel, context)?;
        let env = self.new_env(params)?;
        let result = self.finish(self.load(code, &env).eval_async::<LuaValue>().await)?;
        let result = from_lua(&result, 0)?;
        Ok(EvalOutput {
            result,
            output: self.take_output()?,
        })
    }

    /// [`Vm::run_main`] on an async runtime (see [`Vm::eval_async`]).
    pub async fn run_main_async(
        &self,
        code: &str,
        params: Option<&prost_types::Struct>,
        limits: Limits,
        cancel: Arc<AtomicBool>,
        context: RunContext,
    ) -> Result<EvalOutput, EvalError> {
        self.arm(limits, cancel, context)?;
        let env = self.new_env(params)?;
        let top = self.finish(self.load(code, &env).eval_async::<LuaValue>().await)?;
        let result = match env.raw_get::<LuaValue>("main").map_err(setup)? {
            LuaValue::Function(main) => {
                let params: LuaValue = env.raw_get("params").map_err(setup)?;
                self.finish(main.call_async::<LuaValue>(params).await)?
            }
            LuaValue::Nil => top,
            other => {
                return Err(EvalError::Conversion(format!(
                    "`main` is a {}, not a function",
                    other.type_name()
                )));
            }
        };
        let result = from_lua(&result, 0)?;
        Ok(EvalOutput {
            result,
            output: self.take_output()?,
        })
    }

    /// See [`describe`].
    pub fn describe(&self, code: &str, limits: Limits) -> Result<Option<prost_types::Value>, EvalError> {
        self.arm(limits, Arc::new(AtomicBool::new(false)), RunContext::default())?;
        let env = self.new_env(None)?;
        self.finish(self.load(code, &env).exec())?;
        let describe = match env.raw_get::<LuaValue>("describe").map_err(setup)? {
            LuaValue::Function(describe) => describe,
            LuaValue::Nil => return Ok(None),
            other => {
                return Err(EvalError::Conversion(format!(
                    "`describe` is a {}, not a function",
                    other.type_name()
                )));
            }
        };
        let described = self.finish(describe.call::<LuaValue>(()))?;
        Ok(Some(from_lua(&described, 0)?))
    }

    /// Makes the VM as it was when built, for the next run. Returns false when it must not
    /// be reused: a limit tripped (the VM is poisoned), or memory stays above the baseline.
    pub fn reset(&self) -> bool {
        let Ok(mut state) = self.state.lock() else {
            return false;
        };
        match state.tripped {
            None => {}
            // A slice stop poisons nothing the next run can see; only the hook must be rearmed.
            Some(Trip::Slice) => {
                state.tripped = None;
                drop(state);
                if install_limits(&self.lua, self.state.clone()).is_err() {
                    return false;
                }
                return self.reset();
            }
            Some(_) => return false,
        }
        state.slice = None;
        state.output = Output::default();
        state.context = RunContext::default();
        drop(state);
        for proxy in &self.proxies {
            if !proxy.is_empty() && proxy.clear().is_err() {
                return false;
            }
        }
        if self.reseed.call::<()>(()).is_err() {
            return false;
        }
        // Collecting here keeps each run's memory limit about its own allocations.
        if self.lua.used_memory() > self.baseline_memory + RESET_SLACK && self.lua.gc_collect().is_err() {
            return false;
        }
        self.lua.used_memory() <= self.baseline_memory + RESET_SLACK
    }

    /// A limit that tripped wins over whatever error the unwinding produced.
    fn finish<T>(&self, result: mlua::Result<T>) -> Result<T, EvalError> {
        let (trip, limits) = {
            let state = self.lock()?;
            (state.tripped, state.limits)
        };
        match (result, trip) {
            (_, Some(Trip::Time)) => Err(EvalError::TimeLimit(limits.wall)),
            (_, Some(Trip::Cancel)) => Err(EvalError::Cancelled),
            (_, Some(Trip::Slice)) => Err(EvalError::SliceExhausted),
            (Ok(value), None) => Ok(value),
            (Err(error), None) => Err(classify(error, limits.memory)),
        }
    }

    /// Takes what the current run printed (after an error too).
    pub fn take_output(&self) -> Result<Vec<LogEntry>, EvalError> {
        Ok(std::mem::take(&mut self.lock()?.output.lines))
    }
}

/// Memory a reused VM may keep above its baseline before it is collected (and, if that
/// does not help, replaced).
const RESET_SLACK: usize = 256 << 10;

/// Puts the shared globals behind read-through views: returns the metatable for each
/// run's fresh globals and the library proxies (which [`Vm::reset`] empties).
fn shield(lua: &Lua) -> mlua::Result<(mlua::Table, Vec<mlua::Table>)> {
    let protected = |index: mlua::Table| -> mlua::Result<mlua::Table> {
        let meta = lua.create_table()?;
        meta.raw_set("__index", index)?;
        meta.raw_set("__metatable", false)?;
        Ok(meta)
    };
    if let Some(string_meta) = lua.load("return getmetatable('')").eval::<Option<mlua::Table>>()? {
        string_meta.raw_set("__metatable", false)?;
    }
    let view = lua.create_table()?;
    let mut proxies = Vec::new();
    for pair in lua.globals().pairs::<LuaValue, LuaValue>() {
        let (name, value) = pair?;
        match value {
            LuaValue::Table(_) if matches!(&name, LuaValue::String(s) if s.as_bytes() == b"_G") => {}
            LuaValue::Table(library) => {
                let proxy = lua.create_table()?;
                proxy.set_metatable(Some(protected(library)?))?;
                view.raw_set(name, proxy.clone())?;
                proxies.push(proxy);
            }
            other => view.raw_set(name, other)?,
        }
    }
    Ok((protected(view)?, proxies))
}

/// Removes everything a script must not reach.
fn restrict(lua: &Lua) -> mlua::Result<()> {
    let globals = lua.globals();
    // Finalizers would let one run's code execute during a later run of a reused VM.
    let guarded: mlua::Function = lua
        .load(
            "local rawget, setmetatable, error, type = rawget, setmetatable, error, type\n\
             return function(t, mt)\n\
               if type(mt) == 'table' and rawget(mt, '__gc') ~= nil then\n\
                 error('finalizers (__gc) are not allowed in the sandbox', 2)\n\
               end\n\
               return setmetatable(t, mt)\n\
             end",
        )
        .set_name("sandbox")
        .eval()?;
    globals.set("setmetatable", guarded)?;
    for name in [
        "load",
        "loadfile",
        "dofile",
        "collectgarbage",
        "require",
        "package",
        "debug",
        "io",
    ] {
        globals.set(name, LuaValue::Nil)?;
    }
    let string: mlua::Table = globals.get("string")?;
    string.set("dump", LuaValue::Nil)?;
    let os: mlua::Table = globals.get("os")?;
    let safe_os = lua.create_table()?;
    for name in ["clock", "time", "date"] {
        safe_os.set(name, os.get::<mlua::Function>(name)?)?;
    }
    globals.set("os", safe_os)?;
    Ok(())
}

/// `print(...)` and `log.*(...)` append to the captured output.
fn install_output(api: &mut stdlib::Registrar<'_>, state: &Arc<Mutex<RunState>>) -> mlua::Result<()> {
    let capture = |level: LogLevel| {
        let state = state.clone();
        move |lua: &Lua, args: mlua::MultiValue| {
            let tostring: mlua::Function = lua.globals().get("tostring")?;
            let mut parts = Vec::with_capacity(args.len());
            for arg in args {
                parts.push(tostring.call::<mlua::LuaString>(arg)?.to_string_lossy());
            }
            if let Ok(mut state) = state.lock() {
                state.output.push(level, parts.join("\t"));
            }
            Ok(())
        }
    };
    let print = api.lua().create_function(capture(LogLevel::Info))?;
    api.function(
        "",
        "print",
        "print(...)",
        "Appends its arguments (tab-separated) to the output at level info.",
        print,
    )?;
    // Lua's own `warn` writes to the server's stderr once a script turns it "@on".
    let warn = {
        let state = state.clone();
        api.lua().create_function(move |_, parts: mlua::Variadic<String>| {
            let message = parts.concat();
            if !message.starts_with('@')
                && let Ok(mut state) = state.lock()
            {
                state.output.push(LogLevel::Warn, message);
            }
            Ok(())
        })?
    };
    api.function(
        "",
        "warn",
        "warn(msg1, ...)",
        "Appends the concatenated strings to the output at level warn (control messages like \"@on\" are ignored).",
        warn,
    )?;
    api.module(
        "log",
        "Leveled output, captured with the result (a job keeps it in its record).",
    );
    for (name, level, signature) in [
        ("debug", LogLevel::Debug, "log.debug(...)"),
        ("info", LogLevel::Info, "log.info(...)"),
        ("warn", LogLevel::Warn, "log.warn(...)"),
        ("error", LogLevel::Error, "log.error(...)"),
    ] {
        let function = api.lua().create_function(capture(level))?;
        api.function("log", name, signature, "Appends a line at this level.", function)?;
    }
    Ok(())
}

/// `otel.traceparent()` and `job.progress(fraction, message)`.
fn install_context(api: &mut stdlib::Registrar<'_>, state: &Arc<Mutex<RunState>>) -> mlua::Result<()> {
    api.module("otel", "The trace the script runs under.");
    let traceparent = {
        let state = state.clone();
        api.lua()
            .create_function(move |_, ()| Ok(state.lock().map(|s| s.context.traceparent.clone()).unwrap_or_default()))?
    };
    api.function(
        "otel",
        "traceparent",
        "otel.traceparent() -> string",
        "The W3C traceparent of the request or job span running this script (\"\" when tracing is off). Pass it \
         on to model services so their work joins the same trace.",
        traceparent,
    )?;
    api.module("job", "Reporting from a script that runs as a job.");
    let progress = {
        let state = state.clone();
        api.lua()
            .create_function(move |_, (fraction, message): (f64, Option<String>)| {
                if !(0.0..=1.0).contains(&fraction) {
                    return Err(mlua::Error::runtime("job.progress: fraction must be between 0 and 1"));
                }
                let report = state.lock().ok().and_then(|s| s.context.progress.clone());
                if let Some(report) = report {
                    report(fraction, message.as_deref().unwrap_or_default());
                }
                Ok(())
            })?
    };
    api.function(
        "job",
        "progress",
        "job.progress(fraction, message?)",
        "Reports progress between 0 and 1 with an optional message; subscribers see a JobProgress broadcast. \
         Outside a job it does nothing.",
        progress,
    )
}

/// The hook that enforces the deadline and the cancel flag, and poisons the VM once tripped.
fn install_limits(lua: &Lua, state: Arc<Mutex<RunState>>) -> mlua::Result<()> {
    lua.set_global_hook(
        HookTriggers::new().every_nth_instruction(CHECK_EVERY),
        move |lua, _debug| {
            let mut state = state.lock().map_err(|_| mlua::Error::runtime("limit state poisoned"))?;
            if state.tripped.is_none() {
                if state.cancel.load(Ordering::Relaxed) {
                    state.tripped = Some(Trip::Cancel);
                } else if Instant::now() >= state.deadline {
                    state.tripped = Some(Trip::Time);
                } else if state
                    .slice
                    .is_some_and(|(until, memory)| Instant::now() >= until || lua.used_memory() > memory)
                {
                    state.tripped = Some(Trip::Slice);
                } else {
                    return Ok(VmState::Continue);
                }
                drop(state);
                poison(lua)?;
            }
            Err(mlua::Error::runtime("stopped by a limit"))
        },
    )
}

/// From now on, fail at every instruction, so pcall cannot resume the script.
fn poison(lua: &Lua) -> mlua::Result<()> {
    lua.set_global_hook(HookTriggers::new().every_nth_instruction(1), move |_, _| {
        Err(mlua::Error::runtime("stopped by a limit"))
    })
}

/// `[string "script"]:12: message` -> 12.
fn line_of(message: &str) -> Option<u32> {
    let rest = message.split("]:").nth(1)?;
    rest.split(':').next()?.trim().parse().ok()
}

fn classify(error: mlua::Error, memory: usize) -> EvalError {
    match error {
        mlua::Error::MemoryError(_) => EvalError::MemoryLimit(memory),
        mlua::Error::SyntaxError { message, .. } => EvalError::Syntax {
            line: line_of(&message),
            message,
        },
        mlua::Error::RuntimeError(text) => {
            let (message, traceback) = match text.split_once("\nstack traceback:") {
                Some((message, trace)) => (message.to_string(), format!("stack traceback:{trace}")),
                None => (text, String::new()),
            };
            EvalError::Runtime {
                line: line_of(&message),
                message,
                traceback,
            }
        }
        mlua::Error::CallbackError { traceback, cause } => match classify((*cause).clone(), memory) {
            EvalError::Runtime { message, line, .. } => EvalError::Runtime {
                message,
                line,
                traceback,
            },
            other => other,
        },
        other => EvalError::Runtime {
            message: other.to_string(),
            line: None,
            traceback: String::new(),
        },
    }
}

/// A JSON object as a Lua table.
pub fn struct_to_lua(lua: &Lua, object: &prost_types::Struct, depth: usize) -> Result<LuaValue, EvalError> {
    let table = lua.create_table().map_err(setup)?;
    for (key, value) in &object.fields {
        table.set(key.as_str(), to_lua(lua, value, depth + 1)?).map_err(setup)?;
    }
    Ok(LuaValue::Table(table))
}

/// A JSON value as a Lua value (null becomes nil; arrays are 1-based sequences).
pub fn to_lua(lua: &Lua, value: &prost_types::Value, depth: usize) -> Result<LuaValue, EvalError> {
    if depth > MAX_DEPTH {
        return Err(EvalError::Conversion(format!(
            "params nest deeper than {MAX_DEPTH} levels"
        )));
    }
    Ok(match &value.kind {
        None | Some(Kind::NullValue(_)) => LuaValue::Nil,
        Some(Kind::BoolValue(b)) => LuaValue::Boolean(*b),
        Some(Kind::NumberValue(n)) if n.fract() == 0.0 && n.abs() < 9.0e15 => LuaValue::Integer(*n as i64),
        Some(Kind::NumberValue(n)) => LuaValue::Number(*n),
        Some(Kind::StringValue(s)) => LuaValue::String(lua.create_string(s).map_err(setup)?),
        Some(Kind::StructValue(s)) => struct_to_lua(lua, s, depth)?,
        Some(Kind::ListValue(list)) => {
            let table = lua.create_table().map_err(setup)?;
            for (i, item) in list.values.iter().enumerate() {
                table.set(i + 1, to_lua(lua, item, depth + 1)?).map_err(setup)?;
            }
            LuaValue::Table(table)
        }
    })
}

/// A Lua value as JSON. A table whose keys are exactly 1..n is an array; any other table
/// needs string (or integer) keys and becomes an object; `{}` is an empty object.
/// Functions, userdata, threads, NaN and non-UTF-8 strings are refused with the path.
pub fn from_lua(value: &LuaValue, depth: usize) -> Result<prost_types::Value, EvalError> {
    let kind = match value {
        LuaValue::Nil => Kind::NullValue(0),
        LuaValue::Boolean(b) => Kind::BoolValue(*b),
        LuaValue::Integer(i) => Kind::NumberValue(*i as f64),
        LuaValue::Number(n) if n.is_finite() => Kind::NumberValue(*n),
        LuaValue::Number(n) => return Err(EvalError::Conversion(format!("{n} is not a JSON number"))),
        LuaValue::String(s) => Kind::StringValue(
            s.to_str()
                .map(|s| s.to_string())
                .map_err(|_| EvalError::Conversion("a string is not valid UTF-8".into()))?,
        ),
        LuaValue::Table(table) => {
            if depth >= MAX_DEPTH {
                return Err(EvalError::Conversion(format!(
                    "a table nests deeper than {MAX_DEPTH} levels (a cycle?)"
                )));
            }
            table_to_json(table, depth)?
        }
        other => {
            return Err(EvalError::Conversion(format!(
                "a {} cannot be returned as JSON",
                other.type_name()
            )));
        }
    };
    Ok(prost_types::Value { kind: Some(kind) })
}

fn table_to_json(table: &mlua::Table, depth: usize) -> Result<Kind, EvalError> {
    let length = table.raw_len();
    let mut count = 0usize;
    let mut fields = std::collections::BTreeMap::new();
    for pair in table.pairs::<LuaValue, LuaValue>() {
        let (key, value) = pair.map_err(|e| EvalError::Conversion(e.to_string()))?;
        count += 1;
        let key = match &key {
            LuaValue::String(s) => s
                .to_str()
                .map(|s| s.to_string())
                .map_err(|_| EvalError::Conversion("a key is not valid UTF-8".into()))?,
            LuaValue::Integer(i) => i.to_string(),
            other => {
                return Err(EvalError::Conversion(format!(
                    "a table key of type {} cannot be JSON",
                    other.type_name()
                )));
            }
        };
        let value = from_lua(&value, depth + 1).map_err(|e| match e {
            EvalError::Conversion(m) => EvalError::Conversion(format!("{key}: {m}")),
            other => other,
        })?;
        fields.insert(key, value);
    }
    if length > 0 && count == length {
        let values = (1..=length).filter_map(|i| fields.remove(&i.to_string())).collect();
        return Ok(Kind::ListValue(prost_types::ListValue { values }));
    }
    Ok(Kind::StructValue(prost_types::Struct { fields }))
}
