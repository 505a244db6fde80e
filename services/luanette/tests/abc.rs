//! abc.* against abc2midi (Debian package `abcmidi`), the reference: for every tune in
//! tests/abc/, the same pitches, onsets and durations. (Chord symbols are not sounded here;
//! the corpus turns abc2midi's accompaniment off with `%%MIDI gchordoff`.)

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use luanette::sandbox::{EvalError, Limits, RunContext, Vm};
use luanette::stdlib::Services;

fn vm(cas: &cas::Cas) -> Vm {
    Vm::with_services(&Services {
        cas: Some(cas.clone()),
        ..Services::default()
    })
    .expect("vm")
}

fn eval(vm: &Vm, code: &str) -> Result<serde_json::Value, EvalError> {
    let output = vm.eval(
        code,
        None,
        Limits::default(),
        Arc::new(AtomicBool::new(false)),
        RunContext::default(),
    )?;
    assert!(vm.reset());
    Ok(hooteproto::wkt::value_to_json(output.result))
}

/// Sorted (start tick, pitch, end tick) of every note of a stored MIDI file, with ticks
/// scaled to 480 per beat.
const NOTES: &str = "local song = midi.load(HASH) local out = {} \
    for _, n in ipairs(midi.notes(song)) do \
      local s = math.floor(n.start * 480 + 0.5) local e = math.floor((n.start + n.duration) * 480 + 0.5) \
      out[#out + 1] = {s, n.pitch, e} end \
    table.sort(out, function(a, b) if a[1] ~= b[1] then return a[1] < b[1] end return a[2] < b[2] end) \
    return out";

fn notes_of(vm: &Vm, hash: &str) -> Vec<(i64, i64, i64)> {
    let json = eval(vm, &NOTES.replace("HASH", &format!("'{hash}'"))).expect("notes");
    json.as_array()
        .expect("list")
        .iter()
        .map(|n| {
            let v: Vec<i64> = n
                .as_array()
                .expect("note")
                .iter()
                .map(|x| x.as_f64().expect("n") as i64)
                .collect();
            (v[0], v[1], v[2])
        })
        .collect()
}

#[test]
fn tunes_sound_as_abc2midi_plays_them() {
    let abc2midi = std::process::Command::new("abc2midi").arg("-ver").output();
    assert!(
        abc2midi.is_ok(),
        "abc2midi is needed (Debian package abcmidi; scripts/test installs it through scripts/system-packages)"
    );
    let dir = tempfile::tempdir().expect("tmp");
    let cas = cas::Cas::open(dir.path().join("cas")).expect("cas");
    let vm = vm(&cas);
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/abc");
    let mut tunes: Vec<_> = std::fs::read_dir(&corpus)
        .expect("corpus")
        .flatten()
        .map(|e| e.path())
        .collect();
    tunes.sort();
    assert!(tunes.len() >= 4);
    for tune in tunes {
        let name = tune.file_name().expect("name").to_string_lossy().to_string();
        let text = std::fs::read_to_string(&tune).expect("tune");
        let ours = compare_with_abc2midi(&vm, &cas, dir.path(), &name, &text);
        // Written back moved up a minor third, it still sounds the same way to abc2midi,
        // and every note is exactly three semitones higher.
        let transposed = eval(&vm, &format!("return abc.transpose({text:?}, 3)")).expect("transpose");
        let transposed = transposed.as_str().expect("text").to_string();
        let moved = compare_with_abc2midi(&vm, &cas, dir.path(), &format!("{name}+3"), &transposed);
        let expected: Vec<_> = ours.iter().map(|(s, p, e)| (*s, p + 3, *e)).collect();
        assert_eq!(moved, expected, "{name}: transposed by 3\n{transposed}");
    }
}

/// Our notes for `text`, after checking them against abc2midi's.
fn compare_with_abc2midi(vm: &Vm, cas: &cas::Cas, dir: &Path, name: &str, text: &str) -> Vec<(i64, i64, i64)> {
    let source = dir.join(format!("{name}.abc"));
    std::fs::write(&source, text).expect("write");
    let reference = dir.join(format!("{name}.mid"));
    let status = std::process::Command::new("abc2midi")
        .arg(&source)
        .arg("-o")
        .arg(&reference)
        .output()
        .expect("run abc2midi");
    assert!(status.status.success(), "{name}: abc2midi failed");
    let theirs = cas
        .store(&std::fs::read(&reference).expect("reference"), "audio/midi")
        .expect("store")
        .info
        .hash
        .to_string();
    let ours = eval(vm, &format!("return midi.save(abc.to_midi({text:?}))")).unwrap_or_else(|e| panic!("{name}: {e}"));
    let (ours, theirs) = (notes_of(vm, ours.as_str().expect("hash")), notes_of(vm, &theirs));
    assert_eq!(
        ours.len(),
        theirs.len(),
        "{name}: note count\nours   {ours:?}\ntheirs {theirs:?}\n{text}"
    );
    for (a, b) in ours.iter().zip(&theirs) {
        // abc2midi starts notes one tick late and strums chords (10 ticks per note).
        let close = (a.0 - b.0).abs() <= 12 && a.1 == b.1 && (a.2 - b.2).abs() <= 2;
        assert!(
            close,
            "{name}: ours {a:?} vs abc2midi {b:?}\nours   {ours:?}\ntheirs {theirs:?}\n{text}"
        );
    }
    ours
}

#[test]
fn bad_tunes_get_clear_errors() {
    let dir = tempfile::tempdir().expect("tmp");
    let vm = vm(&cas::Cas::open(dir.path().join("cas")).expect("cas"));
    for (text, why) in [
        ("X:1\nT:no body", "no K:"),
        ("X:1\nK:H\nCDE", "A-G"),
        ("X:1\nK:Cxyz\nCDE", "mode"),
        ("X:1\nM:seven\nK:C\nCDE", "meter"),
        ("X:1\nL:0/0\nK:C\nCDE", "length"),
        ("X:1\nK:C\nC D E Q", "unexpected"),
        ("X:1\nK:C\nc''''''", "MIDI range"),
    ] {
        let result = eval(
            &vm,
            &format!("local ok, why = abc.validate({text:?}) return {{ok, why}}"),
        )
        .expect("validate");
        assert_eq!(result[0], false, "{text}");
        assert!(result[1].as_str().is_some_and(|m| m.contains(why)), "{text}: {result}");
        match eval(&vm, &format!("return abc.to_midi({text:?})")) {
            Err(EvalError::Runtime { message, .. }) => assert!(message.contains("abc.to_midi"), "{message}"),
            other => panic!("{text}: {other:?}"),
        }
    }
    let parsed = eval(&vm, "local t = abc.parse('X:1\\nT:Up\\nM:3/4\\nK:Gm\\nGA_B|') return {t.title, t.meter, t.key, t.sharps, t.minor, #t.voices[1].notes, t.voices[1].notes[3].pitch}")
        .expect("parse");
    assert_eq!(
        parsed,
        serde_json::json!(["Up", [3.0, 4.0], "Gm", -2.0, true, 3.0, 70.0])
    );
}
