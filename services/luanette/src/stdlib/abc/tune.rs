//! ABC notation (<https://abcnotation.com/wiki/abc:standard:v2.1>) parsed into timed notes.
//!
//! Supported: the header fields X, T, M, L, Q, K and V; notes with accidentals that last to
//! the end of the bar (in every octave, as abc2midi plays them), key signatures in every mode, octave marks, lengths, broken rhythm
//! (`>` `<`), rests (`z`, `x`, `Z`), ties, tuplets `(2`–`(9`, chords `[CEG]`, bar lines,
//! repeats with first and second endings, several voices, and inline `[K:]`, `[L:]`,
//! `[M:]`, `[Q:]`, `[V:]` fields. Skipped (not sounded): grace notes, decorations, chord
//! symbols, lyrics and other fields. abc2midi is the reference for what is sounded.

use std::collections::HashMap;

/// Why a tune could not be read.
pub type Result<T> = std::result::Result<T, String>;

/// A sounded note, in quarter-note beats from the start of the tune.
#[derive(Debug, Clone, PartialEq)]
pub struct Note {
    pub pitch: u8,
    pub start: f64,
    pub duration: f64,
}

/// One voice's notes.
#[derive(Debug, Clone, Default)]
pub struct Voice {
    pub id: String,
    pub notes: Vec<Note>,
}

/// A parsed tune.
#[derive(Debug, Clone)]
pub struct Tune {
    pub title: String,
    /// Beats per bar as (numerator, denominator); None for free meter.
    pub meter: Option<(u32, u32)>,
    /// Quarter notes per minute.
    pub tempo: f64,
    /// Sharps (positive) or flats (negative) of the key signature, and whether it is minor.
    pub key: (i8, bool),
    /// The key as written (e.g. "Ador").
    pub key_name: String,
    pub voices: Vec<Voice>,
}

/// A written element before repeats are expanded.
#[derive(Debug, Clone)]
enum Element {
    /// Pitches sounding together (empty: a rest), their length in beats, and whether tied on.
    Sound {
        pitches: Vec<(u8, bool)>,
        length: f64,
    },
    Bar,
    RepeatStart,
    RepeatEnd,
    Ending(u8),
}

/// Per-voice parsing state.
#[derive(Default)]
struct VoiceState {
    elements: Vec<Element>,
    /// Accidentals written in the current bar: letter -> semitone change. Like abc2midi,
    /// an accidental holds for that letter in every octave until the bar line.
    bar_accidentals: HashMap<u8, i32>,
    /// Tuplet: notes left, and the factor applied to them.
    tuplet: Option<(u32, f64)>,
    /// Broken rhythm: the factor for the next note.
    next_factor: Option<f64>,
}

const MAJOR_SHARPS: &[(&str, i8)] = &[
    ("C", 0),
    ("G", 1),
    ("D", 2),
    ("A", 3),
    ("E", 4),
    ("B", 5),
    ("F#", 6),
    ("C#", 7),
    ("F", -1),
    ("Bb", -2),
    ("Eb", -3),
    ("Ab", -4),
    ("Db", -5),
    ("Gb", -6),
    ("Cb", -7),
];

/// (sharps, minor) of a K: field like "G", "Ador", "F#m", "Bbmix", "none".
fn parse_key(field: &str) -> Result<(i8, bool)> {
    let field = field.trim();
    let token = field.split_whitespace().next().unwrap_or("");
    if token.is_empty() || token.eq_ignore_ascii_case("none") {
        return Ok((0, false));
    }
    let mut chars = token.chars();
    let tonic = chars.next().ok_or("K: is empty")?.to_ascii_uppercase();
    if !('A'..='G').contains(&tonic) {
        return Err(format!("K:{token}: the key must start with a note A-G"));
    }
    let rest: String = chars.collect();
    let (accidental, mode) = match rest.chars().next() {
        Some('#') => ("#", &rest[1..]),
        Some('b') => ("b", &rest[1..]),
        _ => ("", rest.as_str()),
    };
    let mode = mode.to_ascii_lowercase();
    let (offset, minor) = match mode.get(..3.min(mode.len())).unwrap_or("") {
        "" | "maj" | "ion" => (0, false),
        "m" | "min" | "aeo" => (-3, true),
        "mix" => (-1, false),
        "dor" => (-2, false),
        "phr" => (-4, false),
        "lyd" => (1, false),
        "loc" => (-5, false),
        other => return Err(format!("K:{token}: unknown mode {other:?}")),
    };
    let name = format!("{tonic}{accidental}");
    // The tonic as a major key, then moved around the circle of fifths by the mode.
    let base = match MAJOR_SHARPS.iter().find(|(n, _)| *n == name) {
        Some((_, sharps)) => *sharps,
        None => match name.as_str() {
            "G#" => 8,
            "D#" => 9,
            "A#" => 10,
            "E#" => 11,
            "B#" => 12,
            "Fb" => -8,
            _ => return Err(format!("K:{token}: unknown key")),
        },
    };
    let sharps = base + offset;
    if !(-7..=7).contains(&sharps) {
        return Err(format!("K:{token}: more than 7 sharps or flats"));
    }
    Ok((sharps as i8, minor))
}

