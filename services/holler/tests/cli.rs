//! The `holler` CLI as a person uses it: the real binary against a real `holler up`, checking
//! what they would notice (issue 15's list): a closed pipe ends it quietly, resources, prompts
//! and schemas are commands, parameters come from flags, files and stdin, a script's output is
//! on stderr and its result on stdout, tables and numbers read well, `job run --wait` says
//! where the job is, hash prefixes work everywhere, and a second `holler up` says a stack is
//! already running.

#[allow(unused_imports)] // the MCP helpers are for the other suites
mod common;

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::Up;

/// `holler` aimed at `up`'s endpoints, finding its key in `data`.
fn holler(up: &Up, data: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_holler"));
    command
        .args(["--luanette", &up.luanette, "--hootenanny", &up.hootenanny])
        .args(["--chaosgarden", &up.chaosgarden, "--timeout", "20"])
        .arg("--data-dir")
        .arg(data)
        .stdin(Stdio::null());
    command
}

fn run(up: &Up, data: &Path, args: &[&str]) -> Output {
    holler(up, data).args(args).output().expect("run holler")
}

/// Runs with `input` on stdin.
fn run_with_stdin(up: &Up, data: &Path, args: &[&str], input: &[u8]) -> Output {
    let mut child = holler(up, data)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn holler");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input)
        .expect("write stdin");
    child.wait_with_output().expect("holler")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Succeeded, or fails the test with what it said.
#[track_caller]
fn ok(output: Output) -> Output {
    assert!(
        output.status.success(),
        "holler failed ({}):\nstdout: {}\nstderr: {}",
        output.status,
        stdout(&output),
        stderr(&output)
    );
    output
}

/// Runs `command` with its stdout a pipe nobody reads any more (the reader, like `head`,
/// closed it first): every write fails with EPIPE.
fn with_closed_stdout(command: &mut Command) -> Output {
    let (reader, writer) = std::io::pipe().expect("a pipe");
    drop(reader);
    command
        .stdout(Stdio::from(writer))
        .stderr(Stdio::piped())
        .output()
        .expect("run holler")
}

#[track_caller]
fn quiet_on_closed_pipe(output: Output, what: &str) {
    assert!(
        output.status.success(),
        "{what} with stdout closed exited {}: {}",
        output.status,
        stderr(&output)
    );
    assert_eq!(stderr(&output), "", "{what} with stdout closed said something");
}

/// Column starts of a table's header line: where each run of non-spaces after two spaces begins.
fn column_starts(line: &str) -> Vec<usize> {
    let mut starts = vec![0];
    let bytes = line.as_bytes();
    for i in 2..bytes.len() {
        if bytes[i] != b' ' && bytes[i - 1] == b' ' && bytes[i - 2] == b' ' {
            starts.push(i);
        }
    }
    starts
}

/// Every row's cells start where the header's columns do (rows may leave trailing cells empty).
#[track_caller]
fn assert_aligned(table: &str) {
    let mut lines = table.lines().filter(|l| !l.is_empty());
    let header = lines.next().expect("a header");
    let starts = column_starts(header);
    for line in lines {
        for &start in &starts[1..] {
            if line.len() > start {
                assert!(
                    line.as_bytes()[start - 1] == b' ' && line.as_bytes()[start] != b' ',
                    "not aligned with the header at column {start}:\n{table}"
                );
            }
        }
    }
}

#[test]
fn commands_that_need_no_stack() {
    let exe = env!("CARGO_BIN_EXE_holler");

    // `holler completions zsh | head` exits quietly (it used to panic on the closed pipe).
    let output = with_closed_stdout(Command::new(exe).args(["completions", "zsh"]));
    quiet_on_closed_pipe(output, "holler completions zsh");

    // Completions know the tools, the backends and the enums' values from the schema.
    let bash = ok(Command::new(exe)
        .args(["completions", "bash"])
        .output()
        .expect("holler"));
    let script = stdout(&bash);
    for word in [
        "lua_eval",
        "timeline_add_region",
        "chaosgarden",
        "section_change",
        "succeeded",
    ] {
        assert!(script.contains(word), "bash completions lack {word}");
    }

    // A tool's input and output schemas, from the schema alone.
    let schema = ok(Command::new(exe)
        .args(["tools", "--schema", "transport_seek"])
        .output()
        .expect("holler"));
    let schema: serde_json::Value = serde_json::from_slice(&schema.stdout).expect("the schema is JSON");
    assert_eq!(schema["name"], "transport_seek");
    assert_eq!(
        schema["input_schema"]["properties"]["position_beats"]["type"], "number",
        "{schema:#}"
    );
    assert_eq!(schema["input_schema"]["required"][0], "position_beats");
    assert!(schema["output_schema"]["properties"]["state"].is_object(), "{schema:#}");
    let unknown = Command::new(exe)
        .args(["tools", "--schema", "no_such_tool"])
        .output()
        .expect("holler");
    assert_eq!(unknown.status.code(), Some(2), "an unknown tool is a usage error");

    // Nothing at these endpoints: status says so, and which data dir and key it would use.
    let dir = tempfile::tempdir().expect("tempdir");
    let nowhere = || format!("tcp://127.0.0.1:{}", testkit::free_port());
    let status = Command::new(exe)
        .args([
            "--luanette",
            &nowhere(),
            "--hootenanny",
            &nowhere(),
            "--chaosgarden",
            &nowhere(),
        ])
        .arg("--data-dir")
        .arg(dir.path())
        .arg("status")
        .output()
        .expect("holler status");
    assert_eq!(status.status.code(), Some(5), "{}", stderr(&status));
    let text = stdout(&status);
    assert_eq!(text.matches("not answering").count(), 3, "{text}");
    assert!(text.contains(&dir.path().display().to_string()), "{text}");
    assert!(stderr(&status).contains("holler up"), "{}", stderr(&status));
}

#[test]
fn reading_writing_and_scripts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let up = Up::start(&data, &[]);

    // Closed pipes: `holler --json tools | head -1`, `holler cas get … | head`.
    let output = with_closed_stdout(holler(&up, &data).args(["--json", "tools"]));
    quiet_on_closed_pipe(output, "holler --json tools");
    let big = dir.path().join("big.bin");
    std::fs::write(&big, vec![7u8; 300_000]).expect("write");
    let hash = stdout(&ok(run(&up, &data, &["cas", "put", big.to_str().expect("utf-8")])))
        .trim()
        .to_string();
    assert_eq!(hash.len(), 64, "cas put prints the hash: {hash:?}");
    let output = with_closed_stdout(holler(&up, &data).args(["cas", "get", &hash[..10]]));
    quiet_on_closed_pipe(output, "holler cas get");
    // Read part of it and close, as `head -c` does.
    let mut child = holler(&up, &data)
        .args(["cas", "get", &hash])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("holler cas get");
    let mut first = [0u8; 10];
    child
        .stdout
        .take()
        .expect("stdout")
        .read_exact(&mut first)
        .expect("the first bytes");
    let output = child.wait_with_output().expect("holler");
    quiet_on_closed_pipe(output, "holler cas get | head -c 10");
    assert_eq!(first, [7u8; 10]);
    // An object larger than one range comes whole (`-o FILE`).
    let large = dir.path().join("large.bin");
    let bytes: Vec<u8> = (0..5_000_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&large, &bytes).expect("write");
    let large_hash = stdout(&ok(run(&up, &data, &["cas", "put", large.to_str().expect("utf-8")])));
    let copy = dir.path().join("copy.bin");
    ok(run(
        &up,
        &data,
        &["cas", "get", large_hash.trim(), "-o", copy.to_str().expect("utf-8")],
    ));
    assert!(
        std::fs::read(&copy).expect("the copy") == bytes,
        "cas get -o wrote another file"
    );
    // `cas put -` reads stdin.
    let piped = ok(run_with_stdin(&up, &data, &["cas", "put", "-"], b"from stdin"));
    let piped_hash = stdout(&piped).trim().to_string();
    assert_eq!(
        stdout(&ok(run(&up, &data, &["cas", "get", &piped_hash[..12]]))),
        "from stdin"
    );

    // Resources and prompts are commands.
    let list = stdout(&ok(run(&up, &data, &["resource", "list"])));
    assert!(
        list.contains("lua://stdlib") && list.contains("hootenanny://graph/schema.graphql"),
        "{list}"
    );
    assert_aligned(&list);
    let stdlib = stdout(&ok(run(&up, &data, &["resource", "read", "lua://stdlib"])));
    assert!(
        stdlib.contains("json.encode"),
        "the stdlib reference: {}",
        &stdlib[..stdlib.len().min(300)]
    );
    let prompts = stdout(&ok(run(&up, &data, &["prompt"])));
    assert!(
        prompts.contains("write-script") && prompts.contains("debug-script"),
        "{prompts}"
    );
    let prompt = stdout(&ok(run(
        &up,
        &data,
        &["prompt", "write-script", "goal=a walking bass line"],
    )));
    assert!(prompt.contains("a walking bass line"), "{prompt}");

    // Parameters: key=value (JSON when it parses), key=@file (its text), --params-file (or -).
    let abc = dir.path().join("tune.abc");
    std::fs::write(&abc, "X:1\nK:C\n\"quoted\" CDEF|\n").expect("write");
    let code = "return {bars = params.bars, abc = params.abc, name = params.name}";
    let file_arg = format!("abc=@{}", abc.display());
    let eval = ok(run(
        &up,
        &data,
        &[
            "--json", "lua", code, "--param", "bars=4", "--param", &file_arg, "--param", "name=x y",
        ],
    ));
    let reply: serde_json::Value = serde_json::from_slice(&eval.stdout).expect("JSON");
    assert_eq!(reply["result"]["bars"], 4.0);
    assert_eq!(reply["result"]["abc"], "X:1\nK:C\n\"quoted\" CDEF|\n");
    assert_eq!(reply["result"]["name"], "x y");
    let params_file = dir.path().join("params.json");
    std::fs::write(&params_file, r#"{"bars": 2, "name": "file"}"#).expect("write");
    let eval = ok(run(
        &up,
        &data,
        &[
            "lua",
            code,
            "--params-file",
            params_file.to_str().expect("utf-8"),
            "--param",
            "bars=8",
        ],
    ));
    assert!(
        stdout(&eval).contains("\"bars\": 8") && stdout(&eval).contains("\"name\": \"file\""),
        "{}",
        stdout(&eval)
    );
    let eval = ok(run_with_stdin(
        &up,
        &data,
        &["lua", code, "--params-file", "-"],
        br#"{"name": "stdin"}"#,
    ));
    assert!(stdout(&eval).contains("\"name\": \"stdin\""), "{}", stdout(&eval));
    let eval = ok(run_with_stdin(&up, &data, &["lua", "-f", "-"], b"return 6 * 7"));
    // An integer reads as one.
    assert_eq!(stdout(&eval), "42\n");

    // What a script prints goes to stderr; the result alone to stdout.
    let eval = ok(run(
        &up,
        &data,
        &["lua", "print('working...') log.warn('careful') return 'the result'"],
    ));
    assert_eq!(stdout(&eval), "the result\n");
    assert!(
        stderr(&eval).contains("working...") && stderr(&eval).contains("careful"),
        "{}",
        stderr(&eval)
    );
    // A failure shows its traceback with -v, and says so without it.
    let failing = "local function inner() error('boom') end\ninner()";
    let quiet = run(&up, &data, &["lua", failing]);
    assert_eq!(quiet.status.code(), Some(3));
    assert!(
        stderr(&quiet).contains("boom") && stderr(&quiet).contains("-v"),
        "{}",
        stderr(&quiet)
    );
    assert!(!stderr(&quiet).contains("stack traceback"), "{}", stderr(&quiet));
    let verbose = run(&up, &data, &["-v", "lua", failing]);
    assert!(
        stderr(&verbose).contains("stack traceback") && stderr(&verbose).contains("inner"),
        "{}",
        stderr(&verbose)
    );

    // A file that only defines main(params) has it called, as a job would.
    let script = dir.path().join("greet.lua");
    std::fs::write(
        &script,
        "function describe()\n  return {name = 'greet', description = 'Greets someone by name.', params = {type = 'object', \
         required = {'who'}, properties = {who = {type = 'string', description = 'Whom to greet'}}}}\nend\n\
         function main(params)\n  print('greeting')\n  return 'hello ' .. params.who\nend\n",
    )
    .expect("write");
    let path = script.to_str().expect("utf-8");
    let eval = ok(run(&up, &data, &["lua", "-f", path, "--param", "who=ann"]));
    assert_eq!(stdout(&eval), "hello ann\n", "{}", stderr(&eval));

    // script describe shows name, description and params, by a hash prefix.
    let stored = stdout(&ok(run(&up, &data, &["script", "store", path, "--tag", "demo"])));
    let script_hash = stored.trim();
    let described = stdout(&ok(run(&up, &data, &["script", "describe", &script_hash[..10]])));
    for expected in [
        "greet",
        "Greets someone by name.",
        "who",
        "string",
        "Whom to greet",
        script_hash,
    ] {
        assert!(
            described.contains(expected),
            "describe lacks {expected:?}:\n{described}"
        );
    }

    // holler tools: an aligned table with every description whole (never cut at a period).
    let tools = stdout(&ok(run(&up, &data, &["tools"])));
    assert_aligned(&tools);
    for tool in hooteproto::tools::TOOLS {
        let description = tool.description.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(
            tools
                .lines()
                .any(|l| l.starts_with(tool.name) && l.ends_with(&description)),
            "{} is not listed with its whole description:\n{tools}",
            tool.name
        );
    }
    assert!(up.stop());
}

#[test]
fn jobs_say_where_they_are() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let up = Up::start(&data, &[]);
    let script = dir.path().join("work.lua");
    std::fs::write(
        &script,
        "function main(params)\n  print('step one')\n  job.progress(0.5, 'half way')\n  \
         if params.forever then while true do end end\n  return params.n * 2\nend\n",
    )
    .expect("write");
    let stored = stdout(&ok(run(
        &up,
        &data,
        &["script", "store", script.to_str().expect("utf-8")],
    )));
    let hash = stored.trim().to_string();

    // The job id first, then the logs and the duration at the end (stderr); the result (stdout).
    let output = ok(run(
        &up,
        &data,
        &["job", "run", &hash[..12], "--param", "n=21", "--wait"],
    ));
    assert_eq!(stdout(&output), "42\n");
    let err = stderr(&output);
    let first = err.lines().next().unwrap_or_default();
    assert!(first.starts_with("job ") && first.ends_with(" started"), "{err}");
    let id = first
        .trim_start_matches("job ")
        .trim_end_matches(" started")
        .to_string();
    let logs = err.find("step one").expect("the job's log");
    let done = err.find(&format!("job {id} succeeded in ")).expect("the duration");
    assert!(logs < done, "{err}");

    // Ctrl-C stops the waiting, not the job, and says how to follow or stop it.
    let mut child = holler(&up, &data)
        .args([
            "job",
            "run",
            &hash,
            "--param",
            "forever=true",
            "--param",
            "n=1",
            "--wait",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("holler job run");
    let mut err = BufReader::new(child.stderr.take().expect("stderr"));
    let mut line = String::new();
    err.read_line(&mut line).expect("the first line");
    assert!(
        line.starts_with("job ") && line.trim_end().ends_with(" started"),
        "{line}"
    );
    let id = line
        .trim()
        .trim_start_matches("job ")
        .trim_end_matches(" started")
        .to_string();
    let killed = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let mut rest = String::new();
    err.read_to_string(&mut rest).expect("the rest of stderr");
    let status = child.wait().expect("holler");
    assert_eq!(status.code(), Some(130), "{rest}");
    assert!(rest.contains("still running"), "{rest}");
    assert!(rest.contains(&format!("holler job wait {id}")), "{rest}");
    assert!(rest.contains(&format!("holler job cancel {id}")), "{rest}");
    let state = stdout(&ok(run(&up, &data, &["job", "status", &id])));
    assert!(
        state
            .lines()
            .any(|l| l.starts_with("state") && l.trim_end().ends_with("running")),
        "{state}"
    );
    let cancelled = stdout(&ok(run(&up, &data, &["job", "cancel", &id])));
    assert_eq!(cancelled.trim(), format!("{id} cancelled"));

    // Lists are aligned tables with enums by their short names.
    let list = stdout(&ok(run(&up, &data, &["job", "list"])));
    assert_aligned(&list);
    assert!(list.contains("succeeded") && list.contains("cancelled"), "{list}");
    assert!(!list.contains("JOB_STATE_"), "{list}");
    assert!(up.stop());
}

#[test]
fn timeline_artifacts_and_a_second_stack() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let up = Up::start(&data, &[]);

    // Zero values are shown, integers read as integers, enums by short name.
    let marker = stdout(&ok(run(&up, &data, &["timeline", "marker", "cue_point", "0"])));
    assert!(marker.contains("cue_point at beat 0"), "{marker}");
    let status = stdout(&ok(run(&up, &data, &["transport", "status"])));
    assert!(status.starts_with("stopped at beat 0 "), "{status}");
    assert!(status.contains("120 bpm") && !status.contains("120.0"), "{status}");
    // --json keeps proto3 JSON.
    let json = stdout(&ok(run(&up, &data, &["--json", "transport", "status"])));
    let json: serde_json::Value = serde_json::from_str(&json).expect("JSON");
    assert_eq!(json["state"]["playback"], "PLAYBACK_STATE_STOPPED", "{json}");

    // A hash prefix works where a hash does: timeline region, artifact create.
    let midi = stdout(&ok(run(
        &up,
        &data,
        &[
            "lua",
            "return midi.save(midi.from_notes({{pitch = 60, start = 0, duration = 1}}))",
        ],
    )));
    let midi = midi.trim();
    assert_eq!(midi.len(), 64, "{midi}");
    let region = stdout(&ok(run(&up, &data, &["timeline", "region", &midi[..10], "0"])));
    assert!(region.contains("midi at beat 0"), "{region}");
    // The same object at the same beat again is refused unless asked for.
    let again = run(&up, &data, &["timeline", "region", &midi[..10], "0"]);
    assert_eq!(again.status.code(), Some(3));
    assert!(stderr(&again).contains("--allow-duplicate"), "{}", stderr(&again));
    ok(run(&up, &data, &["timeline", "region", midi, "0", "--allow-duplicate"]));
    let timeline = stdout(&ok(run(&up, &data, &["timeline", "query"])));
    assert_eq!(timeline.matches(&midi[..12]).count(), 2, "{timeline}");
    for table in timeline.split("\n\n").skip(1) {
        assert_aligned(table);
    }
    assert!(timeline.contains("cue_point"), "{timeline}");
    let artifact = stdout(&ok(run(
        &up,
        &data,
        &["artifact", "create", &midi[..8], "--name", "tune"],
    )));
    assert!(
        artifact.contains(midi),
        "the artifact names the whole hash:\n{artifact}"
    );

    // status: each service at its endpoint with version and uptime; the data dir and key.
    let status = stdout(&ok(run(&up, &data, &["status"])));
    for endpoint in [&up.luanette, &up.hootenanny, &up.chaosgarden] {
        assert!(
            status
                .lines()
                .any(|l| l.contains(endpoint.as_str()) && l.contains(" up ")),
            "{status}"
        );
    }
    assert!(status.contains(env!("CARGO_PKG_VERSION")), "{status}");
    assert!(
        status.contains(&data.join("hoot.key").display().to_string()),
        "{status}"
    );

    // A second `holler up` on the same endpoints says a stack is already running there.
    let other = dir.path().join("other");
    let second = Command::new(env!("CARGO_BIN_EXE_holler"))
        .args(["--luanette", &up.luanette, "--hootenanny", &up.hootenanny])
        .args(["--chaosgarden", &up.chaosgarden, "up", "--data-dir"])
        .arg(&other)
        .args(["--port", &testkit::free_port().to_string(), "--audio-device", "none"])
        .args(["--broadcasts", "none", "--no-health"])
        .output()
        .expect("a second holler up");
    assert!(!second.status.success());
    let said = stderr(&second);
    assert!(
        said.contains(&format!("a stack is already running at {}", up.luanette)) && said.contains("holler status"),
        "{said}"
    );
    assert!(up.stop());
}
