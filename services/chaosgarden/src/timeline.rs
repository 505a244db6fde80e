//! The timeline as the control side keeps it: markers, regions, the tempo map and the
//! loop, saved to disk after every change (so a restart loses nothing), and turned into an
//! [`Arrangement`] (audio rendered ahead, cues sorted) for the real-time side.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hooteproto::Status;
use hooteproto::v1::{self as pb, TimelineEventType};
use prost::Message as _;

use crate::engine::playhead::{Arrangement, Cue, CueKind, Placed};
use crate::media::{self, Media, MediaError, Synth};
use crate::time::{MAX_BEATS, Meter, TempoMap, TimeError};

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
    Status::invalid_argument(format!("CAS object {hash}: {error}"))
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

/// A CAS error as a canonical status.
pub fn cas_status(error: cas::CasError) -> Status {
    use hooteproto::v1::ErrorCode;
    let code = match error.kind() {
        cas::ErrorKind::InvalidArgument => ErrorCode::InvalidArgument,
        cas::ErrorKind::NotFound => ErrorCode::NotFound,
        cas::ErrorKind::DataLoss => ErrorCode::DataLoss,
        cas::ErrorKind::ResourceExhausted => ErrorCode::ResourceExhausted,
        cas::ErrorKind::Io => ErrorCode::Internal,
    };
    Status::new(code, error.to_string())
}

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

/// The timeline plus what it takes to hear it: the CAS, decoded media, rendered MIDI.
pub struct Editor {
    /// The timeline.
    pub timeline: Timeline,
    cas: cas::Cas,
    synth: Option<Synth>,
    path: Option<PathBuf>,
    midi_cues: bool,
    media: HashMap<String, Media>,
    audio: HashMap<(String, u32), Arc<Vec<f32>>>,
    midi: HashMap<(String, u32, u64, u64), Arc<Vec<f32>>>,
}

impl Editor {
    /// Opens (or starts) the timeline saved at `path`, loading its regions from the CAS.
    pub fn open(cas: cas::Cas, synth: Option<Synth>, path: Option<PathBuf>, midi_cues: bool) -> anyhow::Result<Self> {
        let mut editor = Self {
            timeline: Timeline::default(),
            cas,
            synth,
            path,
            midi_cues,
            media: HashMap::new(),
            audio: HashMap::new(),
            midi: HashMap::new(),
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
            for region in &saved.regions {
                if let Err(status) = editor.load(&region.cas_hash) {
                    tracing::error!(region = %region.region_id, %status, "a saved region cannot be loaded; it stays on the timeline but is silent");
                }
            }
            editor.timeline.regions = saved.regions;
            tracing::info!(
                path = %path.display(),
                markers = editor.timeline.markers.len(),
                regions = editor.timeline.regions.len(),
                "timeline restored"
            );
        }
        Ok(editor)
    }

    /// The CAS.
    pub fn cas(&self) -> &cas::Cas {
        &self.cas
    }

    fn save(&self) -> Result<(), Status> {
        let Some(path) = &self.path else { return Ok(()) };
        let bytes = self.timeline.to_proto(0.0, 0.0).encode_to_vec();
        write_atomically(path, &bytes)
            .map_err(|e| Status::internal(format!("saving the timeline to {}: {e}", path.display())))
    }

