//! Musical operations on a [`Song`]: notes, transposition, quantization, filtering,
//! merging, slicing, tempo, duration and statistics.

use super::song::{Division, Event, Kind, Result, Song};

/// A sounding note: an on event paired with its off (or the end of its track).
#[derive(Debug, Clone, PartialEq)]
pub struct Note {
    pub track: usize,
    pub channel: u8,
    pub pitch: u8,
    pub velocity: u8,
    pub start: u64,
    pub end: u64,
    /// Indices of the on and off events in the track (the off may be missing).
    on_index: usize,
    off_index: Option<usize>,
}

fn is_on(kind: &Kind) -> Option<(u8, u8, u8)> {
    match kind {
        Kind::NoteOn { channel, key, velocity } if *velocity > 0 => Some((*channel, *key, *velocity)),
        _ => None,
    }
}

fn is_off(kind: &Kind) -> Option<(u8, u8)> {
    match kind {
        Kind::NoteOff { channel, key, .. }
        | Kind::NoteOn {
            channel,
            key,
            velocity: 0,
        } => Some((*channel, *key)),
        _ => None,
    }
}

/// Events of one track in tick order (stable), so pairing works on unsorted input too.
fn sort(song: &mut Song) {
    for track in &mut song.tracks {
        track.sort_by_key(|e| e.tick);
    }
}

/// Every note, pairing each on with the first later off of the same channel and pitch.
pub fn notes(song: &Song) -> Vec<Note> {
    let mut sorted = song.clone();
    sort(&mut sorted);
    let mut notes: Vec<Note> = Vec::new();
    for (t, track) in sorted.tracks.iter().enumerate() {
        let end = track.iter().map(|e| e.tick).max().unwrap_or(0);
        let mut open: Vec<usize> = Vec::new(); // indices into notes
        for (i, event) in track.iter().enumerate() {
            if let Some((channel, pitch)) = is_off(&event.kind)
                && let Some(position) = open
                    .iter()
                    .position(|&n| notes[n].channel == channel && notes[n].pitch == pitch)
            {
                let n = open.remove(position);
                let note: &mut Note = &mut notes[n];
                note.end = event.tick;
                note.off_index = Some(i);
            } else if let Some((channel, pitch, velocity)) = is_on(&event.kind) {
                open.push(notes.len());
                notes.push(Note {
                    track: t,
                    channel,
                    pitch,
                    velocity,
                    start: event.tick,
                    end,
                    on_index: i,
                    off_index: None,
                });
            }
        }
    }
    notes.sort_by_key(|n| (n.start, n.track, n.pitch));
    notes
}

/// Adds `semitones` to every note (and polyphonic aftertouch) outside the channels skipped.
pub fn transpose(song: &Song, semitones: i32, skip_channels: &[u8]) -> Result<Song> {
    let mut out = song.clone();
    for event in out.tracks.iter_mut().flatten() {
        let key = match &mut event.kind {
            Kind::NoteOn { channel, key, .. }
            | Kind::NoteOff { channel, key, .. }
            | Kind::Aftertouch { channel, key, .. }
                if !skip_channels.contains(channel) =>
            {
                key
            }
            _ => continue,
        };
        let moved = i32::from(*key) + semitones;
        if !(0..=127).contains(&moved) {
            return Err(format!(
                "transposing note {key} by {semitones} leaves the MIDI range 0-127 (at tick {})",
                event.tick
            ));
        }
        *key = moved as u8;
    }
    Ok(out)
}

/// Moves note starts toward the nearest multiple of `grid` ticks by `strength` (0..1),
/// keeping each note's length.
pub fn quantize(song: &Song, grid: f64, strength: f64) -> Result<Song> {
    if grid.is_nan() || grid <= 0.0 {
        return Err("grid must be a positive number of beats".into());
    }
    if !(0.0..=1.0).contains(&strength) {
        return Err("strength must be between 0 and 1".into());
    }
    let mut out = song.clone();
    sort(&mut out);
    for note in notes(&out) {
        let start = note.start as f64;
        let nearest = (start / grid).round() * grid;
        let moved = (start + (nearest - start) * strength).round().max(0.0) as u64;
        let track = &mut out.tracks[note.track];
        let shift = moved as i64 - note.start as i64;
        track[note.on_index].tick = moved;
        if let Some(off) = note.off_index {
            track[off].tick = (track[off].tick as i64 + shift).max(moved as i64) as u64;
        }
    }
    sort(&mut out);
    Ok(out)
}

