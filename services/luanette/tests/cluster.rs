//! Cluster mode's job queue on a real PostgreSQL, with workers as real `luanette worker`
//! processes: a job queued at the front runs on a worker; a worker killed with SIGKILL loses
//! its lease and its job is retried or fails "interrupted", never lost and never run twice at
//! once; cancel reaches a job on a worker; priorities hold across workers.
//!
//! They need PostgreSQL: `eval "$(scripts/postgres start DIR)"`, then
//! `cargo test -p luanette --test cluster -- --ignored` (scripts/test does this).

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hooteproto::v1::{
    ErrorCode, JobCancelRequest, JobExecuteRequest, JobInfo, JobListRequest, JobPollRequest, JobPriority, JobState,
    JobStatsRequest, JobStatusRequest, PingRequest, PollMode,
};
use hooteproto::{Client, ClientConfig};

struct Front {
    client: Client,
    database_url: String,
    data: tempfile::TempDir,
    _stop: tokio::sync::oneshot::Sender<()>,
}

/// A front Luanette in this process that only enqueues (no local workers).
async fn front(lease: Duration, max_attempts: u32) -> Front {
    let data = tempfile::tempdir().expect("tmp");
    let database_url = testkit::postgres::database_for(data.path())
        .expect("these tests need PostgreSQL: eval \"$(scripts/postgres start DIR)\"");
    let mut config = luanette::Config::new(data.path().to_path_buf());
    config.bind = "tcp://127.0.0.1:*".into();
    config.pub_bind = None;
    config.health_bind = None;
    config.cluster = Some(luanette::cluster::ClusterConfig {
        database_url: database_url.clone(),
        lease,
        max_attempts,
    });
    config.local_workers = 0;
    let bound = luanette::bind(config).await.expect("front starts");
    let client = Client::connect(ClientConfig::new(bound.endpoint())).expect("client");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(bound.run(async move {
        let _ = stopped.await;
    }));
    client.call(PingRequest {}).await.expect("front answers");
    Front {
        client,
        database_url,
        data,
        _stop: stop,
    }
}

/// A `luanette worker` process on the front's queue and CAS.
struct Worker(Child);

impl Worker {
    fn start(front: &Front, jobs: usize, lease: Duration, max_attempts: u32) -> Self {
        Self::with_capabilities(front, jobs, lease, max_attempts, &[])
    }

    fn with_capabilities(
        front: &Front,
        jobs: usize,
        lease: Duration,
        max_attempts: u32,
        capabilities: &[&str],
    ) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_luanette"));
        for capability in capabilities {
            command.args(["--capability", capability]);
        }
        let child = command
            .arg("worker")
            .arg("--data-dir")
            .arg(front.data.path())
            .args(["--database-url", &front.database_url, "--health-bind", "none"])
            .args(["--max-jobs", &jobs.to_string()])
            .args(["--lease-secs", &lease.as_secs().to_string()])
            .args(["--max-attempts", &max_attempts.to_string()])
            .args(["--job-timeout-secs", "120"])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn luanette worker");
        Self(child)
    }

    fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn execute(client: &Client, script: &str, params: serde_json::Value, priority: JobPriority) -> String {
    execute_needing(client, script, params, priority, &[])
        .await
        .expect("execute")
}

async fn execute_needing(
    client: &Client,
    script: &str,
    params: serde_json::Value,
    priority: JobPriority,
    capabilities: &[&str],
) -> Result<String, hooteproto::Error> {
    client
        .call(JobExecuteRequest {
            script_hash: script.into(),
            params: Some(hooteproto::wkt::Struct::from_json(
                params.as_object().cloned().unwrap_or_default(),
            )),
            priority: priority as i32,
            required_capabilities: capabilities.iter().map(|c| c.to_string()).collect(),
            ..Default::default()
        })
        .await
        .map(|reply| reply.job_id)
}

async fn status(client: &Client, id: &str) -> JobInfo {
    *client
        .call(JobStatusRequest { job_id: id.into() })
        .await
        .expect("status")
        .job
        .expect("job")
}

