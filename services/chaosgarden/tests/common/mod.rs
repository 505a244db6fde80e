//! Shared test harness: a real chaosgarden (null backend, real ZMQ, real files) and, when
//! asked, a real Luanette in the same process on its own port.
#![allow(dead_code)]

use std::io::Cursor;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chaosgarden::{Fired, Output, Studio};
use hooteproto::client::ClientConfig;
use hooteproto::v1::{self as pb, PingRequest};
use hooteproto::{Client, ServerStats};

pub struct Garden {
    pub client: Client,
    pub studio: Arc<Studio>,
    pub endpoint: String,
    /// Which SoundFont MIDI plays through (`Bound::soundfont`).
    pub soundfont: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<ServerStats>>>,
}

impl Garden {
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("join").expect("chaosgarden stops cleanly");
        }
    }

    pub fn fires(&self) -> tokio::sync::broadcast::Receiver<Fired> {
        self.studio.engine.subscribe()
    }
}

pub async fn garden(dir: &Path, configure: impl FnOnce(&mut chaosgarden::Config)) -> Garden {
    let mut config = chaosgarden::Config::new(dir.to_path_buf());
    config.bind = "tcp://127.0.0.1:*".into();
    config.luanette = None;
    config.output = Output::Null;
    config.health_bind = None;
    // The same sound on every machine, whatever SoundFonts it has installed.
    config.soundfont = Some(chaosgarden::media::BUILTIN_SOUNDFONT.into());
    configure(&mut config);
    let bound = chaosgarden::bind(config).await.expect("chaosgarden starts");
    let endpoint = bound.endpoint().to_string();
    let studio = bound.studio();
    let soundfont = bound.soundfont().to_string();
    let client = Client::connect(ClientConfig::new(endpoint.clone())).expect("connect");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(bound.run(async move {
        let _ = stopped.await;
    }));
    client.call(PingRequest {}).await.expect("chaosgarden answers ping");
    Garden {
        client,
        studio,
        endpoint,
        soundfont,
        stop: Some(stop),
        task: Some(task),
    }
}

pub struct Lua {
    pub client: Client,
    pub endpoint: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<ServerStats>>>,
}

impl Lua {
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("join").expect("luanette stops cleanly");
        }
    }
}

pub async fn luanette(dir: &Path, bind: &str) -> Lua {
    let mut config = luanette::Config::new(dir.to_path_buf());
    config.bind = bind.into();
    config.pub_bind = None;
    config.health_bind = None;
    let bound = luanette::bind(config).await.expect("luanette starts");
    let endpoint = bound.endpoint().to_string();
    let client = Client::connect(ClientConfig::new(endpoint.clone())).expect("connect");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(bound.run(async move {
        let _ = stopped.await;
    }));
    client.call(PingRequest {}).await.expect("luanette answers ping");
    Lua {
        client,
        endpoint,
        stop: Some(stop),
        task: Some(task),
    }
}

pub fn object(json: serde_json::Value) -> hooteproto::wkt::Struct {
    hooteproto::wkt::Struct::from_json(json.as_object().cloned().unwrap_or_default())
}

pub async fn add_marker(
    client: &Client,
    kind: pb::TimelineEventType,
    beats: f64,
    metadata: serde_json::Value,
) -> pb::TimelineMarker {
    client
        .call(pb::TimelineAddMarkerRequest {
            event_type: kind as i32,
            position_beats: beats,
            metadata: Some(object(metadata)),
        })
        .await
        .expect("add marker")
        .marker
        .expect("marker")
}

pub async fn status(client: &Client) -> pb::TransportState {
    client
        .call(pb::TransportStatusRequest {})
        .await
        .expect("status")
        .state
        .expect("state")
}

/// Stores through the CAS on disk (the services share it), returning the hash.
pub fn cas_put(dir: &Path, bytes: &[u8], mime: &str) -> String {
    let cas = cas::Cas::open(dir.join("cas")).expect("cas");
    cas.store(bytes, mime).expect("store").info.hash.to_string()
}

/// A WAV (stereo f32 at `rate`) holding single-sample clicks of `amplitude` at `clicks`.
pub fn click_wav(rate: u32, frames: usize, clicks: &[usize], amplitude: f32) -> Vec<u8> {
    let mut bytes = Vec::new();
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: rate,
        bits_per_sample: 32,
        sample_format: hound::SampleFormat::Float,
    };
    let mut writer = hound::WavWriter::new(Cursor::new(&mut bytes), spec).expect("writer");
    for i in 0..frames {
        let v = if clicks.contains(&i) { amplitude } else { 0.0 };
        writer.write_sample(v).expect("left");
        writer.write_sample(v).expect("right");
    }
    writer.finalize().expect("finalize");
    bytes
}

/// A MIDI file (480 ppq) of notes `(pitch, start beat, length in beats)`.
pub fn midi_file(notes: &[(u8, f64, f64)]) -> Vec<u8> {
    use midly::num::{u4, u7, u15, u28};
    let ppq = 480.0;
    let mut events: Vec<(u32, bool, u8)> = Vec::new();
    for &(pitch, start, length) in notes {
        events.push(((start * ppq) as u32, true, pitch));
        events.push((((start + length) * ppq) as u32, false, pitch));
    }
    events.sort_by_key(|e| (e.0, e.1));
    let mut track = Vec::new();
    let mut last = 0;
    for (tick, on, pitch) in events {
        let message = if on {
            midly::MidiMessage::NoteOn {
                key: u7::new(pitch),
                vel: u7::new(100),
            }
        } else {
            midly::MidiMessage::NoteOff {
                key: u7::new(pitch),
                vel: u7::new(0),
            }
        };
        track.push(midly::TrackEvent {
            delta: u28::new(tick - last),
            kind: midly::TrackEventKind::Midi {
                channel: u4::new(0),
                message,
            },
        });
        last = tick;
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
    smf.write_std(&mut bytes).expect("write midi");
    bytes
}

/// The rendered WAV's samples (interleaved stereo).
pub fn read_wav(dir: &Path, hash: &str) -> (hound::WavSpec, Vec<f32>) {
    let cas = cas::Cas::open(dir.join("cas")).expect("cas");
    let hash = cas::Hash::parse(hash).expect("hash");
    let bytes = cas.read(&hash, 1 << 30, true).expect("read");
    let reader = hound::WavReader::new(Cursor::new(bytes)).expect("wav");
    let spec = reader.spec();
    let samples = reader
        .into_samples::<f32>()
        .collect::<Result<Vec<_>, _>>()
        .expect("samples");
    (spec, samples)
}

/// Collects fired markers for `duration`.
pub async fn collect(fires: &mut tokio::sync::broadcast::Receiver<Fired>, duration: Duration) -> Vec<Fired> {
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + duration;
    while let Ok(Ok(fired)) = tokio::time::timeout_at(deadline, fires.recv()).await {
        out.push(fired);
    }
    out
}