/// The key signature's change for a letter (0 = C ... 6 = B).
fn key_accidental(sharps: i8, letter: u8) -> i32 {
    // Sharps are added in the order F C G D A E B, flats in the reverse order.
    const SHARP_ORDER: [u8; 7] = [3, 0, 4, 1, 5, 2, 6];
    let position = SHARP_ORDER.iter().position(|l| *l == letter).unwrap_or(0) as i8;
    if sharps > 0 && position < sharps {
        1
    } else if sharps < 0 && 6 - position < -sharps {
        -1
    } else {
        0
    }
}

fn parse_fraction(text: &str) -> Option<(u32, u32)> {
    let (n, d) = text.trim().split_once('/')?;
    Some((n.trim().parse().ok()?, d.trim().parse().ok()?))
}

fn parse_meter(text: &str) -> Result<Option<(u32, u32)>> {
    match text.trim() {
        "C" => Ok(Some((4, 4))),
        "C|" => Ok(Some((2, 2))),
        "" | "none" => Ok(None),
        other => parse_fraction(other)
            .filter(|(n, d)| *n > 0 && *d > 0)
            .map(Some)
            .ok_or_else(|| format!("M:{other} is not a meter")),
    }
}

/// Quarter notes per minute from "1/4=120", "3/8=40", "120" or "\"Allegro\" 1/4=120".
fn parse_tempo(text: &str) -> Result<f64> {
    let text = text
        .split('"')
        .enumerate()
        .filter(|(i, _)| i % 2 == 0)
        .map(|(_, s)| s)
        .collect::<String>();
    let text = text.trim();
    let (beat, bpm) = match text.split_once('=') {
        Some((beat, bpm)) => {
            let beat: f64 = beat
                .split_whitespace()
                .filter_map(parse_fraction)
                .map(|(n, d)| f64::from(n) / f64::from(d))
                .sum();
            (beat, bpm.trim())
        }
        None => (0.25, text),
    };
    let bpm: f64 = bpm.parse().map_err(|_| format!("Q:{text} is not a tempo"))?;
    if !(bpm > 0.0 && bpm <= 2000.0 && beat > 0.0) {
        return Err(format!("Q:{text} is out of range"));
    }
    Ok(bpm * beat * 4.0)
}

/// A parser over the whole tune.
struct Parser {
    unit: f64,
    unit_set: bool,
    meter: Option<(u32, u32)>,
    key: (i8, bool),
    voices: Vec<(String, VoiceState)>,
    current: usize,
}

impl Parser {
    fn voice(&mut self, id: &str) {
        let id = id.split_whitespace().next().unwrap_or("1").to_string();
        self.current = match self.voices.iter().position(|(v, _)| *v == id) {
            Some(index) => index,
            None => {
                self.voices.push((id, VoiceState::default()));
                self.voices.len() - 1
            }
        };
    }

    fn state(&mut self) -> &mut VoiceState {
        if self.voices.is_empty() {
            self.voices.push(("1".into(), VoiceState::default()));
            self.current = 0;
        }
        &mut self.voices[self.current].1
    }

    /// A field (header or inline). Returns an error for a malformed value.
    fn field(&mut self, name: char, value: &str, tune: &mut Tune) -> Result<()> {
        match name {
            'T' if tune.title.is_empty() => tune.title = value.trim().to_string(),
            'M' => {
                self.meter = parse_meter(value)?;
                if tune.meter.is_none() {
                    tune.meter = self.meter;
                }
            }
            'L' => {
                let (n, d) = parse_fraction(value)
                    .filter(|(n, d)| *n > 0 && *d > 0)
                    .ok_or_else(|| format!("L:{value} is not a length"))?;
                self.unit = f64::from(n) / f64::from(d);
                self.unit_set = true;
            }
            'Q' => tune.tempo = parse_tempo(value)?,
            'K' => {
                self.key = parse_key(value)?;
                tune.key = self.key;
                tune.key_name = value.split_whitespace().next().unwrap_or("C").to_string();
            }
            'V' => self.voice(value),
            _ => {}
        }
        Ok(())
    }

