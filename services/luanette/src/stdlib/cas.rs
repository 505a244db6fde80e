//! `cas.*`: the shared content-addressed store, embedded (bulk data never crosses ZMQ).

use mlua::{Lua, Value as LuaValue};

use super::{Registrar, fail};
use crate::sandbox::RunHandle;

/// The CAS, or an error saying this VM has none.
fn store<'a>(cas: &'a Option<::cas::Cas>, function: &str) -> mlua::Result<&'a ::cas::Cas> {
    cas.as_ref().ok_or_else(|| {
        fail(
            function,
            "no CAS is available here (describe() and the top level run without one)",
        )
    })
}

fn resolve(cas: &::cas::Cas, function: &str, hash: &str) -> mlua::Result<::cas::Hash> {
    cas.resolve(hash).map_err(|e| match e.kind() {
        ::cas::ErrorKind::NotFound => fail(function, format!("no object {hash}")),
        _ => fail(function, e),
    })
}

fn info_table(lua: &Lua, info: &::cas::ObjectInfo) -> mlua::Result<mlua::Table> {
    let table = lua.create_table()?;
    table.set("hash", info.hash.to_string())?;
    table.set("size", info.size)?;
    table.set("mime_type", info.mime_type.as_str())?;
    table.set("created_at", prost_types::Timestamp::from(info.created_at).to_string())?;
    Ok(table)
}

pub(super) fn install(api: &mut Registrar<'_>, cas: Option<::cas::Cas>, run: &RunHandle) -> mlua::Result<()> {
    api.module(
        "cas",
        "The shared content-addressed store (BLAKE3-256). Hashes are 64 lowercase hex characters; where one is \
         read, a unique prefix of at least 8 works too.",
    );
    let store_fn = {
        let cas = cas.clone();
        api.lua()
            .create_function(move |_, (data, mime): (mlua::LuaString, Option<String>)| {
                let cas = store(&cas, "cas.store")?;
                let mime = mime.unwrap_or_else(|| "application/octet-stream".to_string());
                if mime.len() > 255 || !mime.bytes().all(|b| b.is_ascii_graphic() || b == b' ') {
                    return Err(fail(
                        "cas.store",
                        "the MIME type must be at most 255 printable ASCII characters",
                    ));
                }
                let stored = cas.store(&data.as_bytes(), &mime).map_err(|e| fail("cas.store", e))?;
                Ok(stored.info.hash.to_string())
            })?
    };
    api.function(
        "cas",
        "store",
        "cas.store(data, mime_type?) -> hash",
        "Stores a string of bytes durably and returns its hash (the same bytes always give the same hash). \
         Example: `local h = cas.store(midi.write(song), \"audio/midi\")`.",
        store_fn,
    )?;
    let get = {
        let (cas, run) = (cas.clone(), run.clone());
        api.lua().create_function(move |lua, hash: String| {
            let cas = store(&cas, "cas.get")?;
            let hash = resolve(cas, "cas.get", &hash)?;
            let limit = run.memory_limit() as u64;
            let bytes = cas.read(&hash, limit, true).map_err(|e| fail("cas.get", e))?;
            lua.create_string(bytes)
        })?
    };
    api.function(
        "cas",
        "get",
        "cas.get(hash) -> data",
        "The object's bytes as a string (verified against its hash). Objects larger than the script's memory limit \
         are refused. Example: `local bytes = cas.get(params.section)`.",
        get,
    )?;
    let inspect = {
        let cas = cas.clone();
        api.lua().create_function(move |lua, hash: String| {
            let cas = store(&cas, "cas.inspect")?;
            let hash = resolve(cas, "cas.inspect", &hash)?;
            let info = cas.inspect(&hash).map_err(|e| fail("cas.inspect", e))?;
            info_table(lua, &info)
        })?
    };
    api.function(
        "cas",
        "inspect",
        "cas.inspect(hash) -> {hash, size, mime_type, created_at}",
        "What the store knows about an object, without reading it.",
        inspect,
    )?;
    let exists = {
        api.lua().create_function(move |_, hash: String| {
            let cas = store(&cas, "cas.exists")?;
            match cas.resolve(&hash) {
                Ok(_) => Ok(LuaValue::Boolean(true)),
                Err(e) if e.kind() == ::cas::ErrorKind::NotFound => Ok(LuaValue::Boolean(false)),
                Err(e) => Err(fail("cas.exists", e)),
            }
        })?
    };
    api.function(
        "cas",
        "exists",
        "cas.exists(hash) -> boolean",
        "Whether the store holds an object with this hash (or unique prefix).",
        exists,
    )
}
