//! The worker's side of the queue: claim, run with heartbeats, commit the outcome as the
//! lease holder (see the parent module for the protocol).

// The queue's shared names, constants and helpers.
use super::*;
use crate::jobs::PROGRESS_EVERY;

/// A worker: claims jobs and runs them on `runner`, `concurrency` at a time.
pub struct Worker {
    pub pool: PgPool,
    pub runner: Runner,
    /// The id it claims under (host and pid, unless configured).
    pub name: String,
    pub concurrency: usize,
    /// What it can run: it takes only jobs whose required capabilities it has.
    pub capabilities: Vec<String>,
    pub cluster: ClusterConfig,
    pub config: JobsConfig,
    /// The process's listener, with at least [`WORKER_CHANNELS`].
    pub notifications: Notifications,
}

/// The cancel tokens of the jobs running here, by id (`hoot_job_cancel` names the job), and
/// the cancels heard lately for jobs not running here. A slot registers the job its
/// outcome-and-claim statement claimed only once the statement is back; a cancel heard in
/// between must still reach it.
#[derive(Default)]
struct Cancels {
    running: std::collections::HashMap<String, CancellationToken>,
    early: std::collections::VecDeque<(tokio::time::Instant, String)>,
}

/// How many unmatched cancels are remembered, and for how long (a claim's reply comes back
/// within milliseconds; these bound the memory whatever the other workers run).
const EARLY_CANCELS: usize = 256;
const EARLY_FOR: Duration = Duration::from_secs(10);

impl Cancels {
    /// A cancel notification: the job's token if it runs here, else remembered a while.
    fn heard(&mut self, id: String) {
        if let Some(token) = self.running.get(&id) {
            token.cancel();
            return;
        }
        let now = tokio::time::Instant::now();
        self.early.retain(|(at, _)| now.duration_since(*at) < EARLY_FOR);
        if self.early.len() >= EARLY_CANCELS {
            self.early.pop_front();
        }
        self.early.push_back((now, id));
    }

    /// A job starting here: cancelled at once if its cancel came first.
    fn start(&mut self, id: &str, token: CancellationToken) {
        if self.early.iter().any(|(_, early)| early == id) {
            token.cancel();
        }
        self.running.insert(id.to_string(), token);
    }

    fn end(&mut self, id: &str) {
        self.running.remove(id);
    }
}

type SharedCancels = Arc<std::sync::Mutex<Cancels>>;

/// The first pause before claiming again after a claim failed; it doubles up to
/// [`CLAIM_RETRY_MAX`] while claims keep failing.
const CLAIM_RETRY_FIRST: Duration = Duration::from_millis(200);
const CLAIM_RETRY_MAX: Duration = Duration::from_secs(2);

/// A claimed job.
struct Claim {
    id: String,
    code: String,
    traceparent: String,
    record: JobInfo,
}

