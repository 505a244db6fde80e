//! Turning the timeline into an [`Arrangement`] for the real-time side or an offline
//! render: audio resampled and MIDI rendered ahead (cached while the timeline uses them),
//! cues sorted.

// The editor's state and the timeline's shared helpers.
use super::*;

impl Editor {
    /// Builds what the real-time side plays, at `sample_rate`: audio rendered, cues sorted.
    /// At the playing rate, resampled and rendered audio is kept for the next arrangement
    /// (and what the timeline no longer uses is dropped); at any other rate nothing is kept.
    pub fn arrange(&mut self, version: u64, sample_rate: u32) -> Arrangement {
        let map = self.timeline.map.clone();
        let fingerprint = map_fingerprint(&map);
        let cache = sample_rate == self.sample_rate;
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
        let mut rendered = self.render_midi(&regions, &map, fingerprint, sample_rate);
        if cache {
            self.midi.extend(rendered.drain());
        }
        let mut clips = Vec::new();
        let (mut used_audio, mut used_midi) = (std::collections::HashSet::new(), std::collections::HashSet::new());
        for region in &regions {
            let Some(media) = self.media.get(&region.cas_hash).cloned() else {
                continue;
            };
            let gain = 10f64.powf(region.gain_db / 20.0) as f32;
            let start = map.sample_at(region.position_beats, sample_rate);
            let samples = match &media {
                Media::Audio(audio) if cache => {
                    used_audio.insert(region.cas_hash.clone());
                    self.audio
                        .entry(region.cas_hash.clone())
                        .or_insert_with(|| media::resample(audio, sample_rate).samples)
                        .clone()
                }
                Media::Audio(audio) => media::resample(audio, sample_rate).samples,
                Media::Midi(song) => {
                    if self.midi_cues {
                        cues.extend(song.events.iter().map(|e| Cue {
                            beats: region.position_beats + e.beats,
                            kind: CueKind::Midi(*e),
                        }));
                    }
                    let key = midi_key(region, sample_rate, fingerprint);
                    let held = if cache { self.midi.get(&key) } else { rendered.get(&key) };
                    let Some(samples) = held.cloned() else {
                        continue;
                    };
                    used_midi.insert(key);
                    samples
                }
            };
            clips.push(Placed { start, gain, samples });
        }
        clips.sort_by_key(|c| c.start);
        cues.sort_by(|a, b| a.beats.total_cmp(&b.beats));
        if cache {
            // Keep what this arrangement plays; drop the rest (and objects no region uses).
            let before = self.cached();
            self.audio.retain(|k, _| used_audio.contains(k));
            self.midi.retain(|k, _| used_midi.contains(k));
            self.freed |= self.cached() < before;
            self.evict_unused();
        }
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

    /// What [`crate::render::render`] mixes for beats `from..to` (`to == 0`: to the end) at
    /// `sample_rate`. At the playing rate that is the arrangement that plays. At another
    /// rate only the regions sounding in the range are resampled (only the frames in it) or
    /// rendered, for this render alone. Refused with RESOURCE_EXHAUSTED when that, the
    /// rendered WAV and the timeline's media together would exceed the budget; the
    /// [`Reservation`] counts the render's own memory until the render is done with it.
    pub fn arrange_for_render(
        &mut self,
        sample_rate: u32,
        from: f64,
        to: f64,
    ) -> Result<(Arrangement, Reservation), Status> {
        if !from.is_finite() || from < 0.0 || !to.is_finite() || to < 0.0 {
            return Err(Status::invalid_argument(format!("cannot render {from}..{to} beats")));
        }
        if to != 0.0 && to <= from {
            return Err(Status::invalid_argument(format!(
                "to_beats ({to}) must be after from_beats ({from})"
            )));
        }
        let map = self.timeline.map.clone();
        let fingerprint = map_fingerprint(&map);
        let cache = sample_rate == self.sample_rate;
        // Where each region sounds at this rate, in frames.
        let extents: Vec<Option<(u64, u64)>> = self
            .timeline
            .regions
            .iter()
            .map(|region| {
                let start = map.sample_at(region.position_beats, sample_rate);
                let frames = match self.media.get(&region.cas_hash)? {
                    Media::Audio(audio) => media::resampled_frames(audio.frames(), audio.sample_rate, sample_rate),
                    Media::Midi(song) if self.synth.is_some() => {
                        media::midi_render_frames(song, &map, region.position_beats, sample_rate)
                    }
                    Media::Midi(_) => return None,
                };
                Some((start, start + frames))
            })
            .collect();
        let first = map.sample_at(from, sample_rate);
        let last = if to == 0.0 {
            extents.iter().flatten().map(|e| e.1).max().unwrap_or(0)
        } else {
            map.sample_at(to, sample_rate)
        };
        let longest = (media::MAX_SECONDS * sample_rate as f64) as u64;
        let footprint = self.footprint(&map, None);
        let mut needed = footprint + last.saturating_sub(first).min(longest) * media::FRAME_BYTES;
        let mut sounding = Vec::new();
        let mut counted = std::collections::HashSet::new();
        for (region, extent) in self.timeline.regions.iter().zip(&extents) {
            let Some((start, end)) = *extent else { continue };
            if start >= last.max(first + 1) || end <= first {
                continue;
            }
            sounding.push(region.clone());
            if cache {
                continue;
            }
            match self.media.get(&region.cas_hash) {
                Some(Media::Audio(audio)) if audio.sample_rate != sample_rate => {
                    needed += end.min(last).saturating_sub(start.max(first)) * media::FRAME_BYTES;
                }
                Some(Media::Midi(_)) if counted.insert(midi_key(region, sample_rate, fingerprint)) => {
                    needed += (end - start) * media::FRAME_BYTES;
                }
                _ => {}
            }
        }
        self.within_budget(needed, "this render")?;
        let bytes = needed - footprint;
        self.rendering.fetch_add(bytes, Ordering::AcqRel);
        let reservation = Reservation {
            bytes,
            held: self.rendering.clone(),
        };
        if cache {
            return Ok((self.arrange(0, sample_rate), reservation));
        }
        let rendered = self.render_midi(&sounding, &map, fingerprint, sample_rate);
        let mut clips = Vec::new();
        for region in &sounding {
            let Some(media) = self.media.get(&region.cas_hash) else {
                continue;
            };
            let gain = 10f64.powf(region.gain_db / 20.0) as f32;
            let start = map.sample_at(region.position_beats, sample_rate);
            let clip = match media {
                Media::Audio(audio) if audio.sample_rate == sample_rate => Placed {
                    start,
                    gain,
                    samples: audio.samples.clone(),
                },
                Media::Audio(audio) => {
                    let skip = first.saturating_sub(start);
                    let span = media::resample_span(audio, sample_rate, skip, last.max(first + 1) - start);
                    Placed {
                        start: start + skip,
                        gain,
                        samples: Arc::new(span),
                    }
                }
                Media::Midi(_) => match rendered.get(&midi_key(region, sample_rate, fingerprint)) {
                    Some(samples) => Placed {
                        start,
                        gain,
                        samples: samples.clone(),
                    },
                    None => continue,
                },
            };
            clips.push(clip);
        }
        clips.sort_by_key(|c| c.start);
        let arrangement = Arrangement {
            version: 0,
            sample_rate,
            map,
            clips,
            loop_range: None,
            cues: Vec::new(),
        };
        Ok((arrangement, reservation))
    }
}

fn midi_key(region: &pb::TimelineRegion, sample_rate: u32, fingerprint: u64) -> MidiKey {
    (
        region.cas_hash.clone(),
        sample_rate,
        region.position_beats.to_bits(),
        fingerprint,
    )
}

impl Editor {
    /// Renders the MIDI regions among `regions` not already rendered at this rate and tempo
    /// map (when `sample_rate` is the playing rate), in parallel (one SoundFont synthesizer
    /// per region, on every core).
    fn render_midi(
        &self,
        regions: &[pb::TimelineRegion],
        map: &TempoMap,
        fingerprint: u64,
        sample_rate: u32,
    ) -> HashMap<MidiKey, Arc<Vec<f32>>> {
        let mut done = HashMap::new();
        let Some(synth) = self.synth.clone() else { return done };
        let cached = if sample_rate == self.sample_rate {
            Some(&self.midi)
        } else {
            None
        };
        let mut missing = Vec::new();
        for region in regions {
            let key = midi_key(region, sample_rate, fingerprint);
            if let Some(Media::Midi(song)) = self.media.get(&region.cas_hash)
                && !cached.is_some_and(|c| c.contains_key(&key))
                && !missing.iter().any(|(k, _, _)| *k == key)
            {
                missing.push((key, song.clone(), region.position_beats));
            }
        }
        if missing.is_empty() {
            return done;
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
                    done.insert(key, Arc::new(samples));
                }
                Err(e) => tracing::error!(cas_hash = %key.0, error = %e, "cannot render a MIDI region"),
            }
        }
        done
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