    fn load(&mut self, hash: &str) -> Result<Media, Status> {
        if let Some(media) = self.media.get(hash) {
            return Ok(media.clone());
        }
        let parsed = cas::Hash::parse(hash).map_err(cas_status)?;
        let bytes = self.cas.read(&parsed, MAX_OBJECT_BYTES, true).map_err(cas_status)?;
        let media = media::parse(&bytes).map_err(|e| media_status(hash, e))?;
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
        let at = self
            .timeline
            .markers
            .partition_point(|m| m.position_beats <= marker.position_beats);
        self.timeline.markers.insert(at, marker.clone());
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
        let media = self.load(&hash)?;
        if matches!(media, Media::Midi(_)) && self.synth.is_none() && !self.midi_cues {
            return Err(Status::failed_precondition(
                "this is a MIDI file, but chaosgarden has no SoundFont to render it and no MIDI output to send it to (start it with --soundfont FILE or --midi-out PORT)",
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
        let at = self
            .timeline
            .regions
            .partition_point(|r| r.position_beats <= position_beats);
        self.timeline.regions.insert(at, region.clone());
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
        self.save()
    }

    /// Adds, replaces or removes a tempo change.
    pub fn set_tempo(&mut self, change: pb::TempoChange) -> Result<(), Status> {
        if change.tempo_bpm == 0.0 {
            self.timeline.map.remove(change.position_beats).map_err(time_status)?;
        } else {
            let meter = match change.time_signature {
                Some(ts) => Some(Meter::new(ts.numerator, ts.denominator).map_err(time_status)?),
                None => None,
            };
            self.timeline
                .map
                .set(change.position_beats, change.tempo_bpm, meter)
                .map_err(time_status)?;
        }
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

    /// Builds what the real-time side plays, at `sample_rate`: audio rendered, cues sorted.
    pub fn arrange(&mut self, version: u64, sample_rate: u32) -> Arrangement {
        let map = self.timeline.map.clone();
        let fingerprint = map_fingerprint(&map);
        let mut clips = Vec::new();
        let mut cues: Vec<Cue> = self
            .timeline
            .markers
            .iter()
            .map(|m| Cue {
                beats: m.position_beats,
                kind: CueKind::Marker(Arc::new(m.clone())),
            })
            .collect();
        let regions = self.timeline.regions.clone();
        self.render_missing_midi(&regions, &map, fingerprint, sample_rate);
        let (mut used_audio, mut used_midi) = (Vec::new(), Vec::new());
        for region in &regions {
            let Some(media) = self.media.get(&region.cas_hash).cloned() else {
                continue;
            };
            let gain = 10f64.powf(region.gain_db / 20.0) as f32;
            let start = map.sample_at(region.position_beats, sample_rate);
            let samples = match &media {
                Media::Audio(audio) => {
                    let key = (region.cas_hash.clone(), sample_rate);
                    used_audio.push(key.clone());
                    self.audio
                        .entry(key)
                        .or_insert_with(|| Arc::new(media::resample(audio, sample_rate).samples))
                        .clone()
                }
                Media::Midi(song) => {
                    if self.midi_cues {
                        cues.extend(song.events.iter().map(|e| Cue {
                            beats: region.position_beats + e.beats,
                            kind: CueKind::Midi(*e),
                        }));
                    }
                    let key = (
                        region.cas_hash.clone(),
                        sample_rate,
                        region.position_beats.to_bits(),
                        fingerprint,
                    );
                    let Some(samples) = self.midi.get(&key).cloned() else {
                        continue;
                    };
                    used_midi.push(key);
                    samples
                }
            };
            clips.push(Placed { start, gain, samples });
        }
        clips.sort_by_key(|c| c.start);
        cues.sort_by(|a, b| a.beats.total_cmp(&b.beats));
        // Keep renders the timeline still uses at this rate; drop the rest.
        self.audio.retain(|k, _| k.1 != sample_rate || used_audio.contains(k));
        self.midi.retain(|k, _| k.1 != sample_rate || used_midi.contains(k));
        let loop_range = self.timeline.loop_range.map(|(from, to)| {
            (
                (from, to),
                (map.sample_at(from, sample_rate), map.sample_at(to, sample_rate)),
            )
        });
        Arrangement {
            version,
            sample_rate,
            map,
            clips,
            loop_range,
            cues,
        }
    }
}

impl Editor {
    /// Renders the MIDI regions not rendered yet at this rate and tempo map, in parallel
    /// (one SoundFont synthesizer per region, on every core).
    fn render_missing_midi(
        &mut self,
        regions: &[pb::TimelineRegion],
        map: &TempoMap,
        fingerprint: u64,
        sample_rate: u32,
    ) {
        let Some(synth) = self.synth.clone() else { return };
        let mut missing = Vec::new();
        for region in regions {
            let key = (
                region.cas_hash.clone(),
                sample_rate,
                region.position_beats.to_bits(),
                fingerprint,
            );
            if let Some(Media::Midi(song)) = self.media.get(&region.cas_hash)
                && !self.midi.contains_key(&key)
                && !missing.iter().any(|(k, _, _)| *k == key)
            {
                missing.push((key, song.clone(), region.position_beats));
            }
        }
        if missing.is_empty() {
            return;
        }
        let workers = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .min(missing.len().max(1));
        let next = std::sync::atomic::AtomicUsize::new(0);
        let rendered: Vec<Vec<_>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..workers)
                .map(|_| {
                    scope.spawn(|| {
                        let mut done = Vec::new();
                        loop {
                            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            let Some((key, song, position)) = missing.get(i) else {
                                break;
                            };
                            done.push((key.clone(), synth.render(song, map, *position, sample_rate)));
                        }
                        done
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap_or_default()).collect()
        });
        for (key, result) in rendered.into_iter().flatten() {
            match result {
                Ok(samples) => {
                    self.midi.insert(key, Arc::new(samples));
                }
                Err(e) => tracing::error!(cas_hash = %key.0, error = %e, "cannot render a MIDI region"),
            }
        }
    }
}

fn map_fingerprint(map: &TempoMap) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    for change in map.to_proto() {
        change.position_beats.to_bits().hash(&mut hasher);
        change.tempo_bpm.to_bits().hash(&mut hasher);
        change
            .time_signature
            .map(|t| (t.numerator, t.denominator))
            .hash(&mut hasher);
    }
    hasher.finish()
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
