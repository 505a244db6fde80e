//! The trigger flow against a real Luanette: a generate_transition marker runs a stored
//! Lua script that transposes the current section, the result lands in the CAS and on the
//! timeline at the next section boundary, and it is heard there in the render. Plus the
//! late-result policy, registration (and re-registration after Luanette restarts), and a
//! clock that keeps going while Luanette is down.

mod common;

use std::time::Duration;

use common::*;
use hooteproto::Client;
use hooteproto::v1::{self as pb, TimelineEventType};

const TRANSPOSE: &str = r#"
function describe()
  return {
    name = "transpose transition",
    description = "The current section a fifth up",
    params = {type = "object", required = {"current_section", "beats_available"}},
  }
end

function main(params)
  local song = midi.transpose(midi.load(params.current_section), 7)
  log.info(string.format("%.1f beats to fill at %.0f bpm", params.beats_available, params.tempo))
  return {hash = midi.save(song), beats = params.beats_available}
end
"#;

async fn store_script(client: &Client, source: &str) -> String {
    client
        .call(pb::ScriptStoreRequest {
            content: source.into(),
            tags: vec!["test".into()],
            creator: "chaosgarden-test".into(),
            ..Default::default()
        })
        .await
        .expect("store script")
        .script
        .expect("script")
        .script_hash
}

async fn set_tempo(client: &Client, bpm: f64) {
    client
        .call(pb::TimelineSetTempoRequest {
            change: Some(pb::TempoChange {
                position_beats: 0.0,
                tempo_bpm: bpm,
                time_signature: None,
            }),
        })
        .await
        .expect("tempo");
}

