//! The HOOT/1 handler: the tools through the schema's `LuanetteTools` trait (one method per
//! tool request), the rest (registration, markers, resources, prompts) by payload.

use std::sync::Arc;
use std::time::Duration;

use hooteproto::broadcast::Publisher;
use hooteproto::server::Lifecycle;
use hooteproto::tools::{Dispatch, LuanetteTools};
use hooteproto::v1::envelope::Payload;
use hooteproto::v1::{self as pb, ErrorCode, JobState, PollMode, broadcast};
use hooteproto::{Handler, RequestContext, Status};
use tokio_util::sync::CancellationToken;

use crate::jobs::eval_status;
use crate::queue::Queue;
use crate::runner::{Runner, Task};
use crate::sandbox::{Limits, RunContext};
use crate::scripts::Scripts;
use crate::workers::Workers;

/// Everything a request may touch.
pub struct Service {
    pub(crate) runner: Runner,
    pub(crate) scripts: Scripts,
    pub(crate) jobs: Queue,
    pub(crate) workers: Workers,
    pub(crate) publisher: Option<Arc<Publisher>>,
    /// Limits of one evaluation; a request's own deadline can only shorten `wall`.
    pub(crate) limits: Limits,
    pub(crate) lifecycle: Arc<Lifecycle>,
    /// Capabilities jobs may require: in embedded mode this process's own; None in cluster
    /// mode, where some worker may have any (the job waits for it).
    pub(crate) capabilities: Option<Vec<String>>,
}

/// The traceparent to hand on: the current span's when tracing is on, else the caller's if
/// it is well formed. A malformed one is ignored, as W3C Trace Context asks: it is stored
/// with a job, so arbitrary bytes from a caller must not reach the job store.
fn traceparent(context: &RequestContext) -> String {
    let current = hooteproto::trace::current_traceparent();
    if !current.is_empty() {
        current
    } else if well_formed(&context.traceparent) {
        context.traceparent.clone()
    } else {
        String::new()
    }
}

/// `version-traceid-parentid-flags` in lowercase hex (2, 32, 16 and 2 digits).
fn well_formed(traceparent: &str) -> bool {
    let parts: Vec<&str> = traceparent.split('-').collect();
    parts.len() == 4
        && parts.iter().zip([2, 32, 16, 2]).all(|(part, digits)| {
            part.len() == digits && part.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        })
}

fn request_params(params: Option<&hooteproto::wkt::Struct>) -> Result<Option<prost_types::Struct>, Status> {
    params
        .map(|params| {
            params
                .to_prost()
                .map_err(|e| Status::invalid_argument(format!("params are malformed: {e}")))
        })
        .transpose()
}

impl Service {
    fn publish(&self, event: broadcast::Event) {
        if let Some(publisher) = &self.publisher
            && let Err(error) = publisher.publish(event)
        {
            tracing::debug!(%error, "broadcast not sent");
        }
    }

    async fn eval(&self, context: &RequestContext, request: pb::LuaEvalRequest) -> Result<pb::LuaEvalReply, Status> {
        let params = request_params(request.params.as_ref())?;
        let mut limits = self.limits;
        if let Some(deadline) = context.deadline {
            limits.wall = limits
                .wall
                .min(deadline.saturating_duration_since(tokio::time::Instant::now()));
        }
        let task = Task::Eval {
            code: request.code,
            params,
            context: RunContext {
                traceparent: traceparent(context),
                ..RunContext::default()
            },
        };
        let outcome = self.runner.run(task, limits, CancellationToken::new()).await?;
        let result = outcome.result.map_err(eval_status)?;
        Ok(pb::LuaEvalReply {
            result: Some(result),
            output: outcome.output,
            duration_us: u64::try_from(outcome.took.as_micros()).unwrap_or(u64::MAX),
        })
    }

    /// Stores a script; a changed entry, and a name that now refers to a new version, are
    /// announced with `script_invalidate` (the hot-reload signal).
    async fn store(&self, request: pb::ScriptStoreRequest) -> Result<pb::ScriptStoreReply, Status> {
        let (reply, stored) = self.scripts.store(request, &self.runner).await?;
        let Some(script) = &reply.script else {
            return Ok(reply);
        };
        let new_version = stored.named.as_ref().filter(|named| named.changed);
        if let Some(named) = new_version {
            tracing::info!(name = %named.current.name, version = named.current.version, hash = %script.script_hash, "new script version");
        }
        if stored.entry_changed || new_version.is_some() {
            let reason = match (new_version, reply.already_existed) {
                (Some(_), _) => "new version",
                (None, true) => "tags changed",
                (None, false) => "stored",
            };
            self.publish(broadcast::Event::ScriptInvalidate(pb::ScriptInvalidate {
                script_hash: script.script_hash.clone(),
                reason: reason.into(),
                name: new_version.map(|n| n.current.name.clone()).unwrap_or_default(),
                previous_hash: new_version.and_then(|n| n.previous.clone()).unwrap_or_default(),
                version: new_version.map(|n| n.current.version).unwrap_or_default(),
            }));
        }
        Ok(reply)
    }

