//! The three backends as Holler sees them: one SDK client each, tool routing by the schema's
//! tool catalog (`hooteproto::tools`), typed calls ([`Backends::send`]: a `pb::*` request in,
//! its typed reply out), tool calls made from JSON arguments for agents and `holler call`
//! (the request message whose oneof case is the tool's name: `lua_eval` is
//! `LuaEvalRequest`), and [`Backends::wait_job`], the one job-wait loop behind the CLI's
//! `job run --wait`/`job wait` and MCP's `job_execute{wait: true}`.

use std::future::Future;
use std::time::Duration;

use hooteproto::client::{ClientConfig, RequestOptions};
use hooteproto::v1::envelope::Payload;
use hooteproto::v1::{self as pb, Envelope};
use hooteproto::{Client, Key, Request};
use serde_json::Value;

/// A backend service: one of the services the schema's `(hooteproto.v1.tool)` options name,
/// which also route each tool to its service (`Backend::for_tool`).
pub use hooteproto::tools::Service as Backend;

/// Where the backends are.
#[derive(Debug, Clone)]
pub struct Endpoints {
    /// Luanette's ROUTER.
    pub luanette: String,
    /// Hootenanny's ROUTER.
    pub hootenanny: String,
    /// Chaosgarden's ROUTER.
    pub chaosgarden: String,
}

impl Default for Endpoints {
    fn default() -> Self {
        Self {
            luanette: hooteproto::defaults::LUANETTE.bind.into(),
            hootenanny: hooteproto::defaults::HOOTENANNY.bind.into(),
            chaosgarden: hooteproto::defaults::CHAOSGARDEN.bind.into(),
        }
    }
}

impl Endpoints {
    /// The endpoint of one backend.
    pub fn of(&self, backend: Backend) -> &str {
        match backend {
            Backend::Luanette => &self.luanette,
            Backend::Hootenanny => &self.hootenanny,
            Backend::Chaosgarden => &self.chaosgarden,
        }
    }
}

/// Why a call through Holler failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// No backend serves a tool of this name.
    #[error("unknown tool {0:?}; the tools are {tools}", tools = tool_names())]
    UnknownTool(String),
    /// The arguments are not the request's proto3 JSON.
    #[error("arguments for {tool} do not match its input schema: {reason}")]
    BadArguments {
        /// The tool.
        tool: String,
        /// Why.
        reason: String,
    },
    /// The backend did not answer.
    #[error("backend {backend} unavailable at {endpoint}: {reason}")]
    Unavailable {
        /// Which.
        backend: &'static str,
        /// Where.
        endpoint: String,
        /// What the client saw.
        reason: String,
    },
    /// The backend answered with an error.
    #[error("{0}")]
    Remote(hooteproto::Status),
}

/// Every tool's name, for messages.
fn tool_names() -> String {
    hooteproto::tools::TOOLS
        .iter()
        .map(|t| t.name)
        .collect::<Vec<_>>()
        .join(", ")
}

impl CallError {
    /// The error's text without its code (a remote status carries its code separately).
    pub fn message(&self) -> String {
        match self {
            CallError::Remote(status) => status.message.clone(),
            other => other.to_string(),
        }
    }

    /// The canonical code.
    pub fn code(&self) -> pb::ErrorCode {
        match self {
            CallError::UnknownTool(_) => pb::ErrorCode::NotFound,
            CallError::BadArguments { .. } => pb::ErrorCode::InvalidArgument,
            CallError::Unavailable { .. } => pb::ErrorCode::Unavailable,
            CallError::Remote(status) => status.code,
        }
    }
}

/// The service a request goes to: a tool's by the catalog; `None` for payloads that are not tools.
pub fn route(payload: &Payload) -> Option<Backend> {
    hooteproto::tools::find(payload.name()).map(|tool| tool.service)
}

/// A reply payload as the typed reply of `R`; another payload is a protocol mismatch.
pub fn typed<R: Request>(reply: Payload) -> Result<R::Reply, CallError> {
    R::reply_from(reply).map_err(|other| {
        CallError::Remote(hooteproto::Status::internal(format!(
            "the backend answered with {}",
            other.name()
        )))
    })
}

/// Whether a job has ended (succeeded, failed or cancelled).
pub fn job_finished(state: i32) -> bool {
    matches!(
        pb::JobState::try_from(state),
        Ok(pb::JobState::Succeeded | pb::JobState::Failed | pb::JobState::Cancelled)
    )
}

/// How [`Backends::wait_job`] ended.
#[derive(Debug)]
pub enum Waited {
    /// The job ended; its final record (state, result or error, logs).
    Finished(Box<pb::JobInfo>),
    /// The caller stopped waiting (Ctrl-C, a cancelled MCP call); the job may still run.
    Stopped,
}

