//! The timeline as the control side keeps it: markers, regions, the tempo map and the
//! loop, saved to disk after every change (so a restart loses nothing), and turned into an
//! [`Arrangement`] (audio rendered ahead, cues sorted) for the real-time side.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use hooteproto::Status;
use hooteproto::v1::{self as pb, TimelineEventType};
use prost::Message as _;

use crate::engine::playhead::{Arrangement, Cue, CueKind, Placed};
use crate::media::{self, Media, MediaError, Synth};
use crate::time::{MAX_BEATS, Meter, TempoMap, TimeError};

mod arrange;

/// Markers a timeline may hold.
pub const MAX_MARKERS: usize = 10_000;
/// Regions a timeline may hold.
pub const MAX_REGIONS: usize = 1_024;
/// Loudest gain accepted, in dB.
pub const MAX_GAIN_DB: f64 = 24.0;
/// Largest CAS object loaded as a region.
pub const MAX_OBJECT_BYTES: u64 = 512 << 20;

fn time_status(error: TimeError) -> Status {
    Status::invalid_argument(error.to_string())
}

fn media_status(hash: &str, error: MediaError) -> Status {
    match error {
        MediaError::Read(e) => cas::status::of_store_failure(e).unwrap_or_else(|e| {
            Status::new(
                hooteproto::v1::ErrorCode::DataLoss,
                format!("reading CAS object {hash}: {e}"),
            )
        }),
        error => Status::invalid_argument(format!("CAS object {hash}: {error}")),
    }
}

/// Inserts `item` after everything at or before its beat, so the list stays in beat order and
/// items on the same beat keep the order they were added in.
fn insert_in_beat_order<T>(items: &mut Vec<T>, item: T, beats: impl Fn(&T) -> f64) {
    let position = beats(&item);
    let at = items.partition_point(|other| beats(other) <= position);
    items.insert(at, item);
}

fn check_beats(field: &str, beats: f64) -> Result<(), Status> {
    if beats.is_finite() && (0.0..=MAX_BEATS).contains(&beats) {
        Ok(())
    } else {
        Err(Status::invalid_argument(format!(
            "{field} must be between 0 and {MAX_BEATS} beats, not {beats}"
        )))
    }
}

/// A CAS error as a canonical status (the mapping every service shares).
pub use cas::status::status as cas_status;

/// Markers, regions, tempo and loop.
#[derive(Debug, Default)]
pub struct Timeline {
    /// By position, then by creation.
    pub markers: Vec<pb::TimelineMarker>,
    /// By position, then by creation.
    pub regions: Vec<pb::TimelineRegion>,
    /// The tempo map.
    pub map: TempoMap,
    /// The loop in beats, when on.
    pub loop_range: Option<(f64, f64)>,
    next_id: u64,
}

impl Timeline {
    fn next_id(&mut self, kind: &str) -> String {
        self.next_id += 1;
        format!("{kind}-{}", self.next_id)
    }

    /// The region sounding at `beats` (the latest-starting one), else the last one before it.
    pub fn region_at(&self, beats: f64) -> Option<&pb::TimelineRegion> {
        let mut before = self.regions.iter().rev().filter(|r| r.position_beats <= beats);
        before
            .clone()
            .find(|r| r.position_beats + r.duration_beats > beats)
            .or_else(|| before.next())
    }

    /// The first region starting at or after `beats`.
    pub fn region_from(&self, beats: f64) -> Option<&pb::TimelineRegion> {
        self.regions.iter().find(|r| r.position_beats >= beats)
    }

    /// The next section boundary after `beats`: the next section_change marker, else the
    /// next bar line after it.
    pub fn next_boundary(&self, beats: f64) -> f64 {
        self.markers
            .iter()
            .find(|m| m.event_type == TimelineEventType::SectionChange as i32 && m.position_beats > beats)
            .map(|m| m.position_beats)
            .unwrap_or_else(|| self.map.next_bar(beats.next_up()))
    }