/// What [`filter`] keeps.
#[derive(Debug, Default)]
pub struct Filter {
    pub channels: Option<Vec<u8>>,
    pub min_note: u8,
    pub max_note: u8,
    pub types: Option<Vec<String>>,
}

fn channel_of(kind: &Kind) -> Option<u8> {
    match kind {
        Kind::NoteOn { channel, .. }
        | Kind::NoteOff { channel, .. }
        | Kind::Aftertouch { channel, .. }
        | Kind::Controller { channel, .. }
        | Kind::ProgramChange { channel, .. }
        | Kind::ChannelAftertouch { channel, .. }
        | Kind::PitchBend { channel, .. } => Some(*channel),
        _ => None,
    }
}

/// Keeps channel events on the given channels and within the note range (and, if given,
/// only the given event types); meta events stay unless `types` leaves them out.
pub fn filter(song: &Song, filter: &Filter, type_of: impl Fn(&Kind) -> &'static str) -> Song {
    let mut out = song.clone();
    for track in &mut out.tracks {
        track.retain(|event| {
            if matches!(event.kind, Kind::EndOfTrack) {
                return true;
            }
            if let Some(types) = &filter.types
                && !types.iter().any(|t| t == type_of(&event.kind))
            {
                return false;
            }
            if let (Some(channels), Some(channel)) = (&filter.channels, channel_of(&event.kind))
                && !channels.contains(&channel)
            {
                return false;
            }
            match event.kind {
                Kind::NoteOn { key, .. } | Kind::NoteOff { key, .. } | Kind::Aftertouch { key, .. } => {
                    (filter.min_note..=filter.max_note).contains(&key)
                }
                _ => true,
            }
        });
    }
    out
}

/// `b`'s tracks after `a`'s (format 1); `b` is rescaled to `a`'s resolution.
pub fn merge(a: &Song, b: &Song) -> Song {
    let scale = a.ppq() / b.ppq();
    let mut out = a.clone();
    out.format = 1;
    for track in &b.tracks {
        out.tracks.push(
            track
                .iter()
                .map(|e| Event {
                    tick: (e.tick as f64 * scale).round() as u64,
                    kind: e.kind.clone(),
                })
                .collect(),
        );
    }
    out
}

/// The part from beat `from` to beat `to`, moved to start at 0. Notes that start inside are
/// kept (cut at `to`); the tempo, time and key signatures in force at `from` are restated at 0.
pub fn slice(song: &Song, from: f64, to: f64) -> Result<Song> {
    if !(from >= 0.0 && to > from) {
        return Err("slice needs 0 <= from < to (in beats)".into());
    }
    let ppq = song.ppq();
    let (start, stop) = ((from * ppq).round() as u64, (to * ppq).round() as u64);
    let all_notes = notes(song);
    let mut out = Song {
        format: song.format,
        division: song.division,
        tracks: Vec::new(),
    };
    for (t, track) in song.tracks.iter().enumerate() {
        let mut events = Vec::new();
        let mut state: Vec<Event> = Vec::new();
        for event in track {
            let restated = matches!(
                event.kind,
                Kind::Tempo(_) | Kind::TimeSignature { .. } | Kind::KeySignature { .. }
            );
            if event.tick < start && restated {
                state.retain(|e| std::mem::discriminant(&e.kind) != std::mem::discriminant(&event.kind));
                state.push(Event {
                    tick: 0,
                    kind: event.kind.clone(),
                });
            } else if event.tick >= start
                && event.tick < stop
                && is_on(&event.kind).is_none()
                && is_off(&event.kind).is_none()
                && event.kind != Kind::EndOfTrack
            {
                events.push(Event {
                    tick: event.tick - start,
                    kind: event.kind.clone(),
                });
            }
        }
        for note in all_notes
            .iter()
            .filter(|n| n.track == t && n.start >= start && n.start < stop)
        {
            events.push(Event {
                tick: note.start - start,
                kind: Kind::NoteOn {
                    channel: note.channel,
                    key: note.pitch,
                    velocity: note.velocity,
                },
            });
            events.push(Event {
                tick: note.end.min(stop) - start,
                kind: Kind::NoteOff {
                    channel: note.channel,
                    key: note.pitch,
                    velocity: 0,
                },
            });
        }
        state.append(&mut events);
        state.sort_by_key(|e| e.tick);
        state.push(Event {
            tick: stop - start,
            kind: Kind::EndOfTrack,
        });
        out.tracks.push(state);
    }
    Ok(out)
}

