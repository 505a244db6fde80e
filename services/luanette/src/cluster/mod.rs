//! Cluster mode's job queue in PostgreSQL (`--database-url`): the front (`luanette`) records
//! jobs and answers status, poll, list and cancel; workers (`luanette worker`, or
//! `--local-workers` inside the front) on any host run them.
//!
//! - Claiming: `FOR UPDATE SKIP LOCKED` on the highest-priority, oldest pending job, so two
//!   workers never take the same one; a claim sets a lease that the worker renews with
//!   heartbeats.
//! - Waking: `LISTEN/NOTIFY` (`hoot_job_queued`, `hoot_job_claimed`, `hoot_job_done`,
//!   `hoot_job_cancel`): an idle worker sleeps until told. Every front broadcasts what it
//!   hears (claimed: running; done: the final state; `hoot_job_progress`: progress;
//!   `hoot_job_log`: output lines), so
//!   subscribers see the same events as in embedded mode, wherever the job runs. The front reaps expired leases,
//!   waking when the earliest lease of a running job would expire; with nothing running it
//!   sleeps until a claim.
//! - Finishing: the outcome, logs and state are committed in one statement that only the
//!   lease holder can make; a worker that lost its lease (it stalled, the job was reaped)
//!   commits nothing. The same statement claims the slot's next job, so a busy slot costs one
//!   transaction per job (`worker::SETTLE_AND_CLAIM`); the front inserts jobs that arrive
//!   together in one statement too (`enqueue`).
//! - Failures: a lease that expires (the worker was killed, its host is gone) puts the job
//!   back in the queue until it has been tried `max_attempts` times, then fails it with
//!   reason "interrupted". Never run twice at once, never lost.
//! - Cancel: pending jobs are cancelled at once; running ones are told over `NOTIFY` (and
//!   at the next heartbeat), so the worker stops them within a second.
//!
//! This module is what both sides share; `front` is the front's side, `worker` the worker's.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use hooteproto::Status;
use hooteproto::broadcast::Publisher;
use hooteproto::v1::{self as pb, JobInfo, JobState, PollMode, broadcast};
use prost::Message as _;
use sqlx::postgres::{PgPool, PgPoolOptions};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::jobs::{
    JobsConfig, MAX_PAGE_BYTES, MAX_POLL, NewJob, check_params_size, check_poll_ids, interrupted, is_final, listed,
    page_size_of, settle,
};
use crate::runner::{Runner, Task};
use crate::sandbox::{RunContext, ScriptIdentity};

mod enqueue;
mod front;
mod headroom;
pub mod listen;
mod worker;

pub use front::ClusterJobs;
pub use listen::{Heard, Notifications};
pub use worker::Worker;

const QUEUED: &str = "hoot_job_queued";
const DONE: &str = "hoot_job_done";
const CANCEL: &str = "hoot_job_cancel";
const CLAIMED: &str = "hoot_job_claimed";
/// `<job id> <fraction> <message>`: a worker's `job.progress`, for the fronts to broadcast.
const PROGRESS: &str = "hoot_job_progress";
/// A running job's output lines: a base64 `hooteproto.v1.JobLog` of at most
/// [`NOTIFY_LOG_BYTES`], for the fronts to broadcast.
const LOG: &str = "hoot_job_log";
/// The most a `hoot_job_log` batch holds encoded: base64 makes it 4/3 larger, and a
/// notification's payload must stay under 8,000 bytes.
const NOTIFY_LOG_BYTES: usize = 5_000;
/// What a front listens to for its queue.
pub const FRONT_CHANNELS: [&str; 4] = [DONE, CLAIMED, PROGRESS, LOG];
/// What a worker listens to.
pub const WORKER_CHANNELS: [&str; 2] = [QUEUED, CANCEL];
/// Finished jobs a long poll may fall behind by before it reads the database again.
const FINISHED_BACKLOG: usize = 4096;

/// How cluster jobs are run and recovered.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// `postgres://...`.
    pub database_url: String,
    /// How long a claim holds without a heartbeat.
    pub lease: Duration,
    /// Runs of one job at most (a lost lease counts); then it fails "interrupted".
    pub max_attempts: u32,
}

impl ClusterConfig {
    /// 10 s leases, one attempt.
    pub fn new(database_url: impl Into<String>) -> Self {
        Self {
            database_url: database_url.into(),
            lease: Duration::from_secs(10),
            max_attempts: 1,
        }
    }
}

