//! The built-in General MIDI SoundFont, as a listener hears it: it loads, every program and
//! the drum kit sound, notes are in tune, a piano dies away while an organ holds, drums are
//! noise where instruments are tones, a closed hi-hat cuts an open one, and a chord is loud
//! without clipping.

use std::time::Instant;

use chaosgarden::media::{self, MidiEvent, MidiSong, Synth};
use chaosgarden::time::{Meter, TempoMap};

/// Renders at this rate (lower than the engine's 48 kHz, to keep the tests quick).
const RATE: u32 = 32_000;

fn synth() -> Synth {
    // Dry: reverb and chorus would smear pitch and decay.
    Synth::builtin().expect("the built-in SoundFont").with_effects(false)
}

/// Channel messages at seconds (rendered at 120 bpm: a beat is half a second).
fn song(events: &[(f64, [u8; 3])]) -> MidiSong {
    let events: Vec<MidiEvent> = events
        .iter()
        .map(|&(seconds, bytes)| MidiEvent {
            beats: seconds * 2.0,
            bytes,
            len: if bytes[0] & 0xF0 == 0xC0 { 2 } else { 3 },
        })
        .collect();
    let length_beats = events.last().map(|e| e.beats).unwrap_or(0.0);
    MidiSong { events, length_beats }
}

/// One note of `seconds` on `channel` with `program`, velocity 100; mono (left + right).
fn note(synth: &Synth, channel: u8, program: u8, key: u8, seconds: f64) -> Vec<f32> {
    play(
        synth,
        &song(&[
            (0.0, [0xC0 | channel, program, 0]),
            (0.0, [0x90 | channel, key, 100]),
            (seconds, [0x80 | channel, key, 0]),
        ]),
    )
}

fn play(synth: &Synth, song: &MidiSong) -> Vec<f32> {
    let map = TempoMap::new(120.0, Meter::default()).expect("map");
    let stereo = synth.render(song, &map, 0.0, RATE).expect("render");
    stereo.chunks_exact(2).map(|f| 0.5 * (f[0] + f[1])).collect()
}

/// Samples from `from` to `to` seconds.
fn span(samples: &[f32], from: f64, to: f64) -> &[f32] {
    let at = |s: f64| ((s * RATE as f64) as usize).min(samples.len());
    &samples[at(from)..at(to)]
}

fn rms(samples: &[f32]) -> f64 {
    (samples.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / samples.len().max(1) as f64).sqrt()
}

fn peak(samples: &[f32]) -> f32 {
    samples.iter().fold(0.0, |p, v| p.max(v.abs()))
}

/// Sign changes per second.
fn zero_crossings(samples: &[f32]) -> f64 {
    let changes = samples.windows(2).filter(|w| (w[0] >= 0.0) != (w[1] >= 0.0)).count();
    changes as f64 * RATE as f64 / samples.len() as f64
}

/// The fundamental near `expected` Hz (within a fifth either way): the lag of greatest
/// normalized autocorrelation, refined by a parabola through its neighbours.
fn pitch(samples: &[f32], expected: f64) -> f64 {
    let correlation = |lag: usize| {
        let (a, b) = (&samples[..samples.len() - lag], &samples[lag..]);
        let dot: f64 = a.iter().zip(b).map(|(&x, &y)| x as f64 * y as f64).sum();
        let energy = (rms(a) * rms(b)).max(1e-12) * a.len() as f64;
        dot / energy
    };
    let period = RATE as f64 / expected;
    let lags = (period / 1.5) as usize..=(period * 1.5) as usize;
    let best = lags
        .clone()
        .max_by(|&x, &y| correlation(x).total_cmp(&correlation(y)))
        .expect("lags");
    assert!(
        best > *lags.start() && best < *lags.end(),
        "no period near {expected} Hz (best lag {best})"
    );
    let (l, c, r) = (correlation(best - 1), correlation(best), correlation(best + 1));
    let offset = 0.5 * (l - r) / (l - 2.0 * c + r);
    RATE as f64 / (best as f64 + offset)
}

fn cents(hz: f64, reference: f64) -> f64 {
    1200.0 * (hz / reference).log2()
}

#[test]
fn the_builtin_font_is_small_deterministic_and_loads() {
    let started = Instant::now();
    let bytes = media::builtin_font::generate();
    let generated = started.elapsed();
    let font = rustysynth::SoundFont::new(&mut bytes.as_slice()).expect("a valid SoundFont 2.01");
    println!(
        "built-in SoundFont: {} bytes, generated in {generated:?}, generated and parsed in {:?}",
        bytes.len(),
        started.elapsed()
    );
    assert!(bytes.len() < 400_000, "{} bytes", bytes.len());
    assert_eq!(bytes, media::builtin_font::generate(), "the same bytes every time");
    let presets = font.get_presets();
    for program in 0..128 {
        assert!(
            presets
                .iter()
                .any(|p| p.get_bank_number() == 0 && p.get_patch_number() == program),
            "program {program}"
        );
    }
    assert!(
        presets
            .iter()
            .any(|p| p.get_bank_number() == 128 && p.get_patch_number() == 0),
        "the drum kit"
    );
    assert_eq!(font.get_info().get_bank_name(), media::builtin_font::NAME);
    let synth = Synth::builtin().expect("built-in");
    assert!(synth.is_builtin());
    assert_eq!(synth.description(), media::BUILTIN_DESCRIPTION);
    let chosen = Synth::choose(Some(std::path::Path::new(media::BUILTIN_SOUNDFONT))).expect("builtin by name");
    assert!(chosen.is_builtin());
}

