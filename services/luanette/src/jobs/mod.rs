//! Jobs: a stored script's `main(params)` run in the background.
//!
//! - Records (`hooteproto.v1.JobInfo`, with result, error and logs) live in sled under
//!   time-ordered ids, so listing is newest first without an index. A job is flushed to
//!   disk before `job_execute` answers and again when it finishes, before any poller wakes.
//! - On open, jobs a previous process left pending or running are marked failed with
//!   reason "interrupted"; none is silently forgotten. Finished jobs older than the
//!   retention are deleted by a background sweep.
//! - `job_poll` is a real long-poll: it sleeps on a watch channel that every finish bumps.
//! - State changes, progress and output lines go out as broadcasts when a publisher is
//!   configured.
//!
//! This module is the embedded queue (sled, jobs run in this process); `rules` is what it
//! shares with cluster mode's queue.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hooteproto::Status;
use hooteproto::broadcast::Publisher;
use hooteproto::v1::{self as pb, JobInfo, JobState, PollMode, broadcast};
use prost::Message as _;
use tokio::sync::watch;

use crate::runner::{Runner, Task};
use crate::sandbox::{EvalError, RunContext};
use crate::slots::Slots;

mod follow;
mod rules;

pub(crate) use follow::LogFollower;

/// The most one `job_log` broadcast carries (encoded), so a burst of lines goes out in
/// pieces a subscriber takes in easily.
const LOG_BATCH_BYTES: usize = 64 * 1024;

pub use rules::*;

/// A job that has not finished: how to cancel it and what it last reported.
struct Live {
    /// The routing id of the client that started it.
    owner: Vec<u8>,
    cancel: tokio_util::sync::CancellationToken,
    progress: Mutex<(f64, String, Option<Instant>)>,
}

/// The job table and the threads that run jobs.
pub struct Jobs {
    db: sled::Db,
    /// One flush at a time for acknowledged writes (sled's `flush_async` can deadlock).
    durable: std::sync::Arc<hooteproto::durable::GroupFlush<sled::Error>>,
    tree: sled::Tree,
    runner: Runner,
    slots: Arc<Slots>,
    config: JobsConfig,
    live: Mutex<HashMap<String, Arc<Live>>>,
    finished: watch::Sender<u64>,
    publisher: Option<Arc<Publisher>>,
    stopping: AtomicBool,
    sequence: AtomicU64,
    tasks: tokio_util::task::TaskTracker,
}

fn internal(e: impl std::fmt::Display) -> Status {
    Status::internal(format!("job store: {e}"))
}

impl Jobs {
    /// Opens the job table in `db`, marks jobs a previous process left unfinished as
    /// interrupted, and deletes finished jobs past the retention.
    pub fn open(
        db: sled::Db,
        config: JobsConfig,
        publisher: Option<Arc<Publisher>>,
        runner: Runner,
    ) -> anyhow::Result<Arc<Self>> {
        let tree = db.open_tree("jobs")?;
        let now = SystemTime::now();
        let mut marked = 0usize;
        for item in tree.iter() {
            let (key, bytes) = item?;
            let mut job = JobInfo::decode(bytes.as_ref())?;
            if !is_final(state_of(&job)) {
                job.state = JobState::Failed as i32;
                job.error = Some(interrupted("luanette stopped before the job finished"));
                job.finished_at = Some(now.into());
                tree.insert(key, job.encode_to_vec())?;
                marked += 1;
            }
        }
        db.flush()?;
        if marked > 0 {
            tracing::warn!(
                jobs = marked,
                "marked jobs left unfinished by the previous run as interrupted"
            );
        }
        let jobs = Arc::new(Self {
            runner,
            slots: Slots::new(config.concurrency),
            durable: std::sync::Arc::new(hooteproto::durable::GroupFlush::new({
                let db = db.clone();
                move || db.flush().map(drop)
            })),
            db,
            tree,
            config,
            live: Mutex::new(HashMap::new()),
            finished: watch::channel(0).0,
            publisher,
            stopping: AtomicBool::new(false),
            sequence: AtomicU64::new(0),
            tasks: tokio_util::task::TaskTracker::new(),
        });
        jobs.collect_garbage()?;
        Ok(jobs)
    }

