//! `GET /api/render/{hash}`: a MIDI artifact as audio, on its own (not placed on the
//! timeline), with Chaosgarden's synthesizer and SoundFont choice and the timeline's tempo
//! map, as a 16-bit WAV with byte ranges.
//!
//! Bounds: the MIDI file meets Chaosgarden's checks (≤ 4 MiB, 500,000 events, ≤ 10 minutes
//! rendered: up to ~230 MB of samples while it runs); one render runs at a time, at most
//! [`MAX_WAITING`] more wait their turn (past that: 503 UNAVAILABLE with `Retry-After`, so a
//! flood of requests is refused at once instead of holding everyone's renders back); renders
//! are kept by (hash, tempo map) up to [`CACHE_BYTES`] in all, and a kept one needs no turn.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chaosgarden::media::{Synth, parse_midi};
use chaosgarden::time::TempoMap;
use hooteproto::v1 as pb;

use super::cas::{Span, inspect};
use super::{Studio, blocking, call_failure, failure};

/// Rendered audio kept at most, in bytes (the oldest render goes first).
pub const CACHE_BYTES: usize = 128 << 20;
const SAMPLE_RATE: u32 = 48_000;
/// Renders that may wait behind the running one.
pub const MAX_WAITING: usize = 4;

/// The synthesizer (loaded at the first render) and the renders kept.
pub struct Renderer {
    soundfont: Option<PathBuf>,
    synth: tokio::sync::OnceCell<Synth>,
    /// One render at a time: each holds up to 10 minutes of stereo audio while it runs.
    turn: tokio::sync::Semaphore,
    /// Requests waiting for or holding the turn.
    queued: AtomicUsize,
    kept: Mutex<VecDeque<(String, Arc<Vec<u8>>)>>,
}

/// A place in the render queue, given back when the request ends (or its client goes away).
struct Place<'a>(&'a AtomicUsize);

impl Drop for Place<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Renderer {
    /// Renders through `soundfont` (a file or "builtin"; None: Chaosgarden's default choice).
    pub fn new(soundfont: Option<PathBuf>) -> Self {
        Self {
            soundfont,
            synth: tokio::sync::OnceCell::new(),
            turn: tokio::sync::Semaphore::new(1),
            queued: AtomicUsize::new(0),
            kept: Mutex::new(VecDeque::new()),
        }
    }

    /// A place in the queue, unless it is full.
    fn place(&self) -> Option<Place<'_>> {
        let place = Place(&self.queued);
        (self.queued.fetch_add(1, Ordering::AcqRel) <= MAX_WAITING).then_some(place)
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

/// `GET /api/render/{hash}`.
pub async fn midi(State(studio): State<Studio>, Path(hash): Path<String>, headers: HeaderMap) -> Response {
    match rendered(&studio, hash).await {
        Ok((_, wav)) => respond(&wav, &headers),
        Err(response) => response,
    }
}

/// `GET /api/render/{hash}/peaks?buckets=N`: the render's peaks and RMS, as `/api/peaks`
/// gives a WAV's (A/B levels a MIDI take by it).
pub async fn peaks(
    State(studio): State<Studio>,
    Path(hash): Path<String>,
    Query(query): Query<super::media::PeaksQuery>,
) -> Response {
    let buckets = match super::media::buckets(&query) {
        Ok(buckets) => buckets,
        Err(reason) => return super::refused(reason),
    };
    let (key, wav) = match rendered(&studio, hash).await {
        Ok(rendered) => rendered,
        Err(response) => return response,
    };
    let key = format!("render-peaks:{key}:{buckets}");
    if let Some(cached) = studio.drawings.get(&key) {
        return Json(&*cached).into_response();
    }
    let size = wav.len() as u64;
    match blocking(move || {
        super::media::outline(std::io::Cursor::new(&wav[..]), size, buckets).map_err(|e| e.to_string())
    })
    .await
    {
        Ok(value) => {
            let value = Arc::new(value);
            studio.drawings.put(key, value.clone());
            Json(&*value).into_response()
        }
        Err(response) => response,
    }
}

/// A MIDI artifact rendered at the timeline's tempo map (kept, or rendered in its turn), and
/// the key it is kept under.
async fn rendered(studio: &Studio, hash: String) -> Result<(String, Arc<Vec<u8>>), Response> {
    let object = inspect(&studio.backends, hash).await?;
    // The timeline's tempo map, so the artifact sounds as it would placed on it.
    let changes = studio
        .backends
        .send(pb::TimelineQueryRequest::default(), std::time::Duration::from_secs(10))
        .await
        .map_err(|error| call_failure(&error))?
        .tempo_map;
    let key = format!("{}:{changes:?}", object.hash);
    let renderer = studio.renderer.clone();
    if let Some(wav) = renderer.get(&key) {
        return Ok((key, wav));
    }
    let Some(_place) = renderer.place() else {
        let mut busy = failure(
            StatusCode::SERVICE_UNAVAILABLE,
            pb::ErrorCode::Unavailable,
            &format!("the renderer is busy: one render runs and {MAX_WAITING} wait; try again shortly"),
        );
        busy.headers_mut().insert(
            axum::http::header::RETRY_AFTER,
            axum::http::HeaderValue::from_static("2"),
        );
        return Err(busy);
    };
    let Ok(_turn) = renderer.turn.acquire().await else {
        return Err(failure(
            StatusCode::SERVICE_UNAVAILABLE,
            pb::ErrorCode::Unavailable,
            "shutting down",
        ));
    };
    // Rendered by the request this one waited behind?
    if let Some(wav) = renderer.get(&key) {
        return Ok((key, wav));
    }
    let bytes = super::media::midi_file(studio, &object).await?;
    let synth = renderer
        .synth()
        .await
        .map_err(|error| failure(StatusCode::INTERNAL_SERVER_ERROR, pb::ErrorCode::Internal, &error))?;
    let wav = blocking(move || {
        let song = parse_midi(&bytes).map_err(|e| e.to_string())?;
        let map = TempoMap::from_proto(&changes).map_err(|e| e.to_string())?;
        let samples = synth.render(&song, &map, 0.0, SAMPLE_RATE).map_err(|e| e.to_string())?;
        wav16(&samples)
    })
    .await?;
    let wav = Arc::new(wav);
    renderer.keep(key.clone(), wav.clone());
    Ok((key, wav))
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
fn respond(wav: &[u8], headers: &HeaderMap) -> Response {
    match Span::of(headers, wav.len() as u64) {
        Ok(span) => {
            let bytes = wav[span.start as usize..(span.start + span.length) as usize].to_vec();
            span.respond(Body::from(bytes), "audio/wav", "private, no-cache")
        }
        Err(unsatisfiable) => unsatisfiable.into_response(),
    }
}
