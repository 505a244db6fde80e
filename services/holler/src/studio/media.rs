//! What the page draws regions with, computed on the gateway (the browser parses no MIDI
//! and decodes no WAV to draw them):
//!
//! - `GET /api/notes/{hash}`: a MIDI file's notes as JSON `{length_beats, notes: [{pitch,
//!   start_beats, duration_beats, velocity, channel}]}`, at most [`MAX_NOTES`] (then
//!   `truncated: true`).
//! - `GET /api/peaks/{hash}?buckets=N`: a WAV's outline, `{frames, sample_rate, peaks:
//!   [[min, max], …], rms}` with N ≤ [`MAX_BUCKETS`] buckets (default 1,024); `rms` over
//!   every sample, for playing two takes at the same loudness.
//!
//! Both parse with Chaosgarden's checked readers, so a hostile file meets the same limits
//! as a region (MIDI ≤ 4 MiB and 500,000 events; WAV ≤ 10 minutes, rates and channels
//! bounded, header checked against the file's size) and is refused with 400. Results are
//! kept by hash (content never changes under one) in a small bounded cache.

use std::collections::{HashMap, VecDeque};
use std::io::Read;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chaosgarden::media::{MAX_MIDI_BYTES, MediaError, WavFile, parse_midi};
use hooteproto::v1 as pb;
use serde_json::{Value, json};

use super::cas::inspect;
use super::{Studio, failure, http_status, panicked, read_cas, refused};
use crate::backends::Backends;

/// Notes returned at most for one file.
pub const MAX_NOTES: usize = 20_000;
/// Buckets a peaks request may ask for.
pub const MAX_BUCKETS: usize = 8_192;
const DEFAULT_BUCKETS: usize = 1_024;
/// Results kept (notes and peaks together); the oldest goes first.
const CACHED: usize = 256;

/// Computed drawings by (kind, hash, buckets).
#[derive(Default)]
pub struct Drawings {
    entries: Mutex<Entries>,
}

#[derive(Default)]
struct Entries {
    by_key: HashMap<String, Arc<Value>>,
    /// Keys, oldest first.
    order: VecDeque<String>,
}

impl Drawings {
    pub(super) fn get(&self, key: &str) -> Option<Arc<Value>> {
        self.entries.lock().ok()?.by_key.get(key).cloned()
    }

    pub(super) fn put(&self, key: String, value: Arc<Value>) {
        if let Ok(mut entries) = self.entries.lock() {
            let Entries { by_key, order } = &mut *entries;
            if by_key.insert(key.clone(), value).is_none() {
                order.push_back(key);
            }
            while order.len() > CACHED {
                if let Some(old) = order.pop_front() {
                    by_key.remove(&old);
                }
            }
        }
    }
}

/// A MIDI file's bytes, once its size is within what Chaosgarden reads.
pub(super) async fn midi_file(studio: &Studio, object: &pb::CasObject) -> Result<Vec<u8>, Response> {
    if object.size > MAX_MIDI_BYTES {
        return Err(refused(format!(
            "{} is {} bytes; a MIDI file is read up to {MAX_MIDI_BYTES}",
            object.hash, object.size
        )));
    }
    if let Some(cas) = studio.local_cas.clone() {
        let hash = object.hash.clone();
        return read_cas(move || cas.read(&::cas::Hash::parse(&hash)?, MAX_MIDI_BYTES, true)).await;
    }
    read_whole(studio.backends.clone(), object).await.map_err(read_failure)
}

/// A read of an object's bytes that failed: the store's own error (a damaged object is
/// DATA_LOSS, as every service says), a chunk Hootenanny refused (its status), or else
/// UNAVAILABLE.
fn read_failure(error: std::io::Error) -> Response {
    match ::cas::status::of_store_failure(error) {
        Ok(status) => failure(http_status(status.code), status.code, &status.message),
        Err(error) => failure(
            StatusCode::SERVICE_UNAVAILABLE,
            pb::ErrorCode::Unavailable,
            &format!("reading the object failed: {error}"),
        ),
    }
}

/// `GET /api/notes/{hash}`.
pub async fn notes(State(studio): State<Studio>, Path(hash): Path<String>) -> Response {
    let object = match inspect(&studio.backends, hash).await {
        Ok(object) => object,
        Err(response) => return response,
    };
    let key = format!("notes:{}", object.hash);
    if let Some(cached) = studio.drawings.get(&key) {
        return Json(&*cached).into_response();
    }
    let bytes = match midi_file(&studio, &object).await {
        Ok(bytes) => bytes,
        Err(response) => return response,
    };
    let song = match parse_midi(&bytes) {
        Ok(song) => song,
        Err(error) => return refused(error),
    };
    let value = Arc::new(notes_of(&song));
    studio.drawings.put(key, value.clone());
    Json(&*value).into_response()
}

