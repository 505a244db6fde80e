//! What both queues share (the embedded one in this module's parent, the cluster's in
//! `crate::cluster`): their configuration and limits, checks of what a request asks, and how a
//! run's outcome becomes a job's final record.

use std::time::Duration;

use hooteproto::Status;
use hooteproto::v1::{self as pb, JobInfo, JobState};

use crate::sandbox::{EvalError, Limits};

/// Longest a poll may wait, whatever it asks for.
pub const MAX_POLL: Duration = Duration::from_secs(300);
/// Most job ids in one poll.
const MAX_POLL_IDS: usize = 1000;
/// Default and largest page of `job_list`.
const DEFAULT_PAGE: usize = 50;
const MAX_PAGE: usize = 500;
/// Largest encoded job record (result plus logs); a bigger result fails the job.
pub(super) const MAX_RECORD: usize = 16 << 20;
/// Least time between two progress broadcasts of one job.
pub(crate) const PROGRESS_EVERY: Duration = Duration::from_millis(50);

/// How jobs run and how long they are kept.
#[derive(Debug, Clone, Copy)]
pub struct JobsConfig {
    /// Jobs that run at once (each on its own OS thread).
    pub concurrency: usize,
    /// Jobs that may be unfinished (pending or running) at once; more are refused.
    pub max_unfinished: usize,
    /// Limits of one job's run.
    pub limits: Limits,
    /// How long finished jobs are kept.
    pub retention: Duration,
    /// Unfinished jobs one client (one routing id) may have at once.
    pub max_unfinished_per_client: usize,
    /// Largest params a job is started with, encoded (larger data goes to the CAS by hash).
    pub max_params: usize,
    /// Largest result a job may finish with, encoded; a larger one fails the job.
    pub max_result: usize,
}

impl JobsConfig {
    /// The documented defaults: 1 MiB params and results, 256 unfinished jobs per client.
    pub const DEFAULT_MAX_PARAMS: usize = 1 << 20;
    pub const DEFAULT_MAX_RESULT: usize = 1 << 20;
    pub const DEFAULT_MAX_UNFINISHED_PER_CLIENT: usize = 256;
}

/// The most one `job_list` page holds, encoded; it ends early past this.
pub(crate) const MAX_PAGE_BYTES: usize = 4 << 20;

/// `job_list`'s page size: the default for 0, else at most [`MAX_PAGE`].
pub(crate) fn page_size_of(asked: usize) -> usize {
    match asked {
        0 => DEFAULT_PAGE,
        n => n.min(MAX_PAGE),
    }
}

/// A job as a listing shows it: without logs, and without params unless asked (job_status
/// has both).
pub(crate) fn listed(mut job: JobInfo, include_params: bool) -> JobInfo {
    job.logs.clear();
    if !include_params {
        job.params = None;
    }
    job
}

/// Refuses params of `size` encoded bytes past `max` (large data goes to the CAS by hash).
pub(crate) fn check_params_size(size: usize, max: usize) -> Result<(), Status> {
    if size <= max {
        return Ok(());
    }
    Err(Status::invalid_argument(format!(
        "job params are {size} bytes, more than the {max} allowed (--max-job-params); store large data with \
         cas_store and pass its hash"
    ))
    .with_details(details(serde_json::json!({"kind": "params_too_large", "limit": max}))))
}

/// The job ids one `job_poll` may wait on: at least one, at most [`MAX_POLL_IDS`].
pub(crate) fn check_poll_ids(job_ids: &[String]) -> Result<(), Status> {
    if job_ids.is_empty() {
        return Err(Status::invalid_argument("job_ids is empty"));
    }
    if job_ids.len() > MAX_POLL_IDS {
        return Err(Status::invalid_argument(format!(
            "at most {MAX_POLL_IDS} job ids per poll"
        )));
    }
    Ok(())
}

