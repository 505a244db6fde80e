//! `json.encode` / `json.decode`, with the same value rules as results and params.

use mlua::{Lua, Value as LuaValue};

use super::{Registrar, fail};
use crate::sandbox::{RunHandle, from_lua_limited, to_lua};

/// Whole numbers as integers (`3`, not `3.0`), as people and most parsers expect.
fn integral(value: serde_json::Value) -> serde_json::Value {
    match value {
        serde_json::Value::Number(n) => match n.as_f64() {
            Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => serde_json::Value::from(f as i64),
            _ => serde_json::Value::Number(n),
        },
        serde_json::Value::Array(items) => serde_json::Value::Array(items.into_iter().map(integral).collect()),
        serde_json::Value::Object(fields) => {
            serde_json::Value::Object(fields.into_iter().map(|(k, v)| (k, integral(v))).collect())
        }
        other => other,
    }
}

pub(super) fn install(api: &mut Registrar<'_>, run: &RunHandle) -> mlua::Result<()> {
    api.module("json", "JSON text to and from Lua values.");
    let run = run.clone();
    // Bounded by the run's memory limit: the text must fit in the VM anyway.
    let encode = api.lua().create_function(move |_, value: LuaValue| {
        let value = from_lua_limited(&value, run.memory_limit()).map_err(|e| fail("json.encode", e))?;
        serde_json::to_string(&integral(hooteproto::wkt::value_to_json(value))).map_err(|e| fail("json.encode", e))
    })?;
    api.function(
        "json",
        "encode",
        "json.encode(value) -> string",
        "Encodes a value as compact JSON. Tables with keys 1..n become arrays, other tables objects; functions, \
         cycles and NaN are refused. Example: `json.encode({bpm = 120, keys = {\"C\", \"G\"}})`.",
        encode,
    )?;
    let decode = api.lua().create_function(|lua: &Lua, text: mlua::LuaString| {
        let json: serde_json::Value = serde_json::from_slice(&text.as_bytes()).map_err(|e| fail("json.decode", e))?;
        to_lua(lua, &hooteproto::wkt::json_to_value(json), 0).map_err(|e| fail("json.decode", e))
    })?;
    api.function(
        "json",
        "decode",
        "json.decode(text) -> value",
        "Parses JSON; null becomes nil, arrays become 1-based tables. Example: `json.decode('{\"n\": 3}').n == 3`.",
        decode,
    )
}