    /// Starts a job for a stored script (by hash, name or name@prefix, resolved now) after
    /// checking its params.
    async fn execute(
        &self,
        context: &RequestContext,
        script: &str,
        params: Option<hooteproto::wkt::Struct>,
        tags: Vec<String>,
        priority: pb::JobPriority,
        required_capabilities: Vec<String>,
    ) -> Result<pb::JobInfo, Status> {
        if script.is_empty() {
            return Err(Status::invalid_argument(
                "script_hash is required: a hash, a script name or name@<hash prefix>",
            ));
        }
        if tags.len() > 64 || tags.iter().any(|t| t.len() > 128) {
            return Err(Status::invalid_argument("at most 64 tags of at most 128 bytes"));
        }
        self.check_capabilities(&required_capabilities)?;
        let (info, source) = self.scripts.source(script)?;
        crate::scripts::validate_params(&info, params.as_ref())?;
        // The name when the caller used one; a hash that happens to be named stays a hash.
        let script_name = if crate::names::Reference::parse(script).is_ok_and(|r| r.is_named()) {
            info.name.clone()
        } else {
            String::new()
        };
        let job = crate::jobs::NewJob {
            script_hash: info.script_hash,
            script_name,
            params,
            tags,
            priority,
            required_capabilities,
        };
        self.jobs.start(job, source, traceparent(context), &context.peer).await
    }

    /// Refuses malformed capability names, and (in embedded mode) capabilities no worker
    /// here has, rather than queue a job nothing will ever run.
    fn check_capabilities(&self, required: &[String]) -> Result<(), Status> {
        if required.len() > 16 || !required.iter().all(|c| crate::cluster::valid_capability(c)) {
            return Err(Status::invalid_argument(
                "required_capabilities: at most 16 names of 1-64 characters of [A-Za-z0-9._-], e.g. \"gpu\"",
            ));
        }
        if let Some(own) = &self.capabilities
            && let Some(missing) = required.iter().find(|c| !own.contains(c))
        {
            return Err(Status::failed_precondition(format!(
                "no worker here has the capability `{missing}` (this Luanette has {own:?}; give it --capability, or \
                 run workers that have it in cluster mode)"
            )));
        }
        Ok(())
    }

    /// A marker the playhead crossed: runs the script its metadata names, with the event as params.
    async fn timeline_event(
        &self,
        context: &RequestContext,
        request: pb::TimelineEventRequest,
    ) -> Result<Payload, Status> {
        let event_type = pb::TimelineEventType::try_from(request.event_type)
            .ok()
            .filter(|t| *t != pb::TimelineEventType::Unspecified)
            .ok_or_else(|| Status::invalid_argument("event_type must be set to a known TimelineEventType"))?;
        let mut fields = match &request.metadata {
            Some(metadata) => metadata
                .to_json()
                .map_err(|e| Status::invalid_argument(format!("metadata is malformed: {e}")))?,
            None => serde_json::Map::new(),
        };
        let named = fields.remove("script");
        let hashed = fields.remove("script_hash");
        let script = match named.or(hashed) {
            None => {
                return Ok(Payload::TimelineEventReply(pb::TimelineEventReply {
                    job_id: String::new(),
                    state: JobState::Unspecified as i32,
                }));
            }
            Some(serde_json::Value::String(script)) => script,
            Some(_) => {
                return Err(Status::invalid_argument(
                    "metadata.script (or script_hash) must be a string: a hash, a script name or name@<hash prefix>",
                ));
            }
        };
        let event_name = event_type
            .as_str_name()
            .trim_start_matches("TIMELINE_EVENT_TYPE_")
            .to_lowercase();
        fields.insert("event_type".into(), event_name.clone().into());
        fields.insert("position_beats".into(), request.position_beats.into());
        fields.insert("tempo".into(), request.tempo.into());
        let params = hooteproto::wkt::Struct::from_json(fields);
        // A marker has a musical deadline: its job goes ahead of normal work.
        let job = self
            .execute(
                context,
                &script,
                Some(params),
                vec!["timeline".into(), event_name],
                pb::JobPriority::High,
                Vec::new(),
            )
            .await?;
        Ok(Payload::TimelineEventReply(pb::TimelineEventReply {
            job_id: job.job_id,
            state: job.state,
        }))
    }
}

impl LuanetteTools for Service {
    async fn lua_eval(
        &self,
        context: &RequestContext,
        request: pb::LuaEvalRequest,
    ) -> Result<pb::LuaEvalReply, Status> {
        self.eval(context, request).await
    }