    /// The wire form, also the file format.
    pub fn to_proto(&self, from: f64, to: f64) -> pb::TimelineQueryReply {
        let to = if to <= 0.0 { f64::INFINITY } else { to };
        pb::TimelineQueryReply {
            markers: self
                .markers
                .iter()
                .filter(|m| m.position_beats >= from && m.position_beats < to)
                .cloned()
                .collect(),
            transport: Some(pb::TransportState {
                loop_range: self.loop_range.map(|(from, to)| pb::LoopRange {
                    enabled: true,
                    from_beats: from,
                    to_beats: to,
                }),
                ..Default::default()
            }),
            regions: self
                .regions
                .iter()
                .filter(|r| r.position_beats < to && r.position_beats + r.duration_beats.max(0.0) >= from)
                .cloned()
                .collect(),
            tempo_map: self.map.to_proto(),
        }
    }
}

/// What an [`Editor`] needs besides the CAS.
pub struct EditorConfig {
    /// The SoundFont MIDI regions render through (None: MIDI is not heard).
    pub synth: Option<Synth>,
    /// Where the timeline is saved (None: nowhere).
    pub path: Option<PathBuf>,
    /// Whether MIDI regions also go out as MIDI cues.
    pub midi_cues: bool,
    /// The rate the engine plays at: what decoded audio is kept at.
    pub sample_rate: u32,
    /// The most bytes decoded media may hold ([`media::DEFAULT_BUDGET`]).
    pub media_budget: u64,
}

impl EditorConfig {
    /// A timeline saved nowhere, at 48 kHz, with the default budget and no SoundFont.
    pub fn new() -> Self {
        Self {
            synth: None,
            path: None,
            midi_cues: false,
            sample_rate: 48_000,
            media_budget: media::DEFAULT_BUDGET,
        }
    }
}

impl Default for EditorConfig {
    fn default() -> Self {
        Self::new()
    }
}

/// A region's key into the rendered-MIDI cache: object, rate, position, tempo map.
type MidiKey = (String, u32, u64, u64);

/// The timeline plus what it takes to hear it: the CAS, decoded media, rendered MIDI.
///
/// Memory is budgeted: decoded objects, their resampled copies and rendered MIDI (and a
/// render's own audio, while it runs) together stay within the media budget; an edit that
/// would exceed it is refused with RESOURCE_EXHAUSTED. Only the playing rate is cached;
/// what a region removal leaves unused is dropped at once.
pub struct Editor {
    /// The timeline.
    pub timeline: Timeline,
    cas: cas::Cas,
    synth: Option<Synth>,
    path: Option<PathBuf>,
    midi_cues: bool,
    sample_rate: u32,
    budget: u64,
    media: HashMap<String, Media>,
    audio: HashMap<String, Arc<Vec<f32>>>,
    midi: HashMap<MidiKey, Arc<Vec<f32>>>,
    /// Bytes running renders hold (see [`Reservation`]).
    rendering: Arc<AtomicU64>,
    /// Whether decoded media was dropped since [`Editor::take_freed`] was last called.
    freed: bool,
}

/// Bytes a running render holds, counted against the media budget until this is dropped.
#[must_use = "the render's memory is counted until the reservation is dropped"]
pub struct Reservation {
    bytes: u64,
    held: Arc<AtomicU64>,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.held.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1u64 << 20) as f64)
}

impl Editor {
    /// Opens (or starts) the timeline saved at `path`, loading its regions from the CAS, at
    /// 48 kHz with the default media budget.
    pub fn open(cas: cas::Cas, synth: Option<Synth>, path: Option<PathBuf>, midi_cues: bool) -> anyhow::Result<Self> {
        Self::open_with(
            cas,
            EditorConfig {
                synth,
                path,
                midi_cues,
                ..EditorConfig::new()
            },
        )
    }

