//! Two hosts on one machine: a `luanette worker` in a network namespace of its own, joined to
//! this one by a veth pair, reaches PostgreSQL and the S3 server only over the veth addresses
//! (its loopback is its own). Jobs submitted to `holler up` here run there, and what they store
//! is readable here.
//!
//! Needs root (`ip netns`), Debian's PostgreSQL and Garage; it starts its own of both on the
//! veth address. `cargo test -p holler --test two_hosts -- --ignored` (scripts/test runs it).

#[allow(unused_imports)] // the MCP helpers are for the other suites
mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};

use common::{Up, holler};
use testkit::servers::{ScriptServer, exported};

fn run(program: &str, args: &[&str]) {
    let status = Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .status()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(status.success(), "{program} {args:?} failed");
}

/// A network namespace with a veth pair: `host` on this side, `far` inside.
struct Namespace {
    name: String,
    host_link: String,
    host: String,
    far: String,
}

impl Namespace {
    fn create() -> Self {
        let id = std::process::id();
        let subnet = format!("10.201.{}", id % 250);
        let namespace = Self {
            name: format!("hoot{id}"),
            host_link: format!("hv{id}"),
            host: format!("{subnet}.1"),
            far: format!("{subnet}.2"),
        };
        let far_link = format!("nv{id}");
        let name = namespace.name.as_str();
        run("ip", &["netns", "add", name]);
        run(
            "ip",
            &[
                "link",
                "add",
                &namespace.host_link,
                "type",
                "veth",
                "peer",
                "name",
                &far_link,
            ],
        );
        run("ip", &["link", "set", &far_link, "netns", name]);
        run(
            "ip",
            &[
                "addr",
                "add",
                &format!("{}/24", namespace.host),
                "dev",
                &namespace.host_link,
            ],
        );
        run("ip", &["link", "set", &namespace.host_link, "up"]);
        let inside = |args: &[&str]| {
            let mut all = vec!["netns", "exec", name, "ip"];
            all.extend_from_slice(args);
            run("ip", &all);
        };
        inside(&["addr", "add", &format!("{}/24", namespace.far), "dev", &far_link]);
        inside(&["link", "set", &far_link, "up"]);
        inside(&["link", "set", "lo", "up"]);
        namespace
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "del", &self.host_link]).status();
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
#[ignore = "needs root (ip netns), PostgreSQL and Garage; scripts/test runs it"]
fn a_worker_on_another_host_runs_the_jobs_and_its_blobs_are_read_here() {
    let luanette = Path::new(env!("CARGO_BIN_EXE_holler")).with_file_name("luanette");
    assert!(luanette.is_file(), "build the worker first: cargo build -p luanette");
    let namespace = Namespace::create();
    let id = std::process::id();
    let (_postgres, pg) = ScriptServer::start(
        "postgres",
        format!("/tmp/hoot-two-pg-{id}").into(),
        Some(&namespace.host),
    );
    let (_garage, s3) = ScriptServer::start("garage", format!("/tmp/hoot-two-s3-{id}").into(), Some(&namespace.host));
    let database = exported(&pg, "HOOT_TEST_DATABASE_URL");
    assert!(database.contains(&namespace.host), "{database}");
    let bucket = format!("{}/two-hosts", exported(&s3, "HOOT_TEST_BLOB_URL"));
    let aws: Vec<(String, String)> = s3.iter().filter(|(k, _)| k.starts_with("AWS_")).cloned().collect();
    assert!(exported(&aws, "AWS_ENDPOINT_URL").contains(&namespace.host));

    // Host one: the stack, in cluster mode, without a local worker for `far` jobs.
    let here = tempfile::tempdir().expect("tmp");
    let up = Up::start_env(
        here.path(),
        &[],
        &["--database-url", &database, "--blob-url", &bucket],
        &aws,
    );

    // Host two: a worker that can run `far` jobs, with its own data directory and cache.
    let there = tempfile::tempdir().expect("tmp");
    let worker = Command::new("ip")
        .args(["netns", "exec", &namespace.name])
        .arg(&luanette)
        .args(["--capability", "far", "--name", "far-worker"])
        .arg("worker")
        .arg("--data-dir")
        .arg(there.path())
        .args([
            "--database-url",
            &database,
            "--blob-url",
            &bucket,
            "--health-bind",
            "none",
        ])
        .envs(aws.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map(Killed)
        .expect("start the worker in the namespace");

    let script = here.path().join("far.lua");
    std::fs::write(
        &script,
        "function main(p) return cas.store('made on the far host: ' .. p.n, 'text/plain') end",
    )
    .expect("write");
    holler(
        &up,
        here.path(),
        &["script", "store", script.to_str().expect("utf-8"), "--name", "far"],
    );
    let mut made = Vec::new();
    for n in 0..5 {
        let started = holler(
            &up,
            here.path(),
            &["job", "run", "far", "--capability", "far", "--param", &format!("n={n}")],
        );
        made.push((n, started["jobId"].as_str().expect("job id").to_string()));
    }
    for (n, job_id) in made {
        let done = holler(&up, here.path(), &["job", "wait", &job_id]);
        assert_eq!(done["state"], "JOB_STATE_SUCCEEDED", "{done}");
        let status = holler(&up, here.path(), &["job", "status", &job_id]);
        assert_eq!(status["job"]["worker"], "far-worker", "ran on the far host: {status}");
        let hash = done["result"].as_str().expect("a hash").to_string();
        let made = common::holler_bytes(&up, here.path(), &["cas", "get", &hash]);
        assert_eq!(String::from_utf8_lossy(&made), format!("made on the far host: {n}"));
    }
    drop(worker);
    assert!(up.stop());
}
