//! A Standard MIDI File as owned data with absolute ticks, converted from and to bytes
//! (midly) and from and to Lua tables. Every event kind midly knows survives a round trip.

use midly::num::{u4, u7, u15, u24, u28};
use midly::{
    Format, Fps, Header, MetaMessage, MidiMessage, PitchBend, Smf, SmpteTime, Timing, TrackEvent, TrackEventKind,
};
use mlua::{Lua, Table, Value as LuaValue};

/// Most tracks and events accepted (a hostile file cannot make us allocate without bound
/// beyond what the VM's memory limit already stops).
const MAX_TRACKS: usize = 1024;

/// Meta events that carry text, by their Lua type name.
const TEXTS: &[&str] = &[
    "text",
    "copyright",
    "track_name",
    "instrument_name",
    "lyric",
    "marker",
    "cue_point",
    "program_name",
    "device_name",
];

/// One event.
#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    NoteOn {
        channel: u8,
        key: u8,
        velocity: u8,
    },
    NoteOff {
        channel: u8,
        key: u8,
        velocity: u8,
    },
    Aftertouch {
        channel: u8,
        key: u8,
        pressure: u8,
    },
    Controller {
        channel: u8,
        controller: u8,
        value: u8,
    },
    ProgramChange {
        channel: u8,
        program: u8,
    },
    ChannelAftertouch {
        channel: u8,
        pressure: u8,
    },
    PitchBend {
        channel: u8,
        bend: i16,
    },
    SysEx(Vec<u8>),
    Escape(Vec<u8>),
    /// `TEXTS[index]`, bytes.
    Text(usize, Vec<u8>),
    TrackNumber(Option<u16>),
    MidiChannel(u8),
    MidiPort(u8),
    EndOfTrack,
    Tempo(u32),
    SmpteOffset {
        hour: u8,
        minute: u8,
        second: u8,
        frame: u8,
        subframe: u8,
        fps: u8,
    },
    TimeSignature {
        numerator: u8,
        denominator_power: u8,
        clocks_per_click: u8,
        notated_32nds: u8,
    },
    KeySignature {
        sharps: i8,
        minor: bool,
    },
    SequencerSpecific(Vec<u8>),
    Unknown(u8, Vec<u8>),
}

/// An event at an absolute tick.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub tick: u64,
    pub kind: Kind,
}

/// How ticks relate to time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Division {
    /// Ticks per quarter note.
    Ppq(u16),
    /// Frames per second and ticks per frame.
    Timecode(u8, u8),
}

/// A whole file.
#[derive(Debug, Clone, PartialEq)]
pub struct Song {
    pub format: u16,
    pub division: Division,
    pub tracks: Vec<Vec<Event>>,
}

impl Song {
    /// Ticks per beat (timecode files: ticks per second / 2, i.e. 120 bpm).
    pub fn ppq(&self) -> f64 {
        match self.division {
            Division::Ppq(ppq) => f64::from(ppq.max(1)),
            Division::Timecode(fps, sub) => f64::from(fps.max(1)) * f64::from(sub.max(1)) / 2.0,
        }
    }
}

/// Why bytes or a table are not a song.
pub type Result<T> = std::result::Result<T, String>;

pub fn parse(bytes: &[u8]) -> Result<Song> {
    let smf = Smf::parse(bytes).map_err(|e| format!("not a MIDI file: {e}"))?;
    if smf.tracks.len() > MAX_TRACKS {
        return Err(format!("more than {MAX_TRACKS} tracks"));
    }
    let format = match smf.header.format {
        Format::SingleTrack => 0,
        Format::Parallel => 1,
        Format::Sequential => 2,
    };
    let division = match smf.header.timing {
        Timing::Metrical(ppq) => Division::Ppq(ppq.as_int()),
        Timing::Timecode(fps, sub) => Division::Timecode(fps.as_int(), sub),
    };
    let tracks = smf
        .tracks
        .iter()
        .map(|track| {
            let mut tick = 0u64;
            track
                .iter()
                .map(|event| {
                    tick += u64::from(event.delta.as_int());
                    Event {
                        tick,
                        kind: kind_from_midly(&event.kind),
                    }
                })
                .collect()
        })
        .collect();
    Ok(Song {
        format,
        division,
        tracks,
    })
}

