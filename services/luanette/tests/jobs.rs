//! Jobs over HOOT/1: execute, poll (any/all), cancel, list, params validation, persistence
//! across restarts (graceful and killed), retention, broadcasts, and timeline events.

mod common;

use std::time::{Duration, Instant};

use hooteproto::broadcast::Subscriber;
use hooteproto::v1::{
    ErrorCode, JobCancelRequest, JobExecuteRequest, JobInfo, JobListRequest, JobPollRequest, JobState,
    JobStatusRequest, PingRequest, PollMode, ScriptStoreRequest, TimelineEventRequest, TimelineEventType, broadcast,
};
use hooteproto::{Client, ClientConfig, Error, RequestOptions};

struct Running {
    client: Client,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<anyhow::Result<hooteproto::ServerStats>>,
    pub_endpoint: String,
}

/// Starts luanette again on the same data dir in this process. The previous instance's last
/// tasks can still hold its store's lock for a moment after `run` returns (seen in CI under
/// load), so the lock is waited for, up to 10 s, rather than assumed free.
async fn restart(dir: &std::path::Path) -> Running {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match try_start_with(dir, |_| {}).await {
            Ok(running) => return running,
            Err(error) if format!("{error:#}").contains("could not acquire lock") && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(error) => panic!("luanette restarts: {error:#}"),
        }
    }
}

async fn start_with(dir: &std::path::Path, configure: impl FnOnce(&mut luanette::Config)) -> Running {
    try_start_with(dir, configure).await.expect("luanette starts")
}

async fn try_start_with(
    dir: &std::path::Path,
    configure: impl FnOnce(&mut luanette::Config),
) -> anyhow::Result<Running> {
    let mut config = common::config(dir);
    config.pub_bind = Some("tcp://127.0.0.1:*".into());
    config.max_jobs = 2;
    configure(&mut config);
    let bound = luanette::bind(config).await?;
    let pub_endpoint = bound.broadcast_endpoint().unwrap_or_default().to_string();
    let client = Client::connect(ClientConfig::new(bound.endpoint()))?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(bound.run(async move {
        let _ = stopped.await;
    }));
    client.call(PingRequest {}).await.expect("luanette answers ping");
    Ok(Running {
        client,
        stop,
        task,
        pub_endpoint,
    })
}

fn object(json: serde_json::Value) -> hooteproto::wkt::Struct {
    hooteproto::wkt::Struct::from_json(json.as_object().cloned().unwrap_or_default())
}

async fn store(client: &Client, content: &str) -> String {
    client
        .call(ScriptStoreRequest {
            content: content.into(),
            tags: vec!["test".into()],
            creator: "jobs-test".into(),
            ..Default::default()
        })
        .await
        .expect("store")
        .script
        .expect("script")
        .script_hash
}

async fn execute(client: &Client, script_hash: &str, params: serde_json::Value) -> Result<String, Error> {
    client
        .call(JobExecuteRequest {
            script_hash: script_hash.into(),
            params: Some(object(params)),
            tags: vec!["take-1".into()],
            ..Default::default()
        })
        .await
        .map(|reply| reply.job_id)
}

async fn poll(client: &Client, ids: &[&str], timeout_ms: u32, mode: PollMode) -> hooteproto::v1::JobPollReply {
    client
        .call(JobPollRequest {
            job_ids: ids.iter().map(|s| s.to_string()).collect(),
            timeout_ms,
            mode: mode as i32,
        })
        .await
        .expect("poll")
}

async fn status(client: &Client, job_id: &str) -> JobInfo {
    *client
        .call(JobStatusRequest { job_id: job_id.into() })
        .await
        .expect("status")
        .job
        .expect("job")
}