async fn wait_final(client: &Client, id: &str, within: Duration) -> JobInfo {
    let reply = client
        .call_with(
            JobPollRequest {
                job_ids: vec![id.into()],
                timeout_ms: within.as_millis() as u32,
                mode: PollMode::Any as i32,
            },
            hooteproto::RequestOptions {
                timeout: Some(within + Duration::from_secs(5)),
                attempt_timeout: Some(within + Duration::from_secs(2)),
                ..Default::default()
            },
        )
        .await
        .expect("poll");
    reply
        .completed
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("job {id} did not finish within {within:?}"))
}

async fn wait_running(client: &Client, id: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while status(client, id).await.state != JobState::Running as i32 {
        assert!(Instant::now() < deadline, "job {id} never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Spins until the CAS holds `params.gate`, then returns "through".
const GATED: &str = "function main(p) while not cas.exists(p.gate) do end return 'through' end";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL (scripts/postgres); scripts/test runs it"]
async fn a_job_queued_at_the_front_runs_on_a_worker_process() {
    let front = front(Duration::from_secs(5), 1).await;
    let script = common::store_script(
        &front.client,
        "function main(p) job.progress(0.5, 'half') return p.n * 2 end",
    )
    .await;
    let queued = execute(
        &front.client,
        &script,
        serde_json::json!({"n": 21}),
        JobPriority::Normal,
    )
    .await;
    assert_eq!(
        status(&front.client, &queued).await.state,
        JobState::Pending as i32,
        "nothing runs jobs yet: the front only enqueues"
    );
    let _worker = Worker::start(&front, 2, Duration::from_secs(5), 1);
    let done = wait_final(&front.client, &queued, Duration::from_secs(30)).await;
    assert_eq!(done.state, JobState::Succeeded as i32, "{done:?}");
    assert_eq!(
        hooteproto::wkt::value_to_json(done.result.clone().expect("result")),
        serde_json::json!(42.0)
    );
    assert_eq!(done.progress_message, "half");
    assert_eq!(done.script_hash, script);
    assert!(done.started_at.is_some() && done.finished_at.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL (scripts/postgres); scripts/test runs it"]
async fn a_killed_worker_loses_its_lease_and_the_job_fails_interrupted() {
    let lease = Duration::from_secs(1);
    let front = front(lease, 1).await;
    let script = common::store_script(&front.client, GATED).await;
    let mut worker = Worker::start(&front, 1, lease, 1);
    let job = execute(
        &front.client,
        &script,
        serde_json::json!({"gate": "0".repeat(64)}),
        JobPriority::Normal,
    )
    .await;
    wait_running(&front.client, &job).await;
    worker.kill();
    // The front reaps expired leases too, so no other worker is needed to notice.
    let failed = wait_final(&front.client, &job, Duration::from_secs(60)).await;
    assert_eq!(failed.state, JobState::Failed as i32, "{failed:?}");
    let error = failed.error.expect("error");
    assert!(error.message.contains("interrupted"), "{}", error.message);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL (scripts/postgres); scripts/test runs it"]
async fn a_killed_workers_job_is_retried_on_another_worker_when_attempts_remain() {
    let lease = Duration::from_secs(1);
    let front = front(lease, 2).await;
    let script = common::store_script(&front.client, GATED).await;
    // The gate's name in the CAS: the job waits for what the test stores only later.
    let gate = cas::Hash::of(b"open").to_string();
    let mut first = Worker::start(&front, 1, lease, 2);
    let job = execute(
        &front.client,
        &script,
        serde_json::json!({"gate": gate}),
        JobPriority::Normal,
    )
    .await;
    wait_running(&front.client, &job).await;
    first.kill();
    cas::Cas::open(front.data.path().join("cas"))
        .expect("cas")
        .store(b"open", "text/plain")
        .expect("open the gate");
    let _second = Worker::start(&front, 1, lease, 2);
    let retried = wait_final(&front.client, &job, Duration::from_secs(60)).await;
    assert_eq!(
        retried.state,
        JobState::Succeeded as i32,
        "the second attempt ran to the end: {retried:?}"
    );
    assert_eq!(
        hooteproto::wkt::value_to_json(retried.result.clone().expect("result")),
        serde_json::json!("through")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL (scripts/postgres); scripts/test runs it"]
async fn cancel_reaches_a_job_running_on_a_worker() {
    let front = front(Duration::from_secs(10), 1).await;
    let script = common::store_script(&front.client, GATED).await;
    let _worker = Worker::start(&front, 1, Duration::from_secs(10), 1);
    let job = execute(
        &front.client,
        &script,
        serde_json::json!({"gate": "1".repeat(64)}),
        JobPriority::Normal,
    )
    .await;
    wait_running(&front.client, &job).await;
    let cancelled = front
        .client
        .call(JobCancelRequest { job_id: job.clone() })
        .await
        .expect("cancel");
    // job_cancel waits at most 2 s for the job to stop; the worker heard it over NOTIFY.
    assert_eq!(
        cancelled.state,
        JobState::Cancelled as i32,
        "stopped while cancel waited"
    );
    // A pending job is cancelled at once, with no worker involved: the only slot is busy.
    let blocker = execute(
        &front.client,
        &script,
        serde_json::json!({"gate": "3".repeat(64)}),
        JobPriority::High,
    )
    .await;
    wait_running(&front.client, &blocker).await;
    let queued = execute(
        &front.client,
        &script,
        serde_json::json!({"gate": "2".repeat(64)}),
        JobPriority::Low,
    )
    .await;
    let at_once = front
        .client
        .call(JobCancelRequest { job_id: queued.clone() })
        .await
        .expect("cancel pending");
    assert_eq!(at_once.state, JobState::Cancelled as i32);
    assert!(
        status(&front.client, &queued).await.started_at.is_none(),
        "it never ran"
    );
    let _ = front.client.call(JobCancelRequest { job_id: blocker }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL (scripts/postgres); scripts/test runs it"]
async fn workers_take_the_highest_priority_first_and_never_the_same_job_twice() {
    let front = front(Duration::from_secs(10), 1).await;
    let script = common::store_script(&front.client, "function main(p) return p.n end").await;
    let mut ids = Vec::new();
    for (n, priority) in [(1, JobPriority::Low), (2, JobPriority::Normal), (3, JobPriority::High)] {
        ids.push((
            n,
            execute(&front.client, &script, serde_json::json!({"n": n}), priority).await,
        ));
    }
    let many: Vec<String> = {
        let mut many = Vec::new();
        for n in 10..50 {
            many.push(execute(&front.client, &script, serde_json::json!({"n": n}), JobPriority::Normal).await);
        }
        many
    };
    // One worker with one slot first, so the order is observable, then more on the rest.
    let _first = Worker::start(&front, 1, Duration::from_secs(10), 1);
    let mut started = Vec::new();
    for (n, id) in &ids {
        let job = wait_final(&front.client, id, Duration::from_secs(60)).await;
        assert_eq!(job.state, JobState::Succeeded as i32);
        let at = job.started_at.expect("started");
        started.push(((at.seconds, at.nanos), *n));
    }
    started.sort();
    assert_eq!(
        started.iter().map(|(_, n)| *n).collect::<Vec<_>>(),
        [3, 2, 1],
        "high, then normal, then low"
    );
    // Listing pages newest first, in either store the same way.
    let page = front
        .client
        .call(JobListRequest {
            page_size: 2,
            ..Default::default()
        })
        .await
        .expect("list");
    assert_eq!(page.jobs.len(), 2, "{page:?}");
    assert_eq!(page.next_page_token, page.jobs[1].job_id);
    assert!(page.jobs.iter().all(|j| j.logs.is_empty() && j.params.is_none()));
    let _second = Worker::start(&front, 2, Duration::from_secs(10), 1);
    let _third = Worker::start(&front, 2, Duration::from_secs(10), 1);
    for (i, id) in many.iter().enumerate() {
        let job = wait_final(&front.client, id, Duration::from_secs(60)).await;
        assert_eq!(job.state, JobState::Succeeded as i32, "{job:?}");
        assert_eq!(
            hooteproto::wkt::value_to_json(job.result.clone().expect("result")),
            serde_json::json!((i + 10) as f64)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL (scripts/postgres); scripts/test runs it"]
async fn a_job_needing_a_capability_waits_for_a_worker_that_has_it_and_the_stats_show_it() {
    let front = front(Duration::from_secs(10), 1).await;
    let script = common::store_script(&front.client, "function main(p) return p.n end").await;
    let _plain = Worker::start(&front, 1, Duration::from_secs(10), 1);
    let gpu_job = execute_needing(
        &front.client,
        &script,
        serde_json::json!({"n": 1}),
        JobPriority::High,
        &["gpu"],
    )
    .await
    .expect("queued: some worker may have it");
    let plain_job = execute(&front.client, &script, serde_json::json!({"n": 2}), JobPriority::Low).await;
    let plain = wait_final(&front.client, &plain_job, Duration::from_secs(30)).await;
    assert_eq!(
        plain.state,
        JobState::Succeeded as i32,
        "the plain worker takes what it can run"
    );
    let waiting = status(&front.client, &gpu_job).await;
    assert_eq!(
        waiting.state,
        JobState::Pending as i32,
        "no worker has gpu yet, though it is the higher priority"
    );
    let stats = front.client.call(JobStatsRequest {}).await.expect("stats");
    let gpu = stats
        .queues
        .iter()
        .find(|q| q.required_capabilities == ["gpu"])
        .expect("a gpu queue");
    assert_eq!((gpu.pending, gpu.running), (1, 0), "{stats:?}");
    assert!(gpu.oldest_pending_seconds > 0.0);
    let _gpu_worker = Worker::with_capabilities(&front, 1, Duration::from_secs(10), 1, &["gpu", "orpheus"]);
    let done = wait_final(&front.client, &gpu_job, Duration::from_secs(30)).await;
    assert_eq!(done.state, JobState::Succeeded as i32);
    assert_eq!(done.required_capabilities, ["gpu"]);
    let after = front.client.call(JobStatsRequest {}).await.expect("stats");
    assert!(after.queues.iter().all(|q| q.pending == 0), "{after:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL (scripts/postgres); scripts/test runs it"]
async fn jobs_submitted_at_once_keep_their_own_params_priorities_and_capabilities() {
    // The front commits inserts that arrive together as one statement: each job must still
    // come out as it went in.
    let front = front(Duration::from_secs(10), 1).await;
    let script = common::store_script(&front.client, "function main(p) return p.n end").await;
    let mut submitting = tokio::task::JoinSet::new();
    for n in 0..60u32 {
        let (client, script) = (front.client.clone(), script.clone());
        let priority = [JobPriority::Low, JobPriority::Normal, JobPriority::High][n as usize % 3];
        let needs: &'static [&'static str] = if n % 4 == 0 { &["gpu", "orpheus"] } else { &[] };
        submitting.spawn(async move {
            let id = execute_needing(&client, &script, serde_json::json!({"n": n}), priority, needs)
                .await
                .expect("execute");
            (n, priority, needs, id)
        });
    }
    let submitted = submitting.join_all().await;
    let _plain = Worker::start(&front, 2, Duration::from_secs(10), 1);
    for (n, priority, needs, id) in submitted.iter().filter(|(_, _, needs, _)| needs.is_empty()) {
        let job = wait_final(&front.client, id, Duration::from_secs(60)).await;
        assert_eq!(job.state, JobState::Succeeded as i32, "{job:?}");
        assert_eq!(job.priority, *priority as i32, "job {n}");
        assert!(job.required_capabilities.is_empty() && needs.is_empty());
        assert_eq!(
            hooteproto::wkt::value_to_json(job.result.clone().expect("result")),
            serde_json::json!(*n as f64),
            "job {n} ran with its own params"
        );
    }
    let needing: Vec<_> = submitted.iter().filter(|(_, _, needs, _)| !needs.is_empty()).collect();
    for (n, _, needs, id) in &needing {
        let job = status(&front.client, id).await;
        assert_eq!(
            job.state,
            JobState::Pending as i32,
            "job {n} waits for a worker with {needs:?}"
        );
        assert_eq!(job.required_capabilities, *needs);
    }
    let _gpu = Worker::with_capabilities(&front, 2, Duration::from_secs(10), 1, &["gpu", "orpheus"]);
    for (n, priority, _, id) in needing {
        let job = wait_final(&front.client, id, Duration::from_secs(60)).await;
        assert_eq!(job.state, JobState::Succeeded as i32, "{job:?}");
        assert_eq!(job.priority, *priority as i32, "job {n}");
        assert_eq!(
            hooteproto::wkt::value_to_json(job.result.clone().expect("result")),
            serde_json::json!(*n as f64)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL (scripts/postgres); scripts/test runs it"]
async fn a_malformed_traceparent_neither_fails_its_job_nor_the_jobs_queued_with_it() {
    // Bytes PostgreSQL refuses in text (a NUL), among jobs that arrive together and are
    // inserted in one statement.
    let front = front(Duration::from_secs(10), 1).await;
    let script = common::store_script(&front.client, "function main(p) return p.n end").await;
    let mut submitting = tokio::task::JoinSet::new();
    for n in 0..8u32 {
        let (client, script) = (front.client.clone(), script.clone());
        submitting.spawn(async move {
            let traceparent = if n == 3 {
                "00-\0-\0-01".to_string()
            } else {
                String::new()
            };
            client
                .call_with(
                    JobExecuteRequest {
                        script_hash: script,
                        params: Some(hooteproto::wkt::Struct::from_json(
                            serde_json::json!({"n": n}).as_object().cloned().unwrap_or_default(),
                        )),
                        ..Default::default()
                    },
                    hooteproto::RequestOptions {
                        traceparent: Some(traceparent),
                        ..Default::default()
                    },
                )
                .await
                .map(|reply| (n, reply.job_id))
        });
    }
    let submitted = submitting.join_all().await;
    let _worker = Worker::start(&front, 2, Duration::from_secs(10), 1);
    for result in submitted {
        let (n, id) = result.expect("every job is queued");
        let job = wait_final(&front.client, &id, Duration::from_secs(60)).await;
        assert_eq!(job.state, JobState::Succeeded as i32, "job {n}: {job:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL (scripts/postgres); scripts/test runs it"]
async fn a_script_with_a_nul_byte_in_its_source_runs_on_a_worker_as_embedded() {
    // Valid Lua (the NUL is in a comment) that PostgreSQL's text type would refuse.
    let front = front(Duration::from_secs(10), 1).await;
    let script = common::store_script(&front.client, "-- a \0 in a comment\nfunction main(p) return p.n end").await;
    let id = execute(&front.client, &script, serde_json::json!({"n": 7}), JobPriority::Normal).await;
    let _worker = Worker::start(&front, 1, Duration::from_secs(10), 1);
    let job = wait_final(&front.client, &id, Duration::from_secs(60)).await;
    assert_eq!(job.state, JobState::Succeeded as i32, "{job:?}");
    assert_eq!(
        hooteproto::wkt::value_to_json(job.result.expect("result")),
        serde_json::json!(7.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_embedded_luanette_refuses_a_capability_it_does_not_have() {
    let data = tempfile::tempdir().expect("tmp");
    let mut config = luanette::Config::new(data.path().to_path_buf());
    config.bind = "tcp://127.0.0.1:*".into();
    config.pub_bind = None;
    config.health_bind = None;
    config.capabilities = vec!["orpheus".into()];
    let bound = luanette::bind(config).await.expect("starts");
    let client = Client::connect(ClientConfig::new(bound.endpoint())).expect("client");
    let (_stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(bound.run(async move {
        let _ = stopped.await;
    }));
    let script = common::store_script(&client, "function main(p) return 1 end").await;
    match execute_needing(&client, &script, serde_json::json!({}), JobPriority::Normal, &["gpu"]).await {
        Err(hooteproto::Error::Remote(status)) => {
            assert_eq!(status.code, ErrorCode::FailedPrecondition, "{}", status.message);
            assert!(status.message.contains("gpu"), "{}", status.message);
        }
        other => panic!("a job nothing here can run was accepted: {other:?}"),
    }
    let ran = execute_needing(
        &client,
        &script,
        serde_json::json!({}),
        JobPriority::Normal,
        &["orpheus"],
    )
    .await
    .expect("a capability it has");
    assert_eq!(
        wait_final(&client, &ran, Duration::from_secs(30)).await.state,
        JobState::Succeeded as i32
    );
    let bad = execute_needing(
        &client,
        &script,
        serde_json::json!({}),
        JobPriority::Normal,
        &["no spaces"],
    )
    .await;
    assert!(matches!(bad, Err(hooteproto::Error::Remote(s)) if s.code == ErrorCode::InvalidArgument));
}
