//! `cargo bench -p chaosgarden --bench engine`, two measurements with their peers in the
//! same run:
//!
//! 1. Marker firing jitter on the null backend: how long after its ideal wall-clock time
//!    each marker fires (the ideal is the playhead's own schedule, start + frames / rate).
//!    Peers fire at the same ideal instants with `tokio::time::sleep_until` and with a
//!    plain `std::thread::sleep`. Goal (issue 6): p99 ≤ 1 ms.
//! 2. Offline render of a 16-region timeline (8 WAV, 8 MIDI through the SoundFont):
//!    cold (decode, synthesize, mix, encode) and warm (arranged already: mix and encode),
//!    as multiples of real time. Goal: ≥ 200× real time.

use std::io::Cursor;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chaosgarden::engine::clock;
use chaosgarden::engine::playhead::Command;
use chaosgarden::{Engine, EngineConfig, Output};
use hooteproto::v1 as pb;

const SECONDS: f64 = 10.0;
const MARKERS_PER_BEAT: usize = 16;

fn percentiles(mut late_us: Vec<f64>) -> String {
    late_us.sort_by(f64::total_cmp);
    let at = |p: f64| late_us[((late_us.len() as f64 - 1.0) * p).round() as usize];
    format!(
        "n={} p50 {:>7.1} µs  p99 {:>7.1} µs  max {:>7.1} µs",
        late_us.len(),
        at(0.5),
        at(0.99),
        at(1.0)
    )
}

fn markers(engine: &Engine, beats: f64) -> chaosgarden::engine::playhead::Arrangement {
    let mut arrangement = chaosgarden::engine::playhead::Arrangement::empty(engine.sample_rate());
    arrangement.version = engine.next_version();
    let count = (beats * MARKERS_PER_BEAT as f64) as usize;
    for i in 1..count {
        let marker = pb::TimelineMarker {
            marker_id: format!("marker-{i}"),
            event_type: pb::TimelineEventType::BeatMarker as i32,
            position_beats: i as f64 / MARKERS_PER_BEAT as f64,
            metadata: None,
        };
        arrangement.cues.push(chaosgarden::engine::playhead::Cue {
            beats: marker.position_beats,
            kind: chaosgarden::engine::playhead::CueKind::Marker(Arc::new(marker)),
        });
    }
    arrangement
}

async fn engine_jitter() -> (Vec<f64>, Vec<u64>) {
    let engine = Engine::start(EngineConfig {
        sample_rate: 48_000,
        block: 256,
        output: Output::Null,
        midi: None,
        trigger: None,
    })
    .expect("engine");
    let sent = engine.adopt(markers(&engine, SECONDS * 2.0)).expect("adopt");
    engine.applied(sent).await;
    let mut fires = engine.subscribe();
    engine.command(Command::Play).await.expect("play");
    let mut late = Vec::new();
    let mut ideals = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs_f64(SECONDS);
    while let Ok(Ok(fired)) = tokio::time::timeout_at(deadline, fires.recv()).await {
        late.push((fired.fired_nanos as f64 - fired.ideal_nanos as f64) / 1e3);
        ideals.push(fired.ideal_nanos);
    }
    engine.shutdown();
    (late, ideals)
}

async fn tokio_jitter(ideals: &[u64]) -> Vec<f64> {
    let offset = clock::nanos(Instant::now()) + 100_000_000 - ideals[0];
    let mut late = Vec::new();
    for &ideal in ideals {
        let at = clock::instant(ideal + offset);
        tokio::time::sleep_until(at.into()).await;
        late.push(Instant::now().saturating_duration_since(at).as_secs_f64() * 1e6);
    }
    late
}

fn thread_jitter(ideals: &[u64]) -> Vec<f64> {
    let offset = clock::nanos(Instant::now()) + 100_000_000 - ideals[0];
    let mut late = Vec::new();
    for &ideal in ideals {
        let at = clock::instant(ideal + offset);
        let now = Instant::now();
        if at > now {
            std::thread::sleep(at - now);
        }
        late.push(Instant::now().saturating_duration_since(at).as_secs_f64() * 1e6);
    }
    late
}

fn wav(seconds: f64, freq: f64) -> Vec<u8> {
    let mut bytes = Vec::new();
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: 48_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut writer = hound::WavWriter::new(Cursor::new(&mut bytes), spec).expect("writer");
    for i in 0..(seconds * 48_000.0) as usize {
        let v = ((i as f64 * freq * std::f64::consts::TAU / 48_000.0).sin() * 8000.0) as i16;
        writer.write_sample(v).expect("l");
        writer.write_sample(v).expect("r");
    }
    writer.finalize().expect("finalize");
    bytes
}