    fn publish(&self, event: broadcast::Event) {
        if let Some(publisher) = &self.publisher
            && let Err(error) = publisher.publish(event)
        {
            tracing::debug!(%error, "broadcast not sent");
        }
    }

    fn publish_state(&self, job_id: &str, state: JobState) {
        self.publish(broadcast::Event::JobStateChanged(pb::JobStateChanged {
            job_id: job_id.to_string(),
            state: state as i32,
        }));
    }

    /// Time-ordered, unique within this process and (by the clock) across restarts.
    fn new_id(&self) -> String {
        let micros = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or_default();
        let sequence = self.sequence.fetch_add(1, Ordering::Relaxed) & 0xff_ffff;
        format!("{micros:014x}{sequence:06x}")
    }

    fn get(&self, job_id: &str) -> Result<Option<JobInfo>, Status> {
        match self.tree.get(job_id.as_bytes()).map_err(internal)? {
            Some(bytes) => JobInfo::decode(bytes.as_ref()).map(Some).map_err(internal),
            None => Ok(None),
        }
    }

    fn put(&self, job: &JobInfo) -> Result<(), Status> {
        self.tree
            .insert(job.job_id.as_bytes(), job.encode_to_vec())
            .map_err(internal)?;
        Ok(())
    }

    /// Records a new pending job (durably) and starts it when a slot is free for its
    /// priority. `job.script_hash` is the exact script and `code` its source.
    pub async fn start(
        self: &Arc<Self>,
        job: NewJob,
        code: String,
        traceparent: String,
        owner: &[u8],
    ) -> Result<JobInfo, Status> {
        let NewJob {
            script_hash,
            script_name,
            params,
            tags,
            priority,
            required_capabilities,
        } = job;
        if self.stopping.load(Ordering::Relaxed) {
            return Err(Status::unavailable("luanette is shutting down"));
        }
        let prost_params = match &params {
            Some(params) => Some(
                params
                    .to_prost()
                    .map_err(|e| Status::invalid_argument(format!("params are malformed: {e}")))?,
            ),
            None => None,
        };
        check_params_size(
            prost_params.as_ref().map_or(0, prost::Message::encoded_len),
            self.config.max_params,
        )?;
        let live = Arc::new(Live {
            owner: owner.to_vec(),
            cancel: tokio_util::sync::CancellationToken::new(),
            progress: Mutex::new((0.0, String::new(), None)),
        });
        let job_id = self.new_id();
        {
            let mut map = self.live.lock().map_err(internal)?;
            if map.len() >= self.config.max_unfinished {
                return Err(Status::resource_exhausted(format!(
                    "{} jobs are unfinished, the most luanette keeps (--max-unfinished-jobs); wait for some to finish",
                    map.len()
                )));
            }
            let own = map.values().filter(|live| live.owner == owner).count();
            if own >= self.config.max_unfinished_per_client {
                return Err(Status::resource_exhausted(format!(
                    "this client has {own} unfinished jobs, the most one client may have \
                     (--max-unfinished-jobs-per-client); wait for some to finish or cancel them"
                )));
            }
            map.insert(job_id.clone(), live.clone());
        }
        let job = JobInfo {
            job_id: job_id.clone(),
            script_hash,
            state: JobState::Pending as i32,
            params,
            tags,
            created_at: Some(SystemTime::now().into()),
            priority: crate::slots::effective(priority) as i32,
            script_name,
            required_capabilities,
            ..Default::default()
        };
        let stored = async {
            self.put(&job)?;
            self.durable.flush().await.map_err(internal)
        }
        .await;
        if let Err(error) = stored {
            self.forget(&job_id);
            return Err(error);
        }
        self.publish_state(&job_id, JobState::Pending);
        let jobs = self.clone();
        let record = job.clone();
        let task = async move { jobs.drive(record, code, prost_params, live, traceparent).await };
        self.tasks.spawn(task);
        Ok(job)
    }