/// Waits until a region made by a job appears.
async fn generated_region(client: &Client, within: Duration) -> Option<pb::TimelineRegion> {
    let deadline = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < deadline {
        let timeline = client
            .call(pb::TimelineQueryRequest {
                from_beats: 0.0,
                to_beats: 0.0,
            })
            .await
            .expect("query");
        if let Some(region) = timeline.regions.into_iter().find(|r| !r.source_job_id.is_empty()) {
            return Some(region);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

fn pitches(dir: &std::path::Path, hash: &str) -> Vec<u8> {
    let cas = cas::Cas::open(dir.join("cas")).expect("cas");
    let bytes = cas
        .read(&cas::Hash::parse(hash).expect("hash"), 1 << 20, true)
        .expect("read");
    let smf = midly::Smf::parse(&bytes).expect("midi");
    smf.tracks
        .iter()
        .flatten()
        .filter_map(|e| match e.kind {
            midly::TrackEventKind::Midi {
                message: midly::MidiMessage::NoteOn { key, vel },
                ..
            } if vel > 0 => Some(key.as_int()),
            _ => None,
        })
        .collect()
}

async fn workers(lua: &Client) -> String {
    let reply = lua
        .call(pb::ReadResourceRequest {
            uri: "lua://workers".into(),
        })
        .await
        .expect("workers");
    reply
        .contents
        .into_iter()
        .filter_map(|c| match c.content {
            Some(pb::resource_content::Content::Text(text)) => Some(text),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transition_marker_generates_material_that_plays_at_the_next_section() {
    let dir = tempfile::tempdir().expect("tmp");
    let lua = luanette(dir.path(), "tcp://127.0.0.1:*").await;
    let lua_endpoint = lua.endpoint.clone();
    let garden = garden(dir.path(), move |config| config.luanette = Some(lua_endpoint)).await;
    let script = store_script(&lua.client, TRANSPOSE).await;
    // 240 bpm: a beat is 250 ms. The verse plays C and E in its first two beats.
    set_tempo(&garden.client, 240.0).await;
    let verse = cas_put(dir.path(), &midi_file(&[(60, 0.0, 1.0), (64, 1.0, 1.0)]), "audio/midi");
    garden
        .client
        .call(pb::TimelineAddRegionRequest {
            cas_hash: verse.clone(),
            position_beats: 0.0,
            gain_db: 0.0,
            ..Default::default()
        })
        .await
        .expect("verse");
    let transition = add_marker(
        &garden.client,
        TimelineEventType::GenerateTransition,
        2.0,
        serde_json::json!({"script_hash": script, "style": "lift"}),
    )
    .await;
    add_marker(
        &garden.client,
        TimelineEventType::SectionChange,
        12.0,
        serde_json::json!({"section": "chorus"}),
    )
    .await;
    garden.client.call(pb::TransportPlayRequest {}).await.expect("play");
    let region = generated_region(&garden.client, Duration::from_secs(10))
        .await
        .expect("the transition is placed");
    garden.client.call(pb::TransportStopRequest {}).await.expect("stop");
    assert_eq!(region.position_beats, 12.0, "at the next section boundary");
    assert_eq!(region.kind, pb::RegionKind::Midi as i32);
    assert_eq!(pitches(dir.path(), &region.cas_hash), [67, 71], "the verse a fifth up");
    // The job saw the documented params.
    let job = lua
        .client
        .call(pb::JobStatusRequest {
            job_id: region.source_job_id.clone(),
        })
        .await
        .expect("job")
        .job
        .expect("job");
    let params = job.params.expect("params").to_json().expect("json");
    assert_eq!(params["current_section"], serde_json::json!(verse));
    assert_eq!(params["next_section"], serde_json::Value::Null);
    assert_eq!(params["beats_available"], serde_json::json!(10.0));
    assert_eq!(params["tempo"], serde_json::json!(240.0));
    assert_eq!(
        params["style"],
        serde_json::json!("lift"),
        "marker metadata passes through"
    );
    assert!(job.tags.contains(&"transition".to_string()));
    // The job names the marker that started it (the studio shows it on the marker).
    assert!(
        job.tags.contains(&format!("marker:{}", transition.marker_id)),
        "{:?}",
        job.tags
    );
    // Heard at beat 12 (3 s = frame 144000) and not before: the verse has died away by then.
    let rendered = garden
        .client
        .call(pb::TimelineRenderRequest {
            from_beats: 0.0,
            to_beats: 16.0,
            sample_rate: 0,
        })
        .await
        .expect("render");
    let (_, samples) = read_wav(dir.path(), &rendered.cas_hash);
    let boundary = 144_000usize;
    let before = &samples[(boundary - 24_000) * 2..boundary * 2];
    assert!(
        before.iter().all(|s| s.abs() < 1e-4),
        "silence in the beat before the boundary"
    );
    // From the boundary on, the render is the transition itself, sample for sample: the
    // same MIDI rendered alone through the same SoundFont.
    let synth = chaosgarden::media::Synth::builtin().expect("the built-in SoundFont");
    let bytes = cas::Cas::open(dir.path().join("cas"))
        .expect("cas")
        .read(&cas::Hash::parse(&region.cas_hash).expect("hash"), 1 << 20, true)
        .expect("read");
    let chaosgarden::media::Media::Midi(song) = chaosgarden::media::parse(&bytes).expect("midi") else {
        panic!("the transition is MIDI")
    };
    let map = chaosgarden::time::TempoMap::new(240.0, chaosgarden::time::Meter::default()).expect("map");
    let alone = synth.render(&song, &map, 0.0, 48_000).expect("render alone");
    let onset = alone.chunks_exact(2).position(|f| f[0].abs() > 1e-4).expect("audible");
    let first = samples[boundary * 2..]
        .chunks_exact(2)
        .position(|f| f[0].abs() > 1e-4)
        .expect("the transition sounds");
    assert_eq!(first, onset, "the transition starts on the boundary's exact frame");
    let window = 48_000 * 2;
    let difference = samples[boundary * 2..boundary * 2 + window]
        .iter()
        .zip(&alone[..window])
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(
        difference < 1e-4,
        "the region plays as rendered alone (max difference {difference})"
    );
    // Chaosgarden registered itself with Luanette.
    let listed = workers(&lua.client).await;
    assert!(listed.contains("chaosgarden"), "{listed}");
    garden.stop().await;
    lua.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_results_go_to_the_next_bar_or_are_dropped() {
    let dir = tempfile::tempdir().expect("tmp");
    let lua = luanette(dir.path(), "tcp://127.0.0.1:*").await;
    let lua_endpoint = lua.endpoint.clone();
    let garden = garden(dir.path(), move |config| config.luanette = Some(lua_endpoint)).await;
    // Takes ~1.2 s: at 120 bpm the playhead is near beat 2.4 when it answers.
    let slow = store_script(
        &lua.client,
        r#"
        function main(params)
          local t = os.clock()
          while os.clock() - t < 1.2 do end
          return midi.save(midi.load(params.current_section))
        end
        "#,
    )
    .await;
    let section = cas_put(dir.path(), &midi_file(&[(60, 0.0, 0.25)]), "audio/midi");
    garden
        .client
        .call(pb::TimelineAddRegionRequest {
            cas_hash: section,
            position_beats: 0.0,
            gain_db: 0.0,
            ..Default::default()
        })
        .await
        .expect("section");
    add_marker(
        &garden.client,
        TimelineEventType::GenerateTransition,
        0.5,
        serde_json::json!({"script_hash": slow}),
    )
    .await;
    add_marker(
        &garden.client,
        TimelineEventType::SectionChange,
        1.0,
        serde_json::json!({}),
    )
    .await;
    // This one may be at most 0 bars late, so it is dropped.
    add_marker(
        &garden.client,
        TimelineEventType::GenerateTransition,
        8.5,
        serde_json::json!({"script_hash": slow, "max_late_bars": 0}),
    )
    .await;
    add_marker(
        &garden.client,
        TimelineEventType::SectionChange,
        9.0,
        serde_json::json!({}),
    )
    .await;
    garden.client.call(pb::TransportPlayRequest {}).await.expect("play");
    let region = generated_region(&garden.client, Duration::from_secs(10))
        .await
        .expect("placed late");
    // The job ends near beat 2.4 (later on a loaded machine): the next bar line at least a
    // beat ahead of the playhead is beat 4 (or a later bar line, within 4 bars of beat 1).
    let at = region.position_beats;
    assert!(at % 4.0 == 0.0 && (4.0..=17.0).contains(&at), "placed at beat {at}");
    garden
        .client
        .call(pb::TransportSeekRequest { position_beats: 8.0 })
        .await
        .expect("seek");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    garden.client.call(pb::TransportStopRequest {}).await.expect("stop");
    let timeline = garden
        .client
        .call(pb::TimelineQueryRequest {
            from_beats: 0.0,
            to_beats: 0.0,
        })
        .await
        .expect("query");
    let generated: Vec<f64> = timeline
        .regions
        .iter()
        .filter(|r| !r.source_job_id.is_empty())
        .map(|r| r.position_beats)
        .collect();
    assert_eq!(generated, [at], "the too-late result was dropped");
    garden.stop().await;
    lua.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_clock_keeps_time_while_luanette_is_down_and_registration_comes_back() {
    let dir = tempfile::tempdir().expect("tmp");
    // Learn a free port from a first Luanette, then stop it: Luanette is down.
    let lua = luanette(dir.path(), "tcp://127.0.0.1:*").await;
    let endpoint = lua.endpoint.clone();
    lua.stop().await;
    let lua_endpoint = endpoint.clone();
    let garden = garden(dir.path(), move |config| config.luanette = Some(lua_endpoint)).await;
    for beat in [1.0, 2.0, 3.0] {
        add_marker(
            &garden.client,
            TimelineEventType::GenerateTransition,
            beat,
            serde_json::json!({"script_hash": "0".repeat(64)}),
        )
        .await;
        add_marker(
            &garden.client,
            TimelineEventType::CuePoint,
            beat + 0.5,
            serde_json::json!({}),
        )
        .await;
    }
    let mut fires = garden.fires();
    garden.client.call(pb::TransportPlayRequest {}).await.expect("play");
    let fired = collect(&mut fires, Duration::from_millis(2000)).await;
    let state = status(&garden.client).await;
    assert_eq!(fired.len(), 6, "every marker fires although nobody hears it");
    for f in &fired {
        let jitter = f.fired_nanos as i64 - f.ideal_nanos as i64;
        assert!((0..20_000_000).contains(&jitter), "fired {jitter} ns late");
    }
    assert!(
        (state.position_seconds - 2.0).abs() < 0.1,
        "the clock kept going: {}",
        state.position_seconds
    );
    // Luanette comes back on the same endpoint: chaosgarden registers again by itself.
    let lua = luanette(dir.path(), &endpoint).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(8);
    let mut listed = String::new();
    while tokio::time::Instant::now() < deadline {
        listed = workers(&lua.client).await;
        if listed.contains("chaosgarden") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(listed.contains("chaosgarden"), "re-registered: {listed}");
    garden.stop().await;
    lua.stop().await;
}