/// Pairs each note-on with the next note-off (or zero-velocity note-on) of its key and channel.
fn notes_of(song: &chaosgarden::media::MidiSong) -> Value {
    let mut open: HashMap<(u8, u8), (f64, u8)> = HashMap::new();
    let mut notes = Vec::new();
    let mut truncated = false;
    for event in &song.events {
        let [status, key, velocity] = event.bytes;
        let channel = status & 0x0F;
        let on = status & 0xF0 == 0x90 && velocity > 0;
        let off = status & 0xF0 == 0x80 || (status & 0xF0 == 0x90 && velocity == 0);
        if on {
            open.insert((channel, key), (event.beats, velocity));
        } else if off && let Some((start, velocity)) = open.remove(&(channel, key)) {
            if notes.len() == MAX_NOTES {
                truncated = true;
                break;
            }
            notes.push((start, key, channel, event.beats - start, velocity));
        }
    }
    // In the order they start (they were found in the order they end).
    notes.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    let notes: Vec<Value> = notes
        .into_iter()
        .map(|(start, pitch, channel, duration, velocity)| {
            json!({
                "pitch": pitch,
                "start_beats": start,
                "duration_beats": duration,
                "velocity": velocity,
                "channel": channel,
            })
        })
        .collect();
    json!({"length_beats": song.length_beats, "notes": notes, "truncated": truncated})
}

/// `?buckets=N`.
#[derive(serde::Deserialize)]
pub struct PeaksQuery {
    buckets: Option<usize>,
}

/// `GET /api/peaks/{hash}`.
pub async fn peaks(
    State(studio): State<Studio>,
    Path(hash): Path<String>,
    Query(query): Query<PeaksQuery>,
) -> Response {
    let buckets = match buckets(&query) {
        Ok(buckets) => buckets,
        Err(reason) => return refused(reason),
    };
    let object = match inspect(&studio.backends, hash).await {
        Ok(object) => object,
        Err(response) => return response,
    };
    let key = format!("peaks:{}:{buckets}", object.hash);
    if let Some(cached) = studio.drawings.get(&key) {
        return Json(&*cached).into_response();
    }
    let size = object.size;
    // hound reads synchronously, so on a blocking thread: from the CAS itself when this
    // process has it, else each chunk fetched from Hootenanny as the decoder needs it.
    let source = match &studio.local_cas {
        // Opened apart from the decoding: the store's failures are not the file's fault.
        Some(cas) => {
            let (cas, hash) = (cas.clone(), object.hash.clone());
            match read_cas(move || cas.open_reader(&::cas::Hash::parse(&hash)?, true)).await {
                Ok(reader) => Source::Local(Box::new(reader)),
                Err(response) => return response,
            }
        }
        None => Source::Remote(BlockingCasReader::new(
            studio.backends.clone(),
            &object,
            tokio::runtime::Handle::current(),
        )),
    };
    let drawn = tokio::task::spawn_blocking(move || match source {
        Source::Local(reader) => outline(reader, size, buckets),
        Source::Remote(reader) => outline(reader, size, buckets),
    })
    .await;
    let value = match drawn {
        Ok(Ok(value)) => Arc::new(value),
        // The bytes did not come (or did not match the object's name): not the file's fault.
        Ok(Err(MediaError::Read(error))) => return read_failure(error),
        Ok(Err(bad)) => return refused(bad),
        Err(error) => return panicked(error),
    };
    studio.drawings.put(key, value.clone());
    Json(&*value).into_response()
}

/// The buckets asked for, within bounds.
pub(super) fn buckets(query: &PeaksQuery) -> Result<usize, String> {
    let buckets = query.buckets.unwrap_or(DEFAULT_BUCKETS);
    if !(1..=MAX_BUCKETS).contains(&buckets) {
        return Err(format!("buckets must be 1 to {MAX_BUCKETS}"));
    }
    Ok(buckets)
}

/// Where a waveform's bytes come from.
enum Source {
    Local(Box<::cas::ObjectReader>),
    Remote(BlockingCasReader),
}

/// Objects up to this size are read to their end when they do not decode, so that damage in
/// the store is told from a bad file; a larger one is refused without being read whole.
const CHECK_BEFORE_REFUSING: u64 = 64 << 20;

/// Peaks and RMS of a WAV read from `reader`, as the page draws them. The reader is read to
/// its end, so a verifying reader checks the whole object before anything is drawn from it,
/// and before a file that does not decode is blamed on the file.
pub(super) fn outline(
    mut reader: impl std::io::Read,
    size: u64,
    buckets: usize,
) -> Result<serde_json::Value, MediaError> {
    let drawn = WavFile::open(&mut reader, size).and_then(|wav| {
        let (frames, sample_rate) = (wav.frames(), wav.sample_rate());
        let (outline, _) = wav.peaks(buckets)?;
        Ok(json!({"frames": frames, "sample_rate": sample_rate, "peaks": outline.peaks, "rms": outline.rms}))
    });
    let checked = match &drawn {
        Err(MediaError::Read(_)) => return drawn,
        Err(_) if size > CHECK_BEFORE_REFUSING => return drawn,
        _ => std::io::copy(&mut reader, &mut std::io::sink()),
    };
    checked.map_err(MediaError::Read)?;
    drawn
}