/// What `job_execute` (or a marker) asks to run.
#[derive(Debug, Clone, Default)]
pub struct NewJob {
    /// The exact script (64 hex characters).
    pub script_hash: String,
    /// The name it was asked for by, if any.
    pub script_name: String,
    pub params: Option<hooteproto::wkt::Struct>,
    pub tags: Vec<String>,
    pub priority: pb::JobPriority,
    /// What a worker must have to run it (checked by the caller).
    pub required_capabilities: Vec<String>,
}

pub(crate) fn details(json: serde_json::Value) -> hooteproto::wkt::Struct {
    hooteproto::wkt::Struct::from_json(json.as_object().cloned().unwrap_or_default())
}

pub(crate) fn is_final(state: JobState) -> bool {
    matches!(state, JobState::Succeeded | JobState::Failed | JobState::Cancelled)
}

pub(super) fn state_of(job: &JobInfo) -> JobState {
    JobState::try_from(job.state).unwrap_or(JobState::Unspecified)
}

pub(crate) fn interrupted(why: &str) -> pb::Error {
    Status::new(pb::ErrorCode::Aborted, format!("interrupted: {why}"))
        .with_details(details(serde_json::json!({"kind": "interrupted"})))
        .to_proto()
}

/// How a job ended: its state, result, error and captured output.
pub(crate) type Settled = (
    JobState,
    Option<prost_types::Value>,
    Option<pb::Error>,
    Vec<pb::LogEntry>,
);

/// What a job's run comes to (the same for a job run here and one run by a cluster worker):
/// a result over `max_result` fails it, a cancel while `stopping` is an interruption.
pub(crate) fn settle(run: Result<crate::runner::Outcome, Status>, max_result: usize, stopping: bool) -> Settled {
    match run {
        Ok(outcome) => match outcome.result {
            Ok(value) if prost::Message::encoded_len(&value) > max_result => (
                JobState::Failed,
                None,
                Some(
                    Status::resource_exhausted(format!(
                        "the job's result is {} bytes, more than the {max_result} a job record keeps \
                         (--max-job-result); store large data with cas.store and return its hash",
                        prost::Message::encoded_len(&value),
                    ))
                    .with_details(details(
                        serde_json::json!({"kind": "result_too_large", "limit": max_result}),
                    ))
                    .to_proto(),
                ),
                outcome.output,
            ),
            Ok(value) => (JobState::Succeeded, Some(value), None, outcome.output),
            Err(EvalError::Cancelled) if stopping => (
                JobState::Failed,
                None,
                Some(interrupted("luanette shut down while the job ran")),
                outcome.output,
            ),
            Err(EvalError::Cancelled) => (
                JobState::Cancelled,
                None,
                Some(eval_status(EvalError::Cancelled).to_proto()),
                outcome.output,
            ),
            Err(error) => (
                JobState::Failed,
                None,
                Some(eval_status(error).to_proto()),
                outcome.output,
            ),
        },
        Err(status) => (JobState::Failed, None, Some(status.to_proto()), Vec::new()),
    }
}

/// A script's failure as a canonical status with structured details.
pub fn eval_status(error: EvalError) -> Status {
    let message = error.to_string();
    let kind = |kind: &str| details(serde_json::json!({ "kind": kind }));
    match error {
        EvalError::TimeLimit(_) => Status::deadline_exceeded(message).with_details(kind("time_limit")),
        EvalError::Cancelled => Status::cancelled(message).with_details(kind("cancelled")),
        EvalError::MemoryLimit(_) => Status::resource_exhausted(message).with_details(kind("memory_limit")),
        EvalError::Syntax { line, .. } => {
            Status::invalid_argument(message).with_details(details(serde_json::json!({"kind": "syntax", "line": line})))
        }
        EvalError::Runtime { line, traceback, .. } => Status::invalid_argument(message).with_details(details(
            serde_json::json!({"kind": "runtime", "line": line, "traceback": traceback}),
        )),
        EvalError::Conversion(_) => Status::invalid_argument(message).with_details(kind("conversion")),
        EvalError::Setup(_) => Status::internal(message),
    }
}