fn midi(bars: usize, root: u8) -> Vec<u8> {
    use midly::num::{u4, u7, u15, u28};
    let mut track = Vec::new();
    for _ in 0..bars * 4 {
        for step in [0u8, 4, 7] {
            let key = u7::new(root + step);
            track.push(midly::TrackEvent {
                delta: u28::new(0),
                kind: midly::TrackEventKind::Midi {
                    channel: u4::new(0),
                    message: midly::MidiMessage::NoteOn { key, vel: u7::new(90) },
                },
            });
        }
        for (i, step) in [0u8, 4, 7].iter().enumerate() {
            track.push(midly::TrackEvent {
                delta: u28::new(if i == 0 { 480 } else { 0 }),
                kind: midly::TrackEventKind::Midi {
                    channel: u4::new(0),
                    message: midly::MidiMessage::NoteOff {
                        key: u7::new(root + step),
                        vel: u7::new(0),
                    },
                },
            });
        }
    }
    track.push(midly::TrackEvent {
        delta: u28::new(0),
        kind: midly::TrackEventKind::Meta(midly::MetaMessage::EndOfTrack),
    });
    let smf = midly::Smf {
        header: midly::Header::new(midly::Format::SingleTrack, midly::Timing::Metrical(u15::new(480))),
        tracks: vec![track],
    };
    let mut bytes = Vec::new();
    smf.write_std(&mut bytes).expect("midi");
    bytes
}

fn render_speed(effects: bool) {
    let dir = tempfile::tempdir().expect("tmp");
    let cas = cas::Cas::open(dir.path().join("cas")).expect("cas");
    // A system SoundFont if there is one (what a user hears), else the built-in one.
    let synth = chaosgarden::media::Synth::choose(None).expect("a SoundFont");
    if effects {
        println!("render: SoundFont {}", synth.description());
    }
    let mut editor =
        chaosgarden::timeline::Editor::open(cas.clone(), Some(synth.clone()), None, false).expect("editor");
    // 16 regions on a 64-bar (128 s at 120 bpm) timeline: 8 WAVs of 10 s, 8 MIDI parts of 8 bars.
    for i in 0..8 {
        let hash = cas
            .store(&wav(10.0, 220.0 * (i + 1) as f64), "audio/wav")
            .expect("store")
            .info
            .hash;
        editor
            .add_region(&hash.to_string(), i as f64 * 32.0, -6.0, "")
            .expect("wav region");
        let hash = cas
            .store(&midi(8, 48 + i as u8 * 3), "audio/midi")
            .expect("store")
            .info
            .hash;
        editor
            .add_region(&hash.to_string(), i as f64 * 32.0 + 16.0, -6.0, "")
            .expect("midi region");
    }
    let seconds = 128.0;
    let mut cold = Vec::new();
    let mut warm = Vec::new();
    for round in 0..3 {
        // Cold: a new editor has nothing decoded or rendered.
        let synth = synth.clone().with_effects(effects);
        let mut fresh = chaosgarden::timeline::Editor::open(cas.clone(), Some(synth), None, false).expect("editor");
        for region in editor.timeline.regions.clone() {
            fresh
                .add_region(&region.cas_hash, region.position_beats, region.gain_db, "")
                .expect("region");
        }
        let started = Instant::now();
        let arrangement = fresh.arrange(round + 1, 48_000);
        let rendered = chaosgarden::render::render(&arrangement, 0.0, 256.0).expect("render");
        cold.push(started.elapsed().as_secs_f64());
        assert_eq!(rendered.frames, (seconds * 48_000.0) as u64);
        let started = Instant::now();
        let arrangement = fresh.arrange(round + 10, 48_000);
        chaosgarden::render::render(&arrangement, 0.0, 256.0).expect("render");
        warm.push(started.elapsed().as_secs_f64());
    }
    let best = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
    println!(
        "render 16 regions, {seconds} s, synth effects {}: cold {:.3} s = {:.0}× real time; warm {:.3} s = {:.0}× real time (best of 3)",
        if effects { "on " } else { "off" },
        best(&cold),
        seconds / best(&cold),
        best(&warm),
        seconds / best(&warm)
    );
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("engine bench: run with `cargo bench -p chaosgarden --bench engine`");
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    println!(
        "marker jitter, {SECONDS} s at 120 bpm, {MARKERS_PER_BEAT} markers a beat, null backend (256-frame blocks, 48 kHz):"
    );
    let (late, ideals) = runtime.block_on(engine_jitter());
    println!("  chaosgarden scheduler      {}", percentiles(late.clone()));
    let tokio = runtime.block_on(tokio_jitter(&ideals));
    println!("  peer tokio sleep_until     {}", percentiles(tokio));
    let thread = thread_jitter(&ideals);
    println!("  peer std::thread::sleep    {}", percentiles(thread));
    render_speed(true);
    render_speed(false);
}