    fn forget(&self, job_id: &str) {
        if let Ok(mut map) = self.live.lock() {
            map.remove(job_id);
        }
    }

    /// Runs one job to its end and records the outcome.
    async fn drive(
        self: Arc<Self>,
        mut job: JobInfo,
        code: String,
        params: Option<prost_types::Struct>,
        live: Arc<Live>,
        traceparent: String,
    ) {
        let span =
            tracing::info_span!("luanette.job", otel.name = "job", job.id = %job.job_id, script = %job.script_hash);
        hooteproto::trace::set_remote_parent(&span, &traceparent);
        let outcome = {
            use tracing::Instrument as _;
            self.execute(&mut job, code, params, &live, &traceparent)
                .instrument(span)
                .await
        };
        let (state, result, error, logs) = outcome;
        job.state = state as i32;
        job.result = result;
        job.error = error;
        job.logs = logs;
        job.progress = live.progress.lock().map(|p| p.0).unwrap_or_default();
        job.progress_message = live.progress.lock().map(|p| p.1.clone()).unwrap_or_default();
        job.finished_at = Some(SystemTime::now().into());
        if job.encoded_len() > MAX_RECORD {
            job.result = None;
            job.logs.clear();
            job.state = JobState::Failed as i32;
            job.error = Some(
                Status::resource_exhausted(format!(
                    "the job's result and logs exceed {} MiB; store large data in the CAS and return its hash",
                    MAX_RECORD >> 20
                ))
                .to_proto(),
            );
        }
        let saved = self.put(&job);
        let flushed = self.durable.flush().await;
        if let Err(error) = saved
            .map_err(|e| e.to_string())
            .and(flushed.map(|_| ()).map_err(|e| e.to_string()))
        {
            tracing::error!(job = %job.job_id, %error, "could not record the job's outcome");
        }
        self.forget(&job.job_id);
        self.finished.send_modify(|n| *n += 1);
        self.publish_state(&job.job_id, state_of(&job));
    }

    async fn execute(
        self: &Arc<Self>,
        job: &mut JobInfo,
        code: String,
        params: Option<prost_types::Struct>,
        live: &Arc<Live>,
        caller_traceparent: &str,
    ) -> (
        JobState,
        Option<prost_types::Value>,
        Option<pb::Error>,
        Vec<pb::LogEntry>,
    ) {
        let priority = pb::JobPriority::try_from(job.priority).unwrap_or(pb::JobPriority::Normal);
        let permit = tokio::select! {
            permit = self.slots.acquire(priority) => permit,
            () = live.cancel.cancelled() => return self.stopped_before_running(),
        };
        let Some(_permit) = permit else {
            return (
                JobState::Failed,
                None,
                Some(interrupted("the job runner stopped")),
                Vec::new(),
            );
        };
        if live.cancel.is_cancelled() {
            return self.stopped_before_running();
        }
        job.state = JobState::Running as i32;
        job.started_at = Some(SystemTime::now().into());
        if let Err(error) = self.put(job) {
            tracing::warn!(job = %job.job_id, %error, "could not record the running state");
        }
        self.publish_state(&job.job_id, JobState::Running);
        let follower = Arc::new(LogFollower::default());
        // The job span's own traceparent when tracing is on; else hand on the caller's.
        let own = hooteproto::trace::current_traceparent();
        let context = RunContext {
            traceparent: if own.is_empty() {
                caller_traceparent.to_string()
            } else {
                own
            },
            progress: Some(self.progress_reporter(job.job_id.clone(), live.clone())),
            events: None,
            logs: self.publisher.as_ref().map(|_| follower.sink()),
            identity: crate::sandbox::ScriptIdentity {
                job_id: job.job_id.clone(),
                script_hash: job.script_hash.clone(),
                script_name: job.script_name.clone(),
            },
        };
        let task = Task::Main { code, params, context };
        let run = self.runner.run(task, self.config.limits, live.cancel.clone());
        let run = follower
            .follow(&job.job_id, LOG_BATCH_BYTES, run, |batch| {
                self.publish(broadcast::Event::JobLog(batch));
                std::future::ready(())
            })
            .await;
        settle(run, self.config.max_result, self.stopping.load(Ordering::Relaxed))
    }

