//! A script that talks to the store a lot in one run: on object storage every `cas.*` call is
//! a request to the bucket made from inside the run, and none of them may stall it. (The
//! suite runs on a local CAS by default; `scripts/test` runs it again on Garage.)

mod common;

use std::time::Duration;

use hooteproto::v1::{JobExecuteRequest, JobPollRequest, JobState, PollMode};
use hooteproto::{Client, ClientConfig, RequestOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_script_may_call_the_store_hundreds_of_times_in_one_run() {
    let dir = tempfile::tempdir().expect("tmp");
    let bound = luanette::bind(common::config(dir.path()))
        .await
        .expect("luanette starts");
    let client = Client::connect(ClientConfig::new(bound.endpoint())).expect("connect");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(bound.run(async move {
        let _ = stopped.await;
    }));
    // Stored by "another host": the run reads it from the bucket in many chunks.
    let big: Vec<u8> = (0..8u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let big_hash = common::cas(dir.path())
        .store(&big, "application/octet-stream")
        .expect("store")
        .info
        .hash
        .to_string();
    let missing = cas::Hash::of(b"an object nobody stored").to_string();
    let script = common::store_script(
        &client,
        "function main(p) \
                        local asked = 0 \
                        for _ = 1, 300 do if not cas.exists(p.missing) then asked = asked + 1 end end \
                        local data = cas.get(p.big) \
                        return {asked = asked, read = #data} \
                      end",
    )
    .await;
    let job_id = client
        .call(JobExecuteRequest {
            script_hash: script,
            params: Some(hooteproto::wkt::Struct::from_json(
                serde_json::json!({"missing": missing, "big": big_hash})
                    .as_object()
                    .cloned()
                    .unwrap_or_default(),
            )),
            ..Default::default()
        })
        .await
        .expect("execute")
        .job_id;
    let polled = client
        .call_with(
            JobPollRequest {
                job_ids: vec![job_id],
                timeout_ms: 20_000,
                mode: PollMode::All as i32,
            },
            RequestOptions {
                timeout: Some(Duration::from_secs(25)),
                attempt_timeout: Some(Duration::from_secs(25)),
                ..Default::default()
            },
        )
        .await
        .expect("poll");
    let job = polled.completed.first().expect("the run ended within 20 s");
    assert_eq!(job.state, JobState::Succeeded as i32, "{job:?}");
    assert_eq!(
        hooteproto::wkt::value_to_json(job.result.clone().expect("result")),
        serde_json::json!({"asked": 300.0, "read": (8u32 << 20) as f64})
    );
    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
}