    /// Opens (or starts) the timeline saved at `config.path`, loading its regions from the
    /// CAS. Regions that cannot be loaded (gone from the CAS, or past the budget) stay on
    /// the timeline, silent, and are logged.
    pub fn open_with(cas: cas::Cas, config: EditorConfig) -> anyhow::Result<Self> {
        let mut editor = Self {
            timeline: Timeline::default(),
            cas,
            synth: config.synth,
            path: config.path,
            midi_cues: config.midi_cues,
            sample_rate: config.sample_rate,
            budget: config.media_budget,
            media: HashMap::new(),
            audio: HashMap::new(),
            midi: HashMap::new(),
            rendering: Arc::new(AtomicU64::new(0)),
            freed: false,
        };
        if let Some(path) = editor.path.clone()
            && path.exists()
        {
            let bytes = std::fs::read(&path)?;
            let saved = pb::TimelineQueryReply::decode(bytes.as_slice())
                .map_err(|e| anyhow::anyhow!("{} is not a saved timeline: {e}", path.display()))?;
            editor.timeline.map = TempoMap::from_proto(&saved.tempo_map)?;
            editor.timeline.loop_range = saved
                .transport
                .and_then(|t| t.loop_range)
                .filter(|l| l.enabled)
                .map(|l| (l.from_beats, l.to_beats));
            let ids = saved
                .markers
                .iter()
                .map(|m| &m.marker_id)
                .chain(saved.regions.iter().map(|r| &r.region_id));
            editor.timeline.next_id = ids
                .filter_map(|id| id.rsplit('-').next().and_then(|n| n.parse::<u64>().ok()))
                .max()
                .unwrap_or(0);
            editor.timeline.markers = saved.markers;
            for region in saved.regions {
                if let Err(status) = editor.admit(&region.cas_hash, region.position_beats) {
                    tracing::error!(region = %region.region_id, %status, "a saved region cannot be loaded; it stays on the timeline but is silent");
                }
                editor.timeline.regions.push(region);
            }
            tracing::info!(
                path = %path.display(),
                markers = editor.timeline.markers.len(),
                regions = editor.timeline.regions.len(),
                media = %mib(editor.media_bytes()),
                "timeline restored"
            );
        }
        Ok(editor)
    }

    /// The CAS.
    pub fn cas(&self) -> &cas::Cas {
        &self.cas
    }

    /// The media budget, in bytes.
    pub fn media_budget(&self) -> u64 {
        self.budget
    }

    /// Bytes the decoded media held now take: decoded objects, resampled copies and
    /// rendered MIDI (shared buffers counted once).
    pub fn media_bytes(&self) -> u64 {
        let mut seen = std::collections::HashSet::new();
        let mut total = 0;
        let buffers = self
            .media
            .values()
            .filter_map(|m| match m {
                Media::Audio(audio) => Some(&audio.samples),
                Media::Midi(_) => None,
            })
            .chain(self.audio.values())
            .chain(self.midi.values());
        for buffer in buffers {
            if seen.insert(Arc::as_ptr(buffer)) {
                total += (buffer.len() * std::mem::size_of::<f32>()) as u64;
            }
        }
        total
            + self
                .media
                .values()
                .filter(|m| matches!(m, Media::Midi(_)))
                .map(Media::bytes)
                .sum::<u64>()
    }

    fn save(&self) -> Result<(), Status> {
        let Some(path) = &self.path else { return Ok(()) };
        let bytes = self.timeline.to_proto(0.0, 0.0).encode_to_vec();
        write_atomically(path, &bytes)
            .map_err(|e| Status::internal(format!("saving the timeline to {}: {e}", path.display())))
    }

    /// Bytes the timeline's media take once arranged at the playing rate under `map`: each
    /// object decoded once, each WAV resampled once (shared when the rates match), each MIDI
    /// region rendered once per position, and, with MIDI out, a cue per MIDI message.
    /// `extra` is a region (object, position) not on the timeline yet.
    fn footprint(&self, map: &TempoMap, extra: Option<(&str, f64)>) -> u64 {
        let mut objects = std::collections::HashSet::new();
        let mut renders = std::collections::HashSet::new();
        let mut total = 0;
        let regions = self
            .timeline
            .regions
            .iter()
            .map(|r| (r.cas_hash.as_str(), r.position_beats));
        for (hash, position) in regions.chain(extra) {
            let Some(media) = self.media.get(hash) else { continue };
            if objects.insert(hash) {
                total += media.bytes();
                if let Media::Audio(audio) = media
                    && audio.sample_rate != self.sample_rate
                {
                    total += media::resampled_frames(audio.frames(), audio.sample_rate, self.sample_rate)
                        * media::FRAME_BYTES;
                }
            }
            if let Media::Midi(song) = media {
                if self.synth.is_some() && renders.insert((hash, position.to_bits())) {
                    total += media::midi_render_frames(song, map, position, self.sample_rate) * media::FRAME_BYTES;
                }
                if self.midi_cues {
                    total += (song.events.len() * std::mem::size_of::<Cue>()) as u64;
                }
            }
        }
        total
    }

