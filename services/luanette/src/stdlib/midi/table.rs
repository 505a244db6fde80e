//! Songs as Lua tables and back (see `to_table` for the shape); errors name the track,
//! event and field.

use mlua::{Lua, Table, Value as LuaValue};

use super::song::{Division, Event, Kind, MAX_TRACKS, Song, TEXTS};

fn int<T: TryFrom<i64>>(event: &Table, key: &str, max: i64, what: &str) -> mlua::Result<T> {
    let value: i64 = event
        .get::<Option<i64>>(key)?
        .ok_or_else(|| mlua::Error::runtime(format!("a {what} event needs `{key}`")))?;
    if !(0..=max).contains(&value) {
        return Err(mlua::Error::runtime(format!(
            "{what}.{key} = {value} is not between 0 and {max}"
        )));
    }
    T::try_from(value).map_err(|_| mlua::Error::runtime(format!("{what}.{key} is out of range")))
}

fn bytes(event: &Table, key: &str) -> mlua::Result<Vec<u8>> {
    Ok(event
        .get::<Option<mlua::LuaString>>(key)?
        .map(|s| s.as_bytes().to_vec())
        .unwrap_or_default())
}

fn kind_from_table(event: &Table) -> mlua::Result<Kind> {
    let kind: String = event
        .get::<Option<String>>("type")?
        .ok_or_else(|| mlua::Error::runtime("an event needs a `type`"))?;
    let channel = || int::<u8>(event, "channel", 15, &kind);
    Ok(match kind.as_str() {
        "note_on" => Kind::NoteOn {
            channel: channel()?,
            key: int(event, "note", 127, &kind)?,
            velocity: int(event, "velocity", 127, &kind)?,
        },
        "note_off" => Kind::NoteOff {
            channel: channel()?,
            key: int(event, "note", 127, &kind)?,
            velocity: event
                .get::<Option<i64>>("velocity")?
                .map(|_| int(event, "velocity", 127, &kind))
                .transpose()?
                .unwrap_or(0),
        },
        "aftertouch" => Kind::Aftertouch {
            channel: channel()?,
            key: int(event, "note", 127, &kind)?,
            pressure: int(event, "pressure", 127, &kind)?,
        },
        "controller" => Kind::Controller {
            channel: channel()?,
            controller: int(event, "controller", 127, &kind)?,
            value: int(event, "value", 127, &kind)?,
        },
        "program_change" => Kind::ProgramChange {
            channel: channel()?,
            program: int(event, "program", 127, &kind)?,
        },
        "channel_aftertouch" => Kind::ChannelAftertouch {
            channel: channel()?,
            pressure: int(event, "pressure", 127, &kind)?,
        },
        "pitch_bend" => {
            let bend: i64 = event
                .get::<Option<i64>>("bend")?
                .ok_or_else(|| mlua::Error::runtime("a pitch_bend event needs `bend`"))?;
            if !(-8192..=8191).contains(&bend) {
                return Err(mlua::Error::runtime(format!(
                    "pitch_bend.bend = {bend} is not between -8192 and 8191"
                )));
            }
            Kind::PitchBend {
                channel: channel()?,
                bend: bend as i16,
            }
        }
        "sysex" => Kind::SysEx(bytes(event, "data")?),
        "escape" => Kind::Escape(bytes(event, "data")?),
        "track_number" => Kind::TrackNumber(
            event
                .get::<Option<i64>>("number")?
                .map(|_| int(event, "number", 65535, &kind))
                .transpose()?,
        ),
        "midi_channel" => Kind::MidiChannel(channel()?),
        "midi_port" => Kind::MidiPort(int(event, "port", 127, &kind)?),
        "end_of_track" => Kind::EndOfTrack,
        "tempo" => match event.get::<Option<i64>>("microseconds_per_beat")? {
            Some(_) => Kind::Tempo(int(event, "microseconds_per_beat", 0xff_ffff, &kind)?),
            None => {
                let bpm: f64 = event
                    .get::<Option<f64>>("bpm")?
                    .ok_or_else(|| mlua::Error::runtime("a tempo event needs `bpm` or `microseconds_per_beat`"))?;
                if !(bpm > 3.6 && bpm <= 60_000_000.0) {
                    return Err(mlua::Error::runtime(format!("tempo.bpm = {bpm} is out of range")));
                }
                Kind::Tempo((60_000_000.0 / bpm).round() as u32)
            }
        },
        "smpte_offset" => Kind::SmpteOffset {
            hour: int(event, "hour", 23, &kind)?,
            minute: int(event, "minute", 59, &kind)?,
            second: int(event, "second", 59, &kind)?,
            frame: int(event, "frame", 29, &kind)?,
            subframe: int(event, "subframe", 99, &kind)?,
            fps: int(event, "fps", 30, &kind)?,
        },
        "time_signature" => {
            let denominator: i64 = int(event, "denominator", 256, &kind)?;
            if denominator == 0 || denominator & (denominator - 1) != 0 {
                return Err(mlua::Error::runtime(format!(
                    "time_signature.denominator = {denominator} is not a power of two"
                )));
            }
            Kind::TimeSignature {
                numerator: int(event, "numerator", 255, &kind)?,
                denominator_power: denominator.trailing_zeros() as u8,
                clocks_per_click: event
                    .get::<Option<i64>>("clocks_per_click")?
                    .map(|_| int(event, "clocks_per_click", 255, &kind))
                    .transpose()?
                    .unwrap_or(24),
                notated_32nds: event
                    .get::<Option<i64>>("notated_32nds")?
                    .map(|_| int(event, "notated_32nds", 255, &kind))
                    .transpose()?
                    .unwrap_or(8),
            }
        }
        "key_signature" => {
            let sharps: i64 = event.get::<Option<i64>>("sharps")?.unwrap_or(0);
            if !(-7..=7).contains(&sharps) {
                return Err(mlua::Error::runtime(format!(
                    "key_signature.sharps = {sharps} is not between -7 and 7"
                )));
            }
            Kind::KeySignature {
                sharps: sharps as i8,
                minor: event.get::<Option<bool>>("minor")?.unwrap_or(false),
            }
        }
        "sequencer_specific" => Kind::SequencerSpecific(bytes(event, "data")?),
        "unknown_meta" => Kind::Unknown(int(event, "meta_type", 127, &kind)?, bytes(event, "data")?),
        text => match TEXTS.iter().position(|t| *t == text) {
            Some(index) => Kind::Text(index, bytes(event, "text")?),
            None => return Err(mlua::Error::runtime(format!("unknown event type {text:?}"))),
        },
    })
}

