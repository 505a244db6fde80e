//! Lua values ⇄ `google.protobuf.Value` (JSON), in both directions, with clear errors.

use mlua::{Lua, Value as LuaValue};
use prost_types::value::Kind;

use super::{EvalError, setup};

/// Deepest value converted in either direction (also what stops cycles).
const MAX_DEPTH: usize = 64;
/// The most a Lua value may become when converted (an estimate of the memory the result
/// takes: each value and key costs [`NODE_COST`] plus its text). A table shared many times
/// over (`a = {a, a}` thirty times) is expanded at every place it appears, so without this
/// sixty bytes of Lua could ask for 2^30 values. Matches the largest HOOT/1 message.
pub const MAX_CONVERTED_BYTES: usize = 64 << 20;
const NODE_COST: usize = 48;

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
    convert(value, depth, MAX_CONVERTED_BYTES)
}

/// [`from_lua`] for a run's result, which may become at most `memory` (its memory limit
/// covers what is done on its behalf), and never more than [`MAX_CONVERTED_BYTES`].
pub fn from_lua_limited(value: &LuaValue, memory: usize) -> Result<prost_types::Value, EvalError> {
    convert(value, 0, memory.min(MAX_CONVERTED_BYTES))
}

fn convert(value: &LuaValue, depth: usize, limit: usize) -> Result<prost_types::Value, EvalError> {
    // Priced first, once per distinct table, so a table shared many times over is refused
    // in time proportional to the tables it has, not to what it would expand to.
    if converted_size(value, depth, &mut std::collections::HashMap::new())? > limit {
        return Err(too_large(limit));
    }
    let mut budget = limit;
    from_lua_within(value, depth, &mut budget, limit)
}

fn too_large(limit: usize) -> EvalError {
    EvalError::Conversion(format!(
        "the value is larger than {} once converted (a table shared or repeated many times?); store \
         large data with cas.store and return its hash",
        if limit >= 1 << 20 {
            format!("{} MiB", limit >> 20)
        } else {
            format!("{} KiB", limit >> 10)
        }
    ))
}

/// What `value` would cost converted (saturating; past [`MAX_CONVERTED_BYTES`] it stops
/// counting). Each table is walked once: a repeat costs what its first visit measured, and a
/// table met again while it is still being walked is a cycle, refused at once (a walk down
/// to the depth limit would revisit the whole table at every level).
fn converted_size(
    value: &LuaValue,
    depth: usize,
    seen: &mut std::collections::HashMap<usize, Option<usize>>,
) -> Result<usize, EvalError> {
    match value {
        LuaValue::String(s) => Ok(NODE_COST + s.as_bytes().len()),
        LuaValue::Table(table) if depth < MAX_DEPTH => {
            let key = table.to_pointer() as usize;
            match seen.get(&key) {
                Some(Some(size)) => return Ok(*size),
                Some(None) => {
                    return Err(EvalError::Conversion(
                        "a table contains itself (a cycle) and cannot be JSON".into(),
                    ));
                }
                None => {}
            }
            seen.insert(key, None);
            let mut size = NODE_COST;
            for pair in table.pairs::<LuaValue, LuaValue>() {
                let Ok((key, value)) = pair else { break };
                size = size
                    .saturating_add(NODE_COST)
                    .saturating_add(converted_size(&key, depth + 1, seen)?)
                    .saturating_add(converted_size(&value, depth + 1, seen)?);
                if size > MAX_CONVERTED_BYTES {
                    break;
                }
            }
            seen.insert(key, Some(size));
            Ok(size)
        }
        _ => Ok(NODE_COST),
    }
}

fn spend(budget: &mut usize, bytes: usize, limit: usize) -> Result<(), EvalError> {
    *budget = budget.checked_sub(NODE_COST + bytes).ok_or_else(|| too_large(limit))?;
    Ok(())
}

fn from_lua_within(
    value: &LuaValue,
    depth: usize,
    budget: &mut usize,
    limit: usize,
) -> Result<prost_types::Value, EvalError> {
    let text = match value {
        LuaValue::String(s) => s.as_bytes().len(),
        _ => 0,
    };
    spend(budget, text, limit)?;
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
            table_to_json(table, depth, budget, limit)?
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

fn table_to_json(table: &mlua::Table, depth: usize, budget: &mut usize, limit: usize) -> Result<Kind, EvalError> {
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
        spend(budget, key.len(), limit)?;
        let value = from_lua_within(&value, depth + 1, budget, limit).map_err(|e| match e {
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