    /// Refuses with RESOURCE_EXHAUSTED when `needed` bytes, and what running renders hold,
    /// exceed the budget.
    fn within_budget(&self, needed: u64, what: &str) -> Result<(), Status> {
        let needed = needed + self.rendering.load(Ordering::Acquire);
        if needed <= self.budget {
            return Ok(());
        }
        Err(Status::resource_exhausted(format!(
            "{what} would hold {} of decoded audio, over the media budget of {} (--media-budget, CHAOSGARDEN_MEDIA_BUDGET); remove regions to make room",
            mib(needed),
            mib(self.budget)
        )))
    }

    /// Drops decoded objects no region uses any more.
    fn evict_unused(&mut self) {
        let before = self.cached();
        let used: std::collections::HashSet<&str> = self.timeline.regions.iter().map(|r| r.cas_hash.as_str()).collect();
        self.media.retain(|hash, _| used.contains(hash.as_str()));
        self.audio.retain(|hash, _| used.contains(hash.as_str()));
        self.midi.retain(|key, _| used.contains(key.0.as_str()));
        self.freed |= self.cached() < before;
    }

    fn cached(&self) -> usize {
        self.media.len() + self.audio.len() + self.midi.len()
    }

    /// Whether decoded media was dropped since the last call (so the allocator may have
    /// memory to give back; see [`media::return_freed_memory`]).
    pub fn take_freed(&mut self) -> bool {
        std::mem::take(&mut self.freed)
    }

    /// Loads (if need be) the object for a region at `position` and checks that the
    /// timeline with it stays within the budget. On failure nothing new stays loaded.
    fn admit(&mut self, hash: &str, position: f64) -> Result<Media, Status> {
        let result = self.load(hash).and_then(|media| {
            let needed = self.footprint(&self.timeline.map, Some((hash, position)));
            self.within_budget(needed, "adding this region").map(|_| media)
        });
        if result.is_err() {
            self.evict_unused();
        }
        result
    }

    /// Decodes an object, streaming it from the CAS: a WAV's header is checked, and what
    /// decoding and resampling it will take is checked against the budget, before its
    /// samples are read.
    fn load(&mut self, hash: &str) -> Result<Media, Status> {
        use std::io::Read as _;
        if let Some(media) = self.media.get(hash) {
            return Ok(media.clone());
        }
        let parsed = cas::Hash::parse(hash).map_err(cas_status)?;
        let reader = self.cas.open_reader(&parsed, true).map_err(cas_status)?;
        let size = reader.size();
        let read_error = |e: std::io::Error| {
            Status::new(
                hooteproto::v1::ErrorCode::DataLoss,
                format!("reading CAS object {hash}: {e}"),
            )
        };
        let mut input = std::io::BufReader::with_capacity(64 << 10, reader);
        let mut head = Vec::with_capacity(media::SNIFF_BYTES);
        (&mut input)
            .take(media::SNIFF_BYTES as u64)
            .read_to_end(&mut head)
            .map_err(read_error)?;
        let media = match media::sniff(&head).map_err(|e| media_status(hash, e))? {
            media::Format::Midi => {
                if size > media::MAX_MIDI_BYTES {
                    return Err(media_status(hash, MediaError::MidiTooLarge(size)));
                }
                let mut bytes = Vec::with_capacity(size as usize);
                bytes.extend_from_slice(&head);
                input.read_to_end(&mut bytes).map_err(read_error)?;
                Media::Midi(Arc::new(media::parse_midi(&bytes).map_err(|e| media_status(hash, e))?))
            }
            media::Format::Wav => {
                let wav = media::WavFile::open(std::io::Cursor::new(head).chain(input), size)
                    .map_err(|e| media_status(hash, e))?;
                let resampled = if wav.sample_rate() == self.sample_rate {
                    0
                } else {
                    media::resampled_frames(wav.frames(), wav.sample_rate(), self.sample_rate) * media::FRAME_BYTES
                };
                let needed = self.footprint(&self.timeline.map, None) + wav.decoded_bytes() + resampled;
                self.within_budget(needed, "adding this WAV")?;
                let (audio, rest) = wav.decode().map_err(|e| media_status(hash, e))?;
                // Read what follows the samples too, so the CAS checks the object's hash.
                std::io::copy(&mut rest.into_inner().1, &mut std::io::sink()).map_err(read_error)?;
                Media::Audio(Arc::new(audio))
            }
        };
        self.media.insert(hash.to_string(), media.clone());
        Ok(media)
    }

