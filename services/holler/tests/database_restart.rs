//! PostgreSQL restarted under load: `holler up --database-url` keeps taking artifacts and jobs
//! while its database stops and starts again. Meanwhile requests fail fast with UNAVAILABLE;
//! afterwards the services have reconnected on their own, and everything they acknowledged is
//! there (artifacts readable, jobs run to the end).
//!
//! It starts a PostgreSQL of its own (`scripts/postgres`), so restarting it disturbs no other
//! test. `cargo test -p holler --test database_restart -- --ignored` (scripts/test runs it).

#[allow(unused_imports)] // the MCP helpers are for the other suites
mod common;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::Up;
use hooteproto::v1::{
    ArtifactCreateRequest, ArtifactGetRequest, CasStoreRequest, ErrorCode, JobExecuteRequest, JobState,
    JobStatusRequest, ScriptStoreRequest,
};
use hooteproto::{Client, ClientConfig, Error};
use testkit::servers::{ScriptServer, exported};

fn client(endpoint: &str, data: &Path) -> Client {
    let mut config = ClientConfig::new(endpoint.to_string());
    config.key = hooteproto::Key::locate(None, data).expect("key").map(|(key, _)| key);
    config.max_attempts = 1;
    config.timeout = Duration::from_secs(15);
    Client::connect(config).expect("client")
}

/// What the load saw: acknowledged ids, and each failure's code and how long it took.
#[derive(Default)]
struct Seen {
    artifacts: Vec<String>,
    jobs: Vec<String>,
    failures: Vec<(ErrorCode, Duration)>,
}

fn code_of(error: &Error) -> ErrorCode {
    error.code()
}

async fn wait_until(what: &str, within: Duration, done: impl Fn() -> bool) {
    let deadline = Instant::now() + within;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[test]
#[ignore = "needs PostgreSQL (Debian's postgresql); scripts/test runs it"]
fn a_database_restart_under_load_loses_nothing_acknowledged() {
    let dir = format!("/tmp/hoot-pg-restart-{}", std::process::id());
    let (postgres, exports) = ScriptServer::start("postgres", dir.into(), None);
    let url = exported(&exports, "HOOT_TEST_DATABASE_URL");
    let data = tempfile::tempdir().expect("tmp");
    let up = Up::start_with(data.path(), &[], &["--database-url", &url]);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(under_load(&postgres, &up, data.path()));
    assert!(up.stop());
}

async fn under_load(postgres: &ScriptServer, up: &Up, data: &Path) {
    let hoot = client(&up.hootenanny, data);
    let lua = client(&up.luanette, data);
    let cas_hash = hoot
        .call(CasStoreRequest {
            data: b"a take".to_vec(),
            mime_type: "text/plain".into(),
        })
        .await
        .expect("cas")
        .hash;
    let script = lua
        .call(ScriptStoreRequest {
            content: "function main(p) return p.n end".into(),
            ..Default::default()
        })
        .await
        .expect("script")
        .script
        .expect("script")
        .script_hash;

    let seen = Arc::new(Mutex::new(Seen::default()));
    let stop = tokio_util::sync::CancellationToken::new();
    let load = {
        let (seen, stop) = (seen.clone(), stop.clone());
        tokio::spawn(async move {
            let mut n = 0u32;
            while !stop.is_cancelled() {
                n += 1;
                let started = Instant::now();
                let artifact = hoot
                    .call(ArtifactCreateRequest {
                        cas_hash: cas_hash.clone(),
                        name: format!("take {n}"),
                        ..Default::default()
                    })
                    .await;
                let took = started.elapsed();
                let started = Instant::now();
                let job = lua
                    .call(JobExecuteRequest {
                        script_hash: script.clone(),
                        params: Some(hooteproto::wkt::Struct::from_json(
                            serde_json::json!({"n": n}).as_object().cloned().unwrap_or_default(),
                        )),
                        ..Default::default()
                    })
                    .await;
                let job_took = started.elapsed();
                {
                    let mut seen = seen.lock().expect("seen");
                    match artifact {
                        Ok(reply) => seen.artifacts.push(reply.artifact.expect("artifact").artifact_id),
                        Err(error) => seen.failures.push((code_of(&error), took)),
                    }
                    match job {
                        Ok(reply) => seen.jobs.push(reply.job_id),
                        Err(error) => seen.failures.push((code_of(&error), job_took)),
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (hoot, lua)
        })
    };
    let acknowledged = || {
        let seen = seen.lock().expect("seen");
        seen.artifacts.len().min(seen.jobs.len())
    };
    wait_until("requests before the restart", Duration::from_secs(30), || {
        acknowledged() >= 10
    })
    .await;

    postgres.run("pause");
    let failures = || seen.lock().expect("seen").failures.len();
    wait_until(
        "requests to fail while the database is down",
        Duration::from_secs(30),
        || failures() >= 4,
    )
    .await;
    postgres.run("resume");
    let after_resume = acknowledged();
    wait_until("the services to reconnect", Duration::from_secs(60), || {
        acknowledged() >= after_resume + 10
    })
    .await;
    stop.cancel();
    let (hoot, lua) = load.await.expect("load");

    let seen = std::mem::take(&mut *seen.lock().expect("seen"));
    for (code, took) in &seen.failures {
        assert_eq!(*code, ErrorCode::Unavailable, "a request during the outage");
        assert!(*took < Duration::from_secs(5), "failing took {took:?}");
    }
    for id in &seen.artifacts {
        let found = hoot
            .call(ArtifactGetRequest {
                artifact_id: id.clone(),
            })
            .await
            .unwrap_or_else(|e| panic!("acknowledged artifact {id} lost: {e}"));
        assert_eq!(found.artifact.expect("artifact").artifact_id, *id);
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    for id in &seen.jobs {
        loop {
            let job = lua
                .call(JobStatusRequest { job_id: id.clone() })
                .await
                .unwrap_or_else(|e| panic!("acknowledged job {id} lost: {e}"))
                .job
                .expect("job");
            if job.state == JobState::Succeeded as i32 {
                break;
            }
            assert!(
                job.state != JobState::Failed as i32 && job.state != JobState::Cancelled as i32,
                "job {id} ended {:?}: {:?}",
                job.state,
                job.error
            );
            assert!(
                Instant::now() < deadline,
                "job {id} did not finish: {:?} on worker {:?}, started {:?}",
                JobState::try_from(job.state),
                job.worker,
                job.started_at
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    println!(
        "{} artifacts and {} jobs acknowledged, {} requests refused during the outage",
        seen.artifacts.len(),
        seen.jobs.len(),
        seen.failures.len()
    );
}
