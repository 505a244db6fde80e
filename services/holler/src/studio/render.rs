//! `GET /api/render/{hash}`: a MIDI artifact as audio, on its own (not placed on the
//! timeline), with Chaosgarden's synthesizer and SoundFont choice and the timeline's tempo
//! map, as a 16-bit WAV with byte ranges.
//!
//! Bounds: the MIDI file meets Chaosgarden's checks (≤ 4 MiB, 500,000 events, ≤ 10 minutes
//! rendered: up to ~230 MB of samples while it runs); one render runs at a time (others wait
//! their turn); renders are kept by (hash, tempo map) up to [`CACHE_BYTES`] in all.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chaosgarden::media::{MAX_MIDI_BYTES, Synth, parse_midi};
use chaosgarden::time::TempoMap;
use hooteproto::v1 as pb;

use super::cas::{inspect, requested_range};
use super::{Studio, call_failure, failure};

/// Rendered audio kept at most, in bytes (the oldest render goes first).
pub const CACHE_BYTES: usize = 128 << 20;
const SAMPLE_RATE: u32 = 48_000;

/// The synthesizer (loaded at the first render) and the renders kept.
pub struct Renderer {
    soundfont: Option<PathBuf>,
    synth: tokio::sync::OnceCell<Synth>,
    /// One render at a time: each holds up to 10 minutes of stereo audio while it runs.
    turn: tokio::sync::Semaphore,
    kept: Mutex<VecDeque<(String, Arc<Vec<u8>>)>>,
}

impl Renderer {
    /// Renders through `soundfont` (a file or "builtin"; None: Chaosgarden's default choice).
    pub fn new(soundfont: Option<PathBuf>) -> Self {
        Self {
            soundfont,
            synth: tokio::sync::OnceCell::new(),
            turn: tokio::sync::Semaphore::new(1),
            kept: Mutex::new(VecDeque::new()),
        }
    }

    fn get(&self, key: &str) -> Option<Arc<Vec<u8>>> {
        let kept = self.kept.lock().ok()?;
        kept.iter().find(|(k, _)| k == key).map(|(_, wav)| wav.clone())
    }

    fn keep(&self, key: String, wav: Arc<Vec<u8>>) {
        if let Ok(mut kept) = self.kept.lock() {
            kept.push_back((key, wav));
            while kept.iter().map(|(_, w)| w.len()).sum::<usize>() > CACHE_BYTES && kept.len() > 1 {
                kept.pop_front();
            }
        }
    }

    async fn synth(&self) -> Result<Synth, String> {
        let soundfont = self.soundfont.clone();
        self.synth
            .get_or_try_init(|| async move {
                tokio::task::spawn_blocking(move || Synth::choose(soundfont.as_deref()))
                    .await
                    .map_err(|e| e.to_string())?
                    .map_err(|e| e.to_string())
            })
            .await
            .cloned()
    }
}

fn refused(message: impl std::fmt::Display) -> Response {
    failure(
        StatusCode::BAD_REQUEST,
        pb::ErrorCode::InvalidArgument,
        &message.to_string(),
    )
}

/// `GET /api/render/{hash}`.
pub async fn midi(State(studio): State<Studio>, Path(hash): Path<String>, headers: HeaderMap) -> Response {
    let object = match inspect(&studio.backends, hash).await {
        Ok(object) => object,
        Err(response) => return response,
    };
    if object.size > MAX_MIDI_BYTES {
        return refused(format!(
            "{} is {} bytes; a MIDI file is read up to {MAX_MIDI_BYTES}",
            object.hash, object.size
        ));
    }
    // The timeline's tempo map, so the artifact sounds as it would placed on it.
    let changes = match studio
        .backends
        .send(pb::TimelineQueryRequest::default(), std::time::Duration::from_secs(10))
        .await
    {
        Ok(reply) => reply.tempo_map,
        Err(error) => return call_failure(&error),
    };
    let key = format!("{}:{changes:?}", object.hash);
    let renderer = studio.renderer.clone();
    let wav = match renderer.get(&key) {
        Some(wav) => wav,
        None => {
            let Ok(_turn) = renderer.turn.acquire().await else {
                return failure(
                    StatusCode::SERVICE_UNAVAILABLE,
                    pb::ErrorCode::Unavailable,
                    "shutting down",
                );
            };
            // Rendered by the request this one waited behind?
            if let Some(wav) = renderer.get(&key) {
                return respond(&wav, headers.get(header::RANGE).and_then(|v| v.to_str().ok()));
            }
            let bytes = match super::media::read_whole(studio.backends.clone(), &object).await {
                Ok(bytes) => bytes,
                Err(error) => return failure(StatusCode::BAD_GATEWAY, pb::ErrorCode::Unavailable, &error.to_string()),
            };
            let synth = match renderer.synth().await {
                Ok(synth) => synth,
                Err(error) => return failure(StatusCode::INTERNAL_SERVER_ERROR, pb::ErrorCode::Internal, &error),
            };
            let rendered = tokio::task::spawn_blocking(move || -> Result<Vec<u8>, String> {
                let song = parse_midi(&bytes).map_err(|e| e.to_string())?;
                let map = TempoMap::from_proto(&changes).map_err(|e| e.to_string())?;
                let samples = synth.render(&song, &map, 0.0, SAMPLE_RATE).map_err(|e| e.to_string())?;
                wav16(&samples)
            })
            .await;
            let wav = match rendered {
                Ok(Ok(wav)) => Arc::new(wav),
                Ok(Err(message)) => return refused(message),
                Err(error) => {
                    return failure(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        pb::ErrorCode::Internal,
                        &error.to_string(),
                    );
                }
            };
            renderer.keep(key, wav.clone());
            wav
        }
    };
    respond(&wav, headers.get(header::RANGE).and_then(|v| v.to_str().ok()))
}

/// Interleaved stereo as a 16-bit WAV (half the bytes of float, and what every player takes).
fn wav16(samples: &[f32]) -> Result<Vec<u8>, String> {
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: SAMPLE_RATE,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut wav = Vec::with_capacity(44 + samples.len() * 2);
    let mut writer = hound::WavWriter::new(std::io::Cursor::new(&mut wav), spec).map_err(|e| e.to_string())?;
    for sample in samples {
        writer
            .write_sample((sample.clamp(-1.0, 1.0) * 32_767.0) as i16)
            .map_err(|e| e.to_string())?;
    }
    writer.finalize().map_err(|e| e.to_string())?;
    Ok(wav)
}

/// The WAV, whole or the one byte range asked for.
fn respond(wav: &Arc<Vec<u8>>, range: Option<&str>) -> Response {
    let size = wav.len() as u64;
    let (status, start, end) = match requested_range(range, size) {
        Ok(Some((start, end))) => (StatusCode::PARTIAL_CONTENT, start, end),
        Ok(None) => (StatusCode::OK, 0, size.saturating_sub(1)),
        Err(()) => return StatusCode::RANGE_NOT_SATISFIABLE.into_response(),
    };
    let body = wav[start as usize..=end as usize].to_vec();
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("audio/wav"));
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("private, no-cache"));
    if status == StatusCode::PARTIAL_CONTENT
        && let Ok(value) = HeaderValue::from_str(&format!("bytes {start}-{end}/{size}"))
    {
        headers.insert(header::CONTENT_RANGE, value);
    }
    response
}
