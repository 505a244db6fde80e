//! The `chaosgarden` binary as an operator runs it: it starts with no sound card (auto
//! falls back to the null backend), serves, and exits cleanly on SIGTERM; bad flags and a
//! missing device or SoundFont stop it at once with a message that says why.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hooteproto::Client;
use hooteproto::client::ClientConfig;
use hooteproto::v1::{PingRequest, TransportStatusRequest};

fn chaosgarden(dir: &std::path::Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_chaosgarden"));
    command
        .args([
            "--data-dir",
            dir.to_str().expect("utf-8 path"),
            "--luanette",
            "none",
            "--health-bind",
            "none",
        ])
        .args(args)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    command
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn it_starts_without_a_sound_card_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().expect("tmp");
    let endpoint = format!("tcp://127.0.0.1:{}", testkit::free_port());
    let mut child = chaosgarden(dir.path(), &["--bind", &endpoint, "--audio-device", "auto"])
        .spawn()
        .expect("spawn chaosgarden");
    let client = Client::connect(ClientConfig::new(endpoint)).expect("connect");
    let ping = client.call(PingRequest {}).await.expect("ping");
    assert_eq!(ping.service, "chaosgarden");
    let state = client
        .call(TransportStatusRequest {})
        .await
        .expect("status")
        .state
        .expect("state");
    assert!(
        state.backend == "null" || state.backend.starts_with("cpal:"),
        "backend {:?}",
        state.backend
    );
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "chaosgarden did not exit on SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "chaosgarden exits cleanly on SIGTERM: {status}");
}

#[test]
fn bad_configuration_stops_it_with_a_reason() {
    let dir = tempfile::tempdir().expect("tmp");
    let cases: [(&[&str], &str); 3] = [
        (&["--sample-rate", "5"], "sample-rate"),
        (
            &["--soundfont", "/no/such/font.sf2", "--audio-device", "none"],
            "/no/such/font.sf2",
        ),
        (&["--audio-device", "no-such-card-anywhere"], "no-such-card-anywhere"),
    ];
    for (args, says) in cases {
        let output = chaosgarden(dir.path(), args)
            .args(["--bind", "tcp://127.0.0.1:*"])
            .output()
            .expect("run chaosgarden");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?} must fail");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
}