    fn stopped_before_running(
        &self,
    ) -> (
        JobState,
        Option<prost_types::Value>,
        Option<pb::Error>,
        Vec<pb::LogEntry>,
    ) {
        if self.stopping.load(Ordering::Relaxed) {
            (
                JobState::Failed,
                None,
                Some(interrupted("luanette shut down before the job started")),
                Vec::new(),
            )
        } else {
            (
                JobState::Cancelled,
                None,
                Some(eval_status(EvalError::Cancelled).to_proto()),
                Vec::new(),
            )
        }
    }

    /// `job.progress(...)` from the script: remembered for `job_status`, broadcast at a bounded rate.
    fn progress_reporter(self: &Arc<Self>, job_id: String, live: Arc<Live>) -> crate::sandbox::ProgressFn {
        let jobs = Arc::downgrade(self);
        Arc::new(move |fraction, message| {
            let Ok(mut progress) = live.progress.lock() else { return };
            let now = Instant::now();
            let due = progress.2.is_none_or(|last| now - last >= PROGRESS_EVERY) || fraction >= 1.0;
            *progress = (fraction, message.to_string(), if due { Some(now) } else { progress.2 });
            drop(progress);
            if due && let Some(jobs) = jobs.upgrade() {
                jobs.publish(broadcast::Event::JobProgress(pb::JobProgress {
                    job_id: job_id.clone(),
                    fraction,
                    message: message.to_string(),
                }));
            }
        })
    }

    /// A job's record; a running job shows its latest progress.
    pub fn status(&self, job_id: &str) -> Result<JobInfo, Status> {
        let job = self
            .get(job_id)?
            .ok_or_else(|| Status::not_found(format!("no job {job_id}")))?;
        Ok(self.visible(job))
    }

    /// A record as readers may see it. A job still in `live` shows its latest progress, and
    /// an outcome written but not yet flushed (`drive` forgets a job only after the flush) is
    /// not shown: reporting it could acknowledge what a crash would undo.
    fn visible(&self, mut job: JobInfo) -> JobInfo {
        let Some(live) = self.live.lock().ok().and_then(|m| m.get(&job.job_id).cloned()) else {
            return job;
        };
        if is_final(state_of(&job)) {
            job.state = if job.started_at.is_some() {
                JobState::Running
            } else {
                JobState::Pending
            } as i32;
            job.result = None;
            job.error = None;
            job.logs.clear();
            job.finished_at = None;
        }
        if let Ok(progress) = live.progress.lock() {
            job.progress = progress.0;
            job.progress_message = progress.1.clone();
        }
        job
    }

