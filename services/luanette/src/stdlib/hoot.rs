//! `hoot.*`: Hootenanny's artifacts, lineage and GraphQL from inside a run (see
//! [`super::peers`]), so a script records what it made and what it was made from.

use hooteproto::Request as _;
use hooteproto::v1::{self as pb, ErrorCode};
use mlua::{Lua, Value as LuaValue};

use super::peers::{Connections, Options, Peer, json_to_lua, object_of, reply_field};
use super::{Registrar, fail};
use crate::sandbox::RunHandle;

/// Most artifacts one `hoot.list` returns.
const MAX_LIST: f64 = 500.0;

#[derive(Clone)]
struct Hoot {
    connections: Connections,
    run: RunHandle,
}

impl Hoot {
    async fn call(
        &self,
        lua: &Lua,
        function: &str,
        request: pb::envelope::Payload,
    ) -> mlua::Result<pb::envelope::Payload> {
        self.connections
            .call(lua, &self.run, Peer::Hootenanny, function, request)
            .await
    }

    /// `hoot.artifact`'s request: the creator defaults to the script (`lua:<name>`, or
    /// `lua:<hash prefix>`, or `lua:eval`), and the metadata records the job and script.
    fn artifact_request(&self, options: &Options<'_>) -> mlua::Result<pb::ArtifactCreateRequest> {
        let identity = self.run.identity();
        let creator = match options.text("creator")? {
            Some(creator) => creator,
            None if !identity.script_name.is_empty() => format!("lua:{}", identity.script_name),
            None if !identity.script_hash.is_empty() => {
                format!("lua:{}", &identity.script_hash[..12.min(identity.script_hash.len())])
            }
            None => "lua:eval".to_string(),
        };
        let mut metadata = match options.object("meta", &self.run)? {
            Some(meta) => meta.to_json().map_err(|e| fail("hoot.artifact", e))?,
            None => serde_json::Map::new(),
        };
        for (key, value) in [
            ("job_id", &identity.job_id),
            ("script_hash", &identity.script_hash),
            ("script_name", &identity.script_name),
        ] {
            if !value.is_empty() && !metadata.contains_key(key) {
                metadata.insert(key.to_string(), serde_json::Value::String(value.clone()));
            }
        }
        let metadata = hooteproto::wkt::Struct::from_json(metadata);
        Ok(pb::ArtifactCreateRequest {
            cas_hash: options.required_text("hash")?,
            name: options.text("name")?.unwrap_or_default(),
            tags: options.texts("tags")?,
            creator,
            metadata: Some(metadata),
            parent_ids: options.texts("parents")?,
        })
    }
}

