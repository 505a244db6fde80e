//! The `chaosgarden` binary as an operator runs it: it starts with no sound card (auto
//! falls back to the null backend), serves, and exits cleanly on SIGTERM; bad flags and a
//! missing device or SoundFont stop it at once with a message that says why; MIDI is heard
//! with no SoundFont installed (the built-in one) and with `--soundfont builtin`.

mod common;

use std::io::Read as _;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{cas_put, midi_file, read_wav};
use hooteproto::Client;
use hooteproto::client::ClientConfig;
use hooteproto::v1::{self as pb, PingRequest, TransportStatusRequest};

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
        .env_remove("CHAOSGARDEN_SOUNDFONT")
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
    terminate(&mut child).await;
}

/// Sends SIGTERM, waits for a clean exit, and returns what it logged.
async fn terminate(child: &mut Child) -> String {
    testkit::signal(child.id(), testkit::SIGTERM).expect("SIGTERM");
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "chaosgarden did not exit on SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "chaosgarden exits cleanly on SIGTERM: {status}");
    let mut log = String::new();
    if let Some(mut stderr) = child.stderr.take() {
        stderr.read_to_string(&mut log).expect("stderr");
    }
    log
}

/// Starts the binary with `args`, places a C major chord (MIDI) at beat 0 and renders the
/// timeline offline: the render's peak, and what the binary logged.
async fn render_a_chord(args: &[&str]) -> (f32, String) {
    let dir = tempfile::tempdir().expect("tmp");
    let endpoint = format!("tcp://127.0.0.1:{}", testkit::free_port());
    let mut child = chaosgarden(dir.path(), &["--bind", &endpoint, "--audio-device", "none"])
        .args(args)
        .spawn()
        .expect("spawn chaosgarden");
    let client = Client::connect(ClientConfig::new(endpoint)).expect("connect");
    client.call(PingRequest {}).await.expect("ping");
    let chord = midi_file(&[(60, 0.0, 2.0), (64, 0.0, 2.0), (67, 0.0, 2.0)]);
    let hash = cas_put(dir.path(), &chord, "audio/midi");
    let region = client
        .call(pb::TimelineAddRegionRequest {
            cas_hash: hash,
            position_beats: 0.0,
            gain_db: 0.0,
            ..Default::default()
        })
        .await
        .expect("a MIDI region is accepted")
        .region
        .expect("region");
    assert_eq!(region.kind, pb::RegionKind::Midi as i32);
    let rendered = client
        .call(pb::TimelineRenderRequest {
            from_beats: 0.0,
            to_beats: 4.0,
            sample_rate: 0,
        })
        .await
        .expect("the MIDI region renders");
    let (_, samples) = read_wav(dir.path(), &rendered.cas_hash);
    let peak = samples.iter().fold(0.0f32, |p, v| p.max(v.abs()));
    (peak, terminate(&mut child).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn midi_is_heard_through_the_builtin_soundfont() {
    let (peak, log) = render_a_chord(&["--soundfont", "builtin"]).await;
    assert!(
        peak > 0.0316 && peak < 1.0,
        "a chord at velocity 100 peaks at {peak}, not between -30 dBFS and clipping"
    );
    assert!(log.contains("built-in General MIDI (generated)"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn midi_is_heard_without_a_soundfont_flag() {
    // A system SoundFont if this machine has one, else the built-in font: heard either way.
    let (peak, log) = render_a_chord(&[]).await;
    assert!(peak > 0.0316 && peak < 1.0, "peak {peak}: {log}");
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