fn kind_from_midly(kind: &TrackEventKind<'_>) -> Kind {
    match *kind {
        TrackEventKind::Midi { channel, message } => {
            let channel = channel.as_int();
            match message {
                MidiMessage::NoteOn { key, vel } => Kind::NoteOn {
                    channel,
                    key: key.as_int(),
                    velocity: vel.as_int(),
                },
                MidiMessage::NoteOff { key, vel } => Kind::NoteOff {
                    channel,
                    key: key.as_int(),
                    velocity: vel.as_int(),
                },
                MidiMessage::Aftertouch { key, vel } => Kind::Aftertouch {
                    channel,
                    key: key.as_int(),
                    pressure: vel.as_int(),
                },
                MidiMessage::Controller { controller, value } => Kind::Controller {
                    channel,
                    controller: controller.as_int(),
                    value: value.as_int(),
                },
                MidiMessage::ProgramChange { program } => Kind::ProgramChange {
                    channel,
                    program: program.as_int(),
                },
                MidiMessage::ChannelAftertouch { vel } => Kind::ChannelAftertouch {
                    channel,
                    pressure: vel.as_int(),
                },
                MidiMessage::PitchBend { bend } => Kind::PitchBend {
                    channel,
                    bend: bend.as_int(),
                },
            }
        }
        TrackEventKind::SysEx(data) => Kind::SysEx(data.to_vec()),
        TrackEventKind::Escape(data) => Kind::Escape(data.to_vec()),
        TrackEventKind::Meta(meta) => match meta {
            MetaMessage::Text(t) => Kind::Text(0, t.to_vec()),
            MetaMessage::Copyright(t) => Kind::Text(1, t.to_vec()),
            MetaMessage::TrackName(t) => Kind::Text(2, t.to_vec()),
            MetaMessage::InstrumentName(t) => Kind::Text(3, t.to_vec()),
            MetaMessage::Lyric(t) => Kind::Text(4, t.to_vec()),
            MetaMessage::Marker(t) => Kind::Text(5, t.to_vec()),
            MetaMessage::CuePoint(t) => Kind::Text(6, t.to_vec()),
            MetaMessage::ProgramName(t) => Kind::Text(7, t.to_vec()),
            MetaMessage::DeviceName(t) => Kind::Text(8, t.to_vec()),
            MetaMessage::TrackNumber(n) => Kind::TrackNumber(n),
            MetaMessage::MidiChannel(c) => Kind::MidiChannel(c.as_int()),
            MetaMessage::MidiPort(p) => Kind::MidiPort(p.as_int()),
            MetaMessage::EndOfTrack => Kind::EndOfTrack,
            MetaMessage::Tempo(t) => Kind::Tempo(t.as_int()),
            MetaMessage::SmpteOffset(s) => Kind::SmpteOffset {
                hour: s.hour(),
                minute: s.minute(),
                second: s.second(),
                frame: s.frame(),
                subframe: s.subframe(),
                fps: s.fps().as_int(),
            },
            MetaMessage::TimeSignature(n, d, c, b) => Kind::TimeSignature {
                numerator: n,
                denominator_power: d,
                clocks_per_click: c,
                notated_32nds: b,
            },
            MetaMessage::KeySignature(sharps, minor) => Kind::KeySignature { sharps, minor },
            MetaMessage::SequencerSpecific(data) => Kind::SequencerSpecific(data.to_vec()),
            MetaMessage::Unknown(kind, data) => Kind::Unknown(kind, data.to_vec()),
        },
    }
}