fn kind_to_table(lua: &Lua, table: &Table, kind: &Kind) -> mlua::Result<()> {
    let put = |key: &str, value: LuaValue| table.raw_set(key, value);
    let num = |n: i64| LuaValue::Integer(n);
    let string = |b: &[u8]| lua.create_string(b).map(LuaValue::String);
    let type_name = match kind {
        Kind::NoteOn { channel, key, velocity } | Kind::NoteOff { channel, key, velocity } => {
            put("channel", num(i64::from(*channel)))?;
            put("note", num(i64::from(*key)))?;
            put("velocity", num(i64::from(*velocity)))?;
            if matches!(kind, Kind::NoteOn { .. }) {
                "note_on"
            } else {
                "note_off"
            }
        }
        Kind::Aftertouch { channel, key, pressure } => {
            put("channel", num(i64::from(*channel)))?;
            put("note", num(i64::from(*key)))?;
            put("pressure", num(i64::from(*pressure)))?;
            "aftertouch"
        }
        Kind::Controller {
            channel,
            controller,
            value,
        } => {
            put("channel", num(i64::from(*channel)))?;
            put("controller", num(i64::from(*controller)))?;
            put("value", num(i64::from(*value)))?;
            "controller"
        }
        Kind::ProgramChange { channel, program } => {
            put("channel", num(i64::from(*channel)))?;
            put("program", num(i64::from(*program)))?;
            "program_change"
        }
        Kind::ChannelAftertouch { channel, pressure } => {
            put("channel", num(i64::from(*channel)))?;
            put("pressure", num(i64::from(*pressure)))?;
            "channel_aftertouch"
        }
        Kind::PitchBend { channel, bend } => {
            put("channel", num(i64::from(*channel)))?;
            put("bend", num(i64::from(*bend)))?;
            "pitch_bend"
        }
        Kind::SysEx(data) => {
            put("data", string(data)?)?;
            "sysex"
        }
        Kind::Escape(data) => {
            put("data", string(data)?)?;
            "escape"
        }
        Kind::Text(index, text) => {
            put("text", string(text)?)?;
            TEXTS[(*index).min(TEXTS.len() - 1)]
        }
        Kind::TrackNumber(n) => {
            if let Some(n) = n {
                put("number", num(i64::from(*n)))?;
            }
            "track_number"
        }
        Kind::MidiChannel(c) => {
            put("channel", num(i64::from(*c)))?;
            "midi_channel"
        }
        Kind::MidiPort(p) => {
            put("port", num(i64::from(*p)))?;
            "midi_port"
        }
        Kind::EndOfTrack => "end_of_track",
        Kind::Tempo(t) => {
            put("microseconds_per_beat", num(i64::from(*t)))?;
            put("bpm", LuaValue::Number(60_000_000.0 / f64::from((*t).max(1))))?;
            "tempo"
        }
        Kind::SmpteOffset {
            hour,
            minute,
            second,
            frame,
            subframe,
            fps,
        } => {
            for (key, value) in [
                ("hour", hour),
                ("minute", minute),
                ("second", second),
                ("frame", frame),
                ("subframe", subframe),
                ("fps", fps),
            ] {
                put(key, num(i64::from(*value)))?;
            }
            "smpte_offset"
        }
        Kind::TimeSignature {
            numerator,
            denominator_power,
            clocks_per_click,
            notated_32nds,
        } => {
            put("numerator", num(i64::from(*numerator)))?;
            put("denominator", num(1i64 << (*denominator_power).min(62)))?;
            put("clocks_per_click", num(i64::from(*clocks_per_click)))?;
            put("notated_32nds", num(i64::from(*notated_32nds)))?;
            "time_signature"
        }
        Kind::KeySignature { sharps, minor } => {
            put("sharps", num(i64::from(*sharps)))?;
            put("minor", LuaValue::Boolean(*minor))?;
            "key_signature"
        }
        Kind::SequencerSpecific(data) => {
            put("data", string(data)?)?;
            "sequencer_specific"
        }
        Kind::Unknown(kind, data) => {
            put("meta_type", num(i64::from(*kind)))?;
            put("data", string(data)?)?;
            "unknown_meta"
        }
    };
    put("type", LuaValue::String(lua.create_string(type_name)?))
}

