//! Luanette orchestrating the stack, from `holler up` and the CLI alone (issue 16's "done
//! when"): a script stored under a name, triggered by a marker, reads the timeline around it,
//! writes a transition in ABC, renders and stores it, records an artifact whose parents are
//! the regions it listened to and places it on the timeline itself; a second version stored
//! under the same name is what the next pass through the marker runs.

#[allow(unused_imports)] // the MCP helpers are for the other suites
mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::Up;
use serde_json::Value;

const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../luanette/lua/transition_by_ear.lua");

fn holler(up: &Up, data: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_holler"))
        .args(["--luanette", &up.luanette, "--hootenanny", &up.hootenanny])
        .args(["--chaosgarden", &up.chaosgarden, "--timeout", "20"])
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run holler")
}

/// Runs a command that must succeed; returns its stdout.
#[track_caller]
fn ok(up: &Up, data: &Path, args: &[&str]) -> String {
    let output = holler(up, data, args);
    assert!(
        output.status.success(),
        "holler {args:?} failed ({}):\nstdout: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Runs a command with `--json` and parses what it printed.
#[track_caller]
fn json(up: &Up, data: &Path, args: &[&str]) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out = ok(up, data, &all);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("holler {args:?} printed no JSON ({e}): {out}"))
}

fn text<'a>(value: &'a Value, path: &[&str]) -> &'a str {
    path.iter().fold(value, |v, key| &v[*key]).as_str().unwrap_or_default()
}

/// A MIDI section made from ABC by Luanette; returns its CAS hash.
fn section(up: &Up, data: &Path, abc: &str) -> String {
    let code = format!("return midi.save(abc.to_midi({abc:?}))");
    json(up, data, &["lua", &code])["result"]
        .as_str()
        .expect("a hash")
        .to_string()
}

