//! The HOOT/1 handler.

use hooteproto::server::Lifecycle;
use hooteproto::v1::envelope::Payload;
use hooteproto::v1::{self as pb, ErrorCode};
use hooteproto::{Handler, RequestContext, Status};

use crate::runner::Runner;
use crate::sandbox::{EvalError, Limits};

/// Everything a request may touch.
pub struct Service {
    pub(crate) runner: Runner,
    pub(crate) scripts: crate::scripts::Scripts,
    /// Limits of one evaluation; a request's own deadline can only shorten `wall`.
    pub(crate) limits: Limits,
    pub(crate) lifecycle: std::sync::Arc<Lifecycle>,
}

/// (tool name, request message, description)
const TOOLS: &[(&str, &str, &str)] = &[
    (
        "lua_eval",
        "LuaEvalRequest",
        "Run Lua 5.4 code now in a fresh sandbox (no files, no network except the music stdlib) and return its \
         result as JSON with what it printed. `params` is visible as the global table `params`. Limits: wall time \
         (default 30 s) and memory (default 256 MiB) per evaluation.",
    ),
    (
        "script_store",
        "ScriptStoreRequest",
        "Store a Lua script by the hash of its source, with tags and a creator. Its syntax is checked and its \
         describe() (returning {name, description, params = JSON Schema}) is recorded. Storing the same source again \
         merges the tags.",
    ),
    (
        "lua_describe",
        "LuaDescribeRequest",
        "A stored script's description, tags and creator, by hash or unique prefix.",
    ),
    (
        "script_search",
        "ScriptSearchRequest",
        "Find stored scripts by tag, creator and/or vibe (words matched in name, description and tags), newest first.",
    ),
];

fn details(json: serde_json::Value) -> hooteproto::wkt::Struct {
    hooteproto::wkt::Struct::from_json(json.as_object().cloned().unwrap_or_default())
}

/// A script's failure as a canonical status with structured details.
fn eval_status(error: EvalError) -> Status {
    let message = error.to_string();
    match error {
        EvalError::TimeLimit(_) => {
            Status::deadline_exceeded(message).with_details(details(serde_json::json!({"kind": "time_limit"})))
        }
        EvalError::Cancelled => {
            Status::cancelled(message).with_details(details(serde_json::json!({"kind": "cancelled"})))
        }
        EvalError::MemoryLimit(_) => {
            Status::resource_exhausted(message).with_details(details(serde_json::json!({"kind": "memory_limit"})))
        }
        EvalError::Syntax { line, .. } => {
            Status::invalid_argument(message).with_details(details(serde_json::json!({"kind": "syntax", "line": line})))
        }
        EvalError::Runtime { line, traceback, .. } => Status::invalid_argument(message).with_details(details(
            serde_json::json!({"kind": "runtime", "line": line, "traceback": traceback}),
        )),
        EvalError::Conversion(_) => {
            Status::invalid_argument(message).with_details(details(serde_json::json!({"kind": "conversion"})))
        }
        EvalError::Setup(_) => Status::internal(message),
    }
}

impl Handler for Service {
    async fn handle(&self, context: RequestContext, payload: Payload) -> Result<Payload, Status> {
        match payload {
            Payload::Ping(_) => Ok(self.lifecycle.ping_reply()),
            Payload::Shutdown(request) => Ok(self.lifecycle.shutdown_reply(&request.reason)),
            Payload::LuaEval(request) => {
                let params = match request.params {
                    Some(params) => Some(
                        params
                            .to_prost()
                            .map_err(|e| Status::invalid_argument(format!("params are malformed: {e}")))?,
                    ),
                    None => None,
                };
                let mut limits = self.limits;
                if let Some(deadline) = context.deadline {
                    limits.wall = limits
                        .wall
                        .min(deadline.saturating_duration_since(tokio::time::Instant::now()));
                }
                let (result, took) = self.runner.eval(request.code, params, limits).await?;
                let output = result.map_err(eval_status)?;
                Ok(Payload::LuaEvalReply(pb::LuaEvalReply {
                    result: Some(output.result),
                    output: output.output,
                    duration_us: u64::try_from(took.as_micros()).unwrap_or(u64::MAX),
                }))
            }
            Payload::ScriptStore(request) => Ok(Payload::ScriptStoreReply(self.scripts.store(request).await?)),
            Payload::LuaDescribe(request) => Ok(Payload::LuaDescribeReply(pb::LuaDescribeReply {
                script: Some(Box::new(self.scripts.describe(&request.script_hash)?)),
            })),
            Payload::ScriptSearch(request) => Ok(Payload::ScriptSearchReply(pb::ScriptSearchReply {
                scripts: self
                    .scripts
                    .search(&request.tag, &request.creator, &request.vibe, request.limit as usize)?,
            })),
            Payload::ListTools(_) => {
                let tools = TOOLS
                    .iter()
                    .map(|(name, message, description)| {
                        hooteproto::json::tool_info(name, message, description)
                            .map_err(|e| Status::internal(e.to_string()))
                    })
                    .collect::<Result<_, Status>>()?;
                Ok(Payload::ListToolsReply(pb::ListToolsReply { tools }))
            }
            other => Err(Status::new(
                ErrorCode::Unimplemented,
                format!("luanette does not serve `{}` yet", other.name()),
            )),
        }
    }
}
