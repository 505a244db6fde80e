//! Script names over HOOT/1: storing versions under a name, running a name (its newest
//! version) or `name@<hash prefix>` (one version) with job_execute, lua_describe and marker
//! metadata, the ScriptInvalidate hot-reload broadcast, refused and unknown names,
//! completion, and names surviving a restart.

mod common;

use std::time::{Duration, Instant};

use hooteproto::broadcast::Subscriber;
use hooteproto::v1::{
    CompleteRequest, ErrorCode, JobExecuteRequest, JobInfo, JobPollRequest, JobPriority, JobState, LuaDescribeRequest,
    PingRequest, PollMode, ScriptInfo, ScriptInvalidate, ScriptSearchRequest, ScriptStoreRequest, TimelineEventRequest,
    TimelineEventType, broadcast,
};
use hooteproto::{Client, ClientConfig, Error};

struct Running {
    client: Client,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<anyhow::Result<hooteproto::ServerStats>>,
    pub_endpoint: String,
}

impl Running {
    /// Shuts it down and waits until `run` returned.
    async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.expect("task").expect("run");
    }
}

async fn start(dir: &std::path::Path) -> Running {
    try_start(dir).await.expect("luanette starts")
}

/// Starts luanette again on the same data dir in this process, waiting (up to 10 s) for the
/// previous instance's store lock, which its last tasks can hold a moment after `run` returns.
async fn restart(dir: &std::path::Path) -> Running {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match try_start(dir).await {
            Ok(running) => return running,
            Err(error) if format!("{error:#}").contains("could not acquire lock") && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(error) => panic!("luanette restarts: {error:#}"),
        }
    }
}