/// Waits (on a loaded machine too) until a job has started.
async fn running(client: &Client, job_id: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while state(&status(client, job_id).await) != JobState::Running {
        assert!(Instant::now() < deadline, "job {job_id} never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn state(job: &JobInfo) -> JobState {
    JobState::try_from(job.state).expect("state")
}

const CHORDS: &str = r#"
function describe()
  return {
    name = "chords",
    description = "Builds a triad on a root note",
    params = {
      type = "object",
      required = {"root"},
      properties = {
        root = {type = "integer", minimum = 0, maximum = 127},
        quality = {type = "string", enum = {"major", "minor"}},
      },
    },
  }
end

function main(params)
  log.info("building on " .. params.root)
  job.progress(0.5, "half way")
  local third = params.quality == "minor" and 3 or 4
  return {params.root, params.root + third, params.root + 7}
end
"#;

/// Spins until `params.ms` milliseconds of CPU time have passed, then returns them.
const SPIN: &str = r#"
function main(params)
  local stop = os.clock() + params.ms / 1000
  while os.clock() < stop do end
  return params.ms
end
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_runs_main_and_keeps_result_logs_and_progress() {
    let dir = tempfile::tempdir().expect("tmp");
    let lua = start_with(dir.path(), |_| {}).await;
    let hash = store(&lua.client, CHORDS).await;
    let started = Instant::now();
    let job_id = execute(
        &lua.client,
        &hash[..12],
        serde_json::json!({"root": 60, "quality": "minor"}),
    )
    .await
    .expect("execute");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "job_execute answers at once"
    );
    let reply = poll(&lua.client, &[&job_id], 10_000, PollMode::Any).await;
    assert!(!reply.timed_out);
    let job = &reply.completed[0];
    assert_eq!(state(job), JobState::Succeeded, "{:?}", job.error);
    assert_eq!(job.script_hash, hash, "the full hash is recorded");
    assert_eq!(
        hooteproto::wkt::value_to_json(job.result.clone().expect("result")),
        serde_json::json!([60.0, 63.0, 67.0])
    );
    assert_eq!(job.logs[0].message, "building on 60");
    assert_eq!((job.progress, job.progress_message.as_str()), (0.5, "half way"));
    assert!(job.started_at.is_some() && job.finished_at.is_some());
    let again = status(&lua.client, &job_id).await;
    assert_eq!(again.result, job.result);
    let listed = lua
        .client
        .call(JobListRequest {
            status: JobState::Succeeded as i32,
            page_size: 0,
            page_token: String::new(),
            include_params: false,
        })
        .await
        .expect("list");
    assert_eq!(listed.jobs.len(), 1);
    assert!(listed.jobs[0].logs.is_empty(), "lists leave logs out");
    let missing = lua.client.call(JobStatusRequest { job_id: "nope".into() }).await;
    assert_eq!(missing.map_err(|e| e.code()).err(), Some(ErrorCode::NotFound));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn params_are_checked_against_the_declared_schema() {
    let dir = tempfile::tempdir().expect("tmp");
    let lua = start_with(dir.path(), |_| {}).await;
    let hash = store(&lua.client, CHORDS).await;
    for (params, field) in [
        (serde_json::json!({}), "root"),
        (serde_json::json!({"root": 200}), "params.root"),
        (serde_json::json!({"root": 60, "quality": "sus"}), "params.quality"),
        (serde_json::json!({"root": "C"}), "params.root"),
    ] {
        match execute(&lua.client, &hash, params.clone()).await {
            Err(Error::Remote(status)) => {
                assert_eq!(status.code, ErrorCode::InvalidArgument, "{params}");
                assert!(status.message.contains(field), "{params}: {}", status.message);
                let details = status.details.expect("details").to_json().expect("json");
                assert_eq!(details["kind"], "params");
            }
            other => panic!("{params}: expected INVALID_ARGUMENT, got {other:?}"),
        }
    }
    let listed = lua.client.call(JobListRequest::default()).await.expect("list");
    assert!(listed.jobs.is_empty(), "refused jobs are not recorded");
    let unknown = execute(&lua.client, &"ab".repeat(32), serde_json::json!({})).await;
    assert_eq!(unknown.map_err(|e| e.code()).err(), Some(ErrorCode::NotFound));
    let bad_schema = lua
        .client
        .call(ScriptStoreRequest {
            content: "function describe() return {params = {type = 42}} end".into(),
            tags: vec![],
            creator: String::new(),
            ..Default::default()
        })
        .await;
    assert_eq!(bad_schema.map_err(|e| e.code()).err(), Some(ErrorCode::InvalidArgument));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poll_waits_for_any_or_all_and_times_out() {
    let dir = tempfile::tempdir().expect("tmp");
    let lua = start_with(dir.path(), |_| {}).await;
    let hash = store(&lua.client, SPIN).await;
    let fast = execute(&lua.client, &hash, serde_json::json!({"ms": 50}))
        .await
        .expect("fast");
    let slow = execute(&lua.client, &hash, serde_json::json!({"ms": 1200}))
        .await
        .expect("slow");

    let started = Instant::now();
    let any = poll(&lua.client, &[&fast, &slow], 20_000, PollMode::Any).await;
    assert_eq!(any.completed.len(), 1, "any returns when the first finishes");
    assert_eq!(any.completed[0].job_id, fast);
    assert_eq!(any.pending_job_ids, std::slice::from_ref(&slow));
    // Woke at the finish: before the slow job ended (it is still pending) and long before
    // the 20 s timeout, however slowly a loaded machine starts sandboxes.
    assert!(!any.timed_out, "woke at the finish, not the timeout");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );

    let none = poll(&lua.client, &[&slow], 100, PollMode::Any).await;
    assert!(none.timed_out && none.completed.is_empty());

    let all = poll(&lua.client, &[&fast, &slow], 20_000, PollMode::All).await;
    assert!(!all.timed_out);
    assert_eq!(all.completed.len(), 2);
    assert!(all.pending_job_ids.is_empty());
    assert!(started.elapsed() < Duration::from_secs(10));

    let unknown = lua
        .client
        .call(JobPollRequest {
            job_ids: vec!["nope".into()],
            timeout_ms: 10,
            mode: PollMode::Any as i32,
        })
        .await;
    assert_eq!(unknown.map_err(|e| e.code()).err(), Some(ErrorCode::NotFound));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_a_running_job_and_frees_its_slot() {
    let dir = tempfile::tempdir().expect("tmp");
    let lua = start_with(dir.path(), |c| c.max_jobs = 1).await;
    let forever = store(&lua.client, "function main() while true do end end").await;
    let spin = store(&lua.client, SPIN).await;
    let stuck = execute(&lua.client, &forever, serde_json::json!({}))
        .await
        .expect("execute");
    let queued = execute(&lua.client, &spin, serde_json::json!({"ms": 10}))
        .await
        .expect("execute");
    running(&lua.client, &stuck).await;
    assert_eq!(
        state(&status(&lua.client, &queued).await),
        JobState::Pending,
        "one slot"
    );

    let started = Instant::now();
    let cancelled = lua
        .client
        .call(JobCancelRequest { job_id: stuck.clone() })
        .await
        .expect("cancel");
    assert_eq!(cancelled.state, JobState::Cancelled as i32);
    assert!(
        started.elapsed() < Duration::from_millis(1000),
        "took {:?}",
        started.elapsed()
    );
    let job = status(&lua.client, &stuck).await;
    let error = job.error.expect("error");
    assert_eq!(error.code, ErrorCode::Cancelled as i32);

    let next = poll(&lua.client, &[&queued], 5_000, PollMode::Any).await;
    assert_eq!(state(&next.completed[0]), JobState::Succeeded, "the slot was freed");
    let again = lua
        .client
        .call(JobCancelRequest { job_id: queued })
        .await
        .expect("cancel");
    assert_eq!(
        again.state,
        JobState::Succeeded as i32,
        "cancelling a finished job reports its state"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_recorded_with_their_kind() {
    let dir = tempfile::tempdir().expect("tmp");
    let lua = start_with(dir.path(), |c| c.job_limits.wall = Duration::from_millis(300)).await;
    for (code, expected, kind) in [
        (
            "function main() print('before') error('boom') end",
            ErrorCode::InvalidArgument,
            "runtime",
        ),
        (
            "function main() while true do end end",
            ErrorCode::DeadlineExceeded,
            "time_limit",
        ),
        (
            "function main() return main end",
            ErrorCode::InvalidArgument,
            "conversion",
        ),
    ] {
        let hash = store(&lua.client, code).await;
        let job_id = execute(&lua.client, &hash, serde_json::json!({}))
            .await
            .expect("execute");
        let job = poll(&lua.client, &[&job_id], 10_000, PollMode::Any)
            .await
            .completed
            .remove(0);
        assert_eq!(state(&job), JobState::Failed, "{code}");
        let error = job.error.expect("error");
        assert_eq!(error.code, expected as i32, "{code}: {}", error.message);
        let details = error.details.expect("details").to_json().expect("json");
        assert_eq!(details["kind"], kind, "{code}");
        if kind == "runtime" {
            assert_eq!(job.logs[0].message, "before", "output before the failure is kept");
        }
    }
    let failed = lua
        .client
        .call(JobListRequest {
            status: JobState::Failed as i32,
            page_size: 2,
            page_token: String::new(),
            include_params: false,
        })
        .await
        .expect("list");
    assert_eq!(failed.jobs.len(), 2);
    let rest = lua
        .client
        .call(JobListRequest {
            status: JobState::Failed as i32,
            page_size: 2,
            page_token: failed.next_page_token.clone(),
            include_params: false,
        })
        .await
        .expect("page 2");
    assert_eq!(rest.jobs.len(), 1);
    assert!(rest.next_page_token.is_empty());
    assert!(failed.jobs[0].job_id > failed.jobs[1].job_id, "newest first");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_keeps_finished_jobs_and_marks_running_ones_interrupted() {
    let dir = tempfile::tempdir().expect("tmp");
    let lua = start_with(dir.path(), |_| {}).await;
    let chords = store(&lua.client, CHORDS).await;
    let forever = store(&lua.client, "function main() while true do end end").await;
    let done = execute(&lua.client, &chords, serde_json::json!({"root": 48}))
        .await
        .expect("execute");
    poll(&lua.client, &[&done], 5_000, PollMode::Any).await;
    let running = execute(&lua.client, &forever, serde_json::json!({}))
        .await
        .expect("execute");
    tokio::time::sleep(Duration::from_millis(200)).await;

    let stopped = Instant::now();
    let _ = lua.stop.send(());
    lua.task.await.expect("task").expect("run");
    assert!(
        stopped.elapsed() < Duration::from_secs(5),
        "shutdown stopped the job: {:?}",
        stopped.elapsed()
    );

    let lua = restart(dir.path()).await;
    let kept = status(&lua.client, &done).await;
    assert_eq!(state(&kept), JobState::Succeeded);
    assert!(kept.result.is_some());
    let interrupted = status(&lua.client, &running).await;
    assert_eq!(state(&interrupted), JobState::Failed);
    let error = interrupted.error.expect("error");
    assert!(error.message.starts_with("interrupted"), "{}", error.message);
    assert_eq!(
        error.details.expect("details").to_json().expect("json")["kind"],
        "interrupted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_luanette_does_not_forget_its_jobs() {
    let dir = tempfile::tempdir().expect("tmp");
    let port = testkit::free_port();
    let bind = format!("tcp://127.0.0.1:{port}");
    let spawn = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_luanette"))
            .args(["--bind", &bind, "--pub-bind", "none", "--health-bind", "none"])
            .arg("--data-dir")
            .arg(dir.path())
            .args(common::backend_args(dir.path()))
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn luanette")
    };
    let mut child = spawn();
    let client = Client::connect(ClientConfig::new(&bind)).expect("connect");
    client.call(PingRequest {}).await.expect("ping");
    let forever = store(&client, "function main() while true do end end").await;
    let job_id = execute(&client, &forever, serde_json::json!({}))
        .await
        .expect("execute");
    tokio::time::sleep(Duration::from_millis(200)).await;
    child.kill().expect("SIGKILL");
    let _ = child.wait();

    let mut child = spawn();
    let options = RequestOptions {
        timeout: Some(Duration::from_secs(15)),
        ..Default::default()
    };
    // Embedded, the restart finds the job interrupted; in cluster mode the job's lease (the
    // dead process's worker held it) runs out first, so wait for its final state.
    let polled = client
        .call_with(
            JobPollRequest {
                job_ids: vec![job_id.clone()],
                timeout_ms: 10_000,
                mode: PollMode::All as i32,
            },
            options,
        )
        .await
        .expect("poll after restart");
    let _ = child.kill();
    let _ = child.wait();
    let job = polled.completed.into_iter().next().expect("the job ended");
    assert_eq!(state(&job), JobState::Failed);
    assert!(job.error.expect("error").message.starts_with("interrupted"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_jobs_past_the_retention_are_deleted() {
    let dir = tempfile::tempdir().expect("tmp");
    let lua = start_with(dir.path(), |c| c.job_retention = Duration::from_millis(500)).await;
    let hash = store(&lua.client, SPIN).await;
    let job_id = execute(&lua.client, &hash, serde_json::json!({"ms": 1}))
        .await
        .expect("execute");
    poll(&lua.client, &[&job_id], 5_000, PollMode::Any).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match lua.client.call(JobStatusRequest { job_id: job_id.clone() }).await {
            Err(error) if error.code() == ErrorCode::NotFound => break,
            Ok(_) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(200)).await,
            other => panic!("the job should have been collected: {other:?}"),
        }
    }
}

/// A subscriber to `lua`'s broadcasts that is known to receive them: PUB/SUB joins
/// asynchronously, so throwaway scripts are stored until one is heard.
async fn joined(lua: &Running) -> Subscriber {
    let mut subscriber = Subscriber::connect(&lua.pub_endpoint, &[""], None).expect("subscribe");
    for n in 1..=50 {
        store(&lua.client, &format!("return {n}")).await;
        if tokio::time::timeout(Duration::from_millis(100), subscriber.recv())
            .await
            .is_ok()
        {
            return subscriber;
        }
    }
    panic!("the subscriber never joined");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_changes_progress_and_new_scripts_are_broadcast() {
    let dir = tempfile::tempdir().expect("tmp");
    let lua = start_with(dir.path(), |_| {}).await;
    let mut subscriber = joined(&lua).await;
    let hash = store(&lua.client, CHORDS).await;
    let job_id = execute(&lua.client, &hash, serde_json::json!({"root": 60}))
        .await
        .expect("execute");
    let mut seen_invalidate = false;
    let mut states = Vec::new();
    let mut progress = None;
    let deadline = Instant::now() + Duration::from_secs(10);
    while states.last() != Some(&JobState::Succeeded) && Instant::now() < deadline {
        let Ok(Ok(message)) = tokio::time::timeout(Duration::from_secs(5), subscriber.recv()).await else {
            break;
        };
        assert_eq!(message.source, "luanette");
        match message.event {
            Some(broadcast::Event::ScriptInvalidate(event)) if event.script_hash == hash => seen_invalidate = true,
            Some(broadcast::Event::JobStateChanged(event)) if event.job_id == job_id => {
                states.push(JobState::try_from(event.state).expect("state"))
            }
            Some(broadcast::Event::JobProgress(event)) if event.job_id == job_id => {
                progress = Some((event.fraction, event.message))
            }
            _ => {}
        }
    }
    assert!(seen_invalidate, "storing a script announces it");
    assert_eq!(states, [JobState::Pending, JobState::Running, JobState::Succeeded]);
    assert_eq!(progress, Some((0.5, "half way".to_string())));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_jobs_output_lines_are_broadcast_as_they_are_written() {
    let dir = tempfile::tempdir().expect("tmp");
    let lua = start_with(dir.path(), |_| {}).await;
    let mut subscriber = joined(&lua).await;
    let hash = store(
        &lua.client,
        "function main(p) print('first') warn('second ' .. string.rep('x', 5000)) \
         local t = os.clock() while os.clock() - t < 3 do end print('after the wait') return 1 end",
    )
    .await;
    let job_id = execute(&lua.client, &hash, serde_json::json!({}))
        .await
        .expect("execute");
    let mut lines = Vec::new();
    let mut checked = false;
    let mut states = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while states.last() != Some(&JobState::Succeeded) && Instant::now() < deadline {
        let Ok(Ok(message)) = tokio::time::timeout(Duration::from_secs(10), subscriber.recv()).await else {
            break;
        };
        match message.event {
            Some(broadcast::Event::JobLog(batch)) if batch.job_id == job_id => {
                assert_eq!(batch.first_line, lines.len() as u64, "batches follow on");
                lines.extend(batch.lines);
            }
            Some(broadcast::Event::JobStateChanged(event)) if event.job_id == job_id => {
                states.push(JobState::try_from(event.state).expect("state"))
            }
            _ => {}
        }
        // Both lines came while the job spends 3 s of CPU: it is still running.
        if lines.len() == 2 && !checked {
            let job = lua
                .client
                .call(JobStatusRequest { job_id: job_id.clone() })
                .await
                .expect("status")
                .job
                .expect("job");
            assert_eq!(job.state, JobState::Running as i32, "the lines came while it ran");
            checked = true;
        }
    }
    assert!(checked, "the first lines were broadcast: {lines:?}");
    assert_eq!(states.last(), Some(&JobState::Succeeded));
    let messages: Vec<&str> = lines.iter().map(|l| l.message.as_str()).collect();
    assert_eq!(messages.len(), 3, "{messages:?}");
    assert_eq!(messages[0], "first");
    assert!(
        messages[1].starts_with("second xxx") && messages[1].len() == 4096,
        "a long line is cut to 4 KiB in the broadcast"
    );
    assert_eq!(messages[2], "after the wait");
    assert_eq!(lines[1].level, hooteproto::v1::LogLevel::Warn as i32);
    // The record keeps every line whole.
    let record = lua
        .client
        .call(JobStatusRequest { job_id })
        .await
        .expect("status")
        .job
        .expect("job");
    assert_eq!(record.logs[1].message.len(), "second ".len() + 5000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeline_event_runs_the_script_it_names() {
    let dir = tempfile::tempdir().expect("tmp");
    let lua = start_with(dir.path(), |_| {}).await;
    let hash = store(
        &lua.client,
        "function main(p) return {kind = p.event_type, beat = p.position_beats, bpm = p.tempo, section = p.section} end",
    )
    .await;
    let reply = lua
        .client
        .call(TimelineEventRequest {
            event_type: TimelineEventType::SectionChange as i32,
            position_beats: 32.0,
            tempo: 96.0,
            metadata: Some(object(serde_json::json!({"script_hash": hash, "section": "bridge"}))),
        })
        .await
        .expect("timeline event");
    assert!(!reply.job_id.is_empty());
    let job = poll(&lua.client, &[&reply.job_id], 5_000, PollMode::Any)
        .await
        .completed
        .remove(0);
    assert_eq!(
        hooteproto::wkt::value_to_json(job.result.expect("result")),
        serde_json::json!({"kind": "section_change", "beat": 32.0, "bpm": 96.0, "section": "bridge"})
    );
    assert!(job.tags.contains(&"timeline".to_string()));
    let no_script = lua
        .client
        .call(TimelineEventRequest {
            event_type: TimelineEventType::BeatMarker as i32,
            position_beats: 1.0,
            tempo: 120.0,
            metadata: None,
        })
        .await
        .expect("event without a script");
    assert!(no_script.job_id.is_empty());
    let unspecified = lua.client.call(TimelineEventRequest::default()).await;
    assert_eq!(
        unspecified.map_err(|e| e.code()).err(),
        Some(ErrorCode::InvalidArgument)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_reads_transforms_and_stores_midi_in_the_shared_cas() {
    let dir = tempfile::tempdir().expect("tmp");
    let lua = start_with(dir.path(), |_| {}).await;
    let eval = |code: &str| {
        let client = lua.client.clone();
        let request = hooteproto::v1::LuaEvalRequest {
            code: code.into(),
            params: None,
        };
        async move {
            let reply = client.call(request).await.expect("eval");
            hooteproto::wkt::value_to_json(reply.result.expect("result"))
        }
    };
    // Storing moves a speculative eval to a worker first (it has an effect); the result is the same.
    let section = eval(
        "return midi.save(midi.from_notes({{pitch = 60, start = 0, duration = 1}, {pitch = 67, start = 1, duration = 1}}))",
    )
    .await;
    let section = section.as_str().expect("hash").to_string();
    let stored = common::cas(dir.path())
        .inspect(&cas::Hash::parse(&section).expect("hash"))
        .expect("in the shared CAS");
    assert_eq!(stored.mime_type, "audio/midi");

    let script = store(
        &lua.client,
        r#"
        function describe()
          return {name = "transpose section", params = {type = "object", required = {"section", "semitones"},
            properties = {section = {type = "string"}, semitones = {type = "integer"}}}}
        end
        function main(p)
          local up = midi.transpose(midi.load(p.section), p.semitones)
          job.progress(1, "stored")
          return {hash = midi.save(up), notes = #midi.notes(up)}
        end
        "#,
    )
    .await;
    let job_id = execute(
        &lua.client,
        &script,
        serde_json::json!({"section": section, "semitones": 2}),
    )
    .await
    .expect("execute");
    let job = poll(&lua.client, &[&job_id], 10_000, PollMode::Any)
        .await
        .completed
        .remove(0);
    assert_eq!(state(&job), JobState::Succeeded, "{:?}", job.error);
    let result = hooteproto::wkt::value_to_json(job.result.expect("result"));
    assert_eq!(result["notes"], 2.0);
    let pitches = eval(&format!(
        "local n = midi.notes(midi.load('{}')) return {{n[1].pitch, n[2].pitch}}",
        result["hash"].as_str().expect("hash")
    ))
    .await;
    assert_eq!(pitches, serde_json::json!([62.0, 69.0]));
}

/// services/luanette/lua/abc_transpose.lua, the repository's ABC example, as a job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_abc_example_transposes_and_stores_a_tune() {
    let dir = tempfile::tempdir().expect("tmp");
    let lua = start_with(dir.path(), |_| {}).await;
    let script = store(&lua.client, include_str!("../lua/abc_transpose.lua")).await;
    let tune = "X:1\nT:Up a fourth\nM:3/4\nL:1/4\nQ:1/4=60\nK:D\nD F A|d3|]\n";
    let job_id = execute(&lua.client, &script, serde_json::json!({"tune": tune, "semitones": 5}))
        .await
        .expect("execute");
    let job = poll(&lua.client, &[&job_id], 10_000, PollMode::Any)
        .await
        .completed
        .remove(0);
    assert_eq!(state(&job), JobState::Succeeded, "{:?}", job.error);
    let result = hooteproto::wkt::value_to_json(job.result.expect("result"));
    assert_eq!(
        (&result["notes"], &result["seconds"]),
        (&serde_json::json!(4.0), &serde_json::json!(6.0))
    );
    let cas = common::cas(dir.path());
    let read = |key: &str| {
        let hash = cas::Hash::parse(result[key].as_str().expect("hash")).expect("hash");
        (
            cas.read(&hash, 1 << 20, true).expect("read"),
            cas.inspect(&hash).expect("inspect").mime_type,
        )
    };
    let (abc_text, abc_mime) = read("abc");
    assert_eq!(abc_mime, "text/vnd.abc");
    assert!(
        String::from_utf8_lossy(&abc_text).contains("K:C"),
        "written back as ABC"
    );
    let (_, midi_mime) = read("midi");
    assert_eq!(midi_mime, "audio/midi");
    let pitches = lua
        .client
        .call(hooteproto::v1::LuaEvalRequest {
            code: format!(
                "local out = {{}} for _, n in ipairs(midi.notes(midi.load('{}'))) do out[#out + 1] = n.pitch end return out",
                result["midi"].as_str().expect("hash")
            ),
            params: None,
        })
        .await
        .expect("notes");
    assert_eq!(
        hooteproto::wkt::value_to_json(pitches.result.expect("result")),
        serde_json::json!([67.0, 71.0, 74.0, 79.0]),
        "D F# A d moved up a fourth"
    );
    let bad = execute(&lua.client, &script, serde_json::json!({"tune": "no tune here"}))
        .await
        .expect("execute");
    let failed = poll(&lua.client, &[&bad], 10_000, PollMode::Any)
        .await
        .completed
        .remove(0);
    assert_eq!(state(&failed), JobState::Failed);
    assert!(failed.error.expect("error").message.contains("cannot be played"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_sizes_are_bounded_where_they_are_stored_and_one_client_cannot_take_every_slot() {
    let dir = tempfile::tempdir().expect("tmp");
    let lua = start_with(dir.path(), |c| {
        c.max_job_params = 64 << 10;
        c.max_job_result = 64 << 10;
        c.max_unfinished_jobs_per_client = 3;
    })
    .await;
    let echo = store(&lua.client, "function main(p) return p end").await;

    // Params over the cap are refused before anything is recorded.
    let big = "x".repeat(100 << 10);
    let refused = execute(&lua.client, &echo, serde_json::json!({ "blob": big }))
        .await
        .expect_err("params over the cap");
    assert_eq!(refused.code(), ErrorCode::InvalidArgument, "{refused}");
    assert!(refused.to_string().contains("--max-job-params"), "{refused}");

    // A result over the cap fails the job, naming the cap; it is never recorded whole.
    let grow = store(&lua.client, "function main() return string.rep('y', 100 << 10) end").await;
    let id = execute(&lua.client, &grow, serde_json::json!({})).await.expect("start");
    poll(&lua.client, &[&id], 10_000, PollMode::All).await;
    let job = status(&lua.client, &id).await;
    assert_eq!(state(&job), JobState::Failed, "{job:?}");
    let error = job.error.expect("why it failed");
    assert_eq!(error.code, ErrorCode::ResourceExhausted as i32, "{error:?}");
    assert!(error.message.contains("--max-job-result"), "{error:?}");
    assert!(job.result.is_none());

    // job_list leaves params out unless asked.
    let small = execute(&lua.client, &echo, serde_json::json!({ "n": 1 }))
        .await
        .expect("start");
    poll(&lua.client, &[&small], 10_000, PollMode::All).await;
    for include_params in [false, true] {
        let page = lua
            .client
            .call(JobListRequest {
                include_params,
                ..Default::default()
            })
            .await
            .expect("list");
        let listed = page.jobs.iter().find(|j| j.job_id == small).expect("listed");
        assert_eq!(listed.params.is_some(), include_params);
    }

    // One client (one routing id) may hold at most 3 unfinished jobs; another still gets in.
    let endless = store(
        &lua.client,
        "function main() local t = os.clock() while os.clock() - t < 20 do end end",
    )
    .await;
    let mut mine = Vec::new();
    for _ in 0..3 {
        mine.push(
            execute(&lua.client, &endless, serde_json::json!({}))
                .await
                .expect("within the cap"),
        );
    }
    let over = execute(&lua.client, &endless, serde_json::json!({}))
        .await
        .expect_err("a fourth unfinished job");
    assert_eq!(over.code(), ErrorCode::ResourceExhausted, "{over}");
    assert!(over.to_string().contains("--max-unfinished-jobs-per-client"), "{over}");
    let endpoint = lua.client.endpoint().to_string();
    let other = Client::connect(ClientConfig::new(endpoint)).expect("another client");
    let theirs = execute(&other, &echo, serde_json::json!({ "n": 2 }))
        .await
        .expect("another client is not refused");
    for id in &mine {
        other
            .call(JobCancelRequest { job_id: id.clone() })
            .await
            .expect("cancel");
    }
    let done = poll(&other, &[&theirs], 10_000, PollMode::All).await;
    assert_eq!(done.pending_job_ids.len(), 0, "the other client's job finished");
    let _ = lua.stop.send(());
}