/// A payload from its oneof case name and proto3 JSON.
pub fn payload_from_json(case: &str, arguments: &Value) -> Result<Payload, String> {
    let mut envelope = serde_json::Map::new();
    envelope.insert(case.to_string(), arguments.clone());
    let text = serde_json::to_string(&Value::Object(envelope)).map_err(|e| e.to_string())?;
    let envelope = hooteproto::json::envelope_from_json(&text).map_err(|e| e.to_string())?;
    envelope
        .payload
        .ok_or_else(|| format!("{case:?} is not a payload of the schema"))
}

/// A payload's proto3 JSON (the value under its case).
pub fn payload_to_json(payload: Payload) -> Value {
    let envelope = Envelope {
        payload: Some(payload),
        ..Default::default()
    };
    match hooteproto::json::envelope_to_json(&envelope) {
        Ok(Value::Object(fields)) => fields.into_iter().next().map(|(_, v)| v).unwrap_or(Value::Null),
        Ok(other) => other,
        Err(e) => Value::String(format!("(reply not representable as JSON: {e})")),
    }
}

/// How long a backend that answered counts as up without asking again.
const FRESH: Duration = Duration::from_secs(2);
/// How long a liveness ping may take before the backend counts as down.
const PROBE: Duration = Duration::from_millis(750);

/// Clients for the three backends.
#[derive(Clone)]
pub struct Backends {
    endpoints: Endpoints,
    luanette: Client,
    hootenanny: Client,
    chaosgarden: Client,
    /// When each backend last answered (a DEALER queues for a peer that is not there, so
    /// without this a call to a down backend would wait out its whole deadline).
    answered: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<Backend, std::time::Instant>>>,
}

impl Backends {
    /// Connects (lazily: a backend may be down now and come up later).
    pub fn connect(endpoints: Endpoints, key: Option<Key>, name: &str) -> anyhow::Result<Self> {
        let client = |endpoint: &str| {
            let mut config = ClientConfig::new(endpoint.to_string());
            config.key = key.clone();
            config.name = name.to_string();
            Client::connect(config)
        };
        Ok(Self {
            luanette: client(&endpoints.luanette)?,
            hootenanny: client(&endpoints.hootenanny)?,
            chaosgarden: client(&endpoints.chaosgarden)?,
            endpoints,
            answered: Default::default(),
        })
    }

    /// One backend's client.
    pub fn client(&self, backend: Backend) -> &Client {
        match backend {
            Backend::Luanette => &self.luanette,
            Backend::Hootenanny => &self.hootenanny,
            Backend::Chaosgarden => &self.chaosgarden,
        }
    }

    /// Where the backends are.
    pub fn endpoints(&self) -> &Endpoints {
        &self.endpoints
    }

    /// Where a backend is.
    pub fn endpoint(&self, backend: Backend) -> &str {
        self.endpoints.of(backend)
    }

    /// Whether a backend answers a ping within the liveness probe's time.
    pub async fn ping(&self, backend: Backend) -> bool {
        let options = RequestOptions {
            timeout: Some(PROBE),
            attempt_timeout: Some(PROBE),
            ..Default::default()
        };
        let answered = self
            .client(backend)
            .request_with(Payload::Ping(pb::PingRequest {}), options)
            .await
            .is_ok();
        if answered {
            self.mark_answered(backend);
        }
        answered
    }

    fn mark_answered(&self, backend: Backend) {
        if let Ok(mut answered) = self.answered.lock() {
            answered.insert(backend, std::time::Instant::now());
        }
    }

    /// Fails fast with `Unavailable` when a backend that has not answered lately does not
    /// answer a ping within `PROBE`.
    async fn ensure_up(&self, backend: Backend) -> Result<(), CallError> {
        let fresh = self
            .answered
            .lock()
            .ok()
            .and_then(|a| a.get(&backend).map(|t| t.elapsed() < FRESH))
            .unwrap_or(false);
        if fresh {
            return Ok(());
        }
        let options = RequestOptions {
            timeout: Some(PROBE),
            attempt_timeout: Some(PROBE),
            ..Default::default()
        };
        match self
            .client(backend)
            .request_with(Payload::Ping(pb::PingRequest {}), options)
            .await
        {
            Ok(_) => {
                self.mark_answered(backend);
                Ok(())
            }
            Err(error) => Err(CallError::Unavailable {
                backend: backend.name(),
                endpoint: self.endpoint(backend).to_string(),
                reason: format!("no answer to a ping within {} ms ({error})", PROBE.as_millis()),
            }),
        }
    }

    /// Sends a payload to a backend; transport failures become `Unavailable`.
    pub async fn request(
        &self,
        backend: Backend,
        payload: Payload,
        options: RequestOptions,
    ) -> Result<Payload, CallError> {
        if !matches!(payload, Payload::Ping(_)) {
            self.ensure_up(backend).await?;
        }
        match self.client(backend).request_with(payload, options).await {
            Ok(reply) => {
                self.mark_answered(backend);
                Ok(reply)
            }
            Err(hooteproto::Error::Remote(status)) => {
                self.mark_answered(backend);
                Err(CallError::Remote(status))
            }
            Err(error) => Err(CallError::Unavailable {
                backend: backend.name(),
                endpoint: self.endpoint(backend).to_string(),
                reason: error.to_string(),
            }),
        }
    }