/// An object read front to back as a `Read`, for a blocking thread: the chunks come from
/// [`super::cas::chunks`] (fetched ahead while the reader decodes), and reaching the end
/// checks them against the object's name, as a verifying local reader does (Hootenanny's
/// range reads do not).
struct BlockingCasReader {
    chunks: std::pin::Pin<Box<dyn futures_util::Stream<Item = std::io::Result<axum::body::Bytes>> + Send>>,
    handle: tokio::runtime::Handle,
    chunk: axum::body::Bytes,
    verifier: Option<Box<::cas::Verifier>>,
}

impl BlockingCasReader {
    fn new(backends: Arc<Backends>, object: &pb::CasObject, handle: tokio::runtime::Handle) -> Self {
        Self {
            chunks: Box::pin(super::cas::chunks(backends, object.hash.clone(), 0, object.size)),
            handle,
            chunk: axum::body::Bytes::new(),
            verifier: ::cas::Hash::parse(&object.hash)
                .ok()
                .map(|hash| Box::new(::cas::Verifier::new(hash))),
        }
    }
}

impl Read for BlockingCasReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use futures_util::StreamExt as _;
        if self.chunk.is_empty() && !buf.is_empty() {
            match self.handle.block_on(self.chunks.next()) {
                Some(chunk) => {
                    self.chunk = chunk?;
                    if let Some(verifier) = &mut self.verifier {
                        verifier.update(&self.chunk);
                    }
                }
                None => {
                    if let Some(verifier) = &self.verifier {
                        verifier.finish()?;
                    }
                    return Ok(0);
                }
            }
        }
        let n = buf.len().min(self.chunk.len());
        buf[..n].copy_from_slice(&self.chunk.split_to(n));
        Ok(n)
    }
}

/// A whole object (the caller has bounded its size).
/// Checked against the object's name, since Hootenanny's range reads are not.
pub(super) async fn read_whole(backends: Arc<Backends>, object: &pb::CasObject) -> std::io::Result<Vec<u8>> {
    use futures_util::TryStreamExt as _;
    let mut bytes = Vec::with_capacity(object.size as usize);
    let mut chunks = std::pin::pin!(super::cas::chunks(backends, object.hash.clone(), 0, object.size));
    while let Some(chunk) = chunks.try_next().await? {
        bytes.extend_from_slice(&chunk);
    }
    if let Ok(hash) = ::cas::Hash::parse(&object.hash) {
        let mut verifier = ::cas::Verifier::new(hash);
        verifier.update(&bytes);
        verifier.finish()?;
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn song(events: &[(f64, [u8; 3])]) -> chaosgarden::media::MidiSong {
        chaosgarden::media::MidiSong {
            events: events
                .iter()
                .map(|&(beats, bytes)| chaosgarden::media::MidiEvent { beats, bytes, len: 3 })
                .collect(),
            length_beats: events.last().map_or(0.0, |e| e.0),
        }
    }

    #[test]
    fn notes_pair_on_with_off_per_key_and_channel() {
        let value = notes_of(&song(&[
            (0.0, [0x90, 60, 100]),
            (0.0, [0x91, 60, 80]),
            (1.0, [0x80, 60, 0]),
            (1.5, [0x90, 64, 90]),
            (2.0, [0x91, 60, 0]),
            (2.5, [0x90, 64, 0]),
            // A note-off with no note-on, and a note never ended: neither is drawn.
            (3.0, [0x80, 70, 0]),
            (3.0, [0x90, 72, 90]),
        ]));
        let notes = value["notes"].as_array().expect("notes");
        let summary: Vec<(u64, u64, f64, f64)> = notes
            .iter()
            .map(|n| {
                (
                    n["pitch"].as_u64().unwrap_or(0),
                    n["channel"].as_u64().unwrap_or(0),
                    n["start_beats"].as_f64().unwrap_or(-1.0),
                    n["duration_beats"].as_f64().unwrap_or(-1.0),
                )
            })
            .collect();
        assert_eq!(summary, vec![(60, 0, 0.0, 1.0), (60, 1, 0.0, 2.0), (64, 0, 1.5, 1.0)]);
        assert_eq!(value["truncated"], false);
    }

    #[test]
    fn a_file_with_more_notes_than_the_limit_is_cut_and_says_so() {
        let events: Vec<(f64, [u8; 3])> = (0..MAX_NOTES + 10)
            .flat_map(|i| [(i as f64, [0x90, 60, 100]), (i as f64 + 0.5, [0x80, 60, 0])])
            .collect();
        let value = notes_of(&song(&events));
        assert_eq!(value["notes"].as_array().map(Vec::len), Some(MAX_NOTES));
        assert_eq!(value["truncated"], true);
    }
}