/// One tempo for the whole song: every tempo event is replaced by one at tick 0 of the first track.
pub fn set_tempo(song: &Song, bpm: f64) -> Result<Song> {
    if !(bpm > 3.6 && bpm <= 1000.0) {
        return Err(format!("bpm {bpm} is out of range (3.6-1000)"));
    }
    let mut out = song.clone();
    for track in &mut out.tracks {
        track.retain(|e| !matches!(e.kind, Kind::Tempo(_)));
    }
    if out.tracks.is_empty() {
        out.tracks.push(Vec::new());
    }
    out.tracks[0].insert(
        0,
        Event {
            tick: 0,
            kind: Kind::Tempo((60_000_000.0 / bpm).round() as u32),
        },
    );
    Ok(out)
}

/// (ticks, beats, seconds) to the last event, following the tempo map.
pub fn duration(song: &Song) -> (u64, f64, f64) {
    let ticks = song.tracks.iter().flatten().map(|e| e.tick).max().unwrap_or(0);
    let ppq = song.ppq();
    let seconds = match song.division {
        Division::Timecode(fps, sub) => ticks as f64 / (f64::from(fps.max(1)) * f64::from(sub.max(1))),
        Division::Ppq(_) => {
            let mut tempos: Vec<(u64, u32)> = song
                .tracks
                .iter()
                .flatten()
                .filter_map(|e| match e.kind {
                    Kind::Tempo(t) => Some((e.tick, t)),
                    _ => None,
                })
                .collect();
            tempos.sort_by_key(|t| t.0);
            let (mut seconds, mut at, mut tempo) = (0.0, 0u64, 500_000u32);
            for (tick, next) in tempos.into_iter().filter(|t| t.0 <= ticks) {
                seconds += (tick - at) as f64 / ppq * f64::from(tempo) / 1e6;
                at = tick;
                tempo = next;
            }
            seconds + (ticks - at) as f64 / ppq * f64::from(tempo) / 1e6
        }
    };
    (ticks, ticks as f64 / ppq, seconds)
}

/// A song from notes (beats), in one track per distinct `track` number after a conductor
/// track holding the tempo.
pub fn from_notes(notes: &[(usize, u8, u8, u8, f64, f64)], ppq: u16, bpm: f64) -> Result<Song> {
    if ppq == 0 || ppq > 0x7fff {
        return Err(format!("ppq {ppq} is not between 1 and 32767"));
    }
    let song = Song {
        format: 1,
        division: Division::Ppq(ppq),
        tracks: vec![Vec::new()],
    };
    let mut song = set_tempo(&song, bpm)?;
    let ticks = |beats: f64| (beats * f64::from(ppq)).round().max(0.0) as u64;
    for &(track, channel, pitch, velocity, start, length) in notes {
        if !(start >= 0.0 && length > 0.0) {
            return Err(format!("note {pitch}: start must be >= 0 and duration > 0 (beats)"));
        }
        if channel > 15 || pitch > 127 || velocity == 0 || velocity > 127 {
            return Err(format!("note {pitch}: channel 0-15, pitch 0-127 and velocity 1-127"));
        }
        while song.tracks.len() <= track {
            song.tracks.push(Vec::new());
        }
        song.tracks[track].push(Event {
            tick: ticks(start),
            kind: Kind::NoteOn {
                channel,
                key: pitch,
                velocity,
            },
        });
        song.tracks[track].push(Event {
            tick: ticks(start + length).max(ticks(start) + 1),
            kind: Kind::NoteOff {
                channel,
                key: pitch,
                velocity: 0,
            },
        });
    }
    sort(&mut song);
    Ok(song)
}
