//! The stdlib through Lua: json, cas and midi, on a real CAS directory.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use luanette::sandbox::{EvalError, Limits, RunContext, Vm};
use luanette::stdlib::Services;

struct Fixture {
    vm: Vm,
    cas: cas::Cas,
    _dir: tempfile::TempDir,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tmp");
    let cas = cas::Cas::open(dir.path().join("cas")).expect("cas");
    let services = Services {
        cas: Some(cas.clone()),
        ..Services::default()
    };
    let vm = Vm::with_services(&services).expect("vm");
    Fixture { vm, cas, _dir: dir }
}

impl Fixture {
    fn run(&self, code: &str) -> Result<serde_json::Value, EvalError> {
        let output = self.vm.eval(
            code,
            None,
            Limits::default(),
            Arc::new(AtomicBool::new(false)),
            RunContext::default(),
        )?;
        assert!(self.vm.reset());
        Ok(hooteproto::wkt::value_to_json(output.result))
    }

    fn ok(&self, code: &str) -> serde_json::Value {
        self.run(code).unwrap_or_else(|e| panic!("{code}\n=> {e}"))
    }

    fn error(&self, code: &str) -> String {
        match self.run(code) {
            Err(EvalError::Runtime { message, .. }) => message,
            other => panic!("{code}: expected a runtime error, got {other:?}"),
        }
    }
}

#[test]
fn json_round_trips_and_refuses_what_json_cannot_hold() {
    let f = fixture();
    assert_eq!(
        f.ok(
            r#"local t = json.decode('{"bpm": 120, "keys": ["C", "G"], "swing": null}')
                return {t.bpm, t.keys[2], t.swing == nil, json.encode({a = {1, 2.5}})}"#
        ),
        serde_json::json!([120.0, "G", true, "{\"a\":[1,2.5]}"])
    );
    assert!(f.error("return json.encode({f = print})").contains("json.encode"));
    assert!(f.error("return json.decode('{oops')").contains("json.decode"));
}

#[test]
fn cas_stores_reads_and_inspects_through_the_shared_store() {
    let f = fixture();
    let hash = f.ok("return cas.store('hello, world', 'text/plain')");
    let hash = hash.as_str().expect("hash");
    assert_eq!(hash, blake3::hash(b"hello, world").to_hex().as_str());
    // Another process on the host sees it (same directory, same crate).
    let parsed = cas::Hash::parse(hash).expect("hash");
    assert_eq!(f.cas.read(&parsed, 100, true).expect("read"), b"hello, world");
    assert_eq!(
        f.ok(&format!(
            "local i = cas.inspect('{}') return {{cas.get('{hash}'), i.size, i.mime_type, cas.exists('{hash}'), cas.exists(string.rep('0', 64))}}",
            &hash[..10]
        )),
        serde_json::json!(["hello, world", 12.0, "text/plain", true, false])
    );
    assert!(
        f.error(&format!("return cas.get('{}')", "ab".repeat(32)))
            .contains("no object")
    );
    assert!(f.error("return cas.get('../etc/passwd')").contains("cas.get"));
    let bare = Vm::new().expect("vm");
    let result = bare.eval(
        "return cas.store('x')",
        None,
        Limits::default(),
        Arc::new(AtomicBool::new(false)),
        RunContext::default(),
    );
    assert!(matches!(result, Err(EvalError::Runtime { message, .. }) if message.contains("no CAS")));
}

