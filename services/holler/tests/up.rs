//! `holler up` reports the stack up only once every service has bound its port.

use std::process::{Command, Stdio};
use std::time::Duration;

#[test]
fn up_with_hootenannys_port_taken_fails_naming_it_and_never_says_it_is_up() {
    let dir = tempfile::tempdir().expect("tmp");
    // Something else holds the port hootenanny is told to bind.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("listen");
    let hootenanny = format!("tcp://{}", taken.local_addr().expect("addr"));
    let endpoint = || format!("tcp://127.0.0.1:{}", testkit::free_port());
    let mut child = Command::new(env!("CARGO_BIN_EXE_holler"))
        .args(["--luanette", &endpoint(), "--hootenanny", &hootenanny])
        .args(["--chaosgarden", &endpoint(), "up", "--data-dir"])
        .arg(dir.path())
        .args(["--port", &testkit::free_port().to_string()])
        .args(["--audio-device", "none", "--broadcasts", "none", "--no-health"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn holler up");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while child.try_wait().expect("wait").is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("holler up kept running although hootenanny could not bind");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = child.wait_with_output().expect("output");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    assert!(!output.status.success(), "{stdout}\n{stderr}");
    assert!(!stdout.contains("is up"), "reported up: {stdout}");
    assert!(stderr.contains("hootenanny"), "the error names the service: {stderr}");
    assert!(stderr.to_lowercase().contains("in use"), "and says why: {stderr}");
}

mod common;

#[test]
fn up_passes_its_media_budget_to_chaosgarden() {
    let refused = Command::new(env!("CARGO_BIN_EXE_holler"))
        .args(["up", "--media-budget", "lots"])
        .output()
        .expect("run holler up");
    assert_eq!(refused.status.code(), Some(2), "a nonsense budget is a usage error");
    assert!(String::from_utf8_lossy(&refused.stderr).contains("is not a size"));

    let dir = tempfile::tempdir().expect("tmp");
    let data = dir.path().join("data");
    let up = common::Up::start_with(&data, &[], &["--media-budget", "1MiB"]);
    // 40 beats at 120 bpm: 20 s of 48 kHz stereo float, 7.7 MB, past a 1 MiB budget.
    let render = Command::new(env!("CARGO_BIN_EXE_holler"))
        .args(["--chaosgarden", &up.chaosgarden, "--data-dir"])
        .arg(&data)
        .args(["call", "timeline_render", r#"{"from_beats": 0, "to_beats": 40}"#])
        .output()
        .expect("run holler call");
    let stderr = String::from_utf8_lossy(&render.stderr);
    assert!(!render.status.success(), "a render past the budget is refused");
    assert!(stderr.contains("RESOURCE_EXHAUSTED"), "{stderr}");
    assert!(up.stop(), "and the stack stops cleanly");
}
