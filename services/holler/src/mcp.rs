//! The MCP side of the gateway: a hand-written `ServerHandler` whose tools are whatever
//! the backends list right now (asked on every `tools/list`, so a backend that comes back
//! brings its tools back), with input and output schemas and annotations from the schema,
//! and whose calls are routed to the service the schema names, over ZMQ. Results are the
//! reply in the tool JSON form (`hooteproto::json::tool_result`), as `structuredContent`
//! and as text.

use std::sync::Arc;
use std::time::Duration;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, CompleteRequestParams, CompleteResult, ContentBlock,
    GetPromptRequestParams, GetPromptResponse, GetPromptResult, Implementation, ListPromptsResult,
    ListResourceTemplatesResult, ListResourcesResult, ListToolsResult, PaginatedRequestParams,
    ReadResourceRequestParams, ReadResourceResponse, ReadResourceResult, ServerCapabilities, ServerConfig, Tool,
    ToolAnnotations,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData as McpError, RoleServer, ServerHandler};
use tracing::Instrument as _;

use hooteproto::v1::{self as pb, envelope::Payload};

use crate::backends::{Backend, Backends, CallError, Waited};
use crate::catalog::{self, from_mcp};

/// How long `tools/list` waits for each backend.
const LIST_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a tool call may take; `job_poll` gets its own wait on top.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// A session subscribed to a resource: its `mcp-session-id` and its peer.
type Subscriber = (String, rmcp::Peer<RoleServer>);

/// The sessions that finished initializing, so a change in the tool list reaches all of
/// them (rmcp's own `notify_tool_list_changed` reaches only the calling session).
#[derive(Default)]
pub struct Sessions {
    peers: std::sync::Mutex<Vec<rmcp::Peer<RoleServer>>>,
    /// Resource URI → the sessions subscribed to it (`resources/subscribe`).
    subscribed: std::sync::Mutex<std::collections::HashMap<String, Vec<Subscriber>>>,
}

impl Sessions {
    fn subscribe(&self, uri: String, session: String, peer: rmcp::Peer<RoleServer>) {
        if let Ok(mut subscribed) = self.subscribed.lock() {
            let peers = subscribed.entry(uri).or_default();
            peers.retain(|(s, p)| !p.is_transport_closed() && *s != session);
            peers.push((session, peer));
        }
    }

    fn unsubscribe(&self, uri: &str, session: &str) {
        if let Ok(mut subscribed) = self.subscribed.lock()
            && let Some(peers) = subscribed.get_mut(uri)
        {
            peers.retain(|(s, p)| !p.is_transport_closed() && s != session);
        }
    }

    /// `notifications/resources/updated` to the sessions subscribed to `uri`.
    pub async fn resource_updated(&self, uri: &str) -> usize {
        let peers: Vec<_> = match self.subscribed.lock() {
            Ok(mut subscribed) => match subscribed.get_mut(uri) {
                Some(peers) => {
                    peers.retain(|(_, p)| !p.is_transport_closed());
                    peers.iter().map(|(_, p)| p.clone()).collect()
                }
                None => return 0,
            },
            Err(_) => return 0,
        };
        let mut sent = 0;
        for peer in peers {
            let param = rmcp::model::ResourceUpdatedNotificationParam::new(uri.to_string());
            if peer.notify_resource_updated(param).await.is_ok() {
                sent += 1;
            }
        }
        sent
    }

    /// `notifications/resources/list_changed` to every open session.
    pub async fn resources_changed(&self) {
        let peers: Vec<_> = match self.peers.lock() {
            Ok(peers) => peers.iter().filter(|p| !p.is_transport_closed()).cloned().collect(),
            Err(_) => return,
        };
        for peer in peers {
            let _ = peer.notify_resource_list_changed().await;
        }
    }

    fn add(&self, peer: rmcp::Peer<RoleServer>) {
        if let Ok(mut peers) = self.peers.lock() {
            peers.retain(|p| !p.is_transport_closed());
            peers.push(peer);
        }
    }

    /// Sends `notifications/tools/list_changed` to every open session; returns how many.
    pub async fn tools_changed(&self) -> usize {
        let peers: Vec<_> = match self.peers.lock() {
            Ok(mut peers) => {
                peers.retain(|p| !p.is_transport_closed());
                peers.clone()
            }
            Err(_) => return 0,
        };
        let mut sent = 0;
        for peer in peers {
            if peer.notify_tool_list_changed().await.is_ok() {
                sent += 1;
            }
        }
        sent
    }
}

/// One MCP session's view of the backends (cheap to clone: the clients are shared).
#[derive(Clone)]
pub struct Gateway {
    backends: Arc<Backends>,
    sessions: Arc<Sessions>,
}

