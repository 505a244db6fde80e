//! Offline render: sample-exact placement under a tempo map, gain, MIDI through the
//! SoundFont, clear errors for bad material, and a timeline that survives a restart.

mod common;

use common::*;
use hooteproto::v1::{self as pb, ErrorCode, TimelineEventType};

fn tempo(beats: f64, bpm: f64) -> pb::TimelineSetTempoRequest {
    pb::TimelineSetTempoRequest {
        change: Some(pb::TempoChange {
            position_beats: beats,
            tempo_bpm: bpm,
            time_signature: None,
        }),
    }
}

async fn add_region(garden: &Garden, hash: &str, beats: f64, gain_db: f64) -> pb::TimelineRegion {
    garden
        .client
        .call(pb::TimelineAddRegionRequest {
            cas_hash: hash.into(),
            position_beats: beats,
            gain_db,
            ..Default::default()
        })
        .await
        .expect("add region")
        .region
        .expect("region")
}

async fn render(garden: &Garden, from: f64, to: f64) -> pb::TimelineRenderReply {
    garden
        .client
        .call(pb::TimelineRenderRequest {
            from_beats: from,
            to_beats: to,
            sample_rate: 0,
        })
        .await
        .expect("render")
}

fn nonzero_frames(samples: &[f32], threshold: f32) -> Vec<usize> {
    samples
        .chunks_exact(2)
        .enumerate()
        .filter(|(_, f)| f[0].abs() > threshold)
        .map(|(i, _)| i)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regions_land_on_the_exact_sample_under_a_tempo_map() {
    let dir = tempfile::tempdir().expect("tmp");
    let garden = garden(dir.path(), |_| {}).await;
    // 120 bpm to beat 4 (2 s), 90 bpm to beat 10 (4 s more), then 150 bpm.
    garden.client.call(tempo(4.0, 90.0)).await.expect("tempo");
    garden.client.call(tempo(10.0, 150.0)).await.expect("tempo");
    // A click on the first frame, and one 1000 frames in, at full scale.
    let click = cas_put(dir.path(), &click_wav(48_000, 2000, &[0, 1000], 1.0), "audio/wav");
    let quiet = cas_put(dir.path(), &click_wav(48_000, 10, &[0], 1.0), "audio/wav");
    let places = [0.0, 1.0, 3.5, 5.25, 10.0, 12.8];
    for &beats in &places {
        add_region(&garden, &click, beats, 0.0).await;
    }
    let quiet_region = add_region(&garden, &quiet, 14.0, -6.0).await;
    assert_eq!(quiet_region.kind, pb::RegionKind::Audio as i32);
    let rendered = render(&garden, 0.0, 16.0).await;
    assert_eq!(rendered.sample_rate, 48_000);
    assert_eq!(rendered.channels, 2);
    assert_eq!(rendered.start_frame, 0);
    let seconds_at = |b: f64| {
        if b <= 4.0 {
            b * 0.5
        } else if b <= 10.0 {
            2.0 + (b - 4.0) * 60.0 / 90.0
        } else {
            6.0 + (b - 10.0) * 0.4
        }
    };
    assert_eq!(rendered.frames, (seconds_at(16.0) * 48_000.0).round() as u64);
    let (spec, samples) = read_wav(dir.path(), &rendered.cas_hash);
    assert_eq!((spec.channels, spec.sample_rate, spec.bits_per_sample), (2, 48_000, 32));
    let mut expected: Vec<usize> = places
        .iter()
        .flat_map(|&b| {
            let at = (seconds_at(b) * 48_000.0).round() as usize;
            [at, at + 1000]
        })
        .collect();
    let quiet_at = (seconds_at(14.0) * 48_000.0).round() as usize;
    expected.push(quiet_at);
    expected.sort();
    assert_eq!(
        nonzero_frames(&samples, 0.1),
        expected,
        "every click on its exact frame"
    );
    let gain = samples[quiet_at * 2];
    assert!((gain - 0.501).abs() < 0.001, "-6 dB is ×0.501, got {gain}");
    // A range that starts mid-timeline starts on the timeline's own frame.
    let part = render(&garden, 3.5, 4.0).await;
    assert_eq!(part.start_frame, 84_000);
    let (_, samples) = read_wav(dir.path(), &part.cas_hash);
    assert_eq!(nonzero_frames(&samples, 0.1), [0, 1000]);
    garden.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn midi_regions_are_heard_from_their_first_sample() {
    let dir = tempfile::tempdir().expect("tmp");
    let garden = garden(dir.path(), |_| {}).await;
    assert_eq!(garden.soundfont, chaosgarden::media::BUILTIN_DESCRIPTION);
    let midi = cas_put(dir.path(), &midi_file(&[(60, 0.0, 1.0), (67, 1.0, 1.0)]), "audio/midi");
    add_region(&garden, &midi, 8.0, 0.0).await;
    let rendered = render(&garden, 0.0, 0.0).await;
    let (_, samples) = read_wav(dir.path(), &rendered.cas_hash);
    let start = 8 * 24_000; // beat 8 at 120 bpm
    let sounding = nonzero_frames(&samples, 1e-4);
    let first = *sounding.first().expect("the region is audible");
    assert!(
        (start..start + 48).contains(&first),
        "first sound at frame {first}, region at {start}"
    );
    assert!(
        rendered.frames > (start + 2 * 24_000) as u64,
        "rendered to the end of the notes and their release"
    );
    let loudest = samples.iter().fold(0.0f32, |p, v| p.max(v.abs()));
    assert!(
        loudest > 0.0316 && loudest < 1.0,
        "heard clearly, without clipping: peak {loudest}"
    );
    garden.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_material_and_bad_ranges_get_clear_errors() {
    let dir = tempfile::tempdir().expect("tmp");
    let garden = garden(dir.path(), |_| {}).await;
    let text = cas_put(dir.path(), b"not music at all", "text/plain");
    let cases = [
        (
            text.clone(),
            0.0,
            0.0,
            ErrorCode::InvalidArgument,
            "neither a MIDI file",
        ),
        ("0".repeat(64), 0.0, 0.0, ErrorCode::NotFound, ""),
        ("xyz".into(), 0.0, 0.0, ErrorCode::InvalidArgument, ""),
        (text.clone(), -1.0, 0.0, ErrorCode::InvalidArgument, "position_beats"),
        (text, 0.0, 40.0, ErrorCode::InvalidArgument, "gain_db"),
    ];
    for (hash, beats, gain_db, code, says) in cases {
        let error = garden
            .client
            .call(pb::TimelineAddRegionRequest {
                cas_hash: hash.clone(),
                position_beats: beats,
                gain_db,
                ..Default::default()
            })
            .await
            .expect_err("refused");
        assert_eq!(error.code(), code, "{hash} at {beats}: {error}");
        assert!(error.to_string().contains(says), "{error}");
    }
    let error = garden
        .client
        .call(pb::TimelineRenderRequest {
            from_beats: 0.0,
            to_beats: 0.0,
            sample_rate: 0,
        })
        .await
        .expect_err("empty timeline");
    assert!(error.to_string().contains("nothing sounds"), "{error}");
    let error = garden
        .client
        .call(pb::TimelineRenderRequest {
            from_beats: 4.0,
            to_beats: 2.0,
            sample_rate: 0,
        })
        .await
        .expect_err("backwards range");
    assert_eq!(error.code(), ErrorCode::InvalidArgument);
    let error = garden
        .client
        .call(pb::TimelineAddMarkerRequest {
            event_type: 0,
            position_beats: 1.0,
            metadata: None,
        })
        .await
        .expect_err("no marker type");
    assert!(error.to_string().contains("section_change"), "{error}");
    let error = garden
        .client
        .call(pb::TimelineAddMarkerRequest {
            event_type: TimelineEventType::GenerateTransition as i32,
            position_beats: 1.0,
            metadata: Some(object(serde_json::json!({"script_hash": 42}))),
        })
        .await
        .expect_err("numeric script hash");
    assert!(error.to_string().contains("script_hash"), "{error}");
    let error = garden
        .client
        .call(pb::TimelineRemoveRequest {
            id: "region-999".into(),
        })
        .await
        .expect_err("unknown id");
    assert_eq!(error.code(), ErrorCode::NotFound);
    garden.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_timeline_survives_a_restart() {
    let dir = tempfile::tempdir().expect("tmp");
    let click = cas_put(dir.path(), &click_wav(48_000, 100, &[0], 1.0), "audio/wav");
    let (marker, region) = {
        let garden = garden(dir.path(), |_| {}).await;
        garden.client.call(tempo(2.0, 100.0)).await.expect("tempo");
        let marker = add_marker(
            &garden.client,
            TimelineEventType::CuePoint,
            3.0,
            serde_json::json!({"name": "drop"}),
        )
        .await;
        let region = add_region(&garden, &click, 2.0, -3.0).await;
        let removed = add_marker(&garden.client, TimelineEventType::CuePoint, 5.0, serde_json::json!({})).await;
        garden
            .client
            .call(pb::TimelineRemoveRequest {
                id: removed.marker_id.clone(),
            })
            .await
            .expect("remove");
        garden.stop().await;
        (marker, region)
    };
    let garden = garden(dir.path(), |_| {}).await;
    let timeline = garden
        .client
        .call(pb::TimelineQueryRequest {
            from_beats: 0.0,
            to_beats: 0.0,
        })
        .await
        .expect("query");
    assert_eq!(timeline.markers, std::slice::from_ref(&marker));
    assert_eq!(timeline.regions, std::slice::from_ref(&region));
    assert_eq!(
        timeline
            .tempo_map
            .iter()
            .map(|c| (c.position_beats, c.tempo_bpm))
            .collect::<Vec<_>>(),
        [(0.0, 120.0), (2.0, 100.0)]
    );
    // New ids never reuse old ones, and the restored region still sounds.
    let again = add_marker(&garden.client, TimelineEventType::CuePoint, 1.0, serde_json::json!({})).await;
    assert_ne!(again.marker_id, marker.marker_id);
    let rendered = render(&garden, 0.0, 4.0).await;
    let (_, samples) = read_wav(dir.path(), &rendered.cas_hash);
    assert_eq!(nonzero_frames(&samples, 0.1), [48_000], "beat 2 at 120 bpm");
    // A range query returns only what is in it.
    let part = garden
        .client
        .call(pb::TimelineQueryRequest {
            from_beats: 0.0,
            to_beats: 2.0,
        })
        .await
        .expect("query");
    assert_eq!(part.markers.len(), 1, "the new marker at beat 1 only");
    assert!(part.regions.is_empty(), "the region starts at beat 2");
    garden.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeline_move_puts_a_region_and_a_marker_at_their_new_beat_keeping_their_ids() {
    let dir = tempfile::tempdir().expect("tmp");
    let garden = garden(dir.path(), |_| {}).await;
    garden.client.call(tempo(4.0, 60.0)).await.expect("tempo"); // 120 bpm, then 60 from beat 4
    // 0.5 s of audio: 1 beat at 120 bpm, half a beat at 60.
    let click = cas_put(dir.path(), &click_wav(48_000, 24_000, &[0], 1.0), "audio/wav");
    let region = add_region(&garden, &click, 1.0, -6.0).await;
    assert_eq!(region.duration_beats, 1.0);
    let marker = add_marker(
        &garden.client,
        TimelineEventType::CuePoint,
        2.0,
        serde_json::json!({"take": 3}),
    )
    .await;

    let moved = garden
        .client
        .call(pb::TimelineMoveRequest {
            id: region.region_id.clone(),
            position_beats: 6.0,
        })
        .await
        .expect("move region");
    assert!(moved.marker.is_none());
    let moved = moved.region.expect("the moved region");
    assert_eq!(moved.region_id, region.region_id, "same id");
    assert_eq!((moved.position_beats, moved.gain_db), (6.0, -6.0));
    assert_eq!(moved.duration_beats, 0.5, "its length in beats at 60 bpm");

    // The click is heard at beat 6 (2 s + 2 s = 4 s), and no longer at beat 1.
    let rendered = render(&garden, 0.0, 8.0).await;
    let (_, samples) = read_wav(dir.path(), &rendered.cas_hash);
    assert_eq!(nonzero_frames(&samples, 0.1), [4 * 48_000]);

    let moved = garden
        .client
        .call(pb::TimelineMoveRequest {
            id: marker.marker_id.clone(),
            position_beats: 0.5,
        })
        .await
        .expect("move marker")
        .marker
        .expect("the moved marker");
    assert_eq!(
        (moved.marker_id.as_str(), moved.position_beats),
        (marker.marker_id.as_str(), 0.5)
    );
    assert_eq!(moved.metadata, marker.metadata, "metadata kept");
    let timeline = garden
        .client
        .call(pb::TimelineQueryRequest {
            from_beats: 0.0,
            to_beats: 0.0,
        })
        .await
        .expect("query");
    assert_eq!(timeline.markers.len(), 1);
    assert_eq!(timeline.markers[0].position_beats, 0.5);
    assert_eq!(timeline.regions.len(), 1);

    // Unknown ids and bad positions are refused, and nothing moves.
    let missing = garden
        .client
        .call(pb::TimelineMoveRequest {
            id: "region-999".into(),
            position_beats: 1.0,
        })
        .await
        .expect_err("no such id");
    assert_eq!(missing.code(), ErrorCode::NotFound);
    assert!(missing.to_string().contains("region-999"), "{missing}");
    let negative = garden
        .client
        .call(pb::TimelineMoveRequest {
            id: region.region_id.clone(),
            position_beats: -1.0,
        })
        .await
        .expect_err("negative");
    assert_eq!(negative.code(), ErrorCode::InvalidArgument);
    garden.stop().await;
}
