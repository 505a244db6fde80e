//! `midi.*`: Standard MIDI Files as Lua tables, and musical operations on them.

mod ops;
mod song;
mod table;

pub(super) use song::{Division, Event, Kind, Song};
pub(super) use table::to_table;

use mlua::{Lua, Table};

use super::{Registrar, fail};
use crate::sandbox::RunHandle;

fn read_song(function: &'static str, table: &Table) -> mlua::Result<Song> {
    table::from_table(table).map_err(|e| fail(function, e))
}

fn beats(song: &Song, ticks: u64) -> f64 {
    ticks as f64 / song.ppq()
}

/// Registers a function `midi.<name>(song, ...)` that maps a song to a new song.
fn transform<A: mlua::FromLuaMulti>(
    api: &mut Registrar<'_>,
    name: &'static str,
    signature: &'static str,
    doc: &'static str,
    op: impl Fn(&Song, A) -> Result<Song, String> + Send + Sync + 'static,
) -> mlua::Result<()> {
    let function = api.lua().create_function(move |lua: &Lua, (table, args): (Table, A)| {
        let full = format!("midi.{name}");
        let song = table::from_table(&table).map_err(|e| fail(&full, e))?;
        let out = op(&song, args).map_err(|e| fail(&full, e))?;
        table::to_table(lua, &out)
    })?;
    api.function("midi", name, signature, doc, function)
}