    /// Sends a typed request to the service the tool catalog routes it to; the typed reply.
    pub async fn send<R: Request>(&self, request: R, timeout: Duration) -> Result<R::Reply, CallError> {
        let payload = request.into_payload();
        let backend = route(&payload).ok_or_else(|| CallError::UnknownTool(payload.name().to_string()))?;
        let options = RequestOptions {
            timeout: Some(timeout),
            attempt_timeout: Some(timeout),
            ..Default::default()
        };
        typed::<R>(self.request(backend, payload, options).await?)
    }

    /// Follows a job until it ends or `stop` resolves: `progress` is called with the job's
    /// record whenever its progress or message changes; the job is long-polled, so its end
    /// is seen at once. Stopping does not cancel the job (MCP's caller does that itself).
    pub async fn wait_job<F, Fut>(
        &self,
        job_id: &str,
        mut progress: F,
        stop: impl Future<Output = ()>,
    ) -> Result<Waited, CallError>
    where
        F: FnMut(&pb::JobInfo) -> Fut,
        Fut: Future<Output = ()>,
    {
        const POLL_MS: u32 = 500;
        let short = Duration::from_secs(10);
        tokio::pin!(stop);
        let mut reported: Option<(u64, String)> = None;
        loop {
            let status = tokio::select! {
                _ = &mut stop => return Ok(Waited::Stopped),
                status = self.send(pb::JobStatusRequest { job_id: job_id.to_string() }, short) => status?,
            };
            let job = status.job.ok_or_else(|| {
                CallError::Remote(hooteproto::Status::internal(format!(
                    "job_status answered without job {job_id}"
                )))
            })?;
            if job_finished(job.state) {
                return Ok(Waited::Finished(job));
            }
            let now = (job.progress.to_bits(), job.progress_message.clone());
            if reported.as_ref() != Some(&now) {
                progress(&job).await;
                reported = Some(now);
            }
            let poll = pb::JobPollRequest {
                job_ids: vec![job_id.to_string()],
                timeout_ms: POLL_MS,
                mode: pb::PollMode::Any as i32,
            };
            let polled = tokio::select! {
                _ = &mut stop => return Ok(Waited::Stopped),
                polled = self.send(poll, short + Duration::from_millis(POLL_MS.into())) => polled?,
            };
            if let Some(job) = polled.completed.into_iter().find(|j| j.job_id == job_id) {
                return Ok(Waited::Finished(Box::new(job)));
            }
        }
    }

    /// Calls a tool by name with JSON arguments (field names as in the schema or camelCase,
    /// enums by short or full name); returns the reply.
    pub async fn call(&self, tool: &str, arguments: &Value, timeout: Duration) -> Result<Payload, CallError> {
        let facts = hooteproto::tools::find(tool).ok_or_else(|| CallError::UnknownTool(tool.to_string()))?;
        let payload = hooteproto::json::tool_request(facts, arguments).map_err(|e| CallError::BadArguments {
            tool: tool.to_string(),
            reason: e.to_string(),
        })?;
        let options = RequestOptions {
            timeout: Some(timeout),
            attempt_timeout: Some(timeout),
            ..Default::default()
        };
        self.request(facts.service, payload, options).await
    }

    /// Calls a tool; returns the reply's proto3 JSON (what the CLI prints with `--json`).
    pub async fn call_tool(&self, tool: &str, arguments: &Value, timeout: Duration) -> Result<Value, CallError> {
        Ok(payload_to_json(self.call(tool, arguments, timeout).await?))
    }

    /// Calls a tool; returns the reply in the tool JSON form agents see, which validates
    /// against the tool's output schema (`hooteproto::json::tool_result`).
    pub async fn call_tool_structured(
        &self,
        tool: &str,
        arguments: &Value,
        timeout: Duration,
    ) -> Result<Value, CallError> {
        let reply = self.call(tool, arguments, timeout).await?;
        hooteproto::json::tool_result(reply).map_err(|e| {
            CallError::Remote(hooteproto::Status::internal(format!(
                "reply not representable as JSON: {e}"
            )))
        })
    }

    /// One backend's tools (an error when it is down).
    pub async fn tools(&self, backend: Backend, timeout: Duration) -> Result<Vec<pb::ToolInfo>, CallError> {
        let options = RequestOptions {
            timeout: Some(timeout),
            ..Default::default()
        };
        match self
            .request(backend, Payload::ListTools(pb::ListToolsRequest {}), options)
            .await?
        {
            Payload::ListToolsReply(reply) => Ok(reply.tools),
            other => Err(CallError::Remote(hooteproto::Status::internal(format!(
                "{} answered list_tools with {}",
                backend.name(),
                other.name()
            )))),
        }
    }
}