    fn duration_beats(&self, media: &Media, position: f64) -> f64 {
        match media {
            Media::Midi(song) => song.length_beats,
            Media::Audio(audio) => {
                let seconds = audio.frames() as f64 / audio.sample_rate as f64;
                self.timeline
                    .map
                    .beats_at(self.timeline.map.seconds_at(position) + seconds)
                    - position
            }
        }
    }
    /// Adds a marker.
    pub fn add_marker(&mut self, request: pb::TimelineAddMarkerRequest) -> Result<pb::TimelineMarker, Status> {
        let kind = TimelineEventType::try_from(request.event_type)
            .ok()
            .filter(|k| *k != TimelineEventType::Unspecified)
            .ok_or_else(|| {
                Status::invalid_argument(format!(
                    "event_type {} is not a marker type (section_change, beat_marker, cue_point, generate_transition)",
                    request.event_type
                ))
            })?;
        check_beats("position_beats", request.position_beats)?;
        if self.timeline.markers.len() >= MAX_MARKERS {
            return Err(Status::resource_exhausted(format!(
                "the timeline holds at most {MAX_MARKERS} markers"
            )));
        }
        if let Some(metadata) = &request.metadata {
            let json = metadata
                .to_json()
                .map_err(|e| Status::invalid_argument(format!("metadata is malformed: {e}")))?;
            match json.get("script_hash") {
                None => {}
                Some(serde_json::Value::String(hash)) if !hash.is_empty() => {}
                Some(other) => {
                    return Err(Status::invalid_argument(format!(
                        "metadata.script_hash must be a script's hash (a string), not {other}"
                    )));
                }
            }
        }
        let marker = pb::TimelineMarker {
            marker_id: self.timeline.next_id("marker"),
            event_type: kind as i32,
            position_beats: request.position_beats,
            metadata: request.metadata,
        };
        insert_in_beat_order(&mut self.timeline.markers, marker.clone(), |m| m.position_beats);
        self.save()?;
        Ok(marker)
    }

    /// Places a CAS object; `source_job_id` names the job that made it.
    pub fn add_region(
        &mut self,
        hash: &str,
        position_beats: f64,
        gain_db: f64,
        source_job_id: &str,
    ) -> Result<pb::TimelineRegion, Status> {
        check_beats("position_beats", position_beats)?;
        if !gain_db.is_finite() || gain_db > MAX_GAIN_DB {
            return Err(Status::invalid_argument(format!(
                "gain_db must be a number up to +{MAX_GAIN_DB}, not {gain_db}"
            )));
        }
        if self.timeline.regions.len() >= MAX_REGIONS {
            return Err(Status::resource_exhausted(format!(
                "the timeline holds at most {MAX_REGIONS} regions"
            )));
        }
        let hash = self.cas.resolve(hash).map_err(cas_status)?.to_string();
        let media = self.admit(&hash, position_beats)?;
        if matches!(media, Media::Midi(_)) && self.synth.is_none() && !self.midi_cues {
            self.evict_unused();
            return Err(Status::failed_precondition(
                "this is a MIDI file, but this timeline has no synthesizer to render it and no MIDI output to send it to (EditorConfig::synth or midi_cues)",
            ));
        }
        let region = pb::TimelineRegion {
            region_id: self.timeline.next_id("region"),
            cas_hash: hash,
            position_beats,
            gain_db,
            kind: media.kind() as i32,
            duration_beats: self.duration_beats(&media, position_beats),
            source_job_id: source_job_id.to_string(),
        };
        insert_in_beat_order(&mut self.timeline.regions, region.clone(), |r| r.position_beats);
        self.save()?;
        Ok(region)
    }