#[test]
fn every_program_and_every_drum_sounds() {
    let synth = synth();
    for program in 0..128u8 {
        let sound = note(&synth, 0, program, 60, 0.2);
        let level = peak(&sound);
        assert!(level > 0.02, "program {program} is silent (peak {level})");
    }
    for key in 27..=87u8 {
        let sound = note(&synth, 9, 0, key, 0.1);
        let level = peak(&sound);
        assert!(level > 0.01, "drum key {key} is silent (peak {level})");
    }
}

#[test]
fn notes_are_in_tune() {
    let synth = synth();
    for (program, key, hz) in [
        (0, 69, 440.0),
        (0, 57, 220.0),
        (0, 60, 261.626),
        (0, 81, 880.0),
        (0, 93, 1760.0),
        (19, 45, 110.0),
        (24, 64, 329.628),
        (32, 40, 82.407),
        (73, 72, 523.251),
        (80, 100, 2637.02),
    ] {
        let sound = note(&synth, 0, program, key, 1.0);
        let measured = pitch(span(&sound, 0.2, 0.7), hz);
        let off = cents(measured, hz);
        assert!(
            off.abs() < 3.0,
            "program {program} key {key}: {measured:.2} Hz, {off:+.1} cents from {hz} Hz"
        );
    }
}

#[test]
fn a_piano_dies_away_and_an_organ_holds() {
    let synth = synth();
    let piano = note(&synth, 0, 0, 60, 4.0);
    let (early, late) = (rms(span(&piano, 0.1, 0.5)), rms(span(&piano, 3.0, 3.5)));
    assert!(late < early / 30.0, "piano: {early:.4} early, {late:.4} after 3 s");
    let organ = note(&synth, 0, 16, 60, 4.0);
    let (early, late) = (rms(span(&organ, 0.1, 0.5)), rms(span(&organ, 3.0, 3.5)));
    assert!(
        late > early * 0.8 && late < early * 1.25,
        "organ: {early:.4} early, {late:.4} after 3 s"
    );
    // Strings swell: quieter in their first 30 ms than once they have sounded a while.
    let strings = note(&synth, 0, 48, 60, 1.0);
    assert!(
        rms(span(&strings, 0.0, 0.03)) < rms(span(&strings, 0.5, 0.7)) / 3.0,
        "strings swell"
    );
}

#[test]
fn drums_are_noise_and_a_closed_hi_hat_cuts_an_open_one() {
    let synth = synth();
    let kick = note(&synth, 9, 0, 36, 0.1);
    let hat = note(&synth, 9, 0, 42, 0.1);
    let piano = note(&synth, 0, 0, 60, 0.1);
    let first = |sound: &[f32]| zero_crossings(span(sound, 0.0, 0.08));
    assert!(
        first(&hat) > 10.0 * first(&kick),
        "hi-hat {} crossings/s, kick {}",
        first(&hat),
        first(&kick)
    );
    assert!(
        first(&hat) > 5.0 * first(&piano),
        "hi-hat {} crossings/s, middle C {}",
        first(&hat),
        first(&piano)
    );
    let snare = note(&synth, 9, 0, 38, 0.1);
    assert!(first(&snare) > 3.0 * first(&piano), "a snare is noisy");
    // Channel 10 is the kit whatever its program says (it falls back to the standard kit).
    assert!(
        peak(&note(&synth, 9, 25, 36, 0.1)) > 0.05,
        "kit 25 plays the standard kit"
    );
    // An open hi-hat rings on; a closed one 200 ms later chokes it.
    let open = play(
        &synth,
        &song(&[(0.0, [0x99, 46, 100]), (0.1, [0x89, 46, 0]), (1.0, [0x89, 46, 0])]),
    );
    let choked = play(
        &synth,
        &song(&[
            (0.0, [0x99, 46, 100]),
            (0.1, [0x89, 46, 0]),
            (0.2, [0x99, 42, 100]),
            (0.25, [0x89, 42, 0]),
            (1.0, [0x89, 46, 0]),
        ]),
    );
    let (ringing, cut) = (rms(span(&open, 0.3, 0.7)), rms(span(&choked, 0.3, 0.7)));
    assert!(ringing > 0.002, "an open hi-hat rings ({ringing})");
    assert!(
        cut < ringing / 10.0,
        "open {ringing:.4}, after a closed hi-hat {cut:.4}"
    );
}

#[test]
fn a_chord_is_clearly_heard_and_never_clips() {
    // As the service renders it: reverb and chorus on.
    let synth = Synth::builtin().expect("built-in");
    for program in (0..128u8).step_by(8).chain([19, 48, 61, 89]) {
        let mut events = vec![(0.0, [0xC0, program, 0])];
        for key in [48, 60, 64, 67] {
            events.push((0.0, [0x90, key, 100]));
            events.push((1.0, [0x80, key, 0]));
        }
        let sound = play(&synth, &song(&events));
        let level = peak(&sound);
        assert!(
            level > 0.0316 && level < 0.9,
            "program {program}: chord peak {level} ({:.1} dBFS)",
            20.0 * level.log10()
        );
    }
    let mut kit = Vec::new();
    for key in [36, 38, 42, 49] {
        kit.push((0.0, [0x99, key, 100]));
        kit.push((0.25, [0x89, key, 0]));
    }
    let level = peak(&play(&synth, &song(&kit)));
    assert!(level > 0.0316 && level < 0.9, "kit peak {level}");
}