fn kind_to_midly(kind: &Kind) -> Result<TrackEventKind<'_>> {
    let midi = |channel: u8, message| TrackEventKind::Midi {
        channel: u4::new(channel),
        message,
    };
    Ok(match kind {
        Kind::NoteOn { channel, key, velocity } => midi(
            *channel,
            MidiMessage::NoteOn {
                key: u7::new(*key),
                vel: u7::new(*velocity),
            },
        ),
        Kind::NoteOff { channel, key, velocity } => midi(
            *channel,
            MidiMessage::NoteOff {
                key: u7::new(*key),
                vel: u7::new(*velocity),
            },
        ),
        Kind::Aftertouch { channel, key, pressure } => midi(
            *channel,
            MidiMessage::Aftertouch {
                key: u7::new(*key),
                vel: u7::new(*pressure),
            },
        ),
        Kind::Controller {
            channel,
            controller,
            value,
        } => midi(
            *channel,
            MidiMessage::Controller {
                controller: u7::new(*controller),
                value: u7::new(*value),
            },
        ),
        Kind::ProgramChange { channel, program } => midi(
            *channel,
            MidiMessage::ProgramChange {
                program: u7::new(*program),
            },
        ),
        Kind::ChannelAftertouch { channel, pressure } => midi(
            *channel,
            MidiMessage::ChannelAftertouch {
                vel: u7::new(*pressure),
            },
        ),
        Kind::PitchBend { channel, bend } => midi(
            *channel,
            MidiMessage::PitchBend {
                bend: PitchBend::from_int(*bend),
            },
        ),
        Kind::SysEx(data) => TrackEventKind::SysEx(data),
        Kind::Escape(data) => TrackEventKind::Escape(data),
        Kind::Text(index, text) => TrackEventKind::Meta(match index {
            0 => MetaMessage::Text(text),
            1 => MetaMessage::Copyright(text),
            2 => MetaMessage::TrackName(text),
            3 => MetaMessage::InstrumentName(text),
            4 => MetaMessage::Lyric(text),
            5 => MetaMessage::Marker(text),
            6 => MetaMessage::CuePoint(text),
            7 => MetaMessage::ProgramName(text),
            _ => MetaMessage::DeviceName(text),
        }),
        Kind::TrackNumber(n) => TrackEventKind::Meta(MetaMessage::TrackNumber(*n)),
        Kind::MidiChannel(c) => TrackEventKind::Meta(MetaMessage::MidiChannel(u4::new(*c))),
        Kind::MidiPort(p) => TrackEventKind::Meta(MetaMessage::MidiPort(u7::new(*p))),
        Kind::EndOfTrack => TrackEventKind::Meta(MetaMessage::EndOfTrack),
        Kind::Tempo(t) => TrackEventKind::Meta(MetaMessage::Tempo(u24::new(*t))),
        Kind::SmpteOffset {
            hour,
            minute,
            second,
            frame,
            subframe,
            fps,
        } => {
            let fps = Fps::from_int(*fps).ok_or_else(|| format!("smpte_offset: fps {fps} is not 24, 25, 29 or 30"))?;
            let time = SmpteTime::new(*hour, *minute, *second, *frame, *subframe, fps)
                .ok_or("smpte_offset: a field is out of range")?;
            TrackEventKind::Meta(MetaMessage::SmpteOffset(time))
        }
        Kind::TimeSignature {
            numerator,
            denominator_power,
            clocks_per_click,
            notated_32nds,
        } => TrackEventKind::Meta(MetaMessage::TimeSignature(
            *numerator,
            *denominator_power,
            *clocks_per_click,
            *notated_32nds,
        )),
        Kind::KeySignature { sharps, minor } => TrackEventKind::Meta(MetaMessage::KeySignature(*sharps, *minor)),
        Kind::SequencerSpecific(data) => TrackEventKind::Meta(MetaMessage::SequencerSpecific(data)),
        Kind::Unknown(kind, data) => TrackEventKind::Meta(MetaMessage::Unknown(*kind, data)),
    })
}