impl Gateway {
    /// A gateway over these backends.
    pub fn new(backends: Arc<Backends>, sessions: Arc<Sessions>) -> Self {
        Self { backends, sessions }
    }

    /// Forwards Luanette's broadcasts to the sessions they concern: a job's state or
    /// progress becomes `resources/updated` for `lua://jobs/{id}` (to sessions subscribed to
    /// it), a new or changed script `resources/list_changed` (to every session).
    /// The studio's pages (`studio`), when this gateway serves them, hear every event too.
    pub async fn forward_broadcasts(
        mut subscriber: hooteproto::broadcast::Subscriber,
        sessions: Arc<Sessions>,
        studio: Option<Arc<crate::studio::events::Events>>,
    ) {
        use hooteproto::v1::broadcast::Event;
        loop {
            let broadcast = match subscriber.recv().await {
                Ok(broadcast) => broadcast,
                Err(error) => {
                    tracing::warn!(%error, "Luanette's broadcasts cannot be read; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            if let (Some(studio), Some(event)) = (&studio, &broadcast.event) {
                studio.publish_broadcast(event);
            }
            match broadcast.event {
                Some(Event::JobStateChanged(change)) => {
                    sessions
                        .resource_updated(&format!("lua://jobs/{}", change.job_id))
                        .await;
                }
                Some(Event::JobProgress(progress)) => {
                    sessions
                        .resource_updated(&format!("lua://jobs/{}", progress.job_id))
                        .await;
                }
                Some(Event::ScriptInvalidate(_)) => sessions.resources_changed().await,
                _ => {}
            }
        }
    }

    /// Watches which backends answer (every `every`) and tells every session when the set
    /// changes, so clients re-list tools when a backend comes back or goes away.
    pub async fn watch_backends(backends: Arc<Backends>, sessions: Arc<Sessions>, every: Duration) {
        let mut known: Option<Vec<bool>> = None;
        loop {
            let mut up = Vec::new();
            for backend in Backend::ALL {
                up.push(backends.ping(backend).await);
            }
            if known.as_ref().is_some_and(|k| *k != up) {
                let sent = sessions.tools_changed().await;
                tracing::info!(?up, sessions = sent, "backends changed; tools/list_changed sent");
            }
            known = Some(up);
            tokio::time::sleep(every).await;
        }
    }

    /// Every tool every reachable backend offers; down backends are skipped (logged).
    pub async fn tools(&self) -> Vec<Tool> {
        let backends = &self.backends;
        // Asked at once, so a down backend costs one timeout, not one each.
        let (luanette, hootenanny, chaosgarden) = tokio::join!(
            backends.tools(Backend::Luanette, LIST_TIMEOUT),
            backends.tools(Backend::Hootenanny, LIST_TIMEOUT),
            backends.tools(Backend::Chaosgarden, LIST_TIMEOUT),
        );
        let lists = [
            (Backend::Luanette, luanette),
            (Backend::Hootenanny, hootenanny),
            (Backend::Chaosgarden, chaosgarden),
        ];
        let mut tools = Vec::new();
        for (backend, list) in lists {
            match list {
                Ok(list) => tools.extend(list.into_iter().filter(|t| valid_name(&t.name)).map(mcp_tool)),
                Err(error) => tracing::debug!(backend = backend.name(), %error, "backend left out of tools/list"),
            }
        }
        tools
    }
}

/// The MCP form of a tool a backend lists: its schemas, and annotations from the schema's hints.
/// `job_execute` also takes Holler's own `wait`, and then answers with the job's final record,
/// so its output schema adds that record's fields.
pub fn mcp_tool(info: hooteproto::v1::ToolInfo) -> Tool {
    let mut input = info.input_schema.and_then(|s| s.to_json().ok()).unwrap_or_default();
    let mut output = info.output_schema.and_then(|s| s.to_json().ok()).unwrap_or_default();
    if info.name == "job_execute" {
        if let Some(serde_json::Value::Object(properties)) = input.get_mut("properties") {
            properties.insert("wait".into(), serde_json::json!({
                "type": "boolean",
                "description": "Holler only: wait for the job to finish and return its record (the result's other fields), sending the job's progress as MCP progress notifications; cancelling the call cancels the job.",
            }));
        }
        if let (Ok(serde_json::Value::Object(job)), Some(serde_json::Value::Object(properties))) = (
            hooteproto::json::tool_output_schema("hooteproto.v1.JobInfo"),
            output.get_mut("properties"),
        ) && let Some(serde_json::Value::Object(fields)) = job.get("properties")
        {
            for (name, schema) in fields {
                if properties.contains_key(name) {
                    continue;
                }
                let mut schema = schema.clone();
                if let Some(object) = schema.as_object_mut() {
                    let text = object.get("description").and_then(|d| d.as_str()).unwrap_or_default();
                    object.insert("description".into(), format!("With wait: {text}").into());
                }
                properties.insert(name.clone(), schema);
            }
        }
    }
    let annotations = ToolAnnotations::new()
        .read_only(info.read_only)
        .destructive(info.destructive)
        .idempotent(info.idempotent)
        .open_world(info.open_world);
    let app = info.name == "timeline_query";
    let mut tool = Tool::new(info.name, info.description, Arc::new(input));
    tool.output_schema = Some(Arc::new(output));
    tool.annotations = Some(annotations);
    if app {
        // MCP Apps: hosts that render them show the timeline view with the result.
        let mut meta = rmcp::model::MetaObject::new();
        meta.0.insert(
            "ui".into(),
            serde_json::json!({"resourceUri": catalog::TIMELINE_APP_URI}),
        );
        tool.meta = Some(meta);
    }
    tool
}

/// Names common MCP clients accept: `^[a-zA-Z0-9_-]{1,64}$`.
pub fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

impl Gateway {
    /// `job_execute` with `wait: true`: start the job, forward its progress, cancel it if
    /// the client cancels the call, and return its final record (the shared
    /// [`Backends::wait_job`] loop, as the CLI's `job run --wait`).
    async fn run_job(
        &self,
        arguments: serde_json::Map<String, serde_json::Value>,
        context: RequestContext<RoleServer>,
    ) -> CallToolResult {
        let backends = &self.backends;
        let short = Duration::from_secs(10);
        // The agent's arguments are JSON (checked against the schema); the reply is read typed.
        let started = backends
            .call("job_execute", &serde_json::Value::Object(arguments), short)
            .await
            .and_then(crate::backends::typed::<pb::JobExecuteRequest>);
        let job_id = match started {
            Ok(reply) => reply.job_id,
            Err(error) => return failure(&error),
        };
        let token = context.meta.get_progress_token();
        let peer = context.peer.clone();
        let progress = |job: &pb::JobInfo| {
            let param = token.as_ref().map(|token| {
                serde_json::json!({
                    "progressToken": token, "progress": job.progress, "total": 1.0,
                    "message": job.progress_message,
                })
            });
            let peer = peer.clone();
            async move {
                if let Some(Ok(param)) = param.map(catalog::from_mcp) {
                    let _ = peer.notify_progress(param).await;
                }
            }
        };
        match backends.wait_job(&job_id, progress, context.ct.cancelled()).await {
            Ok(Waited::Finished(job)) => {
                let succeeded = job.state == pb::JobState::Succeeded as i32;
                let record =
                    hooteproto::json::tool_result(Payload::JobStatusReply(pb::JobStatusReply { job: Some(job) }))
                        .map(|mut reply| reply["job"].take());
                let record = match record {
                    Ok(record) => record,
                    Err(e) => {
                        return CallToolResult::error(vec![ContentBlock::text(format!(
                            "INTERNAL: job {job_id} ended, but its record is not representable as JSON: {e}"
                        ))]);
                    }
                };
                let text = serde_json::to_string_pretty(&record).unwrap_or_default();
                let mut result = if succeeded {
                    CallToolResult::success(vec![ContentBlock::text(text)])
                } else {
                    CallToolResult::error(vec![ContentBlock::text(text)])
                };
                result.structured_content = Some(record);
                result
            }
            Ok(Waited::Stopped) => {
                let cancelled = backends
                    .send(pb::JobCancelRequest { job_id: job_id.clone() }, short)
                    .await;
                tracing::info!(job = %job_id, ok = cancelled.is_ok(), "the MCP client cancelled; job cancelled");
                CallToolResult::error(vec![ContentBlock::text(format!(
                    "CANCELLED: job {job_id} was cancelled by the client"
                ))])
            }
            Err(error) => failure(&error),
        }
    }
}

/// The MCP session a request belongs to (its `mcp-session-id` header).
fn session_id(context: &RequestContext<RoleServer>) -> String {
    context
        .extensions
        .get::<axum::http::request::Parts>()
        .and_then(|parts| parts.headers.get("mcp-session-id"))
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

/// A long poll may wait up to its own `timeout_ms` (≤ 300 s) before answering.
pub(crate) fn call_timeout(tool: &str, arguments: &serde_json::Value) -> Duration {
    let poll = arguments
        .get("timeout_ms")
        .and_then(serde_json::Value::as_u64)
        .filter(|_| tool == "job_poll")
        .unwrap_or(0)
        .min(300_000);
    CALL_TIMEOUT + Duration::from_millis(poll)
}

/// A failed call as the agent sees it: `CODE: message`, the code said once.
fn failure(error: &CallError) -> CallToolResult {
    let code = hooteproto::error::code_name(error.code());
    CallToolResult::error(vec![ContentBlock::text(format!("{code}: {}", error.message()))])
}

/// What the server tells agents at `initialize`: each service and its tools, from the catalog.
fn instructions() -> String {
    let services: Vec<String> = Backend::ALL
        .into_iter()
        .map(|service| {
            let tools: Vec<&str> = service.tools().map(|t| t.name).collect();
            format!("{} ({})", service.name(), tools.join(", "))
        })
        .collect();
    format!(
        "Hootenanny: make music with Lua scripts, content-addressed storage and artifacts, and a real-time \
         transport and timeline. Tools by service: {}. Enum values are short lowercase names (e.g. \
         section_change); results follow each tool's outputSchema.",
        services.join("; ")
    )
}

impl ServerHandler for Gateway {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_tool_list_changed()
                .build(),
        )
        .with_server_info(Implementation::new("holler", env!("CARGO_PKG_VERSION")))
        .with_instructions(instructions())
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        Ok(ListToolsResult::with_all_items(self.tools().await))
    }

    async fn on_initialized(&self, context: rmcp::service::NotificationContext<RoleServer>) {
        self.sessions.add(context.peer);
    }

    #[allow(deprecated)]
    async fn subscribe(
        &self,
        request: rmcp::model::SubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        if catalog::resource_backend(&request.uri).is_none() {
            return Err(McpError::resource_not_found(
                format!("no resource {:?}", request.uri),
                None,
            ));
        }
        self.sessions.subscribe(request.uri, session_id(&context), context.peer);
        Ok(())
    }

    #[allow(deprecated)]
    async fn unsubscribe(
        &self,
        request: rmcp::model::UnsubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        self.sessions.unsubscribe(&request.uri, &session_id(&context));
        Ok(())
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, McpError> {
        let (resources, _) = catalog::list_resources(&self.backends).await;
        from_mcp(serde_json::json!({ "resources": resources }))
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, McpError> {
        let (_, templates) = catalog::list_resources(&self.backends).await;
        from_mcp(serde_json::json!({ "resourceTemplates": templates }))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, McpError> {
        let contents = catalog::read_resource(&self.backends, &request.uri).await?;
        Ok(from_mcp::<ReadResourceResult>(contents)?.into())
    }

    async fn list_prompts(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, McpError> {
        from_mcp(catalog::list_prompts(&self.backends).await?)
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, McpError> {
        let arguments = request
            .arguments
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| {
                let v = match v {
                    serde_json::Value::String(s) => s,
                    other => other.to_string(),
                };
                (k, v)
            })
            .collect();
        let prompt = catalog::get_prompt(&self.backends, &request.name, arguments).await?;
        Ok(from_mcp::<GetPromptResult>(prompt)?.into())
    }

    async fn complete(
        &self,
        request: CompleteRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CompleteResult, McpError> {
        from_mcp(catalog::complete(&self.backends, &request.argument.name, &request.argument.value).await?)
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let name = request.name.to_string();
        if hooteproto::tools::find(&name).is_none() {
            return Err(McpError::invalid_params(CallError::UnknownTool(name).to_string(), None));
        }
        let mut arguments = request.arguments.unwrap_or_default();
        if name == "job_execute" && matches!(arguments.remove("wait"), Some(serde_json::Value::Bool(true))) {
            return Ok(self.run_job(arguments, context).await.into());
        }
        let arguments = serde_json::Value::Object(arguments);
        // One span per call, a child of the HTTP request's W3C traceparent when it has one;
        // the envelopes to the backend carry it as their traceparent.
        let span = tracing::info_span!("mcp.tool_call", tool = %name);
        if let Some(traceparent) = context
            .extensions
            .get::<axum::http::request::Parts>()
            .and_then(|parts| parts.headers.get("traceparent"))
            .and_then(|value| value.to_str().ok())
        {
            hooteproto::trace::set_remote_parent(&span, traceparent);
        }
        let result = self
            .backends
            .call_tool_structured(&name, &arguments, call_timeout(&name, &arguments))
            .instrument(span)
            .await;
        Ok(match result {
            Ok(reply) => {
                let text = serde_json::to_string_pretty(&reply).unwrap_or_default();
                let mut result = CallToolResult::success(vec![ContentBlock::text(text)]);
                result.structured_content = Some(reply);
                result
            }
            Err(error) => failure(&error),
        }
        .into())
    }
}