/// The Lua form: `{format, ppq | timecode = {fps, subframe}, tracks = {{event, ...}, ...},
/// bpm, time_signature}`; `bpm` and `time_signature` are read-only summaries of the first
/// such events.
pub fn to_table(lua: &Lua, song: &Song) -> mlua::Result<Table> {
    let table = lua.create_table()?;
    table.raw_set("format", i64::from(song.format))?;
    match song.division {
        Division::Ppq(ppq) => table.raw_set("ppq", i64::from(ppq))?,
        Division::Timecode(fps, sub) => {
            let timecode = lua.create_table()?;
            timecode.raw_set("fps", i64::from(fps))?;
            timecode.raw_set("subframe", i64::from(sub))?;
            table.raw_set("timecode", timecode)?;
        }
    }
    let tracks = lua.create_table_with_capacity(song.tracks.len(), 0)?;
    let mut first_tempo = None;
    let mut first_signature = None;
    for (i, events) in song.tracks.iter().enumerate() {
        let track = lua.create_table_with_capacity(events.len(), 0)?;
        for (j, event) in events.iter().enumerate() {
            let item = lua.create_table_with_capacity(0, 5)?;
            item.raw_set("tick", event.tick as i64)?;
            kind_to_table(lua, &item, &event.kind)?;
            match &event.kind {
                Kind::Tempo(t) if first_tempo.is_none() => first_tempo = Some(*t),
                Kind::TimeSignature {
                    numerator,
                    denominator_power,
                    ..
                } if first_signature.is_none() => first_signature = Some((*numerator, *denominator_power)),
                _ => {}
            }
            track.raw_set(j + 1, item)?;
        }
        tracks.raw_set(i + 1, track)?;
    }
    table.raw_set("tracks", tracks)?;
    table.raw_set("bpm", 60_000_000.0 / f64::from(first_tempo.unwrap_or(500_000).max(1)))?;
    let (numerator, power) = first_signature.unwrap_or((4, 2));
    let signature = lua.create_table()?;
    signature.raw_set(1, i64::from(numerator))?;
    signature.raw_set(2, 1i64 << power.min(62))?;
    table.raw_set("time_signature", signature)?;
    Ok(table)
}

/// Reads the Lua form back (see [`to_table`]); errors name the track, event and field.
pub fn from_table(table: &Table) -> mlua::Result<Song> {
    let format: i64 = table.get::<Option<i64>>("format")?.unwrap_or(1);
    let division = match table.get::<Option<mlua::Table>>("timecode")? {
        Some(timecode) => Division::Timecode(
            int(&timecode, "fps", 30, "timecode")?,
            int(&timecode, "subframe", 255, "timecode")?,
        ),
        None => Division::Ppq(
            table
                .get::<Option<i64>>("ppq")?
                .map(|_| int(table, "ppq", 0x7fff, "song"))
                .transpose()?
                .unwrap_or(480),
        ),
    };
    let tracks_table: Table = table
        .get::<Option<Table>>("tracks")?
        .ok_or_else(|| mlua::Error::runtime("a song needs `tracks` (a list of event lists)"))?;
    let mut tracks = Vec::new();
    for (i, track) in tracks_table.sequence_values::<Table>().enumerate() {
        let track = track.map_err(|e| mlua::Error::runtime(format!("tracks[{}]: {e}", i + 1)))?;
        if i >= MAX_TRACKS {
            return Err(mlua::Error::runtime(format!("more than {MAX_TRACKS} tracks")));
        }
        let mut events = Vec::with_capacity(track.raw_len());
        for (j, event) in track.sequence_values::<Table>().enumerate() {
            let context = |e: mlua::Error| mlua::Error::runtime(format!("tracks[{}][{}]: {e}", i + 1, j + 1));
            let event = event.map_err(context)?;
            let tick: i64 = event.get::<Option<i64>>("tick").map_err(context)?.unwrap_or(0);
            if tick < 0 {
                return Err(context(mlua::Error::runtime("tick must not be negative")));
            }
            events.push(Event {
                tick: tick as u64,
                kind: kind_from_table(&event).map_err(context)?,
            });
        }
        tracks.push(events);
    }
    Ok(Song {
        format: u16::try_from(format).map_err(|_| mlua::Error::runtime(format!("format {format} is not 0, 1 or 2")))?,
        division,
        tracks,
    })
}
