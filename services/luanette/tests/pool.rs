//! The sandbox pool as an operator sees it in `ps`: jobs reuse the pool's processes rather
//! than paying a process start each. (One test per binary: it counts this process's
//! children, so no other service may run in it.)

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use hooteproto::v1::{JobExecuteRequest, JobPollRequest, JobState, PollMode};
use hooteproto::{Client, ClientConfig};

/// This process's sandbox children, by pid.
fn sandboxes() -> BTreeSet<u32> {
    let me = std::process::id();
    let mut found = BTreeSet::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // "pid (comm) state ppid ...": comm may hold spaces, so read after the last ')'.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|ppid| ppid.parse::<u32>().ok());
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        if ppid == Some(me) && String::from_utf8_lossy(&cmdline).contains("__luanette-sandbox") {
            found.insert(pid);
        }
    }
    found
}

async fn run_two(client: &Client, script_hash: &str) {
    let mut ids = Vec::new();
    for n in 0..2 {
        let reply = client
            .call(JobExecuteRequest {
                script_hash: script_hash.into(),
                params: Some(hooteproto::wkt::Struct::from_json(
                    serde_json::json!({ "n": n }).as_object().cloned().unwrap_or_default(),
                )),
                ..Default::default()
            })
            .await
            .expect("execute");
        ids.push(reply.job_id);
    }
    let polled = client
        .call(JobPollRequest {
            job_ids: ids,
            timeout_ms: 10_000,
            mode: PollMode::All as i32,
        })
        .await
        .expect("poll");
    assert_eq!(polled.completed.len(), 2, "both jobs finished");
    for job in &polled.completed {
        assert_eq!(job.state, JobState::Succeeded as i32, "{job:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_two_at_a_time_reuse_the_pools_processes() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut config = common::config(dir.path());
    config.max_jobs = 2;
    let bound = luanette::bind(config).await.expect("luanette starts");
    let client = Client::connect(ClientConfig::new(bound.endpoint())).expect("connect");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(bound.run(async move {
        let _ = stopped.await;
    }));
    let script_hash = common::store_script(&client, "function main(p) return p.n end").await;

    // Warm: every pool has started what it keeps.
    for _ in 0..4 {
        run_two(&client, &script_hash).await;
    }
    let warm = sandboxes();
    assert!(!warm.is_empty(), "the jobs ran in sandbox processes of this process");
    let mut started = BTreeSet::new();
    for _ in 0..40 {
        run_two(&client, &script_hash).await;
        started.extend(sandboxes().difference(&warm).copied());
    }
    assert!(
        started.is_empty(),
        "80 trivial jobs, two at a time, started {} new sandbox processes beside the {} warm ones",
        started.len(),
        warm.len()
    );
    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
}
