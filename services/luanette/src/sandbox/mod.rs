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
//! - Values cross as `google.protobuf.Value`: [`to_lua`] and [`from_lua`].

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hooteproto::v1::LogEntry;
use mlua::{Lua, LuaOptions, StdLib, Value as LuaValue};

use crate::stdlib;

mod builtins;
mod errors;
mod run;
mod values;

use builtins::{install_context, install_output};
pub use errors::EvalError;
use errors::classify;
pub use run::RunHandle;
use run::{Output, RunState, Trip, install_limits};
pub use values::{MAX_CONVERTED_BYTES, from_lua, from_lua_limited, struct_to_lua, to_lua};

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

/// The result of a successful evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalOutput {
    /// The chunk's first return value as JSON (null when it returned nothing).
    pub result: prost_types::Value,
    /// Captured `print` / `log.*` lines.
    pub output: Vec<LogEntry>,
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
    /// Where `otel.event(name, attributes)` goes (None: recorded here, in this process's trace).
    pub events: Option<EventFn>,
    /// Told of each output line as it is kept (None: lines are only returned at the end).
    pub logs: Option<LogFn>,
    /// Which job and script this run is (empty for an evaluation).
    pub identity: ScriptIdentity,
}

/// Which job runs which script, for what a script records about itself (`hoot.artifact`'s
/// creator and metadata).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScriptIdentity {
    /// The job's id.
    pub job_id: String,
    /// The exact script (64 hex characters).
    pub script_hash: String,
    /// The name it was started by, if any.
    pub script_name: String,
}

/// The most of one output line passed on while a job runs (broadcasts, the studio); the job's
/// record keeps every line whole.
pub const LOG_LINE_PREVIEW: usize = 4096;

/// `entry` with its message cut to [`LOG_LINE_PREVIEW`] bytes (on a character boundary).
pub fn preview(entry: &hooteproto::v1::LogEntry) -> hooteproto::v1::LogEntry {
    let mut cut = entry.message.len().min(LOG_LINE_PREVIEW);
    while !entry.message.is_char_boundary(cut) {
        cut -= 1;
    }
    hooteproto::v1::LogEntry {
        message: entry.message[..cut].to_string(),
        ..entry.clone()
    }
}

/// Called with each output line a run keeps (print, warn, log.*), while the run's state is
/// locked: it must only hand the line on, never block.
pub type LogFn = Arc<dyn Fn(&hooteproto::v1::LogEntry) + Send + Sync>;

/// Called with (name, attributes as JSON) for each `otel.event`.
pub type EventFn = Arc<dyn Fn(&str, &str) + Send + Sync>;

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
            events: 0,
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
        state.events = 0;
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
    /// Functions that wait (model calls) need [`Vm::eval_async`]; here they fail.
    pub fn eval(
        &self,
        code: &str,
        params: Option<&prost_types::Struct>,
        limits: Limits,
        cancel: Arc<AtomicBool>,
        context: RunContext,
    ) -> Result<EvalOutput, EvalError> {
        now(self.eval_async(code, params, limits, cancel, context))?
    }

    /// Runs a stored script as a job: its top level, then `main(params)` if it defines
    /// `main` (otherwise the top level's first value is the result). Like [`Vm::eval`], it
    /// cannot wait; jobs run [`Vm::run_main_async`].
    pub fn run_main(
        &self,
        code: &str,
        params: Option<&prost_types::Struct>,
        limits: Limits,
        cancel: Arc<AtomicBool>,
        context: RunContext,
    ) -> Result<EvalOutput, EvalError> {
        now(self.run_main_async(code, params, limits, cancel, context))?
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
        self.run(code, params, limits, cancel, context, false).await
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
        self.run(code, params, limits, cancel, context, true).await
    }

    /// One run: the chunk, then `main(params)` when `call_main` and the script defines it.
    #[allow(clippy::too_many_arguments)]
    async fn run(
        &self,
        code: &str,
        params: Option<&prost_types::Struct>,
        limits: Limits,
        cancel: Arc<AtomicBool>,
        context: RunContext,
        call_main: bool,
    ) -> Result<EvalOutput, EvalError> {
        self.arm(limits, cancel, context)?;
        let env = self.new_env(params)?;
        let top = self.finish(self.until_tripped(self.load(code, &env).eval_async::<LuaValue>()).await)?;
        let result = match env.raw_get::<LuaValue>("main").map_err(setup)? {
            LuaValue::Function(main) if call_main => {
                let params: LuaValue = env.raw_get("params").map_err(setup)?;
                self.finish(self.until_tripped(main.call_async::<LuaValue>(params)).await)?
            }
            LuaValue::Function(_) | LuaValue::Nil => top,
            other if call_main => {
                return Err(EvalError::Conversion(format!(
                    "`main` is a {}, not a function",
                    other.type_name()
                )));
            }
            _ => top,
        };
        let result = from_lua_limited(&result, limits.memory)?;
        Ok(EvalOutput {
            result,
            output: self.take_output()?,
        })
    }

    /// Awaits a Lua future, but ends it as soon as a limit has tripped and the coroutine
    /// yielded (the poisoned hook yields where it can): the coroutine is abandoned, not unwound.
    async fn until_tripped<T>(&self, future: impl std::future::Future<Output = mlua::Result<T>>) -> mlua::Result<T> {
        let mut future = std::pin::pin!(future);
        std::future::poll_fn(|cx| match future.as_mut().poll(cx) {
            std::task::Poll::Pending if self.state.lock().map(|s| s.tripped.is_some()).unwrap_or(true) => {
                std::task::Poll::Ready(Err(mlua::Error::runtime("stopped by a limit")))
            }
            other => other,
        })
        .await
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
            Some(_) => return false,
        }
        state.events = 0;
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
            (Ok(value), None) => Ok(value),
            (Err(error), None) => Err(classify(error, limits.memory)),
        }
    }

    /// Takes what the current run printed (after an error too).
    pub fn take_output(&self) -> Result<Vec<LogEntry>, EvalError> {
        Ok(std::mem::take(&mut self.lock()?.output.lines))
    }
}

/// Drives a run that cannot wait: one poll must finish it. A stdlib function that waits
/// (a model call) would leave it pending; that is refused instead of blocking.
fn now<F: std::future::Future>(future: F) -> Result<F::Output, EvalError> {
    let mut future = std::pin::pin!(future);
    let mut context = std::task::Context::from_waker(std::task::Waker::noop());
    match future.as_mut().poll(&mut context) {
        std::task::Poll::Ready(output) => Ok(output),
        std::task::Poll::Pending => Err(EvalError::Setup(
            "a function that waits (a model call) was called where waiting is not possible".into(),
        )),
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