/// A song using every kind of event.
const EVERY_EVENT: &str = r#"
local song = {format = 1, ppq = 96, tracks = {
  {
    {tick = 0, type = "track_name", text = "conductor"},
    {tick = 0, type = "tempo", microseconds_per_beat = 500000},
    {tick = 0, type = "time_signature", numerator = 6, denominator = 8, clocks_per_click = 36, notated_32nds = 8},
    {tick = 0, type = "key_signature", sharps = -3, minor = true},
    {tick = 0, type = "smpte_offset", hour = 1, minute = 2, second = 3, frame = 4, subframe = 5, fps = 25},
    {tick = 0, type = "copyright", text = "public domain"},
    {tick = 0, type = "track_number", number = 7},
    {tick = 0, type = "sequencer_specific", data = "\1\2\3"},
    {tick = 0, type = "unknown_meta", meta_type = 96, data = "??"},
    {tick = 48, type = "marker", text = "verse"},
    {tick = 48, type = "cue_point", text = "go"},
    {tick = 96, type = "tempo", microseconds_per_beat = 1000000},
    {tick = 200, type = "end_of_track"},
  },
  {
    {tick = 0, type = "instrument_name", text = "piano"},
    {tick = 0, type = "program_name", text = "grand"},
    {tick = 0, type = "device_name", text = "synth"},
    {tick = 0, type = "midi_channel", channel = 3},
    {tick = 0, type = "midi_port", port = 1},
    {tick = 0, type = "program_change", channel = 3, program = 5},
    {tick = 0, type = "controller", channel = 3, controller = 7, value = 100},
    {tick = 0, type = "note_on", channel = 3, note = 60, velocity = 90},
    {tick = 10, type = "aftertouch", channel = 3, note = 60, pressure = 40},
    {tick = 20, type = "channel_aftertouch", channel = 3, pressure = 30},
    {tick = 30, type = "pitch_bend", channel = 3, bend = -8192},
    {tick = 40, type = "pitch_bend", channel = 3, bend = 8191},
    {tick = 50, type = "lyric", text = "la\255"},
    {tick = 60, type = "sysex", data = "\67\16\76\0\0\126\0\247"},
    {tick = 70, type = "escape", data = "\243\1"},
    {tick = 90, type = "note_off", channel = 3, note = 60, velocity = 64},
    {tick = 96, type = "text", text = "end"},
    {tick = 96, type = "end_of_track"},
  },
}}
"#;

#[test]
fn a_midi_round_trip_keeps_every_event() {
    let f = fixture();
    let code = format!(
        "{EVERY_EVENT}
         local again = midi.read(midi.write(song))
         local function same(a, b)
           if type(a) ~= 'table' then return a == b end
           for k, v in pairs(a) do if k ~= 'bpm' and not same(v, b[k]) then return false end end
           for k in pairs(b) do if k ~= 'bpm' and a[k] == nil then return false end end
           return true
         end
         local differences = {{}}
         for t = 1, #song.tracks do
           for i = 1, #song.tracks[t] do
             if not same(song.tracks[t][i], again.tracks[t][i]) then differences[#differences + 1] = t .. ':' .. i end
           end
           if #song.tracks[t] ~= #again.tracks[t] then differences[#differences + 1] = 'count ' .. t end
         end
         return {{differences = differences, ppq = again.ppq, format = again.format, bpm = again.bpm,
                 signature = again.time_signature, lyric = again.tracks[2][13].text == 'la\\255'}}"
    );
    let result = f.ok(&code);
    assert_eq!(result["differences"], serde_json::json!({}), "{result}");
    let tempo = f.ok(
        "local s = midi.read(midi.write({tracks = {{{tick = 0, type = 'tempo', bpm = 60}}}})) return s.tracks[1][1].microseconds_per_beat",
    );
    assert_eq!(
        tempo, 1_000_000.0,
        "a tempo given in bpm is written in microseconds per beat"
    );
    assert_eq!(
        (
            &result["ppq"],
            &result["format"],
            &result["bpm"],
            &result["signature"],
            &result["lyric"]
        ),
        (
            &serde_json::json!(96.0),
            &serde_json::json!(1.0),
            &serde_json::json!(120.0),
            &serde_json::json!([6.0, 8.0]),
            &serde_json::json!(true)
        )
    );
}

#[test]
fn bad_midi_input_is_an_error_not_a_crash() {
    let f = fixture();
    for bytes in ["", "MThd", "RIFF", "MThd\\0\\0\\0\\6"] {
        assert!(
            f.error(&format!("return midi.read('{bytes}')")).contains("midi.read"),
            "{bytes}"
        );
    }
    // Garbage of every length must never panic.
    for n in 0..200 {
        let _ = f.run(&format!(
            "local s = 'MThd\\0\\0\\0\\6\\0\\1\\0\\2\\1\\224MTrk' .. string.rep(string.char({n} % 256, 255, 0x90, 0x3c), {n}) return midi.read(s)"
        ));
    }
    for (code, why) in [
        (
            "return midi.write({tracks = {{{tick = 0, type = 'note_on', channel = 16, note = 60, velocity = 1}}}})",
            "channel",
        ),
        (
            "return midi.write({tracks = {{{tick = 0, type = 'wobble'}}}})",
            "wobble",
        ),
        (
            "return midi.write({tracks = {{{tick = -1, type = 'end_of_track'}}}})",
            "negative",
        ),
        (
            "return midi.write({tracks = {{{tick = 0, type = 'time_signature', numerator = 3, denominator = 6}}}})",
            "power of two",
        ),
        ("return midi.write({})", "tracks"),
    ] {
        let message = f.error(code);
        assert!(message.contains(why), "{code}: {message}");
    }
}

const SCALE: &str = "local song = midi.from_notes({
    {pitch = 60, start = 0.1, duration = 1},
    {pitch = 62, start = 0.9, duration = 1, channel = 1},
    {pitch = 36, start = 2, duration = 0.5, channel = 9, track = 2},
    {pitch = 64, start = 3, duration = 2, velocity = 50},
  }, {ppq = 480, bpm = 120})";