    /// Waits until any (or all) of `job_ids` have finished, or `timeout` passes.
    pub async fn poll(
        &self,
        job_ids: &[String],
        timeout: Duration,
        mode: PollMode,
    ) -> Result<pb::JobPollReply, Status> {
        check_poll_ids(job_ids)?;
        let all = match mode {
            PollMode::All => true,
            PollMode::Any | PollMode::Unspecified => false,
        };
        let deadline = tokio::time::Instant::now() + timeout.min(MAX_POLL);
        let mut finished = self.finished.subscribe();
        loop {
            // Mark the current generation seen before reading, so no finish is missed.
            finished.borrow_and_update();
            let mut completed = Vec::new();
            let mut pending = Vec::new();
            for job_id in job_ids {
                let job = self.status(job_id)?;
                if is_final(state_of(&job)) {
                    completed.push(job);
                } else {
                    pending.push(job_id.clone());
                }
            }
            let done = if all { pending.is_empty() } else { !completed.is_empty() };
            let timed_out = !done && tokio::time::Instant::now() >= deadline;
            if done || timed_out {
                return Ok(pb::JobPollReply {
                    completed,
                    pending_job_ids: pending,
                    timed_out,
                });
            }
            match tokio::time::timeout_at(deadline, finished.changed()).await {
                Ok(Ok(())) | Err(_) => {}
                Ok(Err(_)) => return Err(Status::unavailable("luanette is shutting down")),
            }
        }
    }

    /// Cancels a pending or running job and waits (briefly) until it has stopped.
    pub async fn cancel(&self, job_id: &str) -> Result<pb::JobCancelReply, Status> {
        let live = self.live.lock().map_err(internal)?.get(job_id).cloned();
        if let Some(live) = live {
            live.cancel.cancel();
            // The hook notices within ~100 ms; a job waiting for a slot stops at once.
            let _ = self
                .poll(&[job_id.to_string()], Duration::from_secs(2), PollMode::Any)
                .await;
        }
        let job = self.status(job_id)?;
        Ok(pb::JobCancelReply {
            job_id: job.job_id,
            state: job.state,
        })
    }

    /// One page of jobs, newest first, optionally only those in `status`.
    /// Params are left out unless `include_params`; a page ends early past [`MAX_PAGE_BYTES`].
    pub fn list(
        &self,
        status: JobState,
        page_size: usize,
        page_token: &str,
        include_params: bool,
    ) -> Result<pb::JobListReply, Status> {
        let page_size = page_size_of(page_size);
        let range = if page_token.is_empty() {
            self.tree.range::<&[u8], _>(..)
        } else {
            self.tree.range::<&[u8], _>(..page_token.as_bytes())
        };
        let mut jobs = Vec::new();
        let mut page_bytes = 0usize;
        let mut next_page_token = String::new();
        for item in range.rev() {
            let (_, bytes) = item.map_err(internal)?;
            let job = self.visible(JobInfo::decode(bytes.as_ref()).map_err(internal)?);
            if status != JobState::Unspecified && state_of(&job) != status {
                continue;
            }
            let job = listed(job, include_params);
            let size = prost::Message::encoded_len(&job);
            if jobs.len() == page_size || (!jobs.is_empty() && page_bytes + size > MAX_PAGE_BYTES) {
                next_page_token = jobs.last().map(|j: &JobInfo| j.job_id.clone()).unwrap_or_default();
                break;
            }
            page_bytes += size;
            jobs.push(job);
        }
        Ok(pb::JobListReply { jobs, next_page_token })
    }

    /// The unfinished jobs by priority and required capabilities.
    pub fn stats(&self) -> Result<pb::JobStatsReply, Status> {
        let ids: Vec<String> = self.live.lock().map_err(internal)?.keys().cloned().collect();
        let now = SystemTime::now();
        let mut groups: std::collections::BTreeMap<(i32, Vec<String>), pb::JobQueueStats> = Default::default();
        let mut busy = 0;
        for id in ids {
            let Some(job) = self.get(&id)? else { continue };
            let mut capabilities = job.required_capabilities.clone();
            capabilities.sort();
            let entry = groups
                .entry((job.priority, capabilities.clone()))
                .or_insert_with(|| pb::JobQueueStats {
                    priority: job.priority,
                    required_capabilities: capabilities,
                    ..Default::default()
                });
            if job.started_at.is_some() {
                entry.running += 1;
                busy += 1;
            } else {
                entry.pending += 1;
                let waited = job
                    .created_at
                    .and_then(|t| SystemTime::try_from(t).ok())
                    .and_then(|t| now.duration_since(t).ok())
                    .map_or(0.0, |d| d.as_secs_f64());
                entry.oldest_pending_seconds = entry.oldest_pending_seconds.max(waited);
            }
        }
        Ok(pb::JobStatsReply {
            queues: groups.into_values().collect(),
            busy_workers: busy,
        })
    }

