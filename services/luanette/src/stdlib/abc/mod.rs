//! `abc.*`: ABC notation read into notes and MIDI (abc2midi is the reference for what sounds).

mod render;
mod tune;

use mlua::{Lua, Table};

use super::midi::{Division, Event, Kind, Song};
use super::{Registrar, fail};

/// Ticks per beat of the MIDI made from ABC (abc2midi's).
const PPQ: u16 = 480;

fn read(function: &str, text: &str) -> mlua::Result<tune::Tune> {
    tune::parse(text).map_err(|e| fail(function, e))
}

/// The tune as a song: a conductor track (tempo, meter, key), then one track per voice.
fn to_song(tune: &tune::Tune) -> Song {
    let ticks = |beats: f64| (beats * f64::from(PPQ)).round().max(0.0) as u64;
    let mut conductor = vec![Event {
        tick: 0,
        kind: Kind::Tempo((60_000_000.0 / tune.tempo).round() as u32),
    }];
    if let Some((numerator, denominator)) = tune.meter {
        conductor.push(Event {
            tick: 0,
            kind: Kind::TimeSignature {
                numerator: numerator.min(255) as u8,
                denominator_power: denominator.max(1).ilog2().min(255) as u8,
                clocks_per_click: 24,
                notated_32nds: 8,
            },
        });
    }
    conductor.push(Event {
        tick: 0,
        kind: Kind::KeySignature {
            sharps: tune.key.0,
            minor: tune.key.1,
        },
    });
    let mut tracks = vec![conductor];
    for (index, voice) in tune.voices.iter().enumerate() {
        // Channel 9 is drums in General MIDI; voices skip it.
        let channel = match index % 15 {
            c if c >= 9 => c as u8 + 1,
            c => c as u8,
        };
        let mut events = Vec::with_capacity(voice.notes.len() * 2);
        for note in &voice.notes {
            let start = ticks(note.start);
            let end = ticks(note.start + note.duration).max(start + 1);
            events.push(Event {
                tick: start,
                kind: Kind::NoteOn {
                    channel,
                    key: note.pitch,
                    velocity: 100,
                },
            });
            events.push(Event {
                tick: end,
                kind: Kind::NoteOff {
                    channel,
                    key: note.pitch,
                    velocity: 0,
                },
            });
        }
        // Offs before ons at the same tick, so repeated notes do not cut each other short.
        events.sort_by_key(|e| (e.tick, matches!(e.kind, Kind::NoteOn { .. })));
        tracks.push(events);
    }
    Song {
        format: 1,
        division: Division::Ppq(PPQ),
        tracks,
    }
}

fn tune_table(lua: &Lua, tune: &tune::Tune) -> mlua::Result<Table> {
    let out = lua.create_table()?;
    out.raw_set("title", tune.title.as_str())?;
    if let Some((n, d)) = tune.meter {
        out.raw_set("meter", vec![n, d])?;
    }
    out.raw_set("tempo", tune.tempo)?;
    out.raw_set("key", tune.key_name.as_str())?;
    out.raw_set("sharps", tune.key.0)?;
    out.raw_set("minor", tune.key.1)?;
    let voices = lua.create_table()?;
    for (i, voice) in tune.voices.iter().enumerate() {
        let item = lua.create_table()?;
        item.raw_set("id", voice.id.as_str())?;
        let notes = lua.create_table_with_capacity(voice.notes.len(), 0)?;
        for (j, note) in voice.notes.iter().enumerate() {
            let n = lua.create_table_with_capacity(0, 3)?;
            n.raw_set("pitch", note.pitch)?;
            n.raw_set("start", note.start)?;
            n.raw_set("duration", note.duration)?;
            notes.raw_set(j + 1, n)?;
        }
        item.raw_set("notes", notes)?;
        voices.raw_set(i + 1, item)?;
    }
    out.raw_set("voices", voices)?;
    Ok(out)
}

pub(super) fn install(api: &mut Registrar<'_>) -> mlua::Result<()> {
    api.module(
        "abc",
        "ABC notation. Sounded: header fields X T M L Q K V, notes with accidentals (lasting to the bar line) and key \
         signatures in any mode, octaves, lengths, broken rhythm, rests, ties, tuplets, chords, repeats with first \
         and second endings, several voices and inline fields. Grace notes, decorations and chord symbols are read \
         but not sounded. abc2midi is the reference: for the tunes in the tests, pitches, onsets and durations match.",
    );
    let parse = api.lua().create_function(|lua, text: String| {
        let tune = read("abc.parse", &text)?;
        tune_table(lua, &tune)
    })?;
    api.function(
        "abc",
        "parse",
        "abc.parse(text) -> {title, meter, tempo, key, sharps, minor, voices = {{id, notes = {{pitch, start, duration}}}}}",
        "Reads a tune (the first in the text); times are in quarter-note beats. Errors say what could not be read. \
         Example: `abc.parse(\"X:1\\nK:G\\nGABc|\").voices[1].notes[4].pitch == 72`.",
        parse,
    )?;
    let validate = api.lua().create_function(|_, text: String| match tune::parse(&text) {
        Ok(_) => Ok((true, None)),
        Err(message) => Ok((false, Some(message))),
    })?;
    api.function(
        "abc",
        "validate",
        "abc.validate(text) -> ok, message?",
        "Whether the text is a tune this module can sound, and why not. Example: `local ok, why = abc.validate(text)`.",
        validate,
    )?;
    let to_midi = api.lua().create_function(|lua, text: String| {
        let tune = read("abc.to_midi", &text)?;
        super::midi::to_table(lua, &to_song(&tune))
    })?;
    let transpose = api.lua().create_function(|_, (text, semitones): (String, i32)| {
        let mut tune = read("abc.transpose", &text)?;
        for note in tune.voices.iter_mut().flat_map(|v| v.notes.iter_mut()) {
            let moved = i32::from(note.pitch) + semitones;
            if !(0..=127).contains(&moved) {
                return Err(fail(
                    "abc.transpose",
                    format!("note {} moved by {semitones} leaves the MIDI range", note.pitch),
                ));
            }
            note.pitch = moved as u8;
        }
        Ok(render::render(&tune))
    })?;
    api.function(
        "abc",
        "transpose",
        "abc.transpose(text, semitones) -> text",
        "The tune moved by some semitones, written back as ABC (K:C with explicit accidentals, L:1/48, repeats played \
         out). Example: `abc.transpose(tune, -2)`.",
        transpose,
    )?;
    let render_fn = api
        .lua()
        .create_function(|_, text: String| Ok(render::render(&read("abc.render", &text)?)))?;
    api.function(
        "abc",
        "render",
        "abc.render(text) -> text",
        "The tune as this module hears it, written back as ABC: one line per voice, repeats played out, K:C with \
         explicit accidentals. Example: `abc.render(tune)`.",
        render_fn,
    )?;
    api.function(
        "abc",
        "to_midi",
        "abc.to_midi(text) -> song",
        "The tune as a MIDI song table (480 ticks per beat; a conductor track with tempo, meter and key, then one \
         track per voice). Example: `midi.save(abc.to_midi(params.tune))`.",
        to_midi,
    )
}