#[test]
fn notes_transpose_quantize_filter_and_stats() {
    let f = fixture();
    let notes = f.ok(&format!("{SCALE} return midi.notes(song)"));
    let pitches: Vec<f64> = notes
        .as_array()
        .expect("list")
        .iter()
        .map(|n| n["pitch"].as_f64().expect("pitch"))
        .collect();
    assert_eq!(pitches, [60.0, 62.0, 36.0, 64.0]);
    assert_eq!(notes[0]["start"], 0.1);
    assert_eq!(notes[3]["duration"], 2.0);

    let moved = f.ok(&format!(
        "{SCALE} local t = midi.notes(midi.transpose(song, 5)) return {{t[1].pitch, t[2].pitch, t[3].pitch, t[4].pitch}}"
    ));
    assert_eq!(moved, serde_json::json!([65.0, 67.0, 36.0, 69.0]), "drums stay put");
    assert!(
        f.error(&format!("{SCALE} return midi.transpose(song, 100)"))
            .contains("MIDI range")
    );

    let quantized = f.ok(&format!(
        "{SCALE} local q = midi.notes(midi.quantize(song, {{grid = 1}})) local h = midi.notes(midi.quantize(song, {{grid = 1, strength = 0.5}}))
         return {{q[1].start, q[1].duration, q[2].start, q[2].duration, h[1].start}}"
    ));
    assert_eq!(quantized, serde_json::json!([0.0, 1.0, 1.0, 1.0, 0.05]));

    let filtered = f.ok(&format!(
        "{SCALE} local n = midi.notes(midi.filter(song, {{channels = {{0}}, min_note = 61}})) return {{#n, n[1].pitch}}"
    ));
    assert_eq!(filtered, serde_json::json!([1.0, 64.0]));

    let stats = f.ok(&format!("{SCALE} return midi.stats(song)"));
    assert_eq!(stats["notes"], 4.0);
    assert_eq!(stats["channels"], serde_json::json!([0.0, 1.0, 9.0]));
    assert_eq!(
        (&stats["lowest"], &stats["highest"]),
        (&serde_json::json!(36.0), &serde_json::json!(64.0))
    );
    assert_eq!(stats["pitch_classes"][0], 2.0, "C and C2");
    assert_eq!(stats["seconds"], 2.5, "5 beats at 120 bpm");
}

#[test]
fn merge_slice_tempo_and_duration() {
    let f = fixture();
    let duration = f.ok(&format!(
        "{SCALE} local slow = midi.set_tempo(song, 60) return {{midi.duration(song).seconds, midi.duration(slow).seconds, midi.duration(slow).beats}}"
    ));
    assert_eq!(duration, serde_json::json!([2.5, 5.0, 5.0]));

    let merged = f.ok(&format!(
        "{SCALE} local other = midi.from_notes({{{{pitch = 72, start = 1, duration = 1}}}}, {{ppq = 96}})
         local m = midi.merge(song, other) local n = midi.notes(m)
         return {{#m.tracks, m.ppq, n[#n].pitch, n[#n].start, n[#n].duration}}"
    ));
    assert_eq!(merged, serde_json::json!([5.0, 480.0, 64.0, 3.0, 2.0]));
    let merged_pitches = f.ok(&format!(
        "{SCALE} local other = midi.from_notes({{{{pitch = 72, start = 1, duration = 1}}}}, {{ppq = 96}})
         for _, n in ipairs(midi.notes(midi.merge(song, other))) do if n.pitch == 72 then return {{n.start, n.duration}} end end"
    ));
    assert_eq!(
        merged_pitches,
        serde_json::json!([1.0, 1.0]),
        "rescaled to the first song's ppq"
    );

    let sliced = f.ok(&format!(
        "{SCALE} local s = midi.slice(midi.set_tempo(song, 90), 0.5, 3.5) local n = midi.notes(s)
         return {{#n, n[1].pitch, n[1].start, n[#n].pitch, n[#n].duration, math.floor(s.bpm + 0.5), midi.duration(s).beats}}"
    ));
    assert_eq!(sliced, serde_json::json!([3.0, 62.0, 0.4, 64.0, 0.5, 90.0, 3.0]));
}
