//! Notes back to ABC text: one line of music per voice, `L:1/8`, `K:C` with explicit
//! accidentals (so any transposition is spelled exactly), bar lines where a bar ends
//! between notes, rests for gaps and chords for notes that start and end together.

use std::collections::HashMap;
use std::fmt::Write as _;

use super::tune::{Note, Tune};

/// Lengths are written in eighth notes (half a beat). Thirds of a length are written as
/// triplets, `(3`, since ABC lengths are dyadic (abc2midi misreads `2/3`).
const UNIT_BEATS: f64 = 0.5;

/// Whether a length in units is n/2^k.
fn dyadic(units: f64) -> bool {
    (0..=7).any(|k| {
        let scaled = units * f64::from(1u32 << k);
        (scaled - scaled.round()).abs() < 1e-6
    })
}

/// `n/d` of the unit, exact for binary and triplet subdivisions.
fn length(beats: f64) -> String {
    let units = beats / UNIT_BEATS;
    for denominator in [1u64, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128] {
        let numerator = units * denominator as f64;
        if (numerator - numerator.round()).abs() < 1e-6 && numerator.round() >= 1.0 {
            let (mut n, mut d) = (numerator.round() as u64, denominator);
            let g = gcd(n, d);
            (n, d) = (n / g, d / g);
            return match (n, d) {
                (1, 1) => String::new(),
                (n, 1) => n.to_string(),
                (1, 2) => "/".into(),
                (1, d) => format!("/{d}"),
                (n, d) => format!("{n}/{d}"),
            };
        }
    }
    // Not a musical length: the nearest 128th of a unit.
    format!("{}/128", (units * 128.0).round().max(1.0) as u64)
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a.max(1) } else { gcd(b, a % b) }
}

/// The ABC spelling of a pitch, given the accidentals already written in this bar.
fn spell(pitch: u8, bar: &mut HashMap<u8, i32>) -> String {
    // Pitch class -> (letter index in CDEFGAB, change): sharps for black keys.
    const SPELLING: [(u8, i32); 12] = [
        (0, 0),
        (0, 1),
        (1, 0),
        (1, 1),
        (2, 0),
        (3, 0),
        (3, 1),
        (4, 0),
        (4, 1),
        (5, 0),
        (5, 1),
        (6, 0),
    ];
    let (letter, change) = SPELLING[usize::from(pitch % 12)];
    let octave = i32::from(pitch / 12) - 5; // 0 for the octave of middle C
    let in_force = bar.get(&letter).copied().unwrap_or(0);
    let mut out = String::new();
    if change != in_force {
        out.push_str(if change == 1 { "^" } else { "=" });
        bar.insert(letter, change);
    }
    let name = b"CDEFGAB"[usize::from(letter)] as char;
    if octave >= 1 {
        out.push(name.to_ascii_lowercase());
        out.push_str(&"'".repeat((octave - 1) as usize));
    } else {
        out.push(name);
        out.push_str(&",".repeat((-octave) as usize));
    }
    out
}

/// Beats per bar, if the meter has bars.
fn bar_beats(tune: &Tune) -> Option<f64> {
    tune.meter.map(|(n, d)| 4.0 * f64::from(n) / f64::from(d.max(1)))
}

fn voice_line(tune: &Tune, notes: &[Note]) -> String {
    let mut notes: Vec<&Note> = notes.iter().collect();
    notes.sort_by(|a, b| a.start.total_cmp(&b.start).then(a.pitch.cmp(&b.pitch)));
    let bar = bar_beats(tune);
    let mut out = String::new();
    let mut accidentals = HashMap::new();
    let mut time = 0.0f64;
    let mut i = 0;
    // Elements left in the current triplet: their written lengths are 3/2 of what sounds.
    let mut triplet = 0u32;
    let mut written = |beats: f64, out: &mut String| -> String {
        if triplet == 0 && !dyadic(beats / UNIT_BEATS) && dyadic(beats * 1.5 / UNIT_BEATS) {
            out.push_str("(3");
            triplet = 3;
        }
        if triplet > 0 {
            triplet -= 1;
            length(beats * 1.5)
        } else {
            length(beats)
        }
    };
    let at_bar_line = |time: f64| bar.is_some_and(|b| time > 1e-9 && ((time / b) - (time / b).round()).abs() < 1e-9);
    while i < notes.len() {
        let start = notes[i].start;
        if start > time + 1e-9 {
            let rest = written(start - time, &mut out);
            out.push_str(&format!("z{rest} "));
            time = start;
            if at_bar_line(time) {
                out.push_str("| ");
                accidentals.clear();
            }
        }
        let chord: Vec<&Note> = notes[i..]
            .iter()
            .take_while(|n| (n.start - start).abs() < 1e-9)
            .copied()
            .collect();
        i += chord.len();
        let duration = chord[0].duration;
        let spelled: Vec<String> = chord.iter().map(|n| spell(n.pitch, &mut accidentals)).collect();
        let advance = written(duration, &mut out);
        if spelled.len() == 1 {
            let _ = write!(out, "{}{advance} ", spelled[0]);
        } else {
            // Inside brackets each note has its own length; the chord advances by the first.
            let scale = if advance == length(duration) { 1.0 } else { 1.5 };
            let inner: Vec<String> = chord
                .iter()
                .zip(&spelled)
                .map(|(n, s)| format!("{s}{}", length(n.duration * scale)))
                .collect();
            let _ = write!(out, "[{}] ", inner.join(""));
        }
        time = start + duration;
        if at_bar_line(time) {
            out.push_str("| ");
            accidentals.clear();
        }
    }
    out.push_str("|]");
    out
}

/// The tune as ABC text.
pub fn render(tune: &Tune) -> String {
    let mut out = String::from("X:1\n");
    if !tune.title.is_empty() {
        let _ = writeln!(out, "T:{}", tune.title);
    }
    match tune.meter {
        Some((n, d)) => {
            let _ = writeln!(out, "M:{n}/{d}");
        }
        None => out.push_str("M:none\n"),
    }
    out.push_str("L:1/8\n");
    let _ = writeln!(out, "Q:1/4={}", (tune.tempo * 1000.0).round() / 1000.0);
    out.push_str("K:C\n");
    let several = tune.voices.len() > 1;
    for voice in &tune.voices {
        if several {
            let _ = writeln!(out, "V:{}", voice.id);
        }
        out.push_str(&voice_line(tune, &voice.notes));
        out.push('\n');
    }
    out
}
