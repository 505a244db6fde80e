//! Functions every run has: `print`, `warn`, `log.*` (captured), `otel.traceparent()`
//! and `job.progress()`.

use std::sync::{Arc, Mutex};

use hooteproto::v1::LogLevel;
use mlua::Lua;

use super::run::{RunHandle, RunState};

/// The longest captured line; the output as a whole is bounded too (see `Output`).
const MAX_LINE: usize = 1 << 20;

/// `otel.event`s one run may record; later ones are dropped with one warning.
const MAX_EVENTS: usize = 100;
use crate::stdlib;

/// `print(...)` and `log.*(...)` append to the captured output.
pub(super) fn install_output(api: &mut stdlib::Registrar<'_>, state: &Arc<Mutex<RunState>>) -> mlua::Result<()> {
    let capture = |level: LogLevel| {
        let state = state.clone();
        move |lua: &Lua, args: mlua::MultiValue| {
            RunHandle(state.clone()).check(lua)?;
            let tostring: mlua::Function = lua.globals().get("tostring")?;
            // Never copy more than a line can keep: a script printing a huge string many
            // times over must not make this process hold all of it at once.
            let mut line = String::new();
            for (i, arg) in args.into_iter().enumerate() {
                if line.len() > MAX_LINE {
                    break;
                }
                if i > 0 {
                    line.push('\t');
                }
                let text = tostring.call::<mlua::LuaString>(arg)?;
                let bytes = text.as_bytes();
                let keep = bytes.len().min(MAX_LINE + 1 - line.len().min(MAX_LINE));
                line.push_str(&String::from_utf8_lossy(&bytes[..keep]));
            }
            if let Ok(mut state) = state.lock() {
                state.record(level, line);
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
        api.lua()
            .create_function(move |lua, parts: mlua::Variadic<mlua::LuaString>| {
                RunHandle(state.clone()).check(lua)?;
                let mut message = String::new();
                for part in parts.iter() {
                    let bytes = part.as_bytes();
                    let keep = bytes.len().min((MAX_LINE + 1).saturating_sub(message.len()));
                    message.push_str(&String::from_utf8_lossy(&bytes[..keep]));
                }
                if !message.starts_with('@')
                    && let Ok(mut state) = state.lock()
                {
                    state.record(LogLevel::Warn, message);
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
pub(super) fn install_context(api: &mut stdlib::Registrar<'_>, state: &Arc<Mutex<RunState>>) -> mlua::Result<()> {
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
    let event = {
        let state = state.clone();
        api.lua()
            .create_function(move |lua, (name, attributes): (String, Option<mlua::Table>)| {
                RunHandle(state.clone()).check(lua)?;
                if !crate::isolation::valid_event_name(&name) {
                    return Err(mlua::Error::runtime(
                        "otel.event: the name must be 1-128 characters of A-Z a-z 0-9 . _ -",
                    ));
                }
                // Counted before any work, so dropped events cost nothing.
                let (traceparent, events, memory) = {
                    let Ok(mut state) = state.lock() else { return Ok(()) };
                    state.events += 1;
                    if state.events > MAX_EVENTS {
                        if state.events == MAX_EVENTS + 1 {
                            state.record(
                                LogLevel::Warn,
                                format!("otel.event: more than {MAX_EVENTS} events in one run; the rest are dropped"),
                            );
                        }
                        return Ok(());
                    }
                    (
                        state.context.traceparent.clone(),
                        state.context.events.clone(),
                        state.limits.memory,
                    )
                };
                let attributes = match attributes {
                    Some(table) => {
                        let value = super::from_lua_limited(&mlua::Value::Table(table), memory)
                            .map_err(|e| mlua::Error::runtime(format!("otel.event: {e}")))?;
                        let json = hooteproto::wkt::value_to_json(value).to_string();
                        json.chars().take(4096).collect()
                    }
                    None => String::new(),
                };
                match events {
                    Some(send) => send(&name, &attributes),
                    None => crate::isolation::record_event(&traceparent, &name, &attributes),
                }
                Ok(())
            })?
    };
    api.function(
        "otel",
        "event",
        "otel.event(name, attributes?)",
        "Records a named event (name: 1-128 of A-Z a-z 0-9 . _ -; attributes as JSON, at most 4 KiB; at most 100 \
         per run) in the trace the script runs under. Example: \
         `otel.event(\"bridge.chosen\", {hash = h, score = 0.8})`.",
        event,
    )?;
    api.module("job", "Reporting from a script that runs as a job.");
    let progress = {
        let state = state.clone();
        api.lua()
            .create_function(move |lua, (fraction, message): (f64, Option<String>)| {
                RunHandle(state.clone()).check(lua)?;
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