    /// Removes a marker or region by id.
    pub fn remove(&mut self, id: &str) -> Result<(), Status> {
        let (markers, regions) = (self.timeline.markers.len(), self.timeline.regions.len());
        self.timeline.markers.retain(|m| m.marker_id != id);
        self.timeline.regions.retain(|r| r.region_id != id);
        if markers == self.timeline.markers.len() && regions == self.timeline.regions.len() {
            return Err(Status::not_found(format!("no marker or region {id:?} on the timeline")));
        }
        self.evict_unused();
        self.save()
    }

    /// Moves a marker or region to `position_beats`, keeping its id and everything else; a
    /// region is checked against the media budget at its new place (a MIDI render depends on
    /// where it starts) and an audio region's length in beats follows the tempo there.
    pub fn move_to(&mut self, id: &str, position_beats: f64) -> Result<pb::TimelineMoveReply, Status> {
        check_beats("position_beats", position_beats)?;
        if let Some(at) = self.timeline.markers.iter().position(|m| m.marker_id == id) {
            let mut marker = self.timeline.markers.remove(at);
            marker.position_beats = position_beats;
            insert_in_beat_order(&mut self.timeline.markers, marker.clone(), |m| m.position_beats);
            self.save()?;
            return Ok(pb::TimelineMoveReply {
                marker: Some(marker),
                region: None,
            });
        }
        let at = self
            .timeline
            .regions
            .iter()
            .position(|r| r.region_id == id)
            .ok_or_else(|| Status::not_found(format!("no marker or region {id:?} on the timeline")))?;
        let was = std::mem::replace(&mut self.timeline.regions[at].position_beats, position_beats);
        if let Err(status) = self.within_budget(self.footprint(&self.timeline.map, None), "moving this region") {
            self.timeline.regions[at].position_beats = was;
            return Err(status);
        }
        let mut region = self.timeline.regions.remove(at);
        if let Some(media) = self.media.get(&region.cas_hash) {
            region.duration_beats = self.duration_beats(media, position_beats);
        }
        insert_in_beat_order(&mut self.timeline.regions, region.clone(), |r| r.position_beats);
        self.save()?;
        Ok(pb::TimelineMoveReply {
            marker: None,
            region: Some(region),
        })
    }

    /// Adds, replaces or removes a tempo change.
    pub fn set_tempo(&mut self, change: pb::TempoChange) -> Result<(), Status> {
        let mut map = self.timeline.map.clone();
        if change.tempo_bpm == 0.0 {
            map.remove(change.position_beats).map_err(time_status)?;
        } else {
            let meter = match change.time_signature {
                Some(ts) => Some(Meter::new(ts.numerator, ts.denominator).map_err(time_status)?),
                None => None,
            };
            map.set(change.position_beats, change.tempo_bpm, meter)
                .map_err(time_status)?;
        }
        // MIDI renders last longer at a slower tempo.
        self.within_budget(self.footprint(&map, None), "this tempo change")?;
        self.timeline.map = map;
        // Audio regions keep their length in seconds, so their length in beats follows the tempo.
        let durations: Vec<f64> = self
            .timeline
            .regions
            .iter()
            .map(|r| match self.media.get(&r.cas_hash) {
                Some(media) => self.duration_beats(media, r.position_beats),
                None => r.duration_beats,
            })
            .collect();
        for (region, duration) in self.timeline.regions.iter_mut().zip(durations) {
            region.duration_beats = duration;
        }
        self.save()
    }

    /// Sets or clears the loop.
    pub fn set_loop(&mut self, range: Option<pb::LoopRange>) -> Result<(), Status> {
        self.timeline.loop_range = match range.filter(|l| l.enabled) {
            None => None,
            Some(l) => {
                check_beats("loop_range.from_beats", l.from_beats)?;
                check_beats("loop_range.to_beats", l.to_beats)?;
                if l.to_beats <= l.from_beats {
                    return Err(Status::invalid_argument(format!(
                        "loop_range.to_beats ({}) must be after from_beats ({})",
                        l.to_beats, l.from_beats
                    )));
                }
                Some((l.from_beats, l.to_beats))
            }
        };
        self.save()
    }
}

/// Writes a file so that a crash leaves the old or the new content, never a mix.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}