/// Whether `name` may name a capability: 1-64 of `[A-Za-z0-9._-]`.
pub fn valid_capability(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

pub(crate) fn db_error(error: sqlx::Error) -> Status {
    Status::from_database("the job database", error)
}

fn decode(bytes: &[u8]) -> Result<JobInfo, Status> {
    JobInfo::decode(bytes).map_err(|e| Status::internal(format!("job database holds a malformed record: {e}")))
}

fn now() -> prost_types::Timestamp {
    SystemTime::now().into()
}

/// Reads of `started_at` as seconds since the epoch (sqlx here has no date types).
const STARTED_AT: &str = "extract(epoch FROM started_at)::float8";

/// record, progress, progress message, then the claim's columns (state, worker, started_at).
type StatusRow = (Vec<u8>, f64, String, i16, Option<String>, Option<f64>);
/// record, then the claim's columns.
type ListedRow = (Vec<u8>, i16, Option<String>, Option<f64>);
/// id, attempts, record, worker, started_at.
type ExpiredRow = (String, i32, Vec<u8>, Option<String>, Option<f64>);

/// A running job as readers see it: its record is as it was queued until the worker writes it
/// at the end, so who runs it and since when come from the claim's columns.
fn as_claimed(mut job: JobInfo, state: i16, worker: Option<String>, started_at: Option<f64>) -> JobInfo {
    if state == JobState::Running as i16 {
        job.state = JobState::Running as i32;
        job.worker = worker.unwrap_or_default();
        job.started_at = started_at.map(|epoch| (UNIX_EPOCH + Duration::from_secs_f64(epoch.max(0.0))).into());
    }
    job
}

/// Connects and brings the tables up to date.
pub async fn connect(url: &str) -> anyhow::Result<PgPool> {
    let pool = PgPoolOptions::new()
        .max_connections(16)
        // No ping before each query (a round trip each). A connection that broke while idle
        // (the server restarted) fails one query with UNAVAILABLE and is then dropped: sqlx
        // tests every connection as it comes back to the pool.
        .test_before_acquire(false)
        .acquire_timeout(Duration::from_secs(3))
        .connect(url)
        .await
        .context("connecting to the job database (--database-url)")?;
    // One database may hold both services' tables (holler up --database-url): each
    // service's migrations have their own version range (Hootenanny 1xxx, Luanette 2xxx)
    // and leave the other's alone.
    let mut migrator = sqlx::migrate!("./migrations");
    migrator.set_ignore_missing(true);
    migrator.run(&pool).await.context("migrating the job database")?;
    Ok(pool)
}

async fn notify_done(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    job_id: &str,
    state: JobState,
) -> Result<(), Status> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(DONE)
        .bind(format!("{job_id} {}", state as i32))
        .execute(&mut **tx)
        .await
        .map_err(db_error)?;
    Ok(())
}

/// Time-ordered ids unique across hosts: microseconds, then random bits.
fn new_id() -> String {
    let micros = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or_default();
    format!("{micros:014x}{:06x}", rand::random::<u32>() & 0xff_ffff)
}

/// The queue by priority and required capabilities (the `job_queue_stats` view), and how many
/// workers hold a job.
pub(crate) async fn queue_stats(pool: &PgPool) -> Result<pb::JobStatsReply, Status> {
    let rows: Vec<(i16, Vec<String>, i64, i64, f64)> = sqlx::query_as(
        "SELECT priority, capabilities, pending, running, oldest_pending_seconds FROM job_queue_stats \
         ORDER BY priority DESC, capabilities",
    )
    .fetch_all(pool)
    .await
    .map_err(db_error)?;
    let busy: i64 = sqlx::query_scalar("SELECT count(DISTINCT worker) FROM jobs WHERE state = 2")
        .fetch_one(pool)
        .await
        .map_err(db_error)?;
    Ok(pb::JobStatsReply {
        queues: rows
            .into_iter()
            .map(|(priority, capabilities, pending, running, oldest)| pb::JobQueueStats {
                priority: i32::from(priority),
                required_capabilities: capabilities,
                pending: pending as u64,
                running: running as u64,
                oldest_pending_seconds: oldest,
            })
            .collect(),
        busy_workers: busy as u64,
    })
}

/// Requeues jobs whose lease expired (their worker died or stalled), or fails them
/// "interrupted" once they have been tried `max_attempts` times. Returns how many.
pub async fn reap(pool: &PgPool, max_attempts: u32) -> Result<usize, Status> {
    let mut tx = pool.begin().await.map_err(db_error)?;
    let expired: Vec<ExpiredRow> = sqlx::query_as(&format!(
        "SELECT id, attempts, record, worker, {STARTED_AT} FROM jobs \
         WHERE state = 2 AND lease_until < now() FOR UPDATE SKIP LOCKED"
    ))
    .fetch_all(&mut *tx)
    .await
    .map_err(db_error)?;
    for (id, attempts, record, worker, started_at) in &expired {
        let mut job = as_claimed(decode(record)?, JobState::Running as i16, worker.clone(), *started_at);
        if (*attempts as u32) < max_attempts {
            job.state = JobState::Pending as i32;
            job.started_at = None;
            job.worker.clear();
            sqlx::query(
                "UPDATE jobs SET state = 1, worker = NULL, lease_until = NULL, started_at = NULL, record = $2 WHERE id = $1",
            )
                .bind(id)
                .bind(job.encode_to_vec())
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
            tracing::warn!(job = %id, attempts, "a worker lost its lease; the job is queued again");
        } else {
            job.state = JobState::Failed as i32;
            job.error = Some(interrupted(&format!(
                "its worker stopped answering (lease expired after {attempts} attempt(s))"
            )));
            job.finished_at = Some(now());
            sqlx::query(
                "UPDATE jobs SET state = 4, worker = NULL, lease_until = NULL, record = $2, finished_at = now() \
                 WHERE id = $1",
            )
            .bind(id)
            .bind(job.encode_to_vec())
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
            notify_done(&mut tx, id, JobState::Failed).await?;
            tracing::warn!(job = %id, attempts, "a worker lost its lease; the job failed as interrupted");
        }
    }
    if !expired.is_empty() {
        sqlx::query("SELECT pg_notify($1, '')")
            .bind(QUEUED)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
    }
    tx.commit().await.map_err(db_error)?;
    Ok(expired.len())
}
