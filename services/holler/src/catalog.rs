//! Resources, prompts and completions, passed through to the backends that have them:
//! Luanette (`lua://…`, its prompts, completions of hashes, job ids and tags) and
//! Hootenanny (`hootenanny://graph/schema.graphql`). The MCP shapes are built as JSON and
//! read by rmcp's own types, so they follow the spec's field names exactly.

use std::time::Duration;

use hooteproto::RequestOptions;
use hooteproto::v1::envelope::Payload;
use hooteproto::v1::{self as pb, resource_content};
use rmcp::ErrorData as McpError;
use serde_json::{Value, json};

use crate::backends::{Backend, Backends, CallError};

const TIMEOUT: Duration = Duration::from_secs(10);

fn options() -> RequestOptions {
    RequestOptions {
        timeout: Some(TIMEOUT),
        ..Default::default()
    }
}

fn mcp_error(error: CallError) -> McpError {
    match error.code() {
        pb::ErrorCode::NotFound => McpError::resource_not_found(error.to_string(), None),
        pb::ErrorCode::InvalidArgument => McpError::invalid_params(error.to_string(), None),
        _ => McpError::internal_error(error.to_string(), None),
    }
}

/// Reads rmcp's type from MCP JSON.
pub fn from_mcp<T: rmcp::serde::de::DeserializeOwned>(value: Value) -> Result<T, McpError> {
    serde_json::from_value(value).map_err(|e| McpError::internal_error(format!("building the MCP reply: {e}"), None))
}

/// Which backend holds a resource URI.
pub fn resource_backend(uri: &str) -> Option<Backend> {
    if uri.starts_with("lua://") {
        Some(Backend::Luanette)
    } else if uri.starts_with("hootenanny://") {
        Some(Backend::Hootenanny)
    } else {
        None
    }
}

/// The timeline view as an MCP App (the `io.modelcontextprotocol/ui` extension): hosts that
/// support it render this HTML inline when `timeline_query` runs (its `_meta.ui.resourceUri`).
pub const TIMELINE_APP_URI: &str = "ui://hootenanny/timeline";
/// An MCP App's MIME type.
pub const MCP_APP_MIME: &str = "text/html;profile=mcp-app";
const TIMELINE_APP: &str = include_str!("../studio/timeline-app.html");

/// Resources and templates of the backends that are up, and the gateway's own (the timeline
/// app): `(resources, templates)` as MCP JSON.
pub async fn list_resources(backends: &Backends) -> (Vec<Value>, Vec<Value>) {
    let mut resources = vec![json!({
        "uri": TIMELINE_APP_URI,
        "name": "timeline-app",
        "title": "Hootenanny timeline",
        "description": "The timeline (regions, markers, the transport) as an interactive view, for MCP hosts that render MCP Apps; timeline_query shows it.",
        "mimeType": MCP_APP_MIME,
    })];
    let mut templates = Vec::new();
    for backend in [Backend::Luanette, Backend::Hootenanny] {
        let request = Payload::ListResources(pb::ListResourcesRequest::default());
        match backends.request(backend, request, options()).await {
            Ok(Payload::ListResourcesReply(reply)) => {
                resources.extend(reply.resources.into_iter().map(
                    |r| json!({"uri": r.uri, "name": r.name, "description": r.description, "mimeType": r.mime_type}),
                ));
                templates.extend(reply.templates.into_iter().map(|t| {
                    json!({"uriTemplate": t.uri_template, "name": t.name, "description": t.description, "mimeType": t.mime_type})
                }));
            }
            Ok(_) => {}
            Err(error) => tracing::debug!(backend = backend.name(), %error, "resources left out"),
        }
    }
    (resources, templates)
}

