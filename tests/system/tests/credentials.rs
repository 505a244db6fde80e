//! Credentials, as a user meets them (`holler up` and the service binaries as real processes):
//!
//! - `holler up` with no key flag creates `<data dir>/hoot.key` (0600, in a 0700 data dir, every
//!   file it writes 0600); each backend drops unsigned or forged control (`shutdown`,
//!   `register`) and code (`lua_eval`), while the `holler` CLI, finding the key by itself, works,
//!   its signed `shutdown` included. The key never appears in the output.
//! - `--insecure` keeps the old unsigned behaviour, and refuses to be combined with a key or a
//!   token.
//! - `--token-file`: HTTP without the right token is refused (and a near miss is no better), and
//!   ZMQ without the key runs nothing.
//! - Luanette's broadcasts are signed: a subscriber with the key hears them, one with another key
//!   accepts none.
//! - A standalone service picks up `<data dir>/hoot.key` when it exists.
//! - A client flooding Luanette is refused RESOURCE_EXHAUSTED naming the cap, while another
//!   client's ping still answers at once.

use std::io::{Read as _, Write as _};
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use hooteproto::broadcast::Subscriber;
use hooteproto::v1::{
    self as pb, ErrorCode, JobCancelRequest, JobExecuteRequest, JobPollRequest, LuaEvalRequest, PingRequest,
    RegisterRequest, ScriptStoreRequest, ShutdownRequest,
};
use hooteproto::{Client, Error, Key, RequestOptions};
use system_tests::{BACKENDS, Up, binary, client, command, free_port};

/// Sent once (never retried), waiting at most `timeout`.
fn once(timeout: Duration) -> RequestOptions {
    RequestOptions {
        timeout: Some(timeout),
        idempotent: Some(false),
        ..Default::default()
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).expect("metadata").permissions().mode() & 0o777
}

/// Every file under `dir` that is not 0600 and every directory that is not 0700.
fn loose_modes(dir: &Path) -> Vec<String> {
    let mut loose = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(path) = pending.pop() {
        let Ok(metadata) = std::fs::symlink_metadata(&path) else {
            continue; // removed while we looked (sled and the CAS rename their temporaries)
        };
        let mode = metadata.permissions().mode() & 0o777;
        if metadata.is_dir() {
            if mode != 0o700 {
                loose.push(format!("{mode:o} {}", path.display()));
            }
            pending.extend(
                std::fs::read_dir(&path)
                    .into_iter()
                    .flatten()
                    .flatten()
                    .map(|e| e.path()),
            );
        } else if metadata.is_file() && mode != 0o600 {
            loose.push(format!("{mode:o} {}", path.display()));
        }
    }
    loose
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The status code of a plain HTTP/1.1 request to the gateway.
fn http_status(port: u16, method: &str, path: &str, authorization: Option<&str>) -> u16 {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#;
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\n"
    );
    if let Some(value) = authorization {
        request.push_str(&format!("Authorization: {value}\r\n"));
    }
    if method == "POST" {
        request.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    } else {
        request.push_str("\r\n");
    }
    stream.write_all(request.as_bytes()).expect("send");
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).expect("a status line");
    std::str::from_utf8(&head[9..12])
        .ok()
        .and_then(|code| code.parse().ok())
        .expect("an HTTP status")
}