impl Worker {
    /// Runs until `stop`: claims while it has free slots, sleeps on notifications otherwise.
    /// A job still running at `stop` is cancelled and its lease released at once (it is then
    /// retried or failed "interrupted" like any lost lease).
    pub async fn run(self: Arc<Self>, stop: CancellationToken) -> anyhow::Result<()> {
        let mut notifications = self.notifications.subscribe();
        let cancels: SharedCancels = Arc::default();
        // A slot runs one job after another while the queue has work for it (see
        // `serve_slot`); here a free slot is filled when work comes.
        let slots = Arc::new(tokio::sync::Semaphore::new(self.concurrency.max(1)));
        // Signalled whenever a slot comes free.
        let freed = Arc::new(tokio::sync::Notify::new());
        let tasks = tokio_util::task::TaskTracker::new();
        // Jobs whose worker died while nobody was watching go back to the queue first.
        if let Err(error) = reap(&self.pool, self.cluster.max_attempts).await {
            tracing::warn!(%error, "reaping expired leases failed");
        }
        tracing::info!(worker = %self.name, jobs = self.concurrency, capabilities = ?self.capabilities, "worker ready");
        // After a failed claim (the database away, or a connection it broke), when to look
        // again: no notification may come for work already queued.
        let mut retry: Option<Duration> = None;
        loop {
            // Take jobs while there are slots and work (and the worker is not stopping).
            loop {
                if stop.is_cancelled() {
                    break;
                }
                let Ok(slot) = slots.clone().try_acquire_owned() else {
                    break;
                };
                match self.claim().await {
                    Ok(Some(claim)) => {
                        retry = None;
                        let (worker, cancels, freed, stop) =
                            (self.clone(), cancels.clone(), freed.clone(), stop.clone());
                        tasks.spawn(async move {
                            worker.serve_slot(claim, &stop, &cancels).await;
                            drop(slot);
                            freed.notify_one();
                        });
                    }
                    Ok(None) => {
                        retry = None;
                        break;
                    }
                    Err(error) => {
                        tracing::warn!(%error, "claiming a job failed; trying again shortly");
                        retry = Some(retry.map_or(CLAIM_RETRY_FIRST, |r| (r * 2).min(CLAIM_RETRY_MAX)));
                        break;
                    }
                }
            }
            // Wait for something that can change what to claim: queued work, a cancel, a
            // freed slot, or notifications perhaps missed.
            let heard = loop {
                tokio::select! {
                    biased;
                    () = stop.cancelled() => break None,
                    heard = notifications.recv() => match heard {
                        Heard::Notification { ref channel, .. } if **channel != *QUEUED && **channel != *CANCEL => {}
                        heard => break Some(heard),
                    },
                    () = freed.notified() => break Some(Heard::Missed),
                    () = tokio::time::sleep(retry.unwrap_or_default()), if retry.is_some() => break Some(Heard::Missed),
                }
            };
            match heard {
                None => break,
                Some(Heard::Notification { channel, payload }) if *channel == *CANCEL => {
                    if let Ok(mut cancels) = cancels.lock() {
                        cancels.heard(payload);
                    }
                }
                Some(_) => {}
            }
        }
        tasks.close();
        tasks.wait().await;
        Ok(())
    }

    /// Takes the highest-priority, oldest pending job this worker can run, if any.
    async fn claim(&self) -> Result<Option<Claim>, Status> {
        self.settle_and_claim(None, true).await
    }

    /// Records `outcome` (a job id and its finished record), only as the lease holder (a lost
    /// lease is logged and the outcome dropped), and claims the next job if `claim`: one
    /// statement, so one transaction and one commit. Returns the job claimed.
    async fn settle_and_claim(&self, outcome: Option<(&str, &JobInfo)>, claim: bool) -> Result<Option<Claim>, Status> {
        let (recorded, id, code, traceparent, record, started): ClaimRow = sqlx::query_as(SETTLE_AND_CLAIM)
            .bind(&self.name)
            .bind(self.cluster.lease.as_secs_f64())
            .bind(&self.capabilities)
            .bind(CLAIMED)
            .bind(outcome.map(|(id, _)| id))
            .bind(outcome.map(|(_, record)| record.state as i16))
            .bind(outcome.map(|(_, record)| record.encode_to_vec()))
            .bind(DONE)
            .bind(claim)
            .fetch_one(&self.pool)
            .await
            .map_err(db_error)?;
        if let Some((id, _)) = outcome
            && recorded == 0
        {
            tracing::warn!(job = %id, "the lease was lost before the job finished; its outcome is dropped");
        }
        match (id, code, traceparent, record, started) {
            (Some(id), Some(code), Some(traceparent), Some(record), Some(started)) => {
                self.claimed(id, code, traceparent, &record, started).map(Some)
            }
            _ => Ok(None),
        }
    }

    fn claimed(
        &self,
        id: String,
        code: Vec<u8>,
        traceparent: String,
        record: &[u8],
        started: f64,
    ) -> Result<Claim, Status> {
        // Written from a String by the front.
        let code = String::from_utf8(code)
            .map_err(|e| Status::internal(format!("job database holds a script that is not UTF-8: {e}")))?;
        let record = as_claimed(
            decode(record)?,
            JobState::Running as i16,
            Some(self.name.clone()),
            Some(started),
        );
        Ok(Claim {
            id,
            code,
            traceparent,
            record,
        })
    }

