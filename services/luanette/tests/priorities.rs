//! Job priorities over HOOT/1, with one job slot (`--max-jobs 1`) held by a blocker: the
//! freed slot goes to the highest priority waiting job, the oldest first within a priority;
//! markers' jobs go ahead of normal work; a waiting job that is cancelled stops at once and
//! takes no slot with it.

mod common;

use std::time::{Duration, Instant};

use hooteproto::v1::{
    ErrorCode, JobCancelRequest, JobExecuteRequest, JobInfo, JobPollRequest, JobPriority, JobState, JobStatusRequest,
    PingRequest, PollMode, ScriptStoreRequest, TimelineEventRequest, TimelineEventType,
};
use hooteproto::{Client, ClientConfig, Error};

struct Running {
    client: Client,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<anyhow::Result<hooteproto::ServerStats>>,
}

impl Running {
    async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.expect("task").expect("run");
    }
}

/// Luanette with a single job slot, and a minute before a job is stopped.
async fn start_with_one_slot(dir: &std::path::Path) -> Running {
    let mut config = common::config(dir);
    config.max_jobs = 1;
    config.job_limits.wall = Duration::from_secs(60);
    let bound = luanette::bind(config).await.expect("luanette starts");
    let client = Client::connect(ClientConfig::new(bound.endpoint())).expect("connect");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(bound.run(async move {
        let _ = stopped.await;
    }));
    client.call(PingRequest {}).await.expect("luanette answers ping");
    Running { client, stop, task }
}

fn object(json: serde_json::Value) -> hooteproto::wkt::Struct {
    hooteproto::wkt::Struct::from_json(json.as_object().cloned().unwrap_or_default())
}

async fn store(client: &Client, content: &str) -> String {
    client
        .call(ScriptStoreRequest {
            content: content.into(),
            tags: vec!["priorities-test".into()],
            creator: "priorities-test".into(),
            ..Default::default()
        })
        .await
        .expect("store")
        .script
        .expect("script")
        .script_hash
}

/// Runs until cancelled (or the minute is up).
const FOREVER: &str = "function main() while true do end end";
/// Returns its label at once.
const LABEL: &str = "function main(p) return p.label end";

async fn execute(client: &Client, script: &str, label: &str, priority: JobPriority) -> Result<String, Error> {
    client
        .call(JobExecuteRequest {
            script_hash: script.into(),
            params: Some(object(serde_json::json!({ "label": label }))),
            tags: vec![label.into()],
            priority: priority as i32,
            ..Default::default()
        })
        .await
        .map(|reply| reply.job_id)
}

async fn status(client: &Client, job_id: &str) -> JobInfo {
    *client
        .call(JobStatusRequest { job_id: job_id.into() })
        .await
        .expect("status")
        .job
        .expect("job")
}

fn state(job: &JobInfo) -> JobState {
    JobState::try_from(job.state).expect("state")
}

