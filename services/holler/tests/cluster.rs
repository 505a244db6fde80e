//! `holler up --database-url`: the same stack in cluster mode on one host. Its state lives in
//! PostgreSQL, not under the data directory: a second stack with a fresh data directory on the
//! same database sees the first one's jobs and artifacts, and runs jobs queued there.
//!
//! Needs PostgreSQL: `eval "$(scripts/postgres start DIR)"`, then
//! `cargo test -p holler --test cluster -- --ignored` (scripts/test does this).

#[allow(unused_imports)] // the MCP helpers are for the other suites
mod common;

use std::path::Path;

use common::{Up, holler};

#[test]
#[ignore = "needs PostgreSQL (scripts/postgres); scripts/test runs it"]
fn a_cluster_stack_keeps_its_jobs_and_artifacts_in_the_database() {
    let shared = tempfile::tempdir().expect("tmp");
    let url = testkit::postgres::database_for(shared.path()).expect("needs HOOT_TEST_DATABASE_URL");
    let first_dir = tempfile::tempdir().expect("tmp");
    let first = Up::start_with(first_dir.path(), &[], &["--database-url", &url]);
    let script_file = first_dir.path().join("answer.lua");
    std::fs::write(&script_file, "function main(p) return p.n + 1 end").expect("write");
    let stored = holler(
        &first,
        first_dir.path(),
        &[
            "script",
            "store",
            script_file.to_str().expect("utf-8"),
            "--name",
            "answer",
        ],
    );
    assert_eq!(stored["script"]["name"], "answer");
    let started = holler(&first, first_dir.path(), &["job", "run", "answer", "--param", "n=41"]);
    let job_id = started["jobId"].as_str().expect("job id").to_string();
    let done = holler(&first, first_dir.path(), &["job", "wait", &job_id]);
    assert_eq!(done["state"], "JOB_STATE_SUCCEEDED", "{done}");
    let hash = holler(
        &first,
        first_dir.path(),
        &["lua", "return cas.store('cluster', 'text/plain')"],
    )["result"]
        .as_str()
        .expect("hash")
        .to_string();
    let artifact = holler(
        &first,
        first_dir.path(),
        &["artifact", "create", &hash, "--name", "shared"],
    );
    let artifact_id = artifact["artifact"]["artifactId"].as_str().expect("id").to_string();
    assert!(first.stop());

    // A second stack, nothing shared with the first but the database.
    let second_dir = tempfile::tempdir().expect("tmp");
    let second = Up::start_with(second_dir.path(), &[], &["--database-url", &url]);
    let found = holler(&second, second_dir.path(), &["artifact", "get", &artifact_id]);
    assert_eq!(
        found["artifact"]["name"], "shared",
        "the artifact lives in the database"
    );
    let job = holler(&second, second_dir.path(), &["job", "status", &job_id]);
    assert_eq!(
        job["job"]["state"], "JOB_STATE_SUCCEEDED",
        "the job lives in the database: {job}"
    );
    assert_eq!(job["job"]["result"], 42.0);
    assert!(second.stop());
}

fn files_under(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |entries| {
        entries
            .flatten()
            .map(|entry| match entry.file_type() {
                Ok(kind) if kind.is_dir() => files_under(&entry.path()),
                _ => 1,
            })
            .sum()
    })
}

#[test]
#[ignore = "needs PostgreSQL and an S3 server (scripts/postgres, scripts/garage); scripts/test runs it"]
fn blobs_stored_on_one_host_are_read_on_another_through_object_storage() {
    let shared = tempfile::tempdir().expect("tmp");
    let url = testkit::postgres::database_for(shared.path()).expect("needs HOOT_TEST_DATABASE_URL");
    let blobs = testkit::blobs::url_for(shared.path()).expect("needs HOOT_TEST_BLOB_URL");
    let cluster = ["--database-url", url.as_str(), "--blob-url", blobs.as_str()];
    let first_dir = tempfile::tempdir().expect("tmp");
    let first = Up::start_with(first_dir.path(), &[], &cluster);
    // The CLI imports a file straight into the bucket; a script stores from its sandbox.
    let take = first_dir.path().join("take.txt");
    let content = "a take, long enough to be worth sharing\n".repeat(1000);
    std::fs::write(&take, &content).expect("write");
    let put = holler(
        &first,
        first_dir.path(),
        &[
            "cas",
            "put",
            take.to_str().expect("utf-8"),
            "--mime",
            "text/plain",
            "--blob-url",
            &blobs,
        ],
    );
    let put_hash = put["hash"].as_str().expect("hash").to_string();
    let made = holler(
        &first,
        first_dir.path(),
        &["lua", "return cas.store('made on host one', 'text/plain')"],
    )["result"]
        .as_str()
        .expect("hash")
        .to_string();
    let melody = holler(
        &first,
        first_dir.path(),
        &[
            "lua",
            "return midi.save(midi.from_notes({{pitch = 60, start = 0, duration = 1}}))",
        ],
    )["result"]
        .as_str()
        .expect("hash")
        .to_string();
    assert_eq!(
        files_under(&first_dir.path().join("cas")),
        0,
        "with --blob-url nothing goes to the local CAS directory"
    );
    assert!(first.stop());

    // A second host: the same database and bucket, its own (empty) data directory and cache.
    let second_dir = tempfile::tempdir().expect("tmp");
    let second = Up::start_with(second_dir.path(), &[], &cluster);
    let fetched = common::holler_bytes(&second, second_dir.path(), &["cas", "get", &put_hash]);
    assert!(fetched == content.as_bytes(), "cas get returned other bytes");
    let script = second_dir.path().join("read.lua");
    std::fs::write(&script, "function main(p) return cas.get(p.hash) end").expect("write");
    let stored = holler(
        &second,
        second_dir.path(),
        &["script", "store", script.to_str().expect("utf-8"), "--name", "read"],
    );
    assert_eq!(stored["script"]["name"], "read");
    let started = holler(
        &second,
        second_dir.path(),
        &["job", "run", "read", "--param", &format!("hash={made}")],
    );
    let job_id = started["jobId"].as_str().expect("job id").to_string();
    let done = holler(&second, second_dir.path(), &["job", "wait", &job_id]);
    assert_eq!(done["state"], "JOB_STATE_SUCCEEDED", "{done}");
    assert_eq!(done["result"], "made on host one", "{done}");
    let cached = second_dir
        .path()
        .join("cache/objects")
        .join(&made[..2])
        .join(&made[2..]);
    assert!(cached.is_file(), "the job's read is cached on the second host");
    // Chaosgarden on the second host loads a region's media through the same store.
    let region = holler(&second, second_dir.path(), &["timeline", "region", &melody, "0"]);
    assert_eq!(region["region"]["kind"], "REGION_KIND_MIDI", "{region}");
    let cached = second_dir
        .path()
        .join("cache/objects")
        .join(&melody[..2])
        .join(&melody[2..]);
    assert!(cached.is_file(), "Chaosgarden's load is cached on the second host");
    assert!(second.stop());
}
