//! The Lua sandbox: a fresh, restricted Lua 5.4 VM per evaluation, with limits that really
//! stop it.
//!
//! - Libraries: `table`, `string` (without `dump`), `math`, `utf8`, `coroutine`, and an `os`
//!   with only `clock`, `time` and `date`. No `io`, `package`/`require`, `debug`, `load`,
//!   `loadfile`, `dofile` or `collectgarbage`, so no file access and no bytecode.
//! - Limits: memory per VM (allocation fails beyond it), and a wall-clock deadline plus a
//!   cancel flag checked by a global hook (it covers coroutines too). Once a limit trips, the
//!   VM is poisoned: the hook fires on every instruction and fails each time, so a script's
//!   own `pcall` can only delay the unwinding by one frame at a time, never continue.
//! - `print` and `log.debug/info/warn/error` are captured (bounded), not written anywhere.
//! - Values cross as `google.protobuf.Value`: [`to_lua`] and [`from_lua`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use hooteproto::v1::{LogEntry, LogLevel};
use mlua::{HookTriggers, Lua, LuaOptions, StdLib, Value as LuaValue, VmState};
use prost_types::value::Kind;

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
    /// The VM could not be set up (a bug).
    #[error("sandbox setup failed: {0}")]
    Setup(String),
}

/// What tripped, if anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trip {
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
    let vm = Vm::new(limits, cancel)?;
    let params = match params {
        Some(params) => struct_to_lua(&vm.lua, params, 0)?,
        None => LuaValue::Table(vm.lua.create_table().map_err(setup)?),
    };
    vm.lua.globals().set("params", params).map_err(setup)?;
    let chunk = vm
        .lua
        .load(code)
        .set_name("script")
        .set_mode(mlua::prelude::LuaChunkMode::Text);
    let result = vm.finish(chunk.eval::<LuaValue>())?;
    let result = from_lua(&result, 0)?;
    Ok(EvalOutput {
        result,
        output: vm.take_output()?,
    })
}

/// Runs a stored script's top level, then its `describe()` if it defines one, and returns
/// what that returned (JSON), or `None` when there is no `describe`. Syntax errors surface here.
pub fn describe(code: &str, limits: Limits) -> Result<Option<prost_types::Value>, EvalError> {
    let vm = Vm::new(limits, Arc::new(AtomicBool::new(false)))?;
    let chunk = vm
        .lua
        .load(code)
        .set_name("script")
        .set_mode(mlua::prelude::LuaChunkMode::Text);
    vm.finish(chunk.exec())?;
    let describe = match vm.lua.globals().get::<LuaValue>("describe").map_err(setup)? {
        LuaValue::Function(describe) => describe,
        LuaValue::Nil => return Ok(None),
        other => {
            return Err(EvalError::Conversion(format!(
                "`describe` is a {}, not a function",
                other.type_name()
            )));
        }
    };
    let described = vm.finish(describe.call::<LuaValue>(()))?;
    Ok(Some(from_lua(&described, 0)?))
}

/// A sandboxed VM with its limits and captured output.
struct Vm {
    lua: Lua,
    output: Arc<Mutex<Output>>,
    tripped: Arc<Mutex<Option<Trip>>>,
    limits: Limits,
}

impl Vm {
    fn new(limits: Limits, cancel: Arc<AtomicBool>) -> Result<Self, EvalError> {
        let lua = Lua::new_with(
            StdLib::TABLE | StdLib::STRING | StdLib::MATH | StdLib::UTF8 | StdLib::COROUTINE | StdLib::OS,
            LuaOptions::default(),
        )
        .map_err(setup)?;
        restrict(&lua).map_err(setup)?;
        let output = Arc::new(Mutex::new(Output::default()));
        install_output(&lua, &output).map_err(setup)?;
        lua.set_memory_limit(limits.memory).map_err(setup)?;
        let tripped = Arc::new(Mutex::new(None::<Trip>));
        install_limits(&lua, Instant::now() + limits.wall, cancel, tripped.clone()).map_err(setup)?;
        Ok(Self {
            lua,
            output,
            tripped,
            limits,
        })
    }

    /// A limit that tripped wins over whatever error the unwinding produced.
    fn finish<T>(&self, result: mlua::Result<T>) -> Result<T, EvalError> {
        let trip = self.tripped.lock().map(|t| *t).unwrap_or(None);
        match (result, trip) {
            (_, Some(Trip::Time)) => Err(EvalError::TimeLimit(self.limits.wall)),
            (_, Some(Trip::Cancel)) => Err(EvalError::Cancelled),
            (Ok(value), None) => Ok(value),
            (Err(error), None) => Err(classify(error, self.limits.memory)),
        }
    }

    fn take_output(&self) -> Result<Vec<LogEntry>, EvalError> {
        let mut output = self
            .output
            .lock()
            .map_err(|_| EvalError::Setup("output lock poisoned".into()))?;
        Ok(std::mem::take(&mut output.lines))
    }
}

/// Removes everything a script must not reach.
fn restrict(lua: &Lua) -> mlua::Result<()> {
    let globals = lua.globals();
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
fn install_output(lua: &Lua, output: &Arc<Mutex<Output>>) -> mlua::Result<()> {
    let capture = |level: LogLevel| {
        let output = output.clone();
        move |lua: &Lua, args: mlua::MultiValue| {
            let tostring: mlua::Function = lua.globals().get("tostring")?;
            let mut parts = Vec::with_capacity(args.len());
            for arg in args {
                parts.push(tostring.call::<mlua::LuaString>(arg)?.to_string_lossy());
            }
            if let Ok(mut output) = output.lock() {
                output.push(level, parts.join("\t"));
            }
            Ok(())
        }
    };
    lua.globals()
        .set("print", lua.create_function(capture(LogLevel::Info))?)?;
    let log = lua.create_table()?;
    for (name, level) in [
        ("debug", LogLevel::Debug),
        ("info", LogLevel::Info),
        ("warn", LogLevel::Warn),
        ("error", LogLevel::Error),
    ] {
        log.set(name, lua.create_function(capture(level))?)?;
    }
    lua.globals().set("log", log)
}

/// The hook that enforces the deadline and the cancel flag, and poisons the VM once tripped.
fn install_limits(
    lua: &Lua,
    deadline: Instant,
    cancel: Arc<AtomicBool>,
    tripped: Arc<Mutex<Option<Trip>>>,
) -> mlua::Result<()> {
    lua.set_global_hook(
        HookTriggers::new().every_nth_instruction(CHECK_EVERY),
        move |lua, _debug| {
            let mut trip = tripped
                .lock()
                .map_err(|_| mlua::Error::runtime("limit state poisoned"))?;
            if trip.is_none() {
                if cancel.load(Ordering::Relaxed) {
                    *trip = Some(Trip::Cancel);
                } else if Instant::now() >= deadline {
                    *trip = Some(Trip::Time);
                } else {
                    return Ok(VmState::Continue);
                }
                // From now on, fail at every instruction, so pcall cannot resume the script.
                let tripped = tripped.clone();
                drop(trip);
                lua.set_global_hook(HookTriggers::new().every_nth_instruction(1), move |_, _| {
                    let _ = &tripped;
                    Err(mlua::Error::runtime("stopped by a limit"))
                })?;
                return Err(mlua::Error::runtime("stopped by a limit"));
            }
            Err(mlua::Error::runtime("stopped by a limit"))
        },
    )
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
