//! The transport on the null backend, over real ZMQ: the clock runs in real time, seeks
//! and tempo changes take effect mid-play, and markers fire in order, on time, and once
//! per crossing (never twice for one, across seek, stop/play and loop).

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use hooteproto::v1::{self as pb, ErrorCode, PlaybackState, TimelineEventType};

const RATE: f64 = 48_000.0;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_clock_runs_in_real_time_and_stops_where_it_is() {
    let dir = tempfile::tempdir().expect("tmp");
    let garden = garden(dir.path(), |_| {}).await;
    let start = status(&garden.client).await;
    assert_eq!(start.playback, PlaybackState::Stopped as i32);
    assert_eq!(start.backend, "null");
    assert_eq!(start.sample_rate, 48_000);
    assert_eq!(start.tempo_bpm, 120.0);
    let began = Instant::now();
    let played = garden.client.call(pb::TransportPlayRequest {}).await.expect("play");
    assert_eq!(played.state.expect("state").playback, PlaybackState::Playing as i32);
    tokio::time::sleep(Duration::from_millis(600)).await;
    let stopped = garden
        .client
        .call(pb::TransportStopRequest {})
        .await
        .expect("stop")
        .state
        .expect("state");
    let wall = began.elapsed().as_secs_f64();
    assert_eq!(stopped.playback, PlaybackState::Stopped as i32);
    // The position is within a couple of blocks (256 frames = 5.3 ms) of the wall clock.
    assert!(
        (stopped.position_seconds - wall).abs() < 0.03,
        "{} s played in {wall} s",
        stopped.position_seconds
    );
    assert!(
        (stopped.position_beats - stopped.position_seconds * 2.0).abs() < 1e-9,
        "120 bpm: 2 beats a second"
    );
    assert_eq!(
        stopped.position_samples as f64,
        (stopped.position_seconds * RATE).round()
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    let later = status(&garden.client).await;
    assert_eq!(
        later.position_samples, stopped.position_samples,
        "a stopped transport does not move"
    );
    garden.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seek_during_playback_moves_the_playhead_and_bad_seeks_are_refused() {
    let dir = tempfile::tempdir().expect("tmp");
    let garden = garden(dir.path(), |_| {}).await;
    garden.client.call(pb::TransportPlayRequest {}).await.expect("play");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let sought = garden
        .client
        .call(pb::TransportSeekRequest { position_beats: 64.0 })
        .await
        .expect("seek")
        .state
        .expect("state");
    assert_eq!(sought.playback, PlaybackState::Playing as i32, "a seek keeps playing");
    assert!(
        (64.0..64.05).contains(&sought.position_beats),
        "at {}",
        sought.position_beats
    );
    tokio::time::sleep(Duration::from_millis(250)).await;
    let later = status(&garden.client).await;
    assert!(
        (later.position_beats - 64.5).abs() < 0.06,
        "{} beats a quarter second after",
        later.position_beats
    );
    for bad in [-1.0, f64::NAN, f64::INFINITY, 1e9] {
        let error = garden
            .client
            .call(pb::TransportSeekRequest { position_beats: bad })
            .await
            .expect_err("a bad seek is refused");
        assert_eq!(error.code(), ErrorCode::InvalidArgument, "{bad}: {error}");
    }
    garden.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tempo_change_mid_play_keeps_the_beat_and_changes_the_pace() {
    let dir = tempfile::tempdir().expect("tmp");
    let garden = garden(dir.path(), |_| {}).await;
    garden.client.call(pb::TransportPlayRequest {}).await.expect("play");
    tokio::time::sleep(Duration::from_millis(500)).await;
    // From beat 0 to 60 bpm while at ~beat 1: the beat position must not jump.
    let before = status(&garden.client).await;
    let asked = Instant::now();
    let map = garden
        .client
        .call(pb::TimelineSetTempoRequest {
            change: Some(pb::TempoChange {
                position_beats: 0.0,
                tempo_bpm: 60.0,
                time_signature: None,
            }),
        })
        .await
        .expect("set tempo")
        .tempo_map;
    assert_eq!(map.len(), 1);
    let after = status(&garden.client).await;
    // No jump: the playhead moved on by at most what the elapsed time allows at 120 bpm
    // (keeping the frame instead would jump back half a beat).
    let allowed = asked.elapsed().as_secs_f64() * 2.0 + 0.02;
    let moved = after.position_beats - before.position_beats;
    assert!(
        (-0.01..allowed).contains(&moved),
        "beat {} before the change, {} after ({allowed} allowed)",
        before.position_beats,
        after.position_beats
    );
    assert_eq!(after.tempo_bpm, 60.0);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let later = status(&garden.client).await;
    let pace = later.position_beats - after.position_beats;
    assert!((pace - 1.0).abs() < 0.08, "one beat a second at 60 bpm, got {pace}");
    let error = garden
        .client
        .call(pb::TimelineSetTempoRequest {
            change: Some(pb::TempoChange {
                position_beats: 4.0,
                tempo_bpm: -3.0,
                time_signature: None,
            }),
        })
        .await
        .expect_err("negative tempo");
    assert_eq!(error.code(), ErrorCode::InvalidArgument);
    assert!(error.to_string().contains("bpm"), "{error}");
    garden.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn markers_fire_in_order_on_time_and_once() {
    let dir = tempfile::tempdir().expect("tmp");
    let garden = garden(dir.path(), |_| {}).await;
    // At 240 bpm a beat is 250 ms.
    garden
        .client
        .call(pb::TimelineSetTempoRequest {
            change: Some(pb::TempoChange {
                position_beats: 0.0,
                tempo_bpm: 240.0,
                time_signature: None,
            }),
        })
        .await
        .expect("tempo");
    let mut ids = Vec::new();
    for (kind, beat) in [
        (TimelineEventType::CuePoint, 2.0),
        (TimelineEventType::SectionChange, 0.5),
        (TimelineEventType::BeatMarker, 1.0),
        (TimelineEventType::BeatMarker, 1.0),
    ] {
        ids.push((
            add_marker(&garden.client, kind, beat, serde_json::json!({"n": beat}))
                .await
                .marker_id,
            beat,
        ));
    }
    let mut fires = garden.fires();
    garden.client.call(pb::TransportPlayRequest {}).await.expect("play");
    let fired = collect(&mut fires, Duration::from_millis(900)).await;
    garden.client.call(pb::TransportStopRequest {}).await.expect("stop");
    let positions: Vec<f64> = fired.iter().map(|f| f.marker.position_beats).collect();
    assert_eq!(positions, [0.5, 1.0, 1.0, 2.0], "each marker once, by position");
    let mut fired_ids: Vec<&str> = fired.iter().map(|f| f.marker.marker_id.as_str()).collect();
    fired_ids.sort();
    let mut expected: Vec<&str> = ids.iter().map(|(id, _)| id.as_str()).collect();
    expected.sort();
    assert_eq!(fired_ids, expected);
    for f in &fired {
        assert!(!f.late);
        let jitter = f.fired_nanos as i64 - f.ideal_nanos as i64;
        assert!(
            (0..20_000_000).contains(&jitter),
            "fired {jitter} ns from its ideal time"
        );
        assert_eq!(f.tempo, 240.0);
    }
    // The ideal times are a beat (250 ms) apart per beat of position.
    let gap = (fired[3].ideal_nanos - fired[0].ideal_nanos) as f64 / 1e9;
    assert!((gap - 0.375).abs() < 0.001, "1.5 beats at 240 bpm, got {gap} s");
    garden.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeks_and_stops_never_fire_a_marker_twice_for_one_crossing() {
    let dir = tempfile::tempdir().expect("tmp");
    let garden = garden(dir.path(), |_| {}).await;
    // 120 bpm: beat 1 at 0.5 s, beat 4 at 2 s.
    add_marker(&garden.client, TimelineEventType::CuePoint, 1.0, serde_json::json!({})).await;
    add_marker(&garden.client, TimelineEventType::CuePoint, 4.0, serde_json::json!({})).await;
    let mut fires = garden.fires();
    garden.client.call(pb::TransportPlayRequest {}).await.expect("play");
    tokio::time::sleep(Duration::from_millis(700)).await; // past beat 1
    // Stop and play again where it stopped: beat 1 is behind us, it must not fire again.
    garden.client.call(pb::TransportStopRequest {}).await.expect("stop");
    garden.client.call(pb::TransportPlayRequest {}).await.expect("play");
    // Seek over beat 4: skipped markers do not fire.
    garden
        .client
        .call(pb::TransportSeekRequest { position_beats: 6.0 })
        .await
        .expect("seek");
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Seek back before beat 1: crossing it again fires it again, once.
    garden
        .client
        .call(pb::TransportSeekRequest { position_beats: 0.8 })
        .await
        .expect("seek");
    let fired = collect(&mut fires, Duration::from_millis(400)).await;
    garden.client.call(pb::TransportStopRequest {}).await.expect("stop");
    let positions: Vec<f64> = fired.iter().map(|f| f.marker.position_beats).collect();
    assert_eq!(positions, [1.0, 1.0], "once per crossing; never for a skipped marker");
    // Stopped exactly on a marker: playing from there fires it (it was not crossed yet).
    garden
        .client
        .call(pb::TransportSeekRequest { position_beats: 4.0 })
        .await
        .expect("seek");
    garden.client.call(pb::TransportPlayRequest {}).await.expect("play");
    let fired = collect(&mut fires, Duration::from_millis(200)).await;
    garden.client.call(pb::TransportStopRequest {}).await.expect("stop");
    assert_eq!(fired.iter().map(|f| f.marker.position_beats).collect::<Vec<_>>(), [4.0]);
    garden.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loop_fires_its_markers_once_per_pass() {
    let dir = tempfile::tempdir().expect("tmp");
    let garden = garden(dir.path(), |_| {}).await;
    add_marker(
        &garden.client,
        TimelineEventType::BeatMarker,
        0.0,
        serde_json::json!({}),
    )
    .await;
    add_marker(
        &garden.client,
        TimelineEventType::BeatMarker,
        1.5,
        serde_json::json!({}),
    )
    .await;
    add_marker(
        &garden.client,
        TimelineEventType::BeatMarker,
        3.0,
        serde_json::json!({"outside": "loop"}),
    )
    .await;
    let state = garden
        .client
        .call(pb::TransportLoopRequest {
            loop_range: Some(pb::LoopRange {
                enabled: true,
                from_beats: 0.0,
                to_beats: 2.0,
            }),
        })
        .await
        .expect("loop")
        .state
        .expect("state");
    assert_eq!(state.loop_range.map(|l| (l.from_beats, l.to_beats)), Some((0.0, 2.0)));
    let mut fires = garden.fires();
    garden.client.call(pb::TransportPlayRequest {}).await.expect("play");
    // Passes start at 0, 1 and 2 s; beat 1.5 is 0.75 s into each.
    let fired = collect(&mut fires, Duration::from_millis(2400)).await;
    garden.client.call(pb::TransportStopRequest {}).await.expect("stop");
    let positions: Vec<f64> = fired.iter().map(|f| f.marker.position_beats).collect();
    assert_eq!(
        positions,
        [0.0, 1.5, 0.0, 1.5, 0.0],
        "never beat 3, which is outside the loop"
    );
    // Pass starts are exactly one loop (1 s) apart on the sample clock.
    let pass = (fired[2].ideal_nanos - fired[0].ideal_nanos) as f64 / 1e9;
    assert!((pass - 1.0).abs() < 1e-4, "one pass took {pass} s");
    let status = status(&garden.client).await;
    assert!(status.position_beats < 2.0, "the playhead stays in the loop");
    let error = garden
        .client
        .call(pb::TransportLoopRequest {
            loop_range: Some(pb::LoopRange {
                enabled: true,
                from_beats: 4.0,
                to_beats: 2.0,
            }),
        })
        .await
        .expect_err("backwards loop");
    assert_eq!(error.code(), ErrorCode::InvalidArgument);
    garden.stop().await;
}

/// Messages sent to the MIDI port, with when.
type Sent = Arc<Mutex<Vec<(Instant, Vec<u8>)>>>;

struct Recorder(Sent);

impl chaosgarden::MidiSink for Recorder {
    fn send(&mut self, message: &[u8]) {
        if let Ok(mut sent) = self.0.lock() {
            sent.push((Instant::now(), message.to_vec()));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn midi_regions_go_out_to_the_midi_port_on_time() {
    let dir = tempfile::tempdir().expect("tmp");
    let sent = Arc::new(Mutex::new(Vec::new()));
    let recorder = Recorder(sent.clone());
    let garden = garden(dir.path(), |config| config.midi_sink = Some(Box::new(recorder))).await;
    let hash = cas_put(dir.path(), &midi_file(&[(60, 0.0, 0.5), (64, 1.0, 0.5)]), "audio/midi");
    let region = garden
        .client
        .call(pb::TimelineAddRegionRequest {
            cas_hash: hash[..12].to_string(),
            position_beats: 1.0,
            gain_db: 0.0,
            ..Default::default()
        })
        .await
        .expect("add region")
        .region
        .expect("region");
    assert_eq!(region.cas_hash, hash, "a prefix resolves to the full hash");
    assert_eq!(region.kind, pb::RegionKind::Midi as i32);
    assert_eq!(region.duration_beats, 1.5);
    let started = Instant::now();
    garden.client.call(pb::TransportPlayRequest {}).await.expect("play");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    garden.client.call(pb::TransportStopRequest {}).await.expect("stop");
    let sent = sent.lock().expect("lock").clone();
    let notes: Vec<(f64, Vec<u8>)> = sent
        .iter()
        .filter(|(_, m)| m[0] & 0xF0 == 0x90 || m[0] & 0xF0 == 0x80)
        .map(|(t, m)| (t.duration_since(started).as_secs_f64(), m.clone()))
        .collect();
    let messages: Vec<Vec<u8>> = notes.iter().map(|(_, m)| m.clone()).collect();
    assert_eq!(
        messages,
        [
            vec![0x90, 60, 100],
            vec![0x80, 60, 0],
            vec![0x90, 64, 100],
            vec![0x80, 64, 0]
        ]
    );
    // Beat 1 (the region's start) is 0.5 s in at 120 bpm; its notes at 0.5, 0.75, 1.0, 1.25 s.
    for ((at, _), ideal) in notes.iter().zip([0.5, 0.75, 1.0, 1.25]) {
        assert!((at - ideal).abs() < 0.03, "sent at {at} s, due at {ideal} s");
    }
    assert!(
        sent.iter().any(|(_, m)| m == &vec![0xB0, 123, 0]),
        "stopping silences the port (all notes off)"
    );
    garden.stop().await;
}