    /// Runs `claim`, then job after job for as long as the queue has work: the statement that
    /// records one job's outcome also claims the next, so a busy slot costs the database one
    /// transaction per job rather than two, and never waits for a separate claim.
    async fn serve_slot(&self, mut claim: Claim, stop: &CancellationToken, cancels: &SharedCancels) {
        loop {
            // Claimed as the worker began to stop: not started, so not an attempt. (A job
            // whose cancel was asked for meanwhile is not handed back: it runs below with its
            // token already cancelled and is recorded cancelled.)
            if stop.is_cancelled() && self.hand_back(&claim.id).await {
                return;
            }
            let id = claim.id.clone();
            let token = stop.child_token();
            if let Ok(mut cancels) = cancels.lock() {
                cancels.start(&id, token.clone());
            }
            let (record, stopping) = self.execute(claim, token).await;
            if let Ok(mut cancels) = cancels.lock() {
                cancels.end(&id);
            }
            if !stopping && !stop.is_cancelled() {
                match self.settle_and_claim(Some((&id, &record)), true).await {
                    Ok(Some(next)) => {
                        claim = next;
                        continue;
                    }
                    Ok(None) => return,
                    // Recorded alone below, with retries while the database is away.
                    Err(error) => {
                        tracing::debug!(job = %id, %error, "recording the outcome with the next claim failed")
                    }
                }
            }
            self.record(&id, &record, stopping).await;
            return;
        }
    }

    /// Puts a job this worker claimed but never started back in the queue, its attempt
    /// uncounted, and wakes the other workers; true if it did. Not a job whose cancel was
    /// asked for (the caller records it cancelled). If the database is away the lease expires
    /// instead (and the reaper counts the attempt).
    async fn hand_back(&self, id: &str) -> bool {
        let handed: Result<Option<String>, sqlx::Error> = sqlx::query_scalar(
            "WITH back AS ( \
               UPDATE jobs SET state = 1, worker = NULL, lease_until = NULL, started_at = NULL, \
                 attempts = greatest(attempts - 1, 0) \
               WHERE id = $1 AND worker = $2 AND state = 2 AND NOT cancel_requested RETURNING id) \
             SELECT back.id FROM back, pg_notify($3, back.id)",
        )
        .bind(id)
        .bind(&self.name)
        .bind(QUEUED)
        .fetch_optional(&self.pool)
        .await;
        match handed {
            Ok(handed) => handed.is_some(),
            Err(error) => {
                tracing::warn!(job = %id, %error, "could not hand back a job claimed while stopping; its lease will expire");
                true
            }
        }
    }

    /// Runs a claimed job with heartbeats and passes on its progress and output; returns its
    /// finished record, and whether it was stopped by the worker's shutdown rather than run out.
    async fn execute(&self, claim: Claim, cancel: CancellationToken) -> (JobInfo, bool) {
        let Claim {
            id,
            code,
            traceparent,
            mut record,
        } = claim;
        let progress = Arc::new(std::sync::Mutex::new((0.0f64, String::new())));
        // Reports made, and how many of them the fronts have been told of.
        let (reported, mut to_announce) = watch::channel(0u64);
        let announced = std::sync::atomic::AtomicU64::new(0);
        let reporter: crate::sandbox::ProgressFn = {
            let progress = progress.clone();
            Arc::new(move |fraction, message: &str| {
                if let Ok(mut p) = progress.lock() {
                    *p = (fraction, message.to_string());
                }
                reported.send_modify(|n| *n += 1);
            })
        };
        let follower = Arc::new(crate::jobs::LogFollower::default());
        let params = record.params.as_ref().and_then(|p| p.to_prost().ok());
        let context = RunContext {
            traceparent,
            progress: Some(reporter),
            events: None,
            logs: Some(follower.sink()),
            identity: ScriptIdentity {
                job_id: id.clone(),
                script_hash: record.script_hash.clone(),
                script_name: record.script_name.clone(),
            },
        };
        let heartbeat = self.heartbeat(&id, progress.clone(), cancel.clone());
        let run = self
            .runner
            .run(Task::Main { code, params, context }, self.config.limits, cancel.clone());
        let run = follower.follow(&id, NOTIFY_LOG_BYTES, run, |batch| self.notify_log(batch));
        let announce = self.announce_progress(&id, &progress, &mut to_announce, &announced);
        let run = tokio::select! {
            run = run => run,
            () = heartbeat => Err(Status::new(pb::ErrorCode::Aborted, "the lease was lost")),
            never = announce => match never {},
        };
        // The last report may not have gone out yet (or its announcement was cut short with
        // the job): subscribers hear it before the outcome.
        if announced.load(std::sync::atomic::Ordering::Acquire) < *to_announce.borrow() {
            self.notify_progress(&id, &progress).await;
        }
        let stopping = cancel.is_cancelled() && !self.cancel_requested(&id).await;
        let (state, result, error, logs) = settle(run, self.config.max_result, stopping);
        record.state = state as i32;
        record.result = result;
        record.error = error;
        record.logs = logs;
        if let Ok(p) = progress.lock() {
            record.progress = p.0;
            record.progress_message = p.1.clone();
        }
        record.finished_at = Some(now());
        (record, stopping)
    }