async fn is_dropped(client: &Client, payload: pb::envelope::Payload) -> bool {
    matches!(
        client.request_with(payload, once(Duration::from_millis(800))).await,
        Err(Error::DeadlineExceeded { .. })
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holler_up_makes_a_private_key_and_nothing_unsigned_is_obeyed() {
    let dir = tempfile::tempdir().expect("tmp");
    let up = Up::start(dir.path(), &[], |up| Some(up.key())).await;
    let key_file = up.data.join("hoot.key");
    assert_eq!(mode(&key_file), 0o600, "the key file is private");
    assert_eq!(mode(&up.data), 0o700, "the data dir is private");
    let key_text = std::fs::read_to_string(&key_file).expect("read the key");
    let key_text = key_text.trim_end();
    assert_eq!(key_text.len(), 64, "32 random bytes as hex");
    let key = up.key();

    // Unsigned and forged messages to every backend: dropped, not obeyed, not answered.
    let forger = Key::new(b"not the key this stack holds".to_vec()).expect("a key");
    for (name, endpoint) in BACKENDS.iter().zip(&up.endpoints) {
        for (who, with) in [("unsigned", None), ("forged", Some(forger.clone()))] {
            let stranger = client(endpoint, with, Duration::from_secs(1));
            let shutdown = pb::envelope::Payload::Shutdown(ShutdownRequest::default());
            assert!(is_dropped(&stranger, shutdown).await, "{name}: {who} shutdown dropped");
            if *name == "luanette" {
                let eval = pb::envelope::Payload::LuaEval(LuaEvalRequest {
                    code: "return 1".into(),
                    params: None,
                });
                assert!(is_dropped(&stranger, eval).await, "{name}: {who} lua_eval dropped");
                let register = pb::envelope::Payload::Register(RegisterRequest::default());
                assert!(is_dropped(&stranger, register).await, "{name}: {who} register dropped");
            }
        }
        let signed = client(endpoint, Some(key.clone()), Duration::from_secs(5));
        let pong = signed.call(PingRequest {}).await.expect("a signed ping");
        assert_eq!(&pong.service, name, "{name} is still up after the unsigned shutdown");
    }

    // The CLI finds the key by itself (HOOT_DATA_DIR) and is obeyed.
    let eval = up.cli(&["--json", "lua", "return 6 * 7"]);
    assert!(eval.status.success(), "holler lua: {}", stderr(&eval));
    assert!(stdout(&eval).contains("42"), "{}", stdout(&eval));
    let ping = up.cli(&["--json", "ping"]);
    assert!(ping.status.success(), "holler ping: {}", stderr(&ping));

    // Files written by the services and by the CLI's direct CAS import are private too.
    let signed = client(&up.endpoints[1], Some(key.clone()), Duration::from_secs(10));
    signed
        .call(pb::CasStoreRequest {
            data: b"a private object".to_vec(),
            mime_type: "text/plain".into(),
        })
        .await
        .expect("cas_store");
    let sample = dir.path().join("sample.txt");
    std::fs::write(&sample, b"imported by the CLI").expect("write");
    let put = up.cli(&["cas", "put", sample.to_str().expect("utf-8")]);
    assert!(put.status.success(), "holler cas put: {}", stderr(&put));
    let marker = up.cli(&["timeline", "marker", "cue_point", "4"]);
    assert!(marker.status.success(), "holler timeline marker: {}", stderr(&marker));
    let loose = loose_modes(&up.data);
    assert!(loose.is_empty(), "files not 0600 / dirs not 0700: {loose:#?}");

    // A signed shutdown, from the CLI, is obeyed.
    let stop = up.cli(&["send", "chaosgarden", r#"{"shutdown": {}}"#]);
    assert!(stop.status.success(), "holler send shutdown: {}", stderr(&stop));
    let garden = client(&up.endpoints[2], Some(key.clone()), Duration::from_millis(500));
    let deadline = Instant::now() + Duration::from_secs(20);
    while garden.call(PingRequest {}).await.is_ok() {
        assert!(
            Instant::now() < deadline,
            "chaosgarden did not stop on a signed shutdown"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let output = up.output();
    assert!(
        output.contains(&*key_file.to_string_lossy()),
        "holler up says where the key is:\n{output}"
    );
    assert!(!output.contains(key_text), "the key itself is never shown or logged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insecure_keeps_the_old_unsigned_behaviour_and_refuses_a_key_or_a_token() {
    let dir = tempfile::tempdir().expect("tmp");
    let up = Up::start(dir.path(), &["--insecure"], |_| None).await;
    assert!(!up.data.join("hoot.key").exists(), "--insecure creates no key");
    assert_eq!(mode(&up.data), 0o700, "the data dir is private all the same");
    let lua = client(&up.endpoints[0], None, Duration::from_secs(10));
    let reply = lua
        .call(LuaEvalRequest {
            code: "return 6 * 7".into(),
            params: None,
        })
        .await
        .expect("an unsigned lua_eval is obeyed");
    assert_eq!(
        reply.result.and_then(|v| v.kind),
        Some(prost_types::value::Kind::NumberValue(42.0))
    );
    let hoot = client(&up.endpoints[1], None, Duration::from_secs(10));
    hoot.call(ShutdownRequest::default())
        .await
        .expect("an unsigned shutdown is obeyed");
    let deadline = Instant::now() + Duration::from_secs(20);
    let probe = client(&up.endpoints[1], None, Duration::from_millis(500));
    while probe.call(PingRequest {}).await.is_ok() {
        assert!(Instant::now() < deadline, "hootenanny did not stop");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(up);

    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "a token\n").expect("token");
    let key_file = dir.path().join("some.key");
    std::fs::write(&key_file, "a key of more than sixteen bytes\n").expect("key");
    for extra in [
        ["--token-file", token_file.to_str().expect("utf-8")],
        ["--key-file", key_file.to_str().expect("utf-8")],
    ] {
        let mut args = vec!["--insecure"];
        args.extend(extra);
        let mut refused = Up::spawn(dir.path(), &args);
        let status = refused.child.wait().expect("wait");
        assert_eq!(
            status.code(),
            Some(2),
            "{args:?} is a usage error:\n{}",
            refused.output()
        );
        assert!(refused.output().contains("--insecure"), "{}", refused.output());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_stack_has_no_path_that_runs_code_without_a_credential() {
    const TOKEN: &str = "a bearer token for the credentials test";
    let dir = tempfile::tempdir().expect("tmp");
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).expect("token");
    let up = Up::start(
        dir.path(),
        &["--token-file", token_file.to_str().expect("utf-8")],
        |up| Some(up.key()),
    )
    .await;
    let port = up.port;
    let statuses = tokio::task::spawn_blocking(move || {
        let near_misses = [
            None,
            Some(String::new()),
            Some("Bearer ".to_string()),
            Some(format!("Bearer {}", &TOKEN[..TOKEN.len() - 1])),
            Some(format!("Bearer {TOKEN}x")),
            Some(format!("Bearer {}X", &TOKEN[..TOKEN.len() - 1])),
            Some(format!("Basic {TOKEN}")),
            Some(format!("bearer{TOKEN}")),
        ];
        let refused: Vec<_> = near_misses
            .iter()
            .flat_map(|auth| {
                [("POST", "/mcp"), ("GET", "/health")].map(|(method, path)| {
                    (
                        method,
                        path,
                        auth.clone(),
                        http_status(port, method, path, auth.as_deref()),
                    )
                })
            })
            .collect();
        let bearer = format!("Bearer {TOKEN}");
        let health = http_status(port, "GET", "/health", Some(&bearer));
        let mut mcp = testkit::mcp::Session::connect_with_token(&format!("http://127.0.0.1:{port}/mcp"), Some(TOKEN));
        let (failed, value) = mcp.call("lua_eval", serde_json::json!({"code": "return 6 * 7"}));
        (refused, health, failed, value)
    })
    .await
    .expect("http");
    let (refused, health, failed, value) = statuses;
    for (method, path, auth, status) in refused {
        assert_eq!(status, 401, "{method} {path} with Authorization {auth:?}");
    }
    assert_eq!(health, 200, "the right token is let in");
    assert!(!failed && value["result"].as_f64() == Some(42.0), "{value}");
    // The ZMQ side of the same stack: nothing unsigned runs.
    let stranger = client(&up.endpoints[0], None, Duration::from_secs(1));
    let eval = pb::envelope::Payload::LuaEval(LuaEvalRequest {
        code: "return 1".into(),
        params: None,
    });
    assert!(
        is_dropped(&stranger, eval).await,
        "unsigned lua_eval over ZMQ is dropped"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holler_up_signs_its_broadcasts() {
    let dir = tempfile::tempdir().expect("tmp");
    let broadcasts = format!("tcp://127.0.0.1:{}", free_port());
    let up = Up::start(dir.path(), &["--broadcasts", &broadcasts], |up| Some(up.key())).await;
    let key = up.key();
    let mut keyed = Subscriber::connect(&broadcasts, &["job_"], Some(key.clone())).expect("subscribe");
    let stranger = Key::new(b"not the key this stack holds".to_vec()).expect("a key");
    let mut forged = Subscriber::connect(&broadcasts, &["job_"], Some(stranger)).expect("subscribe");
    let lua = client(&up.endpoints[0], Some(key), Duration::from_secs(10));
    let script_hash = lua
        .call(ScriptStoreRequest {
            content: "function main() return 1 end".into(),
            tags: vec![],
            creator: "credentials-test".into(),
            ..Default::default()
        })
        .await
        .expect("script_store")
        .script
        .expect("the stored script")
        .script_hash;
    // Subscriptions take a moment to reach the publisher: run jobs until one is heard.
    let heard = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            lua.call(JobExecuteRequest {
                script_hash: script_hash.clone(),
                params: None,
                tags: vec![],
                ..Default::default()
            })
            .await
            .expect("job_execute");
            if let Ok(Ok(broadcast)) = tokio::time::timeout(Duration::from_millis(500), keyed.recv()).await {
                return broadcast;
            }
        }
    })
    .await
    .expect("a subscriber with the key hears Luanette's broadcasts");
    assert_eq!(heard.source, "luanette");
    // One more job, now that both subscriptions are in place: the other key hears it and drops it.
    lua.call(JobExecuteRequest {
        script_hash,
        params: None,
        tags: vec![],
        ..Default::default()
    })
    .await
    .expect("job_execute");
    let accepted = tokio::time::timeout(Duration::from_secs(2), forged.recv()).await;
    assert!(
        accepted.is_err(),
        "a subscriber with another key accepts nothing: {accepted:?}"
    );
    assert!(
        forged.rejected() > 0,
        "it heard the broadcasts and dropped them as wrongly signed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standalone_service_uses_the_data_dirs_key_when_it_exists() {
    let dir = tempfile::tempdir().expect("tmp");
    let data = dir.path().join("data");
    let (key, created) = Key::load_or_create(&data.join("hoot.key")).expect("a key");
    assert!(created);
    let key_text = std::fs::read_to_string(data.join("hoot.key")).expect("read");
    for service in ["luanette", "hootenanny"] {
        let endpoint = format!("tcp://127.0.0.1:{}", free_port());
        let log = dir.path().join(format!("{service}.log"));
        let out = std::fs::File::create(&log).expect("log");
        let mut process = command(&binary(service));
        process
            .args(["--bind", &endpoint, "--health-bind", "none", "--data-dir"])
            .arg(&data);
        if service == "luanette" {
            process.args(["--pub-bind", "none"]);
        }
        let mut child = process
            .stdout(Stdio::from(out.try_clone().expect("log")))
            .stderr(Stdio::from(out))
            .spawn()
            .expect("spawn");
        let signed = client(&endpoint, Some(key.clone()), Duration::from_secs(1));
        let deadline = Instant::now() + Duration::from_secs(30);
        while signed.call(PingRequest {}).await.is_err() {
            assert!(Instant::now() < deadline, "{service} did not come up");
        }
        let stranger = client(&endpoint, None, Duration::from_secs(1));
        let ping = pb::envelope::Payload::Ping(PingRequest {});
        assert!(
            is_dropped(&stranger, ping).await,
            "{service}: an unsigned ping is dropped"
        );
        let shutdown = pb::envelope::Payload::Shutdown(ShutdownRequest::default());
        assert!(
            is_dropped(&stranger, shutdown).await,
            "{service}: an unsigned shutdown is dropped"
        );
        signed.call(PingRequest {}).await.expect("still up");
        let _ = child.kill();
        let _ = child.wait();
        let logged = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(
            logged.contains("hoot.key"),
            "{service} says which key it uses:\n{logged}"
        );
        assert!(!logged.contains(key_text.trim_end()), "{service} never logs the key");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_flooding_luanette_is_refused_by_name_while_another_clients_ping_answers_fast() {
    const FLOOD: usize = 600;
    const PER_CLIENT: usize = 512; // ServerConfig's default max_in_flight_per_client
    let dir = tempfile::tempdir().expect("tmp");
    let up = Up::start(dir.path(), &[], |up| Some(up.key())).await;
    let key = up.key();
    let endpoint = up.endpoints[0].clone();
    let flooder = client(&endpoint, Some(key.clone()), Duration::from_secs(30));
    let script = flooder
        .call(ScriptStoreRequest {
            content: "function main() while true do end end".into(),
            tags: vec!["flood".into()],
            creator: "credentials-test".into(),
            ..Default::default()
        })
        .await
        .expect("script_store");
    let script_hash = script.script.expect("the stored script").script_hash;
    let job = flooder
        .call(JobExecuteRequest {
            script_hash,
            params: None,
            tags: vec![],
            ..Default::default()
        })
        .await
        .expect("job_execute")
        .job_id;

    // Long polls on a job that never ends: each holds a request slot for 3 s.
    let poll = || JobPollRequest {
        job_ids: vec![job.clone()],
        timeout_ms: 3_000,
        mode: 0,
    };
    let flood: Vec<_> = (0..FLOOD)
        .map(|_| {
            let (flooder, request) = (flooder.clone(), poll());
            tokio::spawn(async move { flooder.call_with(request, once(Duration::from_secs(30))).await })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    while flooder.stats().sent < (FLOOD + 2) as u64 {
        assert!(Instant::now() < deadline, "the flood was not sent");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    flooder
        .call(PingRequest {})
        .await
        .expect("the flooder's own ping (reserved capacity)");

    let other = client(&endpoint, Some(key.clone()), Duration::from_secs(5));
    let mut pings = Vec::new();
    for _ in 0..20 {
        let asked = Instant::now();
        other.call(PingRequest {}).await.expect("another client's ping");
        pings.push(asked.elapsed());
    }
    pings.sort();
    let (median, worst) = (pings[pings.len() / 2], pings[pings.len() - 1]);
    eprintln!("luanette: another client's ping during a {FLOOD}-request flood: median {median:?}, worst {worst:?}");
    assert!(
        worst < Duration::from_millis(500),
        "pings were held up: worst {worst:?}"
    );
    let eval = other
        .call(LuaEvalRequest {
            code: "return 1 + 1".into(),
            params: None,
        })
        .await;
    assert!(
        eval.is_ok(),
        "another client's lua_eval runs during the flood: {eval:?}"
    );

    let (mut answered, mut refused) = (0, Vec::new());
    for task in flood {
        match task.await.expect("a flood task") {
            Ok(_) => answered += 1,
            Err(Error::Remote(status)) if status.code == ErrorCode::ResourceExhausted => refused.push(status.message),
            Err(other) => panic!("a flood request neither answered nor refused: {other}"),
        }
    }
    assert_eq!((answered, refused.len()), (PER_CLIENT, FLOOD - PER_CLIENT));
    assert!(
        refused.iter().all(|m| m.contains("max_in_flight_per_client")),
        "the refusal names the cap: {}",
        refused[0]
    );
    let _ = flooder.call(JobCancelRequest { job_id: job }).await;
}
