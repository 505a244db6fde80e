//! The front's side of the queue: `job_*` requests, the reaper, and what the fronts hear
//! (see the parent module for the protocol).

// The queue's shared names, constants and helpers.
use super::*;

/// The front's side: the queue as `job_*` requests see it.
pub struct ClusterJobs {
    pool: PgPool,
    config: JobsConfig,
    cluster: ClusterConfig,
    /// Each job the `hoot_job_done` notifications say finished; None when some may have been
    /// missed (the listener reconnected), so long polls look at the database again.
    finished: tokio::sync::broadcast::Sender<Option<String>>,
    /// Keeps the process's listener alive while the queue follows it.
    _notifications: Notifications,
    /// Bumped at every claim (the reaper plans its next look from the leases).
    claimed: watch::Sender<u64>,
    publisher: Option<Arc<Publisher>>,
    /// How far the queue is from its limits, so most inserts need not count.
    headroom: headroom::Headroom,
    stop: CancellationToken,
    /// The queue's depth and age for OpenTelemetry (collected only with an exporter).
    _gauges: crate::queue_metrics::QueueGauges,
    /// Jobs this front is queueing and has not yet announced as pending, with the states
    /// heard for them meanwhile: a worker may claim (even finish) a job before the insert's
    /// reply is back here, and subscribers must still hear pending first.
    announcing: std::sync::Mutex<std::collections::HashMap<String, Vec<i32>>>,
    /// Inserts new jobs, several to a commit under load.
    enqueuer: enqueue::Enqueuer,
}

impl ClusterJobs {
    /// Connects, and follows finished jobs (for polls and broadcasts) until shut down.
    pub async fn open(
        cluster: ClusterConfig,
        config: JobsConfig,
        publisher: Option<Arc<Publisher>>,
        pool: PgPool,
        notifications: &Notifications,
    ) -> anyhow::Result<Arc<Self>> {
        let gauges = {
            let pool = pool.clone();
            crate::queue_metrics::register(tokio::runtime::Handle::current(), move || {
                let pool = pool.clone();
                async move { queue_stats(&pool).await.ok().map(|stats| stats.queues) }
            })
        };
        let jobs = Arc::new(Self {
            _gauges: gauges,
            enqueuer: enqueue::Enqueuer::start(pool.clone()),
            pool,
            config,
            cluster,
            finished: tokio::sync::broadcast::channel(FINISHED_BACKLOG).0,
            claimed: watch::channel(0).0,
            publisher,
            headroom: headroom::Headroom::default(),
            stop: CancellationToken::new(),
            _notifications: notifications.clone(),
            announcing: std::sync::Mutex::default(),
        });
        jobs.clone().follow_finished(notifications.subscribe());
        jobs.clone().spawn_reaper();
        Ok(jobs)
    }

