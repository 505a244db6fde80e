//! Issue 14's table replayed against `holler up` (everything in one process, as a user starts
//! it, with the key it creates), while every backend is pinged throughout: each row gets its
//! refusal or a bounded result, and the stack never stops answering.

use std::time::{Duration, Instant};

use hooteproto::v1::{self as pb, ErrorCode, JobState};
use hooteproto::{Client, Error, RequestOptions};
use system_tests::{Pinger, Up, client, error_kind, percentile};

fn within(timeout: Duration) -> RequestOptions {
    RequestOptions {
        timeout: Some(timeout),
        ..Default::default()
    }
}

async fn eval(lua: &Client, code: &str, timeout: Duration) -> Result<pb::LuaEvalReply, Error> {
    lua.call_with(
        pb::LuaEvalRequest {
            code: code.into(),
            params: None,
        },
        within(timeout),
    )
    .await
}

/// A 644-byte WAV declaring 1 Hz: the samples it claims would be resampled into 220 MB.
fn one_hertz_wav() -> Vec<u8> {
    let data = vec![0u8; 600];
    let mut out = b"RIFF".to_vec();
    out.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&8u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out.extend_from_slice(&data);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_row_of_issue_14_is_refused_or_bounded_while_holler_up_keeps_answering() {
    let dir = tempfile::tempdir().expect("tmp");
    let up = Up::start(dir.path(), &[], |up| Some(up.key())).await;
    let key = up.key();
    let lua = client(&up.endpoints[0], Some(key.clone()), Duration::from_secs(60));
    let hoot = client(&up.endpoints[1], Some(key.clone()), Duration::from_secs(60));
    let garden = client(&up.endpoints[2], Some(key.clone()), Duration::from_secs(60));
    let pinger = Pinger::start(
        ["luanette", "hootenanny", "chaosgarden"]
            .iter()
            .zip(&up.endpoints)
            .map(|(name, e)| (name.to_string(), client(e, Some(key.clone()), Duration::from_secs(5))))
            .collect(),
        Duration::from_millis(10),
    );
    let slow = Duration::from_secs(60);

    // Lua: a result that shares one table 2^30 times over.
    let shared = eval(&lua, "local a = {1} for i = 1, 30 do a = {a, a} end return a", slow).await;
    let error = shared.expect_err("refused");
    assert_eq!(error.code(), ErrorCode::InvalidArgument, "{error}");

    // Lua: one C call that runs for hours. The request's 2 s deadline is its wall limit.
    let started = Instant::now();
    let endless = eval(
        &lua,
        "return string.rep('a', 20000):find('.-.-b')",
        Duration::from_secs(2),
    )
    .await;
    assert_eq!(endless.expect_err("stopped").code(), ErrorCode::DeadlineExceeded);
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());

    // Lua: the same as a job is cancelled at once and ends cancelled, not succeeded.
    let script = lua
        .call(pb::ScriptStoreRequest {
            content: "function main() return string.rep('a', 20000):find('.-.-b') end".into(),
            tags: vec![],
            creator: String::new(),
            ..Default::default()
        })
        .await
        .expect("store")
        .script
        .map(|s| s.script_hash)
        .unwrap_or_default();
    let job = |params: Option<hooteproto::wkt::Struct>| pb::JobExecuteRequest {
        script_hash: script.clone(),
        params,
        tags: vec![],
        ..Default::default()
    };
    let id = lua.call(job(None)).await.expect("start").job_id;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let info = lua
            .call(pb::JobStatusRequest { job_id: id.clone() })
            .await
            .expect("status")
            .job;
        if info.is_some_and(|j| j.state == JobState::Running as i32) {
            break;
        }
        assert!(Instant::now() < deadline, "the job never ran");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let asked = Instant::now();
    lua.call(pb::JobCancelRequest { job_id: id.clone() })
        .await
        .expect("cancel");
    let poll = lua
        .call(pb::JobPollRequest {
            job_ids: vec![id.clone()],
            timeout_ms: 5000,
            mode: pb::PollMode::All as i32,
        })
        .await
        .expect("poll");
    assert!(poll.pending_job_ids.is_empty(), "still running after cancel");
    assert!(
        asked.elapsed() < Duration::from_millis(250),
        "cancel took {:?}",
        asked.elapsed()
    );
    let info = lua.call(pb::JobStatusRequest { job_id: id }).await.expect("status").job;
    assert_eq!(info.map(|j| j.state), Some(JobState::Cancelled as i32));

    // Lua: a 64 MiB string repeated in a result, json.encode, print, otel.event, midi.write.
    let huge = "local s = string.rep('a', 64 << 20) local t = {} for i = 1, 8 do t[i] = s end";
    for tail in [
        "return t",
        "return json.encode(t)",
        "otel.event('big', {t = t}) return 1",
        "local e = {} for i = 1, 8 do e[i] = {tick = 0, type = 'sysex', data = s} end return #midi.write{tracks = {e}}",
    ] {
        let error = eval(&lua, &format!("{huge} {tail}"), slow).await.expect_err(tail);
        assert!(
            error_kind(&error) == "memory_limit" || error.to_string().contains("larger than 64 MiB once converted"),
            "{tail}: {error}"
        );
    }
    let printed = eval(&lua, &format!("{huge} print(table.unpack(t)) return 1"), slow)
        .await
        .expect("print is bounded");
    assert!(printed.output.iter().map(|l| l.message.len()).sum::<usize>() <= (1 << 20) + 4096);

    // Lua: a script cannot choose a model endpoint.
    let ssrf = eval(
        &lua,
        "return orpheus.generate{url = 'http://127.0.0.1:9/internal'}",
        slow,
    )
    .await;
    assert!(ssrf.expect_err("refused").to_string().contains("not a per-call option"));

    // Lua: 30 MiB of job params are refused before anything is stored.
    let blob = hooteproto::wkt::Struct::from_json(
        serde_json::json!({ "blob": "x".repeat(30 << 20) })
            .as_object()
            .cloned()
            .unwrap_or_default(),
    );
    let params = lua.call(job(Some(blob))).await.expect_err("over the params cap");
    assert_eq!(params.code(), ErrorCode::InvalidArgument, "{params}");

    // GraphQL: 64 copies of one parent, then a 4-level parents query.
    let object = hoot
        .call(pb::CasStoreRequest {
            data: b"a take".to_vec(),
            mime_type: "text/plain".into(),
        })
        .await
        .expect("store an object")
        .hash;
    let parent = hoot
        .call(pb::ArtifactCreateRequest {
            cas_hash: object.clone(),
            name: "parent".into(),
            ..Default::default()
        })
        .await
        .expect("parent")
        .artifact
        .map(|a| a.artifact_id)
        .unwrap_or_default();
    let child = hoot
        .call(pb::ArtifactCreateRequest {
            cas_hash: object,
            name: "child".into(),
            parent_ids: vec![parent.clone(); 64],
            ..Default::default()
        })
        .await
        .expect("child")
        .artifact
        .expect("an artifact");
    assert_eq!(child.parent_ids, vec![parent], "duplicate parents are stored once");
    let query = format!(
        "{{ artifact(id: \"{}\") {{ parents {{ parents {{ parents {{ parents {{ id }} }} }} }} }} }}",
        child.artifact_id
    );
    let fan_out = hoot
        .call(pb::GraphQueryRequest {
            query,
            ..Default::default()
        })
        .await;
    let error = fan_out.expect_err("priced over budget");
    assert_eq!(error.code(), ErrorCode::InvalidArgument, "{error}");

    // Media: a 644-byte WAV declaring 1 Hz.
    let wav = hoot
        .call(pb::CasStoreRequest {
            data: one_hertz_wav(),
            mime_type: "audio/wav".into(),
        })
        .await
        .expect("store the wav")
        .hash;
    let region = garden
        .call(pb::TimelineAddRegionRequest {
            cas_hash: wav,
            position_beats: 0.0,
            gain_db: 0.0,
            ..Default::default()
        })
        .await;
    let error = region.expect_err("1 Hz is refused");
    assert_eq!(error.code(), ErrorCode::InvalidArgument, "{error}");

    // Control: an unsigned shutdown from a local process is not obeyed.
    for endpoint in &up.endpoints {
        let stranger = client(endpoint, None, Duration::from_millis(500));
        let ignored = stranger
            .call(pb::ShutdownRequest {
                reason: "a stranger".into(),
            })
            .await;
        assert!(ignored.is_err(), "{endpoint} obeyed an unsigned shutdown");
    }

    // Fairness: one client's endless jobs hit its cap; another client still gets in.
    let flooder = client(&up.endpoints[0], Some(key.clone()), Duration::from_secs(10));
    let mut refused = None;
    let mut started = Vec::new();
    for _ in 0..300 {
        match flooder.call(job(None)).await {
            Ok(reply) => started.push(reply.job_id),
            Err(error) => {
                refused = Some(error);
                break;
            }
        }
    }
    let refused = refused.expect("a cap on unfinished jobs per client");
    assert_eq!(refused.code(), ErrorCode::ResourceExhausted, "{refused}");
    let other = client(&up.endpoints[0], Some(key.clone()), Duration::from_secs(10));
    other.call(job(None)).await.expect("another client is not refused");
    for id in started {
        let _ = other.call(pb::JobCancelRequest { job_id: id }).await;
    }

    for (backend, latencies) in pinger.finish().await {
        let p99 = percentile(&latencies, 0.99);
        println!("{backend}: {} pings meanwhile, p99 {p99:?}", latencies.len());
        assert!(p99 < Duration::from_millis(50), "{backend}: p99 {p99:?}");
    }
}