    fn default_unit(&mut self) {
        if !self.unit_set {
            // The standard: 1/16 below 3/4, else 1/8.
            self.unit = match self.meter {
                Some((n, d)) if f64::from(n) / f64::from(d) < 0.75 => 1.0 / 16.0,
                _ => 1.0 / 8.0,
            };
        }
    }

    /// The length multiplier after a note: "2", "/", "//", "/3", "3/2", "3/".
    fn length(chars: &[char], i: &mut usize) -> f64 {
        let number = |i: &mut usize| -> Option<u32> {
            let start = *i;
            while *i < chars.len() && chars[*i].is_ascii_digit() {
                *i += 1;
            }
            chars[start..*i].iter().collect::<String>().parse().ok()
        };
        let numerator = number(i).unwrap_or(1);
        let mut denominator = 1u32;
        while *i < chars.len() && chars[*i] == '/' {
            *i += 1;
            match number(i) {
                Some(d) => denominator = denominator.saturating_mul(d.max(1)),
                None => denominator = denominator.saturating_mul(2),
            }
        }
        f64::from(numerator) / f64::from(denominator)
    }

    /// A note's pitch at `chars[*i]` (accidentals, letter, octave marks).
    fn pitch(&mut self, chars: &[char], i: &mut usize) -> Result<Option<u8>> {
        let mut accidental: Option<i32> = None;
        while *i < chars.len() && matches!(chars[*i], '^' | '_' | '=') {
            let change = match chars[*i] {
                '^' => 1,
                '_' => -1,
                _ => 0,
            };
            accidental = Some(if chars[*i] == '=' {
                0
            } else {
                accidental.unwrap_or(0) + change
            });
            *i += 1;
        }
        let Some(&letter) = chars.get(*i) else {
            return Ok(None);
        };
        let (index, mut octave) = match letter {
            'C'..='G' | 'A' | 'B' => ("CDEFGAB".find(letter).unwrap_or(0) as u8, 0),
            'c'..='g' | 'a' | 'b' => ("cdefgab".find(letter).unwrap_or(0) as u8, 1),
            _ => return Ok(None),
        };
        *i += 1;
        while *i < chars.len() && matches!(chars[*i], '\'' | ',') {
            octave += if chars[*i] == '\'' { 1 } else { -1 };
            *i += 1;
        }
        const SEMITONES: [i32; 7] = [0, 2, 4, 5, 7, 9, 11];
        let key = self.key.0;
        let state = self.state();
        let change = match accidental {
            Some(change) => {
                state.bar_accidentals.insert(index, change);
                change
            }
            None => match state.bar_accidentals.get(&index) {
                Some(change) => *change,
                None => key_accidental(key, index),
            },
        };
        let pitch = 60 + 12 * octave + SEMITONES[usize::from(index)] + change;
        if !(0..=127).contains(&pitch) {
            return Err(format!("a note lies outside the MIDI range (pitch {pitch})"));
        }
        Ok(Some(pitch as u8))
    }

    /// Applies tuplet and broken-rhythm factors to a new note or rest's length.
    fn factor(&mut self, length: f64) -> f64 {
        let state = self.state();
        let mut length = length;
        if let Some(factor) = state.next_factor.take() {
            length *= factor;
        }
        if let Some((left, factor)) = state.tuplet {
            length *= factor;
            state.tuplet = if left > 1 { Some((left - 1, factor)) } else { None };
        }
        length
    }

    fn push_sound(&mut self, pitches: Vec<(u8, bool)>, length: f64) {
        let length = self.factor(length);
        self.state().elements.push(Element::Sound { pitches, length });
    }

    fn bar(&mut self, element: Option<Element>) {
        let state = self.state();
        state.bar_accidentals.clear();
        state.elements.push(element.unwrap_or(Element::Bar));
    }