/// One resource's contents as MCP JSON.
pub async fn read_resource(backends: &Backends, uri: &str) -> Result<Value, McpError> {
    if uri == TIMELINE_APP_URI {
        return Ok(json!({"contents": [{"uri": uri, "mimeType": MCP_APP_MIME, "text": TIMELINE_APP}]}));
    }
    let backend = resource_backend(uri).ok_or_else(|| {
        McpError::resource_not_found(
            format!("no resource {uri:?}: URIs start with lua:// or hootenanny://, or are {TIMELINE_APP_URI}"),
            None,
        )
    })?;
    let request = Payload::ReadResource(pb::ReadResourceRequest { uri: uri.to_string() });
    match backends.request(backend, request, options()).await.map_err(mcp_error)? {
        Payload::ReadResourceReply(reply) => {
            use base64::Engine as _;
            let contents: Vec<Value> = reply
                .contents
                .into_iter()
                .map(|c| match c.content {
                    Some(resource_content::Content::Blob(bytes)) => json!({
                        "uri": c.uri, "mimeType": c.mime_type,
                        "blob": base64::engine::general_purpose::STANDARD.encode(bytes),
                    }),
                    Some(resource_content::Content::Text(text)) => {
                        json!({"uri": c.uri, "mimeType": c.mime_type, "text": text})
                    }
                    None => json!({"uri": c.uri, "mimeType": c.mime_type, "text": ""}),
                })
                .collect();
            Ok(json!({"contents": contents}))
        }
        other => Err(McpError::internal_error(
            format!("read_resource answered with {}", other.name()),
            None,
        )),
    }
}

/// Luanette's prompts as MCP JSON.
pub async fn list_prompts(backends: &Backends) -> Result<Value, McpError> {
    let request = Payload::ListPrompts(pb::ListPromptsRequest {});
    match backends
        .request(Backend::Luanette, request, options())
        .await
        .map_err(mcp_error)?
    {
        Payload::ListPromptsReply(reply) => {
            let prompts: Vec<Value> = reply
                .prompts
                .into_iter()
                .map(|p| {
                    let arguments: Vec<Value> = p
                        .arguments
                        .into_iter()
                        .map(|a| json!({"name": a.name, "description": a.description, "required": a.required}))
                        .collect();
                    json!({"name": p.name, "description": p.description, "arguments": arguments})
                })
                .collect();
            Ok(json!({"prompts": prompts}))
        }
        other => Err(McpError::internal_error(
            format!("list_prompts answered with {}", other.name()),
            None,
        )),
    }
}

/// A rendered prompt as MCP JSON.
pub async fn get_prompt(
    backends: &Backends,
    name: &str,
    arguments: std::collections::BTreeMap<String, String>,
) -> Result<Value, McpError> {
    let request = Payload::GetPrompt(pb::GetPromptRequest {
        name: name.to_string(),
        arguments,
    });
    match backends
        .request(Backend::Luanette, request, options())
        .await
        .map_err(mcp_error)?
    {
        Payload::GetPromptReply(reply) => {
            let messages: Vec<Value> = reply
                .messages
                .into_iter()
                .map(|m| {
                    let role = if m.role == pb::PromptRole::Assistant as i32 {
                        "assistant"
                    } else {
                        "user"
                    };
                    json!({"role": role, "content": {"type": "text", "text": m.text}})
                })
                .collect();
            Ok(json!({"description": reply.description, "messages": messages}))
        }
        other => Err(McpError::internal_error(
            format!("get_prompt answered with {}", other.name()),
            None,
        )),
    }
}

/// Completions of an argument (`context` is the argument's name, as Luanette expects).
pub async fn complete(backends: &Backends, argument: &str, partial: &str) -> Result<Value, McpError> {
    let request = Payload::Complete(pb::CompleteRequest {
        context: argument.to_string(),
        partial: partial.to_string(),
    });
    match backends
        .request(Backend::Luanette, request, options())
        .await
        .map_err(mcp_error)?
    {
        Payload::CompleteReply(reply) => Ok(json!({
            "completion": {"values": reply.values, "total": reply.total, "hasMore": reply.has_more}
        })),
        other => Err(McpError::internal_error(
            format!("complete answered with {}", other.name()),
            None,
        )),
    }
}