/// Bytes of a Standard MIDI File. Events are ordered by tick (stable), and every track
/// ends with exactly one end-of-track event, added if missing.
pub fn write(song: &Song) -> Result<Vec<u8>> {
    let format = match song.format {
        0 if song.tracks.len() <= 1 => Format::SingleTrack,
        0 => return Err("format 0 holds exactly one track; use format 1".into()),
        1 => Format::Parallel,
        2 => Format::Sequential,
        other => return Err(format!("format {other} is not 0, 1 or 2")),
    };
    let timing = match song.division {
        Division::Ppq(ppq) if (1..=0x7fff).contains(&ppq) => Timing::Metrical(u15::new(ppq)),
        Division::Ppq(ppq) => return Err(format!("ppq {ppq} is not between 1 and 32767")),
        Division::Timecode(fps, sub) => Timing::Timecode(
            Fps::from_int(fps).ok_or_else(|| format!("fps {fps} is not 24, 25, 29 or 30"))?,
            sub,
        ),
    };
    let mut tracks = Vec::with_capacity(song.tracks.len());
    for events in &song.tracks {
        let mut ordered: Vec<&Event> = events.iter().filter(|e| e.kind != Kind::EndOfTrack).collect();
        ordered.sort_by_key(|e| e.tick);
        let last = events.iter().map(|e| e.tick).max().unwrap_or(0);
        let mut track = Vec::with_capacity(ordered.len() + 1);
        let mut previous = 0u64;
        for event in ordered {
            let delta = u32::try_from(event.tick - previous)
                .ok()
                .filter(|d| *d <= u28::max_value().as_int())
                .ok_or("two events are too far apart for a MIDI delta time")?;
            previous = event.tick;
            track.push(TrackEvent {
                delta: u28::new(delta),
                kind: kind_to_midly(&event.kind)?,
            });
        }
        let delta = u32::try_from(last - previous).map_err(|_| "the end of a track is too far away")?;
        track.push(TrackEvent {
            delta: u28::new(delta),
            kind: TrackEventKind::Meta(MetaMessage::EndOfTrack),
        });
        tracks.push(track);
    }
    let smf = Smf {
        header: Header::new(format, timing),
        tracks,
    };
    let mut bytes = Vec::new();
    smf.write_std(&mut bytes).map_err(|e| format!("writing MIDI: {e}"))?;
    Ok(bytes)
}

// ------------------------------------------------------------------ Lua tables

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

/// The Lua `type` of an event.
pub fn type_name(kind: &Kind) -> &'static str {
    match kind {
        Kind::NoteOn { .. } => "note_on",
        Kind::NoteOff { .. } => "note_off",
        Kind::Aftertouch { .. } => "aftertouch",
        Kind::Controller { .. } => "controller",
        Kind::ProgramChange { .. } => "program_change",
        Kind::ChannelAftertouch { .. } => "channel_aftertouch",
        Kind::PitchBend { .. } => "pitch_bend",
        Kind::SysEx(_) => "sysex",
        Kind::Escape(_) => "escape",
        Kind::Text(index, _) => TEXTS[(*index).min(TEXTS.len() - 1)],
        Kind::TrackNumber(_) => "track_number",
        Kind::MidiChannel(_) => "midi_channel",
        Kind::MidiPort(_) => "midi_port",
        Kind::EndOfTrack => "end_of_track",
        Kind::Tempo(_) => "tempo",
        Kind::SmpteOffset { .. } => "smpte_offset",
        Kind::TimeSignature { .. } => "time_signature",
        Kind::KeySignature { .. } => "key_signature",
        Kind::SequencerSpecific(_) => "sequencer_specific",
        Kind::Unknown(..) => "unknown_meta",
    }
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