    /// One line of music.
    fn body(&mut self, line: &str, tune: &mut Tune) -> Result<()> {
        let chars: Vec<char> = line.chars().collect();
        let mut i = 0;
        let beats = |unit: f64, multiplier: f64| unit * multiplier * 4.0;
        while i < chars.len() {
            let c = chars[i];
            match c {
                '%' => break,
                ' ' | '\t' | '`' | '\\' | 'y' => i += 1,
                '"' => {
                    // Chord symbols and annotations are not sounded.
                    i += 1;
                    while i < chars.len() && chars[i] != '"' {
                        i += 1;
                    }
                    i += 1;
                }
                '!' | '+' => {
                    let close = c;
                    i += 1;
                    while i < chars.len() && chars[i] != close {
                        i += 1;
                    }
                    i += 1;
                }
                '{' => {
                    // Grace notes are not sounded here.
                    while i < chars.len() && chars[i] != '}' {
                        i += 1;
                    }
                    i += 1;
                }
                '.' | '~' | 'H' | 'L' | 'M' | 'O' | 'P' | 'S' | 'T' | 'u' | 'v' | 'J' | 'R' => i += 1,
                '(' => {
                    i += 1;
                    let start = i;
                    while i < chars.len() && chars[i].is_ascii_digit() {
                        i += 1;
                    }
                    let Ok(p) = chars[start..i].iter().collect::<String>().parse::<u32>() else {
                        continue; // a slur
                    };
                    // Skip the optional ":q:r" part.
                    while i < chars.len() && (chars[i] == ':' || chars[i].is_ascii_digit()) {
                        i += 1;
                    }
                    let compound = matches!(self.meter, Some((n, _)) if n % 3 == 0 && n > 3);
                    let q = match p {
                        2 | 4 | 8 => 3,
                        3 | 6 => 2,
                        _ if compound => 3,
                        _ => 2,
                    };
                    if (2..=9).contains(&p) {
                        self.state().tuplet = Some((p, f64::from(q) / f64::from(p)));
                    }
                }
                ')' => i += 1,
                '-' => {
                    if let Some(Element::Sound { pitches, .. }) = self.state().elements.last_mut() {
                        for pitch in pitches.iter_mut() {
                            pitch.1 = true;
                        }
                    }
                    i += 1;
                }
                '>' | '<' => {
                    let mut count = 0;
                    while i < chars.len() && chars[i] == c {
                        count += 1;
                        i += 1;
                    }
                    let short = 0.5f64.powi(count);
                    let (before, after) = if c == '>' {
                        (2.0 - short, short)
                    } else {
                        (short, 2.0 - short)
                    };
                    let state = self.state();
                    if let Some(Element::Sound { length, .. }) = state.elements.last_mut() {
                        *length *= before;
                    }
                    state.next_factor = Some(after);
                }
                'z' | 'x' => {
                    i += 1;
                    let length = beats(self.unit, Self::length(&chars, &mut i));
                    self.push_sound(Vec::new(), length);
                }
                'Z' => {
                    i += 1;
                    let bars = Self::length(&chars, &mut i);
                    let (n, d) = self.meter.unwrap_or((4, 4));
                    let length = bars * 4.0 * f64::from(n) / f64::from(d);
                    self.state().elements.push(Element::Sound {
                        pitches: Vec::new(),
                        length,
                    });
                }
                '[' if chars.get(i + 2) == Some(&':') && chars.get(i + 1).is_some_and(|c| c.is_ascii_alphabetic()) => {
                    let end = chars[i..]
                        .iter()
                        .position(|c| *c == ']')
                        .map(|p| i + p)
                        .unwrap_or(chars.len());
                    let value: String = chars[i + 3..end].iter().collect();
                    self.field(chars[i + 1], &value, tune)?;
                    i = end + 1;
                }
                '[' if chars.get(i + 1).is_some_and(|c| c.is_ascii_digit()) => {
                    self.state()
                        .elements
                        .push(Element::Ending(chars[i + 1].to_digit(10).unwrap_or(1) as u8));
                    i += 2;
                }
                '[' if chars.get(i + 1) == Some(&'|') => {
                    self.bar(None);
                    i += 2;
                }
                '[' => {
                    i += 1;
                    let mut pitches = Vec::new();
                    let mut length = None;
                    while i < chars.len() && chars[i] != ']' {
                        match self.pitch(&chars, &mut i)? {
                            Some(pitch) => {
                                let note_length = beats(self.unit, Self::length(&chars, &mut i));
                                length.get_or_insert(note_length);
                                let tied = chars.get(i) == Some(&'-');
                                if tied {
                                    i += 1;
                                }
                                pitches.push((pitch, tied));
                            }
                            None => i += 1,
                        }
                    }
                    i += 1;
                    let multiplier = Self::length(&chars, &mut i);
                    let tied = chars.get(i) == Some(&'-');
                    if tied {
                        i += 1;
                        for pitch in pitches.iter_mut() {
                            pitch.1 = true;
                        }
                    }
                    if !pitches.is_empty() {
                        self.push_sound(pitches, length.unwrap_or(beats(self.unit, 1.0)) * multiplier);
                    }
                }
                '|' | ':' => {
                    let start = i;
                    while i < chars.len() && matches!(chars[i], '|' | ':' | ']') {
                        i += 1;
                    }
                    let bar: String = chars[start..i].iter().collect();
                    let ends = bar.starts_with(':');
                    let starts = bar.ends_with(':') && bar.len() > 1 || bar == "::";
                    if ends {
                        self.bar(Some(Element::RepeatEnd));
                    }
                    if starts {
                        self.bar(Some(Element::RepeatStart));
                    }
                    if !ends && !starts {
                        self.bar(None);
                    }
                    if i < chars.len() && chars[i].is_ascii_digit() {
                        self.state()
                            .elements
                            .push(Element::Ending(chars[i].to_digit(10).unwrap_or(1) as u8));
                        i += 1;
                    }
                }
                _ => match self.pitch(&chars, &mut i)? {
                    Some(pitch) => {
                        let length = beats(self.unit, Self::length(&chars, &mut i));
                        self.push_sound(vec![(pitch, false)], length);
                    }
                    None => return Err(format!("unexpected {c:?} in {line:?}")),
                },
            }
        }
        Ok(())
    }
}