    /// Commits the outcome as the lease holder. The database may be away (a restart): keep
    /// trying, so a finished job's outcome is not lost to it. The commit succeeds only while
    /// the job is still this worker's, and reapers leave a worker one lease after the
    /// database comes back to say so.
    async fn record(&self, id: &str, record: &JobInfo, stopping: bool) {
        let give_up = tokio::time::Instant::now() + self.cluster.lease * 30;
        let mut pause = Duration::from_millis(100);
        loop {
            match self.finish(id, record, stopping).await {
                Ok(()) => break,
                Err(error)
                    if error.code == pb::ErrorCode::Unavailable && tokio::time::Instant::now() + pause < give_up =>
                {
                    tracing::warn!(job = %id, %error, "could not record the job's outcome yet; retrying");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(1));
                }
                Err(error) => {
                    tracing::error!(job = %id, %error, "could not record the job's outcome");
                    break;
                }
            }
        }
    }

    /// Tells the fronts each `job.progress` (at most every [`PROGRESS_EVERY`]), so they
    /// broadcast it as they do for their own jobs. Runs until dropped with the job.
    async fn announce_progress(
        &self,
        id: &str,
        progress: &std::sync::Mutex<(f64, String)>,
        reported: &mut watch::Receiver<u64>,
        announced: &std::sync::atomic::AtomicU64,
    ) -> std::convert::Infallible {
        loop {
            if reported.changed().await.is_err() {
                // The reporter is gone only with the job, which ends this future first.
                std::future::pending::<()>().await;
            }
            let reports = *reported.borrow_and_update();
            self.notify_progress(id, progress).await;
            announced.store(reports, std::sync::atomic::Ordering::Release);
            tokio::time::sleep(PROGRESS_EVERY).await;
        }
    }

    async fn notify_progress(&self, id: &str, progress: &std::sync::Mutex<(f64, String)>) {
        let Ok((fraction, message)) = progress.lock().map(|p| p.clone()) else {
            return;
        };
        // The sandbox keeps messages to 1,024 characters, well inside NOTIFY's 8,000 bytes.
        self.tell_fronts(id, PROGRESS, &format!("{id} {fraction} {message}"))
            .await;
    }

    /// Tells the fronts of output lines (they broadcast them as `job_log`).
    async fn notify_log(&self, batch: pb::JobLog) {
        use base64::Engine as _;
        let payload = base64::engine::general_purpose::STANDARD.encode(batch.encode_to_vec());
        self.tell_fronts(&batch.job_id, LOG, &payload).await;
    }

    /// A notification the fronts only pass on to subscribers: best effort, a failure logged.
    async fn tell_fronts(&self, id: &str, channel: &str, payload: &str) {
        if let Err(error) = sqlx::query("SELECT pg_notify($1, $2)")
            .bind(channel)
            .bind(payload)
            .execute(&self.pool)
            .await
        {
            tracing::debug!(job = %id, channel, %error, "could not notify the fronts");
        }
    }

    async fn cancel_requested(&self, id: &str) -> bool {
        sqlx::query_scalar::<_, bool>("SELECT cancel_requested FROM jobs WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .ok()
            .flatten()
            .unwrap_or(false)
    }

    /// Renews the lease every third of it and passes on progress and cancel requests;
    /// returns only if the lease was lost.
    async fn heartbeat(&self, id: &str, progress: Arc<std::sync::Mutex<(f64, String)>>, cancel: CancellationToken) {
        let mut every = self.cluster.lease / 3;
        loop {
            tokio::time::sleep(every).await;
            every = self.cluster.lease / 3;
            let (fraction, message) = progress.lock().map(|p| p.clone()).unwrap_or_default();
            let renewed: Result<Option<bool>, sqlx::Error> = sqlx::query_scalar(
                "UPDATE jobs SET lease_until = now() + make_interval(secs => $3), progress = $4, progress_message = $5 \
                 WHERE id = $1 AND worker = $2 AND state = 2 RETURNING cancel_requested",
            )
            .bind(id)
            .bind(&self.name)
            .bind(self.cluster.lease.as_secs_f64())
            .bind(fraction)
            .bind(&message)
            .fetch_optional(&self.pool)
            .await;
            match renewed {
                Ok(Some(true)) => cancel.cancel(),
                Ok(Some(false)) => {}
                Ok(None) => {
                    tracing::warn!(job = %id, "lost the lease (reaped after a stall); stopping the job");
                    cancel.cancel();
                    return;
                }
                // The database is away: keep running, and try again soon, so the lease is
                // renewed as soon as it is back (the reapers give workers one lease for that).
                Err(error) => {
                    tracing::warn!(job = %id, %error, "could not renew the lease");
                    every = Duration::from_millis(500).min(self.cluster.lease / 3);
                }
            }
        }
    }

    /// Commits the outcome, only as the lease holder. On shutdown the job goes back to the
    /// queue (or fails "interrupted" past `max_attempts`) by expiring its lease now.
    async fn finish(&self, id: &str, record: &JobInfo, stopping: bool) -> Result<(), Status> {
        if stopping {
            sqlx::query("UPDATE jobs SET lease_until = now() WHERE id = $1 AND worker = $2 AND state = 2")
                .bind(id)
                .bind(&self.name)
                .execute(&self.pool)
                .await
                .map_err(db_error)?;
            return reap(&self.pool, self.cluster.max_attempts).await.map(drop);
        }
        self.settle_and_claim(Some((id, record)), false).await.map(drop)
    }
}