    /// Job ids starting with `prefix`, newest first (for completion).
    pub fn ids_with_prefix(&self, prefix: &str, limit: usize) -> Result<(Vec<String>, usize), Status> {
        let mut ids = Vec::new();
        let mut total = 0;
        for item in self.tree.scan_prefix(prefix.as_bytes()).keys().rev() {
            let key = item.map_err(internal)?;
            total += 1;
            if ids.len() < limit {
                ids.push(String::from_utf8_lossy(&key).into_owned());
            }
        }
        Ok((ids, total))
    }

    /// Tags used by jobs (for completion).
    pub fn tags(&self) -> Result<Vec<String>, Status> {
        let mut tags = std::collections::BTreeSet::new();
        for item in self.tree.iter().values() {
            let job = JobInfo::decode(item.map_err(internal)?.as_ref()).map_err(internal)?;
            tags.extend(job.tags);
        }
        Ok(tags.into_iter().collect())
    }

    /// Deletes finished jobs older than the retention; returns how many.
    pub fn collect_garbage(&self) -> Result<usize, Status> {
        let Some(cutoff) = SystemTime::now().checked_sub(self.config.retention) else {
            return Ok(0);
        };
        let cutoff: prost_types::Timestamp = cutoff.into();
        let mut removed = 0;
        for item in self.tree.iter() {
            let (key, bytes) = item.map_err(internal)?;
            let job = JobInfo::decode(bytes.as_ref()).map_err(internal)?;
            let old = job
                .finished_at
                .as_ref()
                .is_some_and(|t| (t.seconds, t.nanos) < (cutoff.seconds, cutoff.nanos));
            if is_final(state_of(&job)) && old {
                self.tree.remove(key).map_err(internal)?;
                removed += 1;
            }
        }
        if removed > 0 {
            self.db.flush().map_err(internal)?;
            tracing::info!(removed, "deleted finished jobs past their retention");
        }
        Ok(removed)
    }

    /// Sweeps finished jobs past the retention every so often, until the jobs are dropped.
    pub fn spawn_garbage_collector(self: &Arc<Self>) {
        let jobs = Arc::downgrade(self);
        let every = (self.config.retention / 10).clamp(Duration::from_secs(1), Duration::from_secs(60));
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(jobs) = jobs.upgrade() else { return };
                if jobs.stopping.load(Ordering::Relaxed) {
                    return;
                }
                let sweep = jobs.clone();
                match tokio::task::spawn_blocking(move || sweep.collect_garbage()).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(error)) => tracing::warn!(%error, "job garbage collection failed"),
                    Err(error) => tracing::warn!(%error, "job garbage collection panicked"),
                }
            }
        });
    }

    /// Stops accepting jobs, cancels those still unfinished (they are recorded as failed,
    /// "interrupted") and waits up to `grace` for their records to be written.
    pub async fn shutdown(&self, grace: Duration) {
        self.stopping.store(true, Ordering::Relaxed);
        if let Ok(map) = self.live.lock() {
            for live in map.values() {
                live.cancel.cancel();
            }
        }
        self.slots.close();
        self.tasks.close();
        let drained = tokio::time::timeout(grace, self.tasks.wait()).await;
        if drained.is_err() {
            tracing::warn!("some jobs did not stop in time; they will be marked interrupted on the next start");
        }
        if let Err(error) = self.durable.flush().await {
            tracing::error!(%error, "flushing the job store at shutdown");
        }
    }
}