pub(super) fn install(api: &mut Registrar<'_>, cas: Option<::cas::Cas>, run: &RunHandle) -> mlua::Result<()> {
    api.module(
        "midi",
        "Standard MIDI Files as tables: `{format, ppq, tracks = {{event, ...}, ...}, bpm, time_signature = {4, 4}}`. \
         An event is `{tick = <absolute>, type = \"note_on\", channel = 0-15, note = 0-127, velocity = 0-127}` (also \
         note_off, controller, program_change, pitch_bend, aftertouch, channel_aftertouch, sysex, tempo, \
         time_signature, key_signature, text, track_name, lyric, marker, ... — every kind survives a read/write round \
         trip). `bpm` and `time_signature` summarize the first such events and are ignored on write. Channels are \
         0-15 (9 is General MIDI drums); beats are quarter notes. Functions return new tables.",
    );
    let read = api.lua().create_function(|lua, bytes: mlua::LuaString| {
        let song = song::parse(&bytes.as_bytes()).map_err(|e| fail("midi.read", e))?;
        table::to_table(lua, &song)
    })?;
    api.function(
        "midi",
        "read",
        "midi.read(bytes) -> song",
        "Parses MIDI file bytes. Example: `local song = midi.read(cas.get(h))`.",
        read,
    )?;
    let write = api.lua().create_function(|lua, table: Table| {
        let song = read_song("midi.write", &table)?;
        let bytes = song::write(&song).map_err(|e| fail("midi.write", e))?;
        lua.create_string(bytes)
    })?;
    api.function(
        "midi",
        "write",
        "midi.write(song) -> bytes",
        "Encodes a song as a Standard MIDI File; events are ordered by tick and each track gets one end-of-track.",
        write,
    )?;
    let load = {
        let (cas, run) = (cas.clone(), run.clone());
        api.lua().create_function(move |lua, hash: String| {
            let store = cas
                .as_ref()
                .ok_or_else(|| fail("midi.load", "no CAS is available here"))?;
            let resolved = store.resolve(&hash).map_err(|e| fail("midi.load", e))?;
            let bytes = store
                .read(&resolved, run.memory_limit() as u64, true)
                .map_err(|e| fail("midi.load", e))?;
            let song = song::parse(&bytes).map_err(|e| fail("midi.load", format!("{hash}: {e}")))?;
            table::to_table(lua, &song)
        })?
    };
    api.function(
        "midi",
        "load",
        "midi.load(hash) -> song",
        "Reads a MIDI file from the CAS.",
        load,
    )?;
    let save = {
        api.lua().create_function(move |_, table: Table| {
            let song = read_song("midi.save", &table)?;
            let bytes = song::write(&song).map_err(|e| fail("midi.save", e))?;
            let store = cas
                .as_ref()
                .ok_or_else(|| fail("midi.save", "no CAS is available here"))?;
            let stored = store.store(&bytes, "audio/midi").map_err(|e| fail("midi.save", e))?;
            Ok(stored.info.hash.to_string())
        })?
    };
    api.function(
        "midi",
        "save",
        "midi.save(song) -> hash",
        "Writes a song into the CAS (audio/midi) and returns its hash.",
        save,
    )?;

    let notes = api.lua().create_function(|lua, table: Table| {
        let song = read_song("midi.notes", &table)?;
        let list = lua.create_table()?;
        for (i, note) in ops::notes(&song).iter().enumerate() {
            let item = lua.create_table()?;
            item.raw_set("track", note.track + 1)?;
            item.raw_set("channel", note.channel)?;
            item.raw_set("pitch", note.pitch)?;
            item.raw_set("velocity", note.velocity)?;
            item.raw_set("start", beats(&song, note.start))?;
            item.raw_set("duration", beats(&song, note.end - note.start))?;
            item.raw_set("start_tick", note.start as i64)?;
            item.raw_set("end_tick", note.end as i64)?;
            list.raw_set(i + 1, item)?;
        }
        Ok(list)
    })?;
    api.function(
        "midi",
        "notes",
        "midi.notes(song) -> {{pitch, velocity, channel, track, start, duration, start_tick, end_tick}, ...}",
        "Every note (on paired with its off), ordered by start; start and duration in beats.",
        notes,
    )?;
    let from_notes = api
        .lua()
        .create_function(|lua, (list, options): (Table, Option<Table>)| {
            let ppq: i64 = options
                .as_ref()
                .map(|o| o.get::<Option<i64>>("ppq"))
                .transpose()?
                .flatten()
                .unwrap_or(480);
            let bpm: f64 = options
                .as_ref()
                .map(|o| o.get::<Option<f64>>("bpm"))
                .transpose()?
                .flatten()
                .unwrap_or(120.0);
            let mut notes = Vec::new();
            for (i, note) in list.sequence_values::<Table>().enumerate() {
                let context = |e: mlua::Error| fail("midi.from_notes", format!("notes[{}]: {e}", i + 1));
                let note = note.map_err(context)?;
                let field = |key: &str, default: Option<f64>| -> mlua::Result<f64> {
                    note.get::<Option<f64>>(key)?
                        .or(default)
                        .ok_or_else(|| mlua::Error::runtime(format!("`{key}` is required")))
                };
                let byte = |key: &str, default: f64, max: f64| -> mlua::Result<u8> {
                    let value = field(key, Some(default))?;
                    if value < 0.0 || value > max || value.fract() != 0.0 {
                        return Err(mlua::Error::runtime(format!(
                            "`{key}` = {value} is not an integer 0-{max}"
                        )));
                    }
                    Ok(value as u8)
                };
                let track = field("track", Some(1.0)).map_err(context)?;
                if !(1.0..=1024.0).contains(&track) {
                    return Err(context(mlua::Error::runtime("`track` must be 1-1024")));
                }
                notes.push((
                    track as usize,
                    byte("channel", 0.0, 15.0).map_err(context)?,
                    byte("pitch", -1.0, 127.0).map_err(context)?,
                    byte("velocity", 100.0, 127.0).map_err(context)?,
                    field("start", None).map_err(context)?,
                    field("duration", None).map_err(context)?,
                ));
            }
            let ppq = u16::try_from(ppq).map_err(|_| fail("midi.from_notes", "ppq must be 1-32767"))?;
            let song = ops::from_notes(&notes, ppq, bpm).map_err(|e| fail("midi.from_notes", e))?;
            table::to_table(lua, &song)
        })?;
    api.function(
        "midi",
        "from_notes",
        "midi.from_notes(notes, {ppq = 480, bpm = 120}?) -> song",
        "Builds a format-1 song: track 1 holds the tempo, each note goes to its `track` (default 1, i.e. the second \
         track... numbering starts after the tempo track). A note is `{pitch, start, duration, velocity = 100, \
         channel = 0, track = 1}` with times in beats. Example: `midi.from_notes({{pitch = 60, start = 0, duration = \
         1}})`.",
        from_notes,
    )?;
    transform(
        api,
        "transpose",
        "midi.transpose(song, semitones, {include_drums = false}?) -> song",
        "Moves every note by some semitones; channel 9 (drums) is left alone unless include_drums. A note pushed \
         outside 0-127 is an error.",
        |song, (semitones, options): (i32, Option<Table>)| {
            let drums = options
                .and_then(|o| o.get::<Option<bool>>("include_drums").ok().flatten())
                .unwrap_or(false);
            ops::transpose(song, semitones, if drums { &[] } else { &[9] })
        },
    )?;
    transform(
        api,
        "quantize",
        "midi.quantize(song, {grid = 0.25, strength = 1.0}?) -> song",
        "Moves note starts toward the nearest grid line (in beats: 0.25 = sixteenths) by strength (0-1), keeping \
         each note's length.",
        |song, options: Option<Table>| {
            let get = |key: &str, default: f64| {
                options
                    .as_ref()
                    .and_then(|o| o.get::<Option<f64>>(key).ok().flatten())
                    .unwrap_or(default)
            };
            ops::quantize(song, get("grid", 0.25) * song.ppq(), get("strength", 1.0))
        },
    )?;
    transform(
        api,
        "filter",
        "midi.filter(song, {channels = {...}, min_note = 0, max_note = 127, types = {...}}) -> song",
        "Keeps channel events on the listed channels and notes in the range; with `types`, only those event types.",
        |song, options: Table| {
            let list = |key: &str| -> Result<Option<Vec<mlua::Value>>, String> {
                options
                    .get::<Option<Vec<mlua::Value>>>(key)
                    .map_err(|e| format!("{key}: {e}"))
            };
            let channels = list("channels")?
                .map(|v| {
                    v.into_iter()
                        .map(|c| c.as_integer().filter(|c| (0..=15).contains(c)).map(|c| c as u8))
                        .collect::<Option<Vec<u8>>>()
                        .ok_or("channels are integers 0-15")
                })
                .transpose()?;
            let types = list("types")?
                .map(|v| {
                    v.into_iter()
                        .map(|t| t.to_string().map_err(|e| e.to_string()))
                        .collect::<Result<Vec<_>, _>>()
                })
                .transpose()?;
            let note = |key: &str, default: i64| -> Result<u8, String> {
                let value = options
                    .get::<Option<i64>>(key)
                    .map_err(|e| e.to_string())?
                    .unwrap_or(default);
                u8::try_from(value)
                    .ok()
                    .filter(|v| *v <= 127)
                    .ok_or(format!("{key} must be 0-127"))
            };
            let filter = ops::Filter {
                channels,
                min_note: note("min_note", 0)?,
                max_note: note("max_note", 127)?,
                types,
            };
            Ok(ops::filter(song, &filter, song::type_name))
        },
    )?;
    transform(
        api,
        "merge",
        "midi.merge(a, b) -> song",
        "A format-1 song with b's tracks after a's (b rescaled to a's ppq).",
        |song, other: Table| Ok(ops::merge(song, &table::from_table(&other).map_err(|e| e.to_string())?)),
    )?;
    transform(
        api,
        "slice",
        "midi.slice(song, from_beat, to_beat) -> song",
        "The part between two beats, starting at 0: notes starting inside are kept (cut at to_beat); tempo, time and \
         key signature in force at from_beat are restated at 0.",
        |song, (from, to): (f64, f64)| ops::slice(song, from, to),
    )?;
    transform(
        api,
        "set_tempo",
        "midi.set_tempo(song, bpm) -> song",
        "Replaces every tempo event with one at the start.",
        |song, bpm: f64| ops::set_tempo(song, bpm),
    )?;
    let duration = api.lua().create_function(|lua, table: Table| {
        let song = read_song("midi.duration", &table)?;
        let (ticks, beats, seconds) = ops::duration(&song);
        let out = lua.create_table()?;
        out.raw_set("ticks", ticks as i64)?;
        out.raw_set("beats", beats)?;
        out.raw_set("seconds", seconds)?;
        Ok(out)
    })?;
    api.function(
        "midi",
        "duration",
        "midi.duration(song) -> {ticks, beats, seconds}",
        "Length to the last event; seconds follow the tempo map.",
        duration,
    )?;
    let stats = api.lua().create_function(|lua, table: Table| {
        let song = read_song("midi.stats", &table)?;
        let notes = ops::notes(&song);
        let out = lua.create_table()?;
        out.raw_set("notes", notes.len())?;
        out.raw_set("tracks", song.tracks.len())?;
        out.raw_set("ppq", song.ppq())?;
        let mut channels: Vec<u8> = notes.iter().map(|n| n.channel).collect();
        channels.sort_unstable();
        channels.dedup();
        out.raw_set("channels", channels)?;
        if let (Some(low), Some(high)) = (notes.iter().map(|n| n.pitch).min(), notes.iter().map(|n| n.pitch).max()) {
            out.raw_set("lowest", low)?;
            out.raw_set("highest", high)?;
            let mean = notes.iter().map(|n| f64::from(n.velocity)).sum::<f64>() / notes.len() as f64;
            out.raw_set("mean_velocity", mean)?;
        }
        let mut classes = [0usize; 12];
        for note in &notes {
            classes[usize::from(note.pitch % 12)] += 1;
        }
        out.raw_set("pitch_classes", classes.to_vec())?;
        let (_, beats, seconds) = ops::duration(&song);
        out.raw_set("beats", beats)?;
        out.raw_set("seconds", seconds)?;
        Ok(out)
    })?;
    api.function(
        "midi",
        "stats",
        "midi.stats(song) -> {notes, tracks, ppq, channels, lowest, highest, mean_velocity, pitch_classes, beats, seconds}",
        "Note statistics; pitch_classes counts notes per pitch class, index 1 = C.",
        stats,
    )
}