/// Waits until a region placed by a job other than `not_by` is on the timeline.
fn region_from_a_job(up: &Up, data: &Path, not_by: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let timeline = json(up, data, &["timeline", "query"]);
        let placed = timeline["regions"].as_array().and_then(|regions| {
            regions
                .iter()
                .find(|r| !text(r, &["sourceJobId"]).is_empty() && text(r, &["sourceJobId"]) != not_by)
                .cloned()
        });
        if let Some(region) = placed {
            return region;
        }
        assert!(
            Instant::now() < deadline,
            "no transition was placed within 60 s: {timeline}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_named_script_triggered_by_a_marker_places_a_transition_with_lineage_and_its_next_version_takes_over() {
    let dir = tempfile::tempdir().expect("tmp");
    let data = dir.path();
    let up = Up::start(data, &[]);

    // Two sections on the timeline, each named as an artifact (as an agent would have).
    let verse = section(&up, data, "X:1\nM:4/4\nL:1/4\nK:C\nCDEF|GABc|\n");
    let chorus = section(&up, data, "X:1\nM:4/4\nL:1/4\nK:C\nGFED|C4|\n");
    let verse_artifact = json(&up, data, &["artifact", "create", &verse, "--name", "verse"]);
    let chorus_artifact = json(&up, data, &["artifact", "create", &chorus, "--name", "chorus"]);
    ok(&up, data, &["timeline", "region", &verse, "0"]);
    ok(&up, data, &["timeline", "region", &chorus, "16"]);

    // The script by name, and a marker that names it.
    let stored = json(&up, data, &["script", "store", EXAMPLE, "--name", "transition-by-ear"]);
    let first_hash = text(&stored, &["script", "scriptHash"]).to_string();
    assert_eq!(stored["script"]["version"].as_f64(), Some(1.0));
    ok(
        &up,
        data,
        &[
            "timeline",
            "marker",
            "generate_transition",
            "2",
            "--metadata",
            r#"{"script":"transition-by-ear","boundary_beats":16}"#,
        ],
    );
    ok(&up, data, &["transport", "play"]);

    // The script placed its transition itself, between the marker and the boundary.
    let region = region_from_a_job(&up, data, "");
    let job_id = text(&region, &["sourceJobId"]).to_string();
    let start = region["positionBeats"].as_f64().unwrap_or(0.0);
    let length = region["durationBeats"].as_f64().unwrap_or(0.0);
    assert!(
        start > 2.0 && (start + length - 16.0).abs() < 1e-6,
        "the transition ends at the boundary: {region}"
    );
    let job = json(&up, data, &["job", "status", &job_id]);
    assert_eq!(text(&job, &["job", "state"]), "JOB_STATE_SUCCEEDED", "{job}");
    assert_eq!(
        text(&job, &["job", "scriptHash"]),
        first_hash,
        "the job records the exact version"
    );
    assert_eq!(text(&job, &["job", "scriptName"]), "transition-by-ear");
    assert_eq!(
        text(&job, &["job", "priority"]),
        "JOB_PRIORITY_HIGH",
        "a marker's job has a musical deadline"
    );
    assert_eq!(
        text(&job, &["job", "result", "region_id"]),
        text(&region, &["regionId"])
    );

    // Its artifact names the placed MIDI, made by the script, from the two sections.
    let artifacts = json(&up, data, &["artifact", "list", "--tag", "transition"]);
    let artifact = &artifacts["artifacts"][0];
    assert_eq!(text(artifact, &["casHash"]), text(&region, &["casHash"]), "{artifacts}");
    assert_eq!(text(artifact, &["creator"]), "lua:transition-by-ear");
    assert_eq!(text(artifact, &["metadata", "job_id"]), job_id);
    let mut parents: Vec<&str> = artifact["parentIds"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    parents.sort_unstable();
    let mut expected = vec![
        text(&verse_artifact, &["artifact", "artifactId"]),
        text(&chorus_artifact, &["artifact", "artifactId"]),
    ];
    expected.sort_unstable();
    assert_eq!(parents, expected, "its parents are the regions it listened to");
    let lineage = json(
        &up,
        data,
        &[
            "graph",
            "query",
            &format!(
                "{{ artifact(id: \"{}\") {{ ancestors {{ name }} }} }}",
                text(artifact, &["artifactId"])
            ),
        ],
    );
    let ancestors = lineage.to_string();
    assert!(ancestors.contains("verse") && ancestors.contains("chorus"), "{lineage}");
    // What it wrote is real MIDI: notes from the verse's last pitch towards the chorus's first.
    let notes = json(
        &up,
        data,
        &[
            "lua",
            &format!(
                "local n = midi.notes(midi.load('{}')) return {{n[1].pitch, n[#n].pitch, #n}}",
                text(&region, &["casHash"])
            ),
        ],
    )["result"]
        .clone();
    assert_eq!(
        notes[0].as_f64(),
        Some(72.0),
        "starts on the verse's last note (c): {notes}"
    );
    assert_eq!(
        notes[1].as_f64(),
        Some(67.0),
        "ends on the chorus's first note (G): {notes}"
    );

    // A second version under the same name: the next pass through the marker runs it.
    let second_source = std::fs::read_to_string(EXAMPLE)
        .expect("the example")
        .replace("VERSION = 1", "VERSION = 2");
    assert!(
        second_source.contains("VERSION = 2"),
        "the example declares its VERSION"
    );
    let second_file = data.join("transition_v2.lua");
    std::fs::write(&second_file, second_source).expect("write v2");
    let second = json(
        &up,
        data,
        &[
            "script",
            "store",
            second_file.to_str().expect("utf-8 path"),
            "--name",
            "transition-by-ear",
        ],
    );
    let second_hash = text(&second, &["script", "scriptHash"]).to_string();
    assert_ne!(second_hash, first_hash);
    assert_eq!(second["script"]["version"].as_f64(), Some(2.0));
    let versions = json(&up, data, &["script", "search", "--name", "transition-by-ear"]);
    assert_eq!(versions["scripts"].as_array().map(|v| v.len()), Some(2), "{versions}");

    ok(&up, data, &["transport", "stop"]);
    ok(&up, data, &["timeline", "remove", text(&region, &["regionId"])]);
    ok(&up, data, &["transport", "seek", "0"]);
    ok(&up, data, &["transport", "play"]);
    let again = region_from_a_job(&up, data, &job_id);
    let second_job = json(&up, data, &["job", "status", text(&again, &["sourceJobId"])]);
    assert_eq!(
        text(&second_job, &["job", "scriptHash"]),
        second_hash,
        "the next crossing ran the new version: {second_job}"
    );
    assert_eq!(second_job["job"]["result"]["version"].as_f64(), Some(2.0));
    ok(&up, data, &["transport", "stop"]);
    assert!(up.stop(), "holler up exits cleanly");
}

#[test]
fn scripts_can_be_kept_off_the_transport() {
    let dir = tempfile::tempdir().expect("tmp");
    let data = dir.path();
    let up = Up::start_with(data, &[], &["--allow-transport-from-lua=false"]);
    let refused = holler(&up, data, &["lua", "return garden.play()"]);
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(
        said.contains("garden.play") && said.contains("--allow-transport-from-lua"),
        "{said}"
    );
    let status = json(&up, data, &["transport", "status"]);
    assert_eq!(text(&status, &["state", "playback"]), "PLAYBACK_STATE_STOPPED");
    // Reading is still allowed.
    let playback = json(&up, data, &["lua", "return garden.status().playback"])["result"].clone();
    assert_eq!(playback, "stopped");
    assert!(up.stop());
}