pub(super) fn install(api: &mut Registrar<'_>, connections: Connections, run: &RunHandle) -> mlua::Result<()> {
    api.module(
        "hoot",
        "Hootenanny, the artifact store, over HOOT/1 (needs luanette --hootenanny): record what a script made and \
         what it was made from. Every call carries the run's trace and deadline and stops with the run; results are \
         tables in the tool JSON form (artifact_id, cas_hash, name, tags, creator, metadata, parent_ids, created_at).",
    );
    let hoot = Hoot {
        connections,
        run: run.clone(),
    };
    let artifact = {
        let hoot = hoot.clone();
        api.lua().create_async_function(move |lua, options: mlua::Table| {
            let hoot = hoot.clone();
            async move {
                let function = "hoot.artifact";
                let request = hoot.artifact_request(&Options::new(function, Some(options)))?;
                let reply = hoot.call(&lua, function, request.into_payload()).await?;
                reply_field(&lua, function, reply, "artifact")
            }
        })?
    };
    api.function(
        "hoot",
        "artifact",
        "hoot.artifact{hash = h, name = s, tags = {...}, parents = {id, ...}, meta = {...}, creator = s} -> artifact",
        "Names a CAS object as an artifact with its lineage (parents are artifact ids). creator defaults to the \
         script (lua:<name>); meta gets job_id, script_hash and script_name. Example: `local a = \
         hoot.artifact{hash = midi, name = \"bridge\", tags = {\"transition\"}, parents = {verse.artifact_id}}`.",
        artifact,
    )?;
    let get = {
        let hoot = hoot.clone();
        api.lua().create_async_function(move |lua, id: String| {
            let hoot = hoot.clone();
            async move {
                let function = "hoot.get";
                let request = pb::ArtifactGetRequest { artifact_id: id }.into_payload();
                match hoot
                    .connections
                    .exchange(&lua, &hoot.run, Peer::Hootenanny, function, request)
                    .await?
                {
                    Ok(reply) => reply_field(&lua, function, reply, "artifact"),
                    Err(status) if status.code == ErrorCode::NotFound => Ok(LuaValue::Nil),
                    Err(status) => Err(fail(function, status)),
                }
            }
        })?
    };
    api.function(
        "hoot",
        "get",
        "hoot.get(id) -> artifact or nil",
        "One artifact by id; nil when there is none. Example: `local parent = hoot.get(a.parent_ids[1])`.",
        get,
    )?;
    let list = {
        let hoot = hoot.clone();
        api.lua()
            .create_async_function(move |lua, options: Option<mlua::Table>| {
                let hoot = hoot.clone();
                async move {
                    let function = "hoot.list";
                    let options = Options::new(function, options);
                    let limit = options.number("limit")?.unwrap_or(50.0);
                    if !(1.0..=MAX_LIST).contains(&limit) {
                        return Err(fail(function, format!("limit must be between 1 and {MAX_LIST}")));
                    }
                    let request = pb::ArtifactListRequest {
                        tag: options.text("tag")?.unwrap_or_default(),
                        creator: options.text("creator")?.unwrap_or_default(),
                        cas_hash: options.text("hash")?.unwrap_or_default(),
                        page_size: limit as u32,
                        page_token: String::new(),
                    };
                    let reply = hoot.call(&lua, function, request.into_payload()).await?;
                    reply_field(&lua, function, reply, "artifacts")
                }
            })?
    };
    api.function(
        "hoot",
        "list",
        "hoot.list{tag = s, creator = s, hash = h, limit = 50} -> {artifact, ...}",
        "Artifacts newest first, filtered by tag, creator and/or the CAS object they name (limit 1-500). Example: \
         `local named = hoot.list{hash = region.cas_hash, limit = 1}[1]`.",
        list,
    )?;
    let graph = {
        let hoot = hoot.clone();
        api.lua()
            .create_async_function(move |lua, (query, variables): (String, LuaValue)| {
                let hoot = hoot.clone();
                async move {
                    let function = "hoot.graph";
                    let variables = object_of(function, "variables", variables, &hoot.run)?;
                    let request = pb::GraphQueryRequest {
                        query,
                        variables,
                        operation_name: String::new(),
                    };
                    let reply = hoot.call(&lua, function, request.into_payload()).await?;
                    let json = hooteproto::json::tool_result(reply).map_err(|e| fail(function, e))?;
                    let data = json.get("data").cloned().unwrap_or_default();
                    let errors = json.get("errors").cloned().unwrap_or_default();
                    let messages: Vec<&str> = errors
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|e| e.get("message").and_then(serde_json::Value::as_str))
                        .collect();
                    if data.is_null() && !messages.is_empty() {
                        return Err(fail(function, messages.join("; ")));
                    }
                    Ok((json_to_lua(&lua, function, data)?, json_to_lua(&lua, function, errors)?))
                }
            })?
    };
    api.function(
        "hoot",
        "graph",
        "hoot.graph(query, variables?) -> data, errors",
        "Runs a GraphQL query over artifacts and their lineage (parents, children, ancestors); a query that fails \
         as a whole raises its errors. Example: `hoot.graph('query($id: ID!) { artifact(id: $id) { ancestors { \
         name } } }', {id = a.artifact_id}).artifact.ancestors`.",
        graph,
    )
}