    /// Reaps expired leases, waking when the earliest lease of a running job would expire
    /// (and after every claim); with nothing running it sleeps until a claim.
    fn spawn_reaper(self: Arc<Self>) {
        let jobs = Arc::downgrade(&self);
        let stop = self.stop.clone();
        let mut claimed = self.claimed.subscribe();
        drop(self);
        tokio::spawn(async move {
            // Whether the database was away at the last look: workers could not renew their
            // leases meanwhile, so once it is back they get one lease to, before any reaping.
            let mut away = false;
            loop {
                let Some(queue) = jobs.upgrade() else { return };
                if away {
                    let lease = queue.cluster.lease;
                    away = sqlx::query("SELECT 1").execute(&queue.pool).await.is_err();
                    drop(queue);
                    tokio::select! {
                        () = stop.cancelled() => return,
                        () = tokio::time::sleep(lease) => continue,
                    }
                }
                match reap(&queue.pool, queue.cluster.max_attempts).await {
                    Ok(_) => {}
                    Err(error) => {
                        away = error.code == pb::ErrorCode::Unavailable;
                        tracing::warn!(%error, "reaping expired leases failed");
                    }
                }
                let earliest: Result<Option<f64>, sqlx::Error> = sqlx::query_scalar(
                    "SELECT EXTRACT(EPOCH FROM (min(lease_until) - now()))::float8 FROM jobs WHERE state = 2",
                )
                .fetch_one(&queue.pool)
                .await;
                let (wait, idle) = match earliest {
                    // Just past the expiry, so the reap finds it expired.
                    Ok(Some(seconds)) => (
                        Duration::from_secs_f64(seconds.max(0.0)) + Duration::from_millis(50),
                        false,
                    ),
                    Ok(None) => (Duration::from_secs(3600), true),
                    // The database is away: look again in a while.
                    Err(_) => (queue.cluster.lease, false),
                };
                drop(queue);
                claimed.borrow_and_update();
                // A new claim's lease ends after any already planned wake, so claims matter
                // only while nothing runs.
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(wait) => {}
                    _ = claimed.changed(), if idle => {}
                }
            }
        });
    }

    /// Follows claimed, finished and progressing jobs: wakes polls and broadcasts the new
    /// state. While the listener reconnects, polls look at the database once a second.
    fn follow_finished(self: Arc<Self>, mut notifications: listen::Subscription) {
        let jobs = Arc::downgrade(&self);
        let stop = self.stop.clone();
        tokio::spawn(async move {
            loop {
                let heard = tokio::select! {
                    () = stop.cancelled() => return,
                    heard = notifications.recv() => heard,
                };
                let Some(jobs) = jobs.upgrade() else { return };
                match heard {
                    Heard::Notification { channel, payload } if *channel == *CLAIMED => {
                        jobs.claimed.send_modify(|n| *n += 1);
                        jobs.publish_heard(&payload, JobState::Running as i32);
                    }
                    Heard::Notification { channel, payload } if *channel == *PROGRESS => {
                        jobs.publish_progress(&payload);
                    }
                    Heard::Notification { channel, payload } if *channel == *LOG => {
                        jobs.publish_log(&payload);
                    }
                    Heard::Notification { channel, payload } if *channel == *DONE => {
                        if let Some((id, state)) = payload.split_once(' ') {
                            let _ = jobs.finished.send(Some(id.to_string()));
                            jobs.publish_heard(id, state.parse().unwrap_or_default());
                        }
                    }
                    Heard::Notification { .. } => {}
                    Heard::Missed => {
                        let _ = jobs.finished.send(None);
                        // A claim may have gone unheard (one whose worker lost the reply
                        // leaves a lease nobody renews): an idle reaper looks again.
                        jobs.claimed.send_modify(|n| *n += 1);
                    }
                }
            }
        });
    }

    /// Publishes a state a notification told of, or holds it until the job's pending state
    /// is out (see `announcing`).
    fn publish_heard(&self, job_id: &str, state: i32) {
        if let Ok(mut announcing) = self.announcing.lock()
            && let Some(held) = announcing.get_mut(job_id)
        {
            held.push(state);
            return;
        }
        self.publish_state(job_id, state);
    }

    fn publish_state(&self, job_id: &str, state: i32) {
        if let Some(publisher) = &self.publisher {
            let _ = publisher.publish(broadcast::Event::JobStateChanged(pb::JobStateChanged {
                job_id: job_id.to_string(),
                state,
            }));
        }
    }

    /// Broadcasts a worker's batch of output lines.
    fn publish_log(&self, payload: &str) {
        use base64::Engine as _;
        let Some(publisher) = &self.publisher else { return };
        let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(payload) else {
            return;
        };
        if let Ok(batch) = pb::JobLog::decode(bytes.as_slice()) {
            let _ = publisher.publish(broadcast::Event::JobLog(batch));
        }
    }

    /// Broadcasts a worker's `<job id> <fraction> <message>`.
    fn publish_progress(&self, payload: &str) {
        let (Some(publisher), Some((job_id, rest))) = (&self.publisher, payload.split_once(' ')) else {
            return;
        };
        let (fraction, message) = rest.split_once(' ').unwrap_or((rest, ""));
        let Ok(fraction) = fraction.parse::<f64>() else { return };
        let _ = publisher.publish(broadcast::Event::JobProgress(pb::JobProgress {
            job_id: job_id.to_string(),
            fraction,
            message: message.to_string(),
        }));
    }

    /// Records a new pending job and wakes a worker.
    pub async fn start(&self, job: NewJob, code: String, traceparent: String, owner: &[u8]) -> Result<JobInfo, Status> {
        if self.stop.is_cancelled() {
            return Err(Status::unavailable("luanette is shutting down"));
        }
        check_params_size(
            job.params.as_ref().map_or(0, |p| p.as_encoded().len()),
            self.config.max_params,
        )?;
        if !self
            .headroom
            .clearly_room(owner, self.config.max_unfinished, self.config.max_unfinished_per_client)
        {
            self.check_room(owner).await?;
        }
        let priority = crate::slots::effective(job.priority);
        let record = JobInfo {
            job_id: new_id(),
            script_hash: job.script_hash,
            state: JobState::Pending as i32,
            params: job.params,
            tags: job.tags,
            created_at: Some(now()),
            priority: priority as i32,
            script_name: job.script_name,
            required_capabilities: job.required_capabilities,
            ..Default::default()
        };
        // Until its pending state is out, what the listener hears of it waits.
        let announcing = Announcing::new(&self.announcing, &record.job_id);
        // With the notification that wakes a worker; committed with any others arriving.
        self.enqueuer
            .insert(enqueue::Row {
                id: record.job_id.clone(),
                priority: priority as i16,
                owner: owner.to_vec(),
                code,
                traceparent,
                record: record.encode_to_vec(),
                capabilities: record.required_capabilities.clone(),
            })
            .await?;
        self.headroom.queued();
        announcing.publish(|state| self.publish_state(&record.job_id, state));
        Ok(record)
    }

    /// Counts unfinished jobs, in all and `owner`'s, and refuses past either limit. Counted
    /// only up to the limits, so a long queue does not make the count slower.
    async fn check_room(&self, owner: &[u8]) -> Result<(), Status> {
        let (unfinished, own): (i64, i64) = sqlx::query_as(
            "SELECT (SELECT count(*) FROM (SELECT 1 FROM jobs WHERE state IN (1, 2) LIMIT $2) u), \
                    (SELECT count(*) FROM (SELECT 1 FROM jobs WHERE state IN (1, 2) AND owner = $1 LIMIT $3) o)",
        )
        .bind(owner)
        .bind(self.config.max_unfinished as i64)
        .bind(self.config.max_unfinished_per_client as i64)
        .fetch_one(&self.pool)
        .await
        .map_err(db_error)?;
        if unfinished as usize >= self.config.max_unfinished {
            return Err(Status::resource_exhausted(format!(
                "{unfinished} jobs are unfinished, the most the queue keeps (--max-unfinished-jobs)"
            )));
        }
        if own as usize >= self.config.max_unfinished_per_client {
            return Err(Status::resource_exhausted(format!(
                "this client has {own} unfinished jobs, the most one client may have \
                 (--max-unfinished-jobs-per-client); wait for some to finish or cancel them"
            )));
        }
        self.headroom.counted(owner, unfinished as u64, own as u64);
        Ok(())
    }

    /// The records of finished jobs, in the order of `job_ids`, in one query (a poll of
    /// hundreds of jobs is one round trip, not hundreds).
    async fn final_records(&self, job_ids: &[String]) -> Result<Vec<JobInfo>, Status> {
        if job_ids.is_empty() {
            return Ok(Vec::new());
        }
        let rows: Vec<(String, Vec<u8>)> = sqlx::query_as("SELECT id, record FROM jobs WHERE id = ANY($1)")
            .bind(job_ids)
            .fetch_all(&self.pool)
            .await
            .map_err(db_error)?;
        let mut records: std::collections::HashMap<String, Vec<u8>> = rows.into_iter().collect();
        job_ids
            .iter()
            .map(|id| {
                let record = records
                    .remove(id)
                    .ok_or_else(|| Status::not_found(format!("no job {id}")))?;
                decode(&record)
            })
            .collect()
    }

    /// A job's record, with its latest progress while it runs.
    pub async fn status(&self, job_id: &str) -> Result<JobInfo, Status> {
        let row: Option<StatusRow> = sqlx::query_as(&format!(
            "SELECT record, progress, progress_message, state, worker, {STARTED_AT} FROM jobs WHERE id = $1"
        ))
        .bind(job_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error)?;
        let (record, progress, message, state, worker, started_at) =
            row.ok_or_else(|| Status::not_found(format!("no job {job_id}")))?;
        let mut job = as_claimed(decode(&record)?, state, worker, started_at);
        if !is_final(JobState::try_from(job.state).unwrap_or_default()) {
            job.progress = progress;
            job.progress_message = message;
        }
        Ok(job)
    }

    /// Waits until any (or all) of `job_ids` are final, or `timeout` passes.
    pub async fn poll(
        &self,
        job_ids: &[String],
        timeout: Duration,
        mode: PollMode,
    ) -> Result<pb::JobPollReply, Status> {
        check_poll_ids(job_ids)?;
        let all = mode == PollMode::All;
        let deadline = tokio::time::Instant::now() + timeout.min(MAX_POLL);
        let mut finished = self.finished.subscribe();
        loop {
            // A look at the database: every state, in one query. Between looks the finished
            // jobs are learnt from the notifications, so a poll of hundreds of jobs costs the
            // database one query per second, not one per finish.
            let states: Vec<(String, i16)> = sqlx::query_as("SELECT id, state FROM jobs WHERE id = ANY($1)")
                .bind(job_ids)
                .fetch_all(&self.pool)
                .await
                .map_err(db_error)?;
            let state_of = |id: &str| states.iter().find(|(i, _)| i == id).map(|(_, s)| i32::from(*s));
            if let Some(missing) = job_ids.iter().find(|id| state_of(id).is_none()) {
                return Err(Status::not_found(format!("no job {missing}")));
            }
            let mut pending: std::collections::HashSet<&str> = job_ids
                .iter()
                .map(String::as_str)
                .filter(|id| !is_final(JobState::try_from(state_of(id).unwrap_or_default()).unwrap_or_default()))
                .collect();
            // A notification lost while the listener reconnected is caught by the next look.
            let next_look = deadline.min(tokio::time::Instant::now() + Duration::from_secs(1));
            loop {
                let finals = job_ids.iter().filter(|id| !pending.contains(id.as_str())).count();
                let done = if all { pending.is_empty() } else { finals > 0 };
                let timed_out = !done && tokio::time::Instant::now() >= deadline;
                if done || timed_out {
                    let (pending, done_ids): (Vec<String>, Vec<String>) =
                        job_ids.iter().cloned().partition(|id| pending.contains(id.as_str()));
                    let completed = self.final_records(&done_ids).await?;
                    return Ok(pb::JobPollReply {
                        completed,
                        pending_job_ids: pending,
                        timed_out,
                    });
                }
                match tokio::time::timeout_at(next_look, finished.recv()).await {
                    Ok(Ok(Some(id))) => {
                        pending.remove(id.as_str());
                    }
                    // Missed some (lagged, or the listener reconnected), or time for a look.
                    Ok(Ok(None) | Err(_)) | Err(_) => break,
                }
            }
        }
    }

    /// Cancels a pending job at once; tells the worker running a job to stop it, and waits
    /// (up to 2 s) until it has.
    pub async fn cancel(&self, job_id: &str) -> Result<pb::JobCancelReply, Status> {
        let mut tx = self.pool.begin().await.map_err(db_error)?;
        let row: Option<(i16, Vec<u8>)> = sqlx::query_as("SELECT state, record FROM jobs WHERE id = $1 FOR UPDATE")
            .bind(job_id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_error)?;
        let (state, record) = row.ok_or_else(|| Status::not_found(format!("no job {job_id}")))?;
        match JobState::try_from(i32::from(state)).unwrap_or_default() {
            JobState::Pending => {
                let mut job = decode(&record)?;
                job.state = JobState::Cancelled as i32;
                job.error = Some(crate::jobs::eval_status(crate::sandbox::EvalError::Cancelled).to_proto());
                job.finished_at = Some(now());
                sqlx::query("UPDATE jobs SET state = 5, record = $2, finished_at = now() WHERE id = $1")
                    .bind(job_id)
                    .bind(job.encode_to_vec())
                    .execute(&mut *tx)
                    .await
                    .map_err(db_error)?;
                notify_done(&mut tx, job_id, JobState::Cancelled).await?;
                tx.commit().await.map_err(db_error)?;
            }
            JobState::Running => {
                sqlx::query("UPDATE jobs SET cancel_requested = TRUE WHERE id = $1")
                    .bind(job_id)
                    .execute(&mut *tx)
                    .await
                    .map_err(db_error)?;
                sqlx::query("SELECT pg_notify($1, $2)")
                    .bind(CANCEL)
                    .bind(job_id)
                    .execute(&mut *tx)
                    .await
                    .map_err(db_error)?;
                tx.commit().await.map_err(db_error)?;
                let _ = self
                    .poll(&[job_id.to_string()], Duration::from_secs(2), PollMode::Any)
                    .await;
            }
            _ => {}
        }
        let job = self.status(job_id).await?;
        Ok(pb::JobCancelReply {
            job_id: job.job_id,
            state: job.state,
        })
    }

    /// One page of jobs, newest first, optionally only those in `status`.
    pub async fn list(
        &self,
        status: JobState,
        page_size: usize,
        page_token: &str,
        include_params: bool,
    ) -> Result<pb::JobListReply, Status> {
        let page_size = page_size_of(page_size);
        // Sizes first, so the page stops at MAX_PAGE_BYTES before any record is read, as
        // the embedded store's does (a record with its logs can be 16 MiB).
        let sizes: Vec<(String, i32)> = sqlx::query_as(
            "SELECT id, length(record) FROM jobs WHERE ($1 = 0 OR state = $1) AND ($2 = '' OR id < $2) \
             ORDER BY id DESC LIMIT $3",
        )
        .bind(status as i16)
        .bind(page_token)
        .bind(page_size as i64 + 1)
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        let mut chosen = Vec::new();
        let mut page_bytes = 0usize;
        for (id, size) in &sizes {
            let size = usize::try_from(*size).unwrap_or(usize::MAX);
            if chosen.len() == page_size || (!chosen.is_empty() && page_bytes.saturating_add(size) > MAX_PAGE_BYTES) {
                break;
            }
            page_bytes = page_bytes.saturating_add(size);
            chosen.push(id.clone());
        }
        let records: Vec<ListedRow> = sqlx::query_as(&format!(
            "SELECT record, state, worker, {STARTED_AT} FROM jobs WHERE id = ANY($1) ORDER BY id DESC"
        ))
        .bind(&chosen)
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        let jobs = records
            .into_iter()
            .map(|(record, state, worker, started_at)| {
                decode(&record).map(|job| listed(as_claimed(job, state, worker, started_at), include_params))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let next_page_token = if sizes.len() > chosen.len() {
            chosen.last().cloned().unwrap_or_default()
        } else {
            String::new()
        };
        Ok(pb::JobListReply { jobs, next_page_token })
    }

    /// The queue by priority and required capabilities (the `job_queue_stats` view).
    pub async fn stats(&self) -> Result<pb::JobStatsReply, Status> {
        queue_stats(&self.pool).await
    }

    /// Job ids starting with `prefix`, newest first (for completion), and how many there are.
    pub async fn ids_with_prefix(&self, prefix: &str, limit: usize) -> Result<(Vec<String>, usize), Status> {
        let pattern = format!("{}%", prefix.replace(['%', '_', '\\'], ""));
        let total: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs WHERE id LIKE $1")
            .bind(&pattern)
            .fetch_one(&self.pool)
            .await
            .map_err(db_error)?;
        let ids = sqlx::query_scalar("SELECT id FROM jobs WHERE id LIKE $1 ORDER BY id DESC LIMIT $2")
            .bind(&pattern)
            .bind(limit as i64)
            .fetch_all(&self.pool)
            .await
            .map_err(db_error)?;
        Ok((ids, total as usize))
    }

    /// Deletes finished jobs past the retention, now and then, until shut down.
    pub fn spawn_garbage_collector(self: &Arc<Self>) {
        let jobs = Arc::downgrade(self);
        let every = (self.config.retention / 10).clamp(Duration::from_secs(1), Duration::from_secs(60));
        let stop = self.stop.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(every) => {}
                }
                let Some(jobs) = jobs.upgrade() else { return };
                let seconds = jobs.config.retention.as_secs_f64();
                let deleted = sqlx::query("DELETE FROM jobs WHERE finished_at < now() - make_interval(secs => $1)")
                    .bind(seconds)
                    .execute(&jobs.pool)
                    .await;
                match deleted {
                    Ok(done) if done.rows_affected() > 0 => {
                        tracing::info!(
                            removed = done.rows_affected(),
                            "deleted finished jobs past their retention"
                        );
                    }
                    Ok(_) => {}
                    Err(error) => tracing::warn!(%error, "job garbage collection failed"),
                }
            }
        });
    }

    /// Stops following notifications (the jobs themselves live on in the database).
    pub async fn shutdown(&self) {
        self.stop.cancel();
    }
}

/// A job being queued by this front, in `ClusterJobs::announcing` until dropped.
struct Announcing<'a> {
    map: &'a std::sync::Mutex<std::collections::HashMap<String, Vec<i32>>>,
    id: String,
}

impl<'a> Announcing<'a> {
    fn new(map: &'a std::sync::Mutex<std::collections::HashMap<String, Vec<i32>>>, id: &str) -> Self {
        if let Ok(mut map) = map.lock() {
            map.insert(id.to_string(), Vec::new());
        }
        Self {
            map,
            id: id.to_string(),
        }
    }

    /// Publishes pending, then what was heard meanwhile, in order: under the lock, so the
    /// listener cannot slip a state in between.
    fn publish(self, publish: impl Fn(i32)) {
        let Ok(mut map) = self.map.lock() else { return };
        let held = map.remove(&self.id).unwrap_or_default();
        publish(JobState::Pending as i32);
        for state in held {
            publish(state);
        }
        drop(map);
    }
}

impl Drop for Announcing<'_> {
    fn drop(&mut self) {
        if let Ok(mut map) = self.map.lock() {
            map.remove(&self.id);
        }
    }
}
