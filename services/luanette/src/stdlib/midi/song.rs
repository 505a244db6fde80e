//! A Standard MIDI File as owned data with absolute ticks, converted from and to bytes
//! (midly) and from and to Lua tables. Every event kind midly knows survives a round trip.

use midly::num::{u4, u7, u15, u24, u28};
use midly::{
    Format, Fps, Header, MetaMessage, MidiMessage, PitchBend, Smf, SmpteTime, Timing, TrackEvent, TrackEventKind,
};

/// Most tracks and events accepted (a hostile file cannot make us allocate without bound
/// beyond what the VM's memory limit already stops).
pub(super) const MAX_TRACKS: usize = 1024;

/// Meta events that carry text, by their Lua type name.
pub(super) const TEXTS: &[&str] = &[
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