    async fn lua_describe(
        &self,
        _context: &RequestContext,
        request: pb::LuaDescribeRequest,
    ) -> Result<pb::LuaDescribeReply, Status> {
        Ok(pb::LuaDescribeReply {
            script: Some(Box::new(self.scripts.describe(&request.script_hash)?)),
        })
    }

    async fn script_store(
        &self,
        _context: &RequestContext,
        request: pb::ScriptStoreRequest,
    ) -> Result<pb::ScriptStoreReply, Status> {
        self.store(request).await
    }

    async fn script_search(
        &self,
        _context: &RequestContext,
        request: pb::ScriptSearchRequest,
    ) -> Result<pb::ScriptSearchReply, Status> {
        Ok(pb::ScriptSearchReply {
            scripts: self.scripts.search(&request)?,
        })
    }

    async fn job_execute(
        &self,
        context: &RequestContext,
        request: pb::JobExecuteRequest,
    ) -> Result<pb::JobExecuteReply, Status> {
        let priority = pb::JobPriority::try_from(request.priority)
            .map_err(|_| Status::invalid_argument(format!("unknown job priority {}", request.priority)))?;
        let job = self
            .execute(
                context,
                &request.script_hash,
                request.params,
                request.tags,
                priority,
                request.required_capabilities,
            )
            .await?;
        Ok(pb::JobExecuteReply {
            job_id: job.job_id,
            state: job.state,
        })
    }

    async fn job_status(
        &self,
        _context: &RequestContext,
        request: pb::JobStatusRequest,
    ) -> Result<pb::JobStatusReply, Status> {
        Ok(pb::JobStatusReply {
            job: Some(Box::new(self.jobs.status(&request.job_id).await?)),
        })
    }

    async fn job_poll(
        &self,
        context: &RequestContext,
        request: pb::JobPollRequest,
    ) -> Result<pb::JobPollReply, Status> {
        let mut timeout = Duration::from_millis(u64::from(request.timeout_ms));
        // Answer before the caller gives up, so it sees "timed out" rather than an error.
        if let Some(deadline) = context.deadline {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            timeout = timeout.min(left.saturating_sub(left / 10 + Duration::from_millis(20)));
        }
        let mode = PollMode::try_from(request.mode).unwrap_or(PollMode::Any);
        self.jobs.poll(&request.job_ids, timeout, mode).await
    }

    async fn job_cancel(
        &self,
        _context: &RequestContext,
        request: pb::JobCancelRequest,
    ) -> Result<pb::JobCancelReply, Status> {
        self.jobs.cancel(&request.job_id).await
    }

    async fn job_stats(
        &self,
        _context: &RequestContext,
        _request: pb::JobStatsRequest,
    ) -> Result<pb::JobStatsReply, Status> {
        self.jobs.stats().await
    }

    async fn job_list(
        &self,
        _context: &RequestContext,
        request: pb::JobListRequest,
    ) -> Result<pb::JobListReply, Status> {
        let status = JobState::try_from(request.status)
            .map_err(|_| Status::invalid_argument(format!("unknown job state {}", request.status)))?;
        self.jobs
            .list(
                status,
                request.page_size as usize,
                &request.page_token,
                request.include_params,
            )
            .await
    }
}

impl Handler for Service {
    async fn handle(&self, context: RequestContext, payload: Payload) -> Result<Payload, Status> {
        self.workers.seen(&context.peer);
        let payload = match hooteproto::tools::dispatch_luanette(self, &context, payload).await {
            Dispatch::Answered(reply) => return reply,
            Dispatch::Other(payload) => payload,
        };
        match payload {
            Payload::Ping(_) => Ok(self.lifecycle.ping_reply()),
            Payload::Shutdown(request) => Ok(self.lifecycle.shutdown_reply(&request.reason)),
            Payload::Register(request) => Ok(Payload::RegisterReply(
                self.workers.register(request.registration, &context.peer)?,
            )),
            Payload::TimelineEvent(request) => self.timeline_event(&context, request).await,
            Payload::ListResources(request) => Ok(Payload::ListResourcesReply(self.list_resources(&request.cursor)?)),
            Payload::ReadResource(request) => Ok(Payload::ReadResourceReply(self.read_resource(&request.uri).await?)),
            Payload::ListPrompts(_) => Ok(Payload::ListPromptsReply(self.list_prompts())),
            Payload::GetPrompt(request) => Ok(Payload::GetPromptReply(self.get_prompt(request).await?)),
            Payload::Complete(request) => Ok(Payload::CompleteReply(self.complete(&request).await?)),
            Payload::ListTools(_) => Ok(Payload::ListToolsReply(hooteproto::tools::list(
                hooteproto::tools::Service::Luanette,
            )?)),
            other => Err(Status::new(
                ErrorCode::Unimplemented,
                format!("luanette does not serve `{}`", other.name()),
            )),
        }
    }
}