/// Starts the blocker and waits (on a loaded machine too) until it holds the slot.
async fn block_the_slot(client: &Client) -> String {
    let forever = store(client, FOREVER).await;
    let job_id = execute(client, &forever, "blocker", JobPriority::Low)
        .await
        .expect("blocker");
    let deadline = Instant::now() + Duration::from_secs(20);
    while state(&status(client, &job_id).await) != JobState::Running {
        assert!(Instant::now() < deadline, "the blocker never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    job_id
}

async fn cancel(client: &Client, job_id: &str) -> JobState {
    let reply = client
        .call(JobCancelRequest { job_id: job_id.into() })
        .await
        .expect("cancel");
    JobState::try_from(reply.state).expect("state")
}

/// Waits for every job to finish and returns their records.
async fn all_finished(client: &Client, ids: &[String]) -> Vec<JobInfo> {
    let reply = client
        .call(JobPollRequest {
            job_ids: ids.to_vec(),
            timeout_ms: 60_000,
            mode: PollMode::All as i32,
        })
        .await
        .expect("poll");
    assert!(!reply.timed_out, "still pending: {:?}", reply.pending_job_ids);
    reply.completed
}

/// The jobs' labels (their only tag) in the order they started.
fn start_order(jobs: &[JobInfo]) -> Vec<String> {
    let mut started: Vec<_> = jobs
        .iter()
        .map(|job| {
            assert_eq!(state(job), JobState::Succeeded, "{:?}", job.error);
            let at = job.started_at.as_ref().expect("started_at");
            ((at.seconds, at.nanos), job.tags[0].clone())
        })
        .collect();
    started.sort();
    started.into_iter().map(|(_, label)| label).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_freed_slot_goes_to_the_highest_priority_then_the_oldest_waiting_job() {
    let dir = tempfile::tempdir().expect("tmp");
    let lua = start_with_one_slot(dir.path()).await;
    let client = &lua.client;
    let label = store(client, LABEL).await;
    let blocker = block_the_slot(client).await;

    let mut queued = Vec::new();
    for (name, priority) in [
        ("low", JobPriority::Low),
        ("normal-1", JobPriority::Normal),
        ("high-1", JobPriority::High),
        ("normal-2", JobPriority::Unspecified),
        ("high-2", JobPriority::High),
    ] {
        queued.push(execute(client, &label, name, priority).await.expect(name));
    }
    for job_id in &queued {
        let job = status(client, job_id).await;
        assert_eq!(state(&job), JobState::Pending, "one slot, held by the blocker");
        assert!(job.started_at.is_none());
    }
    let recorded: Vec<i32> = {
        let mut priorities = Vec::new();
        for job_id in &queued {
            priorities.push(status(client, job_id).await.priority);
        }
        priorities
    };
    assert_eq!(
        recorded,
        [
            JobPriority::Low as i32,
            JobPriority::Normal as i32,
            JobPriority::High as i32,
            JobPriority::Normal as i32,
            JobPriority::High as i32
        ],
        "an unspecified priority is recorded as normal"
    );

    assert_eq!(cancel(client, &blocker).await, JobState::Cancelled);
    let jobs = all_finished(client, &queued).await;
    assert_eq!(start_order(&jobs), ["high-1", "high-2", "normal-1", "normal-2", "low"]);
    for job in &jobs {
        assert_eq!(
            hooteproto::wkt::value_to_json(job.result.clone().expect("result")),
            serde_json::json!(job.tags[0])
        );
    }
    lua.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_markers_job_goes_ahead_of_normal_jobs_waiting_before_it() {
    let dir = tempfile::tempdir().expect("tmp");
    let lua = start_with_one_slot(dir.path()).await;
    let client = &lua.client;
    let label = store(client, LABEL).await;
    let blocker = block_the_slot(client).await;

    let mut queued = vec![
        execute(client, &label, "normal", JobPriority::Normal)
            .await
            .expect("normal"),
    ];
    let marker = client
        .call(TimelineEventRequest {
            event_type: TimelineEventType::BeatMarker as i32,
            position_beats: 16.0,
            tempo: 120.0,
            metadata: Some(object(serde_json::json!({"script": label, "label": "marker"}))),
        })
        .await
        .expect("timeline event");
    assert_eq!(marker.state, JobState::Pending as i32, "the slot is busy");
    queued.push(marker.job_id);

    assert_eq!(cancel(client, &blocker).await, JobState::Cancelled);
    let jobs = all_finished(client, &queued).await;
    // The marker's job is tagged "timeline" and its event type; its label says which it is.
    let labels: Vec<String> = {
        let mut started: Vec<_> = jobs
            .iter()
            .map(|job| {
                assert_eq!(state(job), JobState::Succeeded, "{:?}", job.error);
                let at = job.started_at.as_ref().expect("started_at");
                let label = hooteproto::wkt::value_to_json(job.result.clone().expect("result"));
                ((at.seconds, at.nanos), label.as_str().expect("label").to_string())
            })
            .collect();
        started.sort();
        started.into_iter().map(|(_, label)| label).collect()
    };
    assert_eq!(labels, ["marker", "normal"]);
    let marker_job = jobs
        .iter()
        .find(|j| j.tags.contains(&"timeline".into()))
        .expect("marker job");
    assert_eq!(marker_job.priority, JobPriority::High as i32);
    lua.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_job_that_is_cancelled_stops_at_once_and_keeps_no_slot() {
    let dir = tempfile::tempdir().expect("tmp");
    let lua = start_with_one_slot(dir.path()).await;
    let client = &lua.client;
    let label = store(client, LABEL).await;
    let blocker = block_the_slot(client).await;

    // The first in line (high) and one behind it (low).
    let first = execute(client, &label, "first", JobPriority::High)
        .await
        .expect("first");
    let behind = execute(client, &label, "behind", JobPriority::Low)
        .await
        .expect("behind");
    let asked = Instant::now();
    // job_cancel waits (up to 2 s) for the job to stop; a waiting job stops without a slot.
    assert_eq!(cancel(client, &first).await, JobState::Cancelled);
    assert!(
        asked.elapsed() < Duration::from_millis(1500),
        "a waiting job stops at once, took {:?}",
        asked.elapsed()
    );
    let cancelled = status(client, &first).await;
    assert_eq!(state(&cancelled), JobState::Cancelled);
    assert!(cancelled.started_at.is_none(), "it never ran");
    assert!(cancelled.finished_at.is_some());
    assert_eq!(cancelled.error.expect("error").code, ErrorCode::Cancelled as i32);
    assert_eq!(
        state(&status(client, &blocker).await),
        JobState::Running,
        "cancelling a waiting job leaves the running one alone"
    );
    assert_eq!(state(&status(client, &behind).await), JobState::Pending);

    // The slot goes on to the job behind it, and after that to a new one.
    assert_eq!(cancel(client, &blocker).await, JobState::Cancelled);
    let done = all_finished(client, std::slice::from_ref(&behind)).await;
    assert_eq!(state(&done[0]), JobState::Succeeded, "{:?}", done[0].error);
    let later = execute(client, &label, "later", JobPriority::Normal)
        .await
        .expect("later");
    let done = all_finished(client, &[later]).await;
    assert_eq!(state(&done[0]), JobState::Succeeded, "{:?}", done[0].error);
    lua.stop().await;
}

/// Cancelling jobs just as the slot is handed to them (no blocker: each may be waiting,
/// granted or running when the cancel lands) loses no slot: with one slot, a single lost
/// permit would leave the last job waiting for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancels_racing_the_slot_hand_over_lose_no_slot() {
    let dir = tempfile::tempdir().expect("tmp");
    let lua = start_with_one_slot(dir.path()).await;
    let client = &lua.client;
    let label = store(client, LABEL).await;
    for round in 0..15 {
        let a = execute(client, &label, "a", JobPriority::Normal).await.expect("a");
        let b = execute(client, &label, "b", JobPriority::High).await.expect("b");
        let (first, second) = if round % 2 == 0 { (&a, &b) } else { (&b, &a) };
        let _ = tokio::join!(cancel(client, first), cancel(client, second));
        // Cancelled while waiting or running, or finished before the cancel landed.
        for job in all_finished(client, &[a, b]).await {
            assert!(
                matches!(state(&job), JobState::Cancelled | JobState::Succeeded),
                "round {round}: {job:?}"
            );
        }
    }
    let last = execute(client, &label, "last", JobPriority::Low).await.expect("last");
    let done = all_finished(client, &[last]).await;
    assert_eq!(state(&done[0]), JobState::Succeeded, "{:?}", done[0].error);
    lua.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_priority_is_refused() {
    let dir = tempfile::tempdir().expect("tmp");
    let lua = start_with_one_slot(dir.path()).await;
    let label = store(&lua.client, LABEL).await;
    let refused = lua
        .client
        .call(JobExecuteRequest {
            script_hash: label,
            params: None,
            tags: vec![],
            priority: 7,
            ..Default::default()
        })
        .await;
    match refused {
        Err(Error::Remote(status)) => {
            assert_eq!(status.code, ErrorCode::InvalidArgument);
            assert!(status.message.contains("priority"), "{}", status.message);
        }
        other => panic!("expected INVALID_ARGUMENT, got {other:?}"),
    }
    lua.stop().await;
}