/// Plays repeats: `|: ... :|` twice, with first and second endings.
fn expand(elements: &[Element]) -> Vec<&Element> {
    let mut out = Vec::new();
    let (mut i, mut start, mut second_pass) = (0, 0, false);
    let mut guard = 0usize;
    while i < elements.len() {
        guard += 1;
        if guard > elements.len() * 4 + 16 {
            break; // malformed repeats never loop forever
        }
        match &elements[i] {
            Element::RepeatStart => {
                start = i + 1;
                second_pass = false;
                i += 1;
            }
            Element::RepeatEnd if !second_pass => {
                second_pass = true;
                i = start;
            }
            Element::RepeatEnd => {
                second_pass = false;
                i += 1;
                start = i;
            }
            Element::Ending(1) if second_pass => {
                // Skip the first ending on the way through again.
                let next = elements[i + 1..]
                    .iter()
                    .position(|e| matches!(e, Element::Ending(n) if *n > 1));
                i = match next {
                    Some(offset) => i + 1 + offset,
                    None => elements.len(),
                };
                second_pass = false;
            }
            Element::Ending(_) | Element::Bar => i += 1,
            sound => {
                out.push(sound);
                i += 1;
            }
        }
    }
    out
}

/// Reads a tune (the first one in `text`).
pub fn parse(text: &str) -> Result<Tune> {
    let mut tune = Tune {
        title: String::new(),
        meter: None,
        tempo: 120.0,
        key: (0, false),
        key_name: "C".into(),
        voices: Vec::new(),
    };
    let mut parser = Parser {
        unit: 1.0 / 8.0,
        unit_set: false,
        meter: Some((4, 4)),
        key: (0, false),
        voices: Vec::new(),
        current: 0,
    };
    let mut in_body = false;
    let mut tunes = 0;
    for line in text.lines() {
        let line = line.trim_end();
        let field = line.len() >= 2 && line.as_bytes()[1] == b':' && line.as_bytes()[0].is_ascii_alphabetic();
        if field && !line.starts_with("|:") {
            let (name, value) = (line.as_bytes()[0] as char, &line[2..]);
            if name == 'X' {
                tunes += 1;
                if tunes > 1 {
                    break;
                }
            }
            if name == 'M' && !in_body {
                tune.meter = parse_meter(value)?;
            }
            parser.field(name, value, &mut tune)?;
            if name == 'K' && !in_body {
                in_body = true;
                parser.default_unit();
            }
        } else if in_body && !line.trim().is_empty() && !line.starts_with('%') {
            parser.body(line, &mut tune)?;
        }
    }
    if !in_body {
        return Err("no K: field, so no tune body".into());
    }
    for (id, state) in &parser.voices {
        let mut notes: Vec<Note> = Vec::new();
        let mut open: HashMap<u8, usize> = HashMap::new();
        let mut time = 0.0f64;
        for element in expand(&state.elements) {
            if let Element::Sound { pitches, length } = element {
                let mut still_open = HashMap::new();
                for (pitch, tied) in pitches {
                    match open.get(pitch) {
                        Some(&index) if (notes[index].start + notes[index].duration - time).abs() < 1e-6 => {
                            notes[index].duration += length;
                            if *tied {
                                still_open.insert(*pitch, index);
                            }
                        }
                        _ => {
                            notes.push(Note {
                                pitch: *pitch,
                                start: time,
                                duration: *length,
                            });
                            if *tied {
                                still_open.insert(*pitch, notes.len() - 1);
                            }
                        }
                    }
                }
                open = still_open;
                time += length;
            }
        }
        tune.voices.push(Voice { id: id.clone(), notes });
    }
    Ok(tune)
}