async fn try_start(dir: &std::path::Path) -> anyhow::Result<Running> {
    let mut config = common::config(dir);
    config.pub_bind = Some("tcp://127.0.0.1:*".into());
    config.max_jobs = 2;
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

/// Stores `content`, under `name` unless it is empty.
async fn store_as(client: &Client, name: &str, content: &str) -> Result<ScriptInfo, Error> {
    client
        .call(ScriptStoreRequest {
            content: content.into(),
            tags: vec!["names-test".into()],
            creator: "names-test".into(),
            name: name.into(),
        })
        .await
        .map(|reply| *reply.script.expect("script"))
}

async fn store_named(client: &Client, name: &str, content: &str) -> ScriptInfo {
    store_as(client, name, content).await.expect("store")
}

async fn execute(client: &Client, script: &str) -> Result<String, Error> {
    client
        .call(JobExecuteRequest {
            script_hash: script.into(),
            params: Some(object(serde_json::json!({}))),
            ..Default::default()
        })
        .await
        .map(|reply| reply.job_id)
}

/// Waits for a job to finish and returns its record.
async fn finished(client: &Client, job_id: &str) -> JobInfo {
    let reply = client
        .call(JobPollRequest {
            job_ids: vec![job_id.into()],
            timeout_ms: 20_000,
            mode: PollMode::All as i32,
        })
        .await
        .expect("poll");
    assert!(!reply.timed_out, "job {job_id} did not finish");
    reply.completed.into_iter().next().expect("completed")
}

/// Runs `script` (a hash, name or name@prefix) as a job to its end.
async fn run(client: &Client, script: &str) -> JobInfo {
    let job_id = execute(client, script).await.expect("execute");
    let job = finished(client, &job_id).await;
    assert_eq!(state(&job), JobState::Succeeded, "{script}: {:?}", job.error);
    job
}

fn state(job: &JobInfo) -> JobState {
    JobState::try_from(job.state).expect("state")
}

fn result(job: &JobInfo) -> serde_json::Value {
    hooteproto::wkt::value_to_json(job.result.clone().expect("result"))
}

async fn describe(client: &Client, script: &str) -> Result<ScriptInfo, Error> {
    client
        .call(LuaDescribeRequest {
            script_hash: script.into(),
        })
        .await
        .map(|reply| *reply.script.expect("script"))
}

/// Every version stored under `name`, newest first, as (version, hash).
async fn versions(client: &Client, name: &str) -> Vec<(u32, String)> {
    client
        .call(ScriptSearchRequest {
            name: name.into(),
            ..Default::default()
        })
        .await
        .expect("search")
        .scripts
        .into_iter()
        .map(|s| {
            assert_eq!(s.name, name, "a listed version carries its name");
            (s.version, s.script_hash)
        })
        .collect()
}

/// A script whose job returns `{version = n}`.
fn version_script(n: u32) -> String {
    format!("function main(p) return {{version = {n}, beat = p.position_beats}} end")
}

fn refusal<T: std::fmt::Debug>(result: Result<T, Error>) -> (ErrorCode, String) {
    match result {
        Err(Error::Remote(status)) => (status.code, status.message),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_runs_its_newest_version_and_name_at_prefix_runs_the_one_pinned() {
    let dir = tempfile::tempdir().expect("tmp");
    let lua = start(dir.path()).await;
    let client = &lua.client;
    let name = "bridge-into-chorus";

    let v1 = store_named(client, name, &version_script(1)).await;
    assert_eq!((v1.name.as_str(), v1.version), (name, 1));
    let v2 = store_named(client, name, &version_script(2)).await;
    assert_eq!((v2.name.as_str(), v2.version), (name, 2));
    let (h1, h2) = (v1.script_hash.clone(), v2.script_hash.clone());
    assert_ne!(h1, h2);

    // The name alone: the newest version, recorded as exactly that hash and by that name.
    let job = run(client, name).await;
    assert_eq!(job.script_hash, h2, "the exact hash resolved at start");
    assert_eq!(job.script_name, name);
    assert_eq!(result(&job)["version"], 2.0, "v2 ran");

    // name@<prefix of v1>: that version.
    let pinned = format!("{name}@{}", &h1[..8]);
    let job = run(client, &pinned).await;
    assert_eq!(
        (job.script_hash.as_str(), job.script_name.as_str()),
        (h1.as_str(), name)
    );
    assert_eq!(result(&job)["version"], 1.0, "v1 ran");
    // The prefix after `@` is hex in either case.
    let upper = format!("{name}@{}", h1[..10].to_ascii_uppercase());
    assert_eq!(run(client, &upper).await.script_hash, h1);

    // lua_describe by name and by name@prefix says which name and version it found.
    let described = describe(client, name).await.expect("describe by name");
    assert_eq!(
        (
            described.script_hash.as_str(),
            described.name.as_str(),
            described.version
        ),
        (h2.as_str(), name, 2)
    );
    let described = describe(client, &pinned).await.expect("describe name@prefix");
    assert_eq!((described.script_hash.as_str(), described.version), (h1.as_str(), 1));
    // By hash, an entry still shows the name (and version) it was last stored under.
    let by_hash = describe(client, &h2).await.expect("describe by hash");
    assert_eq!((by_hash.name.as_str(), by_hash.version), (name, 2));

    // script_search{name}: every version, newest first.
    assert_eq!(versions(client, name).await, [(2, h2.clone()), (1, h1.clone())]);

    // Storing v1 again makes it version 3, and the name runs it again.
    let v3 = store_named(client, name, &version_script(1)).await;
    assert_eq!(
        (v3.script_hash.as_str(), v3.name.as_str(), v3.version),
        (h1.as_str(), name, 3)
    );
    let job = run(client, name).await;
    assert_eq!(job.script_hash, h1);
    assert_eq!(result(&job)["version"], 1.0);
    assert_eq!(
        versions(client, name).await,
        [(3, h1.clone()), (2, h2.clone()), (1, h1.clone())]
    );
    // name@<prefix of the restored source> is the newest version with it.
    assert_eq!(describe(client, &pinned).await.expect("pinned").version, 3);

    // Storing the newest again changes nothing.
    let again = store_named(client, name, &version_script(1)).await;
    assert_eq!((again.script_hash.as_str(), again.version), (h1.as_str(), 3));
    assert_eq!(versions(client, name).await.len(), 3, "no new version");

    // Another name is independent of this one, even for the same source.
    let other = store_named(client, "bridge-into-chorus-2", &version_script(2)).await;
    assert_eq!(other.version, 1);
    assert_eq!(versions(client, name).await.len(), 3);
    assert_eq!(run(client, name).await.script_hash, h1);
    lua.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_names_are_refused_and_unknown_ones_are_not_found() {
    let dir = tempfile::tempdir().expect("tmp");
    let lua = start(dir.path()).await;
    let client = &lua.client;
    let source = version_script(1);

    // Names that could read as a hash prefix, or break the character rules.
    let too_long = format!("x{}", "y".repeat(64));
    for bad in [
        "cafe",
        "1abc",
        "has space",
        "deadbeef",
        "_leading",
        "slash/name",
        "at@sign",
        too_long.as_str(),
    ] {
        let (code, message) = refusal(store_as(client, bad, &source).await);
        assert_eq!(code, ErrorCode::InvalidArgument, "{bad}: {message}");
        if !bad.contains('@') {
            assert!(message.contains(bad), "{bad}: the message names it: {message}");
        }
    }
    // The longest allowed name, and names with every allowed character class.
    let longest = format!("x{}", "y".repeat(63));
    for good in [longest.as_str(), "v2.transition_a-b", "g", "Cafe-au-lait"] {
        let stored = store_as(client, good, &source).await.expect(good);
        assert_eq!((stored.name.as_str(), stored.version), (good, 1));
    }
    assert!(
        versions(client, "cafe").await.is_empty(),
        "a refused name is not recorded"
    );

    let named = store_named(client, "verse", &source).await;
    // After `@` comes hex.
    for bad in [
        "verse@zz",
        "verse@",
        "verse@12 34",
        "1verse@abcd1234",
        "has space@abcd1234",
    ] {
        let (code, message) = refusal(execute(client, bad).await);
        assert_eq!(code, ErrorCode::InvalidArgument, "{bad}: {message}");
        let (code, _) = refusal(describe(client, bad).await);
        assert_eq!(code, ErrorCode::InvalidArgument, "describe {bad}");
    }
    // Not a name and not a hash prefix either.
    for bad in ["has space", "cafe", "1abc"] {
        let (code, message) = refusal(execute(client, bad).await);
        assert_eq!(code, ErrorCode::InvalidArgument, "{bad}: {message}");
    }

    // An unknown name is NOT_FOUND and says which name.
    let (code, message) = refusal(execute(client, "no-such-script").await);
    assert_eq!(code, ErrorCode::NotFound, "{message}");
    assert!(message.contains("no-such-script"), "{message}");
    let (code, message) = refusal(describe(client, "no-such-script").await);
    assert_eq!(code, ErrorCode::NotFound, "{message}");
    assert!(message.contains("no-such-script"), "{message}");
    let (code, message) = refusal(execute(client, "no-such-script@abcd1234").await);
    assert_eq!(code, ErrorCode::NotFound, "{message}");
    assert!(message.contains("no-such-script"), "{message}");

    // A known name, but no version with that prefix.
    let absent = if named.script_hash.starts_with('0') { "1" } else { "0" };
    let (code, message) = refusal(execute(client, &format!("verse@{absent}")).await);
    assert_eq!(code, ErrorCode::NotFound, "{message}");
    assert!(message.contains("verse"), "{message}");

    let listed = client
        .call(hooteproto::v1::JobListRequest::default())
        .await
        .expect("list");
    assert!(listed.jobs.is_empty(), "refused jobs are not recorded");
    lua.stop().await;
}

/// Two versions of one name whose hashes share a first hex digit: `name@<that digit>` is
/// ambiguous, and a longer prefix is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pinned_prefix_matching_two_versions_is_refused_as_ambiguous() {
    let dir = tempfile::tempdir().expect("tmp");
    let lua = start(dir.path()).await;
    let client = &lua.client;
    // Among 17 sources, two hashes share their first hex digit (the CAS hash is BLAKE3).
    let mut by_digit: std::collections::HashMap<char, String> = std::collections::HashMap::new();
    let (first, second) = (0..17)
        .find_map(|n| {
            let source = format!("function main() return {n} end");
            let digit = blake3::hash(source.as_bytes()).to_hex().chars().next().expect("digit");
            by_digit.insert(digit, source.clone()).map(|earlier| (earlier, source))
        })
        .expect("pigeonhole");
    let a = store_named(client, "twins", &first).await;
    let b = store_named(client, "twins", &second).await;
    assert_eq!(a.script_hash, blake3::hash(first.as_bytes()).to_hex().to_string());
    let shared = &a.script_hash[..1];
    assert_eq!(&b.script_hash[..1], shared);

    let (code, message) = refusal(execute(client, &format!("twins@{shared}")).await);
    assert_eq!(code, ErrorCode::InvalidArgument, "{message}");
    assert!(
        message.contains(&a.script_hash) && message.contains(&b.script_hash),
        "{message}"
    );
    let (code, _) = refusal(describe(client, &format!("twins@{shared}")).await);
    assert_eq!(code, ErrorCode::InvalidArgument);
    // Long enough to tell them apart (the two hashes differ within 16 characters).
    let job = run(client, &format!("twins@{}", &a.script_hash[..16])).await;
    assert_eq!(job.script_hash, a.script_hash);
    lua.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_started_by_hash_has_no_script_name_even_when_its_script_is_named() {
    let dir = tempfile::tempdir().expect("tmp");
    let lua = start(dir.path()).await;
    let client = &lua.client;
    let named = store_named(client, "outro", &version_script(7)).await;
    let unnamed = store_named(client, "", &version_script(8)).await;
    assert_eq!((unnamed.name.as_str(), unnamed.version), ("", 0), "no name, no version");

    for reference in [named.script_hash.as_str(), &named.script_hash[..12]] {
        let job = run(client, reference).await;
        assert_eq!(job.script_hash, named.script_hash);
        assert_eq!(job.script_name, "", "started by {reference}");
    }
    let job = run(client, &unnamed.script_hash).await;
    assert_eq!(job.script_name, "");
    assert_eq!(result(&job)["version"], 8.0);
    // By name, the same script is recorded with its name.
    assert_eq!(run(client, "outro").await.script_name, "outro");
    lua.stop().await;
}

/// Waits for the next ScriptInvalidate broadcast.
async fn next_invalidate(subscriber: &mut Subscriber) -> ScriptInvalidate {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let message = tokio::time::timeout(left, subscriber.recv())
            .await
            .expect("a ScriptInvalidate within 10 s")
            .expect("recv");
        if let Some(broadcast::Event::ScriptInvalidate(event)) = message.event {
            return event;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_version_is_broadcast_with_its_name_previous_hash_and_version() {
    let dir = tempfile::tempdir().expect("tmp");
    let lua = start(dir.path()).await;
    let client = &lua.client;
    let mut subscriber = Subscriber::connect(&lua.pub_endpoint, &[""], None).expect("subscribe");
    // PUB/SUB joins asynchronously: store throwaway scripts until one is seen.
    let mut n = 0;
    loop {
        n += 1;
        store_named(client, "", &format!("return {n}")).await;
        if tokio::time::timeout(Duration::from_millis(100), subscriber.recv())
            .await
            .is_ok()
        {
            break;
        }
        assert!(n < 50, "the subscriber never joined");
    }
    // Drain what the joining left behind, up to a marker script of its own.
    let marker = store_named(client, "", "return 'joined'").await;
    while next_invalidate(&mut subscriber).await.script_hash != marker.script_hash {}

    let v1 = store_named(client, "hot-reload", &version_script(1)).await;
    let event = next_invalidate(&mut subscriber).await;
    assert_eq!(
        (
            event.script_hash.as_str(),
            event.reason.as_str(),
            event.name.as_str(),
            event.previous_hash.as_str(),
            event.version
        ),
        (v1.script_hash.as_str(), "new version", "hot-reload", "", 1),
        "a new name"
    );
    let v2 = store_named(client, "hot-reload", &version_script(2)).await;
    let event = next_invalidate(&mut subscriber).await;
    assert_eq!(
        (
            event.script_hash.as_str(),
            event.reason.as_str(),
            event.name.as_str(),
            event.previous_hash.as_str(),
            event.version
        ),
        (
            v2.script_hash.as_str(),
            "new version",
            "hot-reload",
            v1.script_hash.as_str(),
            2
        ),
    );
    // An older source stored again: a new version, previous is the one it replaces.
    store_named(client, "hot-reload", &version_script(1)).await;
    let event = next_invalidate(&mut subscriber).await;
    assert_eq!(
        (event.script_hash.as_str(), event.previous_hash.as_str(), event.version),
        (v1.script_hash.as_str(), v2.script_hash.as_str(), 3)
    );

    // The newest stored again changes nothing and announces nothing: the next broadcast is
    // the following store's.
    store_named(client, "hot-reload", &version_script(1)).await;
    let after = store_named(client, "", "return 'after'").await;
    let event = next_invalidate(&mut subscriber).await;
    assert_eq!(
        (event.script_hash.as_str(), event.reason.as_str(), event.name.as_str()),
        (after.script_hash.as_str(), "stored", ""),
        "no broadcast for an unchanged name"
    );
    lua.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_marker_naming_a_script_runs_its_newest_version_at_high_priority() {
    let dir = tempfile::tempdir().expect("tmp");
    let lua = start(dir.path()).await;
    let client = &lua.client;
    let v1 = store_named(client, "on-the-one", &version_script(1)).await;
    let v2 = store_named(client, "on-the-one", &version_script(2)).await;

    let cross = |script: String, beat: f64| {
        let client = client.clone();
        async move {
            let reply = client
                .call(TimelineEventRequest {
                    event_type: TimelineEventType::BeatMarker as i32,
                    position_beats: beat,
                    tempo: 120.0,
                    metadata: Some(object(serde_json::json!({ "script": script }))),
                })
                .await
                .expect("timeline event");
            assert!(!reply.job_id.is_empty(), "{script} started a job");
            finished(&client, &reply.job_id).await
        }
    };
    let job = cross("on-the-one".into(), 4.0).await;
    assert_eq!(state(&job), JobState::Succeeded, "{:?}", job.error);
    assert_eq!(job.script_hash, v2.script_hash, "the newest version");
    assert_eq!(job.script_name, "on-the-one");
    assert_eq!(
        job.priority,
        JobPriority::High as i32,
        "markers' jobs run at high priority"
    );
    assert_eq!(result(&job), serde_json::json!({"version": 2.0, "beat": 4.0}));
    assert!(job.tags.contains(&"timeline".to_string()));

    // Hot reload: a new version is what the next crossing runs.
    let v3 = store_named(client, "on-the-one", &version_script(3)).await;
    let job = cross("on-the-one".into(), 8.0).await;
    assert_eq!(job.script_hash, v3.script_hash);
    assert_eq!(result(&job)["version"], 3.0);

    // A marker pinned to a version keeps running it.
    let job = cross(format!("on-the-one@{}", &v1.script_hash[..8]), 12.0).await;
    assert_eq!(job.script_hash, v1.script_hash);
    assert_eq!(result(&job)["version"], 1.0);

    // An unknown name in a marker is refused, not silently dropped.
    let refused = client
        .call(TimelineEventRequest {
            event_type: TimelineEventType::BeatMarker as i32,
            position_beats: 16.0,
            tempo: 120.0,
            metadata: Some(object(serde_json::json!({ "script": "never-stored" }))),
        })
        .await;
    let (code, message) = refusal(refused);
    assert_eq!(code, ErrorCode::NotFound, "{message}");
    assert!(message.contains("never-stored"), "{message}");

    // A job started with job_execute and no priority is recorded as normal.
    let job = run(client, "on-the-one").await;
    assert_eq!(job.priority, JobPriority::Normal as i32);
    lua.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completion_offers_script_names() {
    let dir = tempfile::tempdir().expect("tmp");
    let lua = start(dir.path()).await;
    let client = &lua.client;
    store_named(client, "bridge", &version_script(1)).await;
    store_named(client, "bridge", &version_script(2)).await;
    store_named(client, "breakdown", &version_script(3)).await;
    store_named(client, "outro", &version_script(4)).await;
    let complete = |context: &str, partial: &str| {
        let (client, request) = (
            client.clone(),
            CompleteRequest {
                context: context.into(),
                partial: partial.into(),
            },
        );
        async move { client.call(request).await.expect("complete") }
    };
    for context in ["script_hash", "script", "name"] {
        let reply = complete(context, "br").await;
        let mut values = reply.values.clone();
        values.sort();
        assert_eq!(values, ["breakdown", "bridge"], "{context}: each name once");
    }
    let reply = complete("name", "").await;
    assert_eq!(reply.total, 3, "{:?}", reply.values);
    lua.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_and_their_versions_survive_a_restart() {
    let dir = tempfile::tempdir().expect("tmp");
    let lua = start(dir.path()).await;
    let v1 = store_named(&lua.client, "kept", &version_script(1)).await;
    let v2 = store_named(&lua.client, "kept", &version_script(2)).await;
    lua.stop().await;

    let lua = restart(dir.path()).await;
    let client = &lua.client;
    assert_eq!(
        versions(client, "kept").await,
        [(2, v2.script_hash.clone()), (1, v1.script_hash.clone())]
    );
    let job = run(client, "kept").await;
    assert_eq!(
        (job.script_hash.as_str(), job.script_name.as_str()),
        (v2.script_hash.as_str(), "kept")
    );
    let job = run(client, &format!("kept@{}", &v1.script_hash[..8])).await;
    assert_eq!(job.script_hash, v1.script_hash);
    // The version counter carries on where it was.
    let v3 = store_named(client, "kept", &version_script(3)).await;
    assert_eq!(v3.version, 3);
    lua.stop().await;

    let lua = restart(dir.path()).await;
    assert_eq!(
        describe(&lua.client, "kept").await.expect("describe"),
        ScriptInfo {
            name: "kept".into(),
            version: 3,
            ..describe(&lua.client, &v3.script_hash).await.expect("by hash")
        }
    );
    assert_eq!(run(&lua.client, "kept").await.script_hash, v3.script_hash);
    lua.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stores_under_one_name_at_once_each_get_a_version_of_their_own() {
    let dir = tempfile::tempdir().expect("tmp");
    let lua = start(dir.path()).await;
    let stores: Vec<_> = (1..=8)
        .map(|n| {
            let client = lua.client.clone();
            tokio::spawn(async move { store_named(&client, "contended", &version_script(n)).await })
        })
        .collect();
    let mut stored = Vec::new();
    for task in stores {
        let script = task.await.expect("store task");
        stored.push((script.version, script.script_hash));
    }
    stored.sort();
    assert_eq!(
        stored.iter().map(|(v, _)| *v).collect::<Vec<_>>(),
        (1..=8).collect::<Vec<u32>>(),
        "no version number taken twice, none skipped"
    );
    let mut listed = versions(&lua.client, "contended").await;
    listed.reverse();
    assert_eq!(listed, stored, "each reply's version is the one recorded");
    let newest = describe(&lua.client, "contended").await.expect("describe");
    assert_eq!((newest.version, &newest.script_hash), (8, &stored[7].1));
    lua.stop().await;
}