/// Recorded (0 or 1), then the claimed job's id, code, traceparent, record and start
/// (seconds since the epoch), all NULL when none was claimed.
type ClaimRow = (
    i64,
    Option<String>,
    Option<Vec<u8>>,
    Option<String>,
    Option<Vec<u8>>,
    Option<f64>,
);

/// What [`Worker::settle_and_claim`] runs. `$1` worker, `$2` lease seconds, `$3` its
/// capabilities, `$4` the claimed channel; `$5` the finished job (NULL: none), `$6` its
/// state, `$7` its record, `$8` the done channel; `$9` whether to claim.
///
/// - done: the outcome, only while the job is this worker's and running (a lost lease
///   matches nothing, and nothing is announced).
/// - claimed: the highest-priority, oldest pending job this worker can run, skipping those
///   other workers are claiming; it sets the columns the queue works on (state, worker,
///   lease, started_at) and the record is written whole when the job finishes (readers show
///   a running job from the columns). A worker dying after it leaves a lease that expires
///   like any other.
/// - Each wakes the fronts in the same transaction.
const SETTLE_AND_CLAIM: &str = "\
    WITH done AS ( \
      UPDATE jobs SET state = $6::smallint, record = $7, finished_at = now(), worker = NULL, lease_until = NULL \
      WHERE id = $5 AND worker = $1 AND state = 2 RETURNING id), \
    claimed AS ( \
      UPDATE jobs SET state = 2, worker = $1, lease_until = now() + make_interval(secs => $2), \
        attempts = attempts + 1, started_at = now() \
      WHERE $9 AND id = (SELECT id FROM jobs WHERE state = 1 AND capabilities <@ $3 \
                         ORDER BY priority DESC, id LIMIT 1 FOR UPDATE SKIP LOCKED) \
      RETURNING id, code, traceparent, record, extract(epoch FROM started_at)::float8 AS started) \
    SELECT (SELECT count(*) FROM done, pg_notify($8, done.id || ' ' || $6::smallint::text)) AS recorded, \
           next.id, next.code, next.traceparent, next.record, next.started \
    FROM (SELECT 1) AS one \
    LEFT JOIN (SELECT claimed.* FROM claimed, pg_notify($4, claimed.id)) AS next ON true";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cancel_heard_before_its_job_starts_here_still_cancels_it() {
        let mut cancels = Cancels::default();
        cancels.heard("job-b".into());
        let (a, b) = (CancellationToken::new(), CancellationToken::new());
        cancels.start("job-a", a.clone());
        cancels.start("job-b", b.clone());
        assert!(!a.is_cancelled(), "only the job the cancel named");
        assert!(b.is_cancelled(), "the early cancel reached the job when it started");
        cancels.heard("job-a".into());
        assert!(a.is_cancelled(), "a running job is cancelled at once");
        for n in 0..EARLY_CANCELS * 2 {
            cancels.heard(format!("elsewhere-{n}"));
        }
        assert!(cancels.early.len() <= EARLY_CANCELS, "remembered cancels are bounded");
    }
}
