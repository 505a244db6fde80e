//! Functions every run has: `print`, `warn`, `log.*` (captured), `otel.traceparent()`
//! and `job.progress()`.

use std::sync::{Arc, Mutex};

use hooteproto::v1::LogLevel;
use mlua::Lua;

use super::run::RunState;
use crate::stdlib;

/// `print(...)` and `log.*(...)` append to the captured output.
pub(super) fn install_output(api: &mut stdlib::Registrar<'_>, state: &Arc<Mutex<RunState>>) -> mlua::Result<()> {
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
            .create_function(move |_, (name, attributes): (String, Option<mlua::Table>)| {
                if name.is_empty() || name.len() > 128 {
                    return Err(mlua::Error::runtime("otel.event: the name must be 1-128 bytes"));
                }
                let attributes = match attributes {
                    Some(table) => {
                        let value = super::from_lua(&mlua::Value::Table(table), 0)
                            .map_err(|e| mlua::Error::runtime(format!("otel.event: {e}")))?;
                        let json = hooteproto::wkt::value_to_json(value).to_string();
                        json.chars().take(4096).collect()
                    }
                    None => String::new(),
                };
                let traceparent = state.lock().map(|s| s.context.traceparent.clone()).unwrap_or_default();
                let span = tracing::info_span!("lua.event", otel.name = %name);
                hooteproto::trace::set_remote_parent(&span, &traceparent);
                span.in_scope(|| tracing::info!(event = %name, %attributes, "script event"));
                Ok(())
            })?
    };
    api.function(
        "otel",
        "event",
        "otel.event(name, attributes?)",
        "Records a named event (attributes as JSON, at most 4 KiB) in the trace the script runs under. Example: \
         `otel.event(\"bridge.chosen\", {hash = h, score = 0.8})`.",
        event,
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
