//! The studio's HTTP side against `holler up`: the page loads without the token and the API
//! refuses without it; the piano-roll and peaks endpoints draw real files and refuse hostile
//! ones with INVALID_ARGUMENT; CAS objects come with byte ranges. (The page itself is tested
//! in a real browser by tests/browser.)

mod common;

use base64::Engine as _;
use common::Up;
use reqwest::StatusCode;
use reqwest::blocking::Client;
use serde_json::{Value, json};

const TOKEN: &str = "studio-token";

struct Studio {
    up: Up,
    base: String,
    http: Client,
    _dir: tempfile::TempDir,
}

impl Studio {
    fn start() -> Self {
        let dir = tempfile::tempdir().expect("tmp");
        let token_file = dir.path().join("token");
        std::fs::write(&token_file, TOKEN).expect("token file");
        let token_arg = token_file.display().to_string();
        let up = Up::start_with(&dir.path().join("data"), &[], &["--token-file", &token_arg]);
        let base = format!("http://127.0.0.1:{}", up.port);
        Self {
            up,
            base,
            http: Client::new(),
            _dir: dir,
        }
    }

    /// A tool call with the token; the reply's status and JSON.
    fn tool(&self, name: &str, arguments: Value) -> (StatusCode, Value) {
        let reply = self
            .http
            .post(format!("{}/api/tools/{name}", self.base))
            .bearer_auth(TOKEN)
            .json(&arguments)
            .send()
            .expect("tool call");
        (reply.status(), reply.json().expect("JSON"))
    }

    fn ok(&self, name: &str, arguments: Value) -> Value {
        let (status, body) = self.tool(name, arguments);
        assert_eq!(status, StatusCode::OK, "{name}: {body}");
        body
    }

    /// `POST /api/tools/{tool}` with `{}` and no credentials yet: the caller adds what it tests.
    fn post(&self, tool: &str) -> reqwest::blocking::RequestBuilder {
        self.http
            .post(format!("{}/api/tools/{tool}", self.base))
            .json(&json!({}))
    }

    fn get(&self, path: &str) -> reqwest::blocking::Response {
        self.http
            .get(format!("{}{path}", self.base))
            .bearer_auth(TOKEN)
            .send()
            .expect("GET")
    }

    fn store(&self, bytes: &[u8], mime: &str) -> String {
        let data = base64::engine::general_purpose::STANDARD.encode(bytes);
        let stored = self.ok("cas_store", json!({"data": data, "mime_type": mime}));
        stored["hash"].as_str().expect("hash").to_string()
    }

    /// A 12-note tune as a Standard MIDI File in the CAS.
    fn tune(&self) -> String {
        self.tune_opening(1)
    }

    /// The tune with its first note `eighths` long: a file of its own for each length.
    fn tune_opening(&self, eighths: usize) -> String {
        let code =
            format!(r#"return midi.save(abc.to_midi("X:1\nT:t\nM:4/4\nL:1/8\nK:C\nC{eighths}DEF GABc|c2B2 A2G2|"))"#);
        let reply = self.ok("lua_eval", json!({"code": code}));
        reply["result"].as_str().expect("hash").to_string()
    }
}

#[test]
fn the_page_loads_without_the_token_and_everything_else_needs_it() {
    let studio = Studio::start();
    let page = studio.http.get(format!("{}/", studio.base)).send().expect("page");
    assert_eq!(page.status(), StatusCode::OK);
    assert!(
        page.headers()["content-security-policy"]
            .to_str()
            .is_ok_and(|csp| csp.contains("default-src 'self'"))
    );
    let html = page.text().expect("html");
    assert!(
        html.contains("aria-label=\"Position\"") && html.contains("/studio.js"),
        "{html}"
    );
    for asset in ["/studio.js", "/studio.css"] {
        let reply = studio
            .http
            .get(format!("{}{asset}", studio.base))
            .send()
            .expect("asset");
        assert_eq!(reply.status(), StatusCode::OK, "{asset}");
    }
    // No token: the API, the event stream, the CAS and MCP are all closed.
    let call = studio.post("transport_status").send().expect("call");
    assert_eq!(call.status(), StatusCode::UNAUTHORIZED);
    for path in ["/api/events", "/api/cas/00000000", "/api/notes/00000000", "/health"] {
        let reply = studio.http.get(format!("{}{path}", studio.base)).send().expect("GET");
        assert_eq!(reply.status(), StatusCode::UNAUTHORIZED, "{path}");
    }
    // The session exchange: a wrong token gets nothing, the right one a cookie that works.
    let wrong = studio
        .http
        .post(format!("{}/api/session", studio.base))
        .json(&json!({"token": "guess"}))
        .send()
        .expect("session");
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert!(wrong.headers().get("set-cookie").is_none());
    let session = studio
        .http
        .post(format!("{}/api/session", studio.base))
        .json(&json!({"token": TOKEN}))
        .send()
        .expect("session");
    assert_eq!(session.status(), StatusCode::OK);
    let cookie = session.headers()["set-cookie"].to_str().expect("cookie").to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let pair = cookie.split(';').next().expect("name=value").to_string();
    let with_cookie = studio
        .post("transport_status")
        .header("cookie", pair)
        .send()
        .expect("call");
    assert_eq!(with_cookie.status(), StatusCode::OK);
    // With the token but under another site's name (DNS rebinding), or from its page: refused.
    let rebound = studio
        .post("transport_status")
        .bearer_auth(TOKEN)
        .header("host", "evil.example")
        .send()
        .expect("call");
    assert_eq!(rebound.status(), StatusCode::FORBIDDEN);
    let foreign = studio
        .post("transport_play")
        .bearer_auth(TOKEN)
        .header("origin", "http://evil.example")
        .send()
        .expect("call");
    assert_eq!(foreign.status(), StatusCode::FORBIDDEN);
    let status = studio.ok("transport_status", json!({}));
    assert_eq!(status["state"]["playback"], "stopped", "the refused play did nothing");
    studio.up.stop();
}

#[test]
fn tool_errors_carry_their_canonical_code_and_http_status() {
    let studio = Studio::start();
    let (status, body) = studio.tool("lua_eval", json!({"code": "error('no such chord')"}));
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["code"], "INVALID_ARGUMENT");
    assert!(
        body["message"].as_str().is_some_and(|m| m.contains("no such chord")),
        "{body}"
    );
    let (status, body) = studio.tool("no_such_tool", json!({}));
    assert_eq!((status, &body["code"]), (StatusCode::NOT_FOUND, &json!("NOT_FOUND")));
    let (status, body) = studio.tool("artifact_get", json!({"artifact_id": "art-missing"}));
    assert_eq!(
        (status, &body["code"]),
        (StatusCode::NOT_FOUND, &json!("NOT_FOUND")),
        "{body}"
    );
    // A body that is not a JSON object of arguments.
    let reply = studio
        .http
        .post(format!("{}/api/tools/lua_eval", studio.base))
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body("[1, 2]")
        .send()
        .expect("call");
    assert_eq!(reply.status(), StatusCode::BAD_REQUEST);
    // A POST that is not JSON (what a cross-site form could send) does nothing.
    let form = studio
        .http
        .post(format!("{}/api/tools/transport_play", studio.base))
        .bearer_auth(TOKEN)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("a=1")
        .send()
        .expect("call");
    assert_eq!(form.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    studio.up.stop();
}

#[test]
fn a_midi_file_is_drawn_from_its_notes_and_a_wav_from_its_peaks() {
    let studio = Studio::start();
    let tune = studio.tune();
    let notes = studio.get(&format!("/api/notes/{tune}"));
    assert_eq!(notes.status(), StatusCode::OK);
    let notes: Value = notes.json().expect("JSON");
    let list = notes["notes"].as_array().expect("notes");
    assert_eq!(list.len(), 12, "{notes}");
    // CDEF GABc in eighths: middle C first, half a beat each.
    let pitches: Vec<u64> = list.iter().take(8).filter_map(|n| n["pitch"].as_u64()).collect();
    assert_eq!(pitches, vec![60, 62, 64, 65, 67, 69, 71, 72]);
    assert_eq!(list[1]["start_beats"], 0.5);
    assert_eq!(list[0]["duration_beats"], 0.5);
    assert_eq!(notes["truncated"], false);

    studio.ok("timeline_add_region", json!({"cas_hash": tune, "position_beats": 0}));
    let render = studio.ok("timeline_render", json!({"from_beats": 0, "to_beats": 8}));
    let wav = render["cas_hash"].as_str().expect("hash");
    let peaks: Value = studio
        .get(&format!("/api/peaks/{wav}?buckets=100"))
        .json()
        .expect("JSON");
    let buckets = peaks["peaks"].as_array().expect("peaks");
    assert_eq!(buckets.len(), 100, "{peaks}");
    assert_eq!(peaks["frames"], 192_000);
    let loudest = buckets.iter().filter_map(|b| b[1].as_f64()).fold(0.0f64, f64::max);
    assert!(loudest > 0.01, "the render is not silent: {loudest}");
    let rms = peaks["rms"].as_f64().expect("rms");
    assert!(rms > 0.0 && rms < loudest, "rms {rms} of a tune peaking at {loudest}");
    assert!(
        buckets.iter().all(|b| b[0].as_f64() <= b[1].as_f64()),
        "min ≤ max in every bucket"
    );
    // `holler up` reads the CAS itself; a gateway on its own (`holler serve`) reads through
    // Hootenanny, chunk by chunk. Both draw the same.
    let apart = ServeApart::start(&studio);
    let port = apart.port;
    let through_hootenanny: Value = studio
        .http
        .get(format!("http://127.0.0.1:{port}/api/peaks/{wav}?buckets=100"))
        .bearer_auth(TOKEN)
        .send()
        .expect("peaks through Hootenanny")
        .json()
        .expect("JSON");
    // Its playhead comes over HOOT/1 (`holler up` reads it in process): the same state.
    let mut events = studio
        .http
        .get(format!("http://127.0.0.1:{port}/api/events"))
        .bearer_auth(TOKEN)
        .send()
        .expect("events");
    let mut seen = String::new();
    let mut buffer = [0u8; 4096];
    while !seen.contains("event: transport\ndata: ")
        || !seen[seen.find("event: transport").unwrap_or(0)..].contains("\n\n")
    {
        let n = std::io::Read::read(&mut events, &mut buffer).expect("event stream");
        assert!(n > 0, "the stream ended: {seen}");
        seen.push_str(&String::from_utf8_lossy(&buffer[..n]));
    }
    let from = seen.find("event: transport\ndata: ").expect("transport") + "event: transport\ndata: ".len();
    let line = &seen[from..from + seen[from..].find('\n').expect("line end")];
    let transport: Value = serde_json::from_str(line).expect("JSON");
    assert_eq!(transport["state"]["playback"], "stopped", "{transport}");
    assert_eq!(transport["state"]["tempo_bpm"], 120.0, "{transport}");
    drop(apart);
    assert_eq!(through_hootenanny, peaks, "the same peaks either way");
    studio.up.stop();
}

/// `holler serve` on its own port against the stack `holler up` runs (the gateway apart from
/// the services: it reads the CAS through Hootenanny and the playhead over HOOT/1), until
/// dropped.
struct ServeApart {
    child: std::process::Child,
    port: u16,
}

impl ServeApart {
    fn start(studio: &Studio) -> Self {
        let port = testkit::free_port();
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_holler"))
            .args(["--luanette", &studio.up.luanette, "--hootenanny", &studio.up.hootenanny])
            .args(["--chaosgarden", &studio.up.chaosgarden, "--data-dir"])
            .arg(studio._dir.path().join("data"))
            .args([
                "serve",
                "--port",
                &port.to_string(),
                "--broadcasts",
                "none",
                "--token-file",
            ])
            .arg(studio._dir.path().join("token"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("holler serve");
        let page = format!("http://127.0.0.1:{port}/");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            match studio.http.get(&page).send() {
                Ok(reply) if reply.status() == StatusCode::OK => return Self { child, port },
                _ if std::time::Instant::now() < deadline => std::thread::sleep(std::time::Duration::from_millis(50)),
                other => panic!("holler serve never answered: {other:?}"),
            }
        }
    }
}

impl Drop for ServeApart {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_damaged_object_is_reported_as_data_loss_not_as_bad_input() {
    let studio = Studio::start();
    let tune = studio.tune();
    // A WAV whose header is intact and whose samples are not: only the hash shows it.
    let mut take = Vec::new();
    take.extend_from_slice(b"RIFF");
    take.extend_from_slice(&(36u32 + 4_000).to_le_bytes());
    take.extend_from_slice(b"WAVEfmt ");
    take.extend_from_slice(&16u32.to_le_bytes());
    take.extend_from_slice(&1u16.to_le_bytes()); // PCM
    take.extend_from_slice(&2u16.to_le_bytes());
    take.extend_from_slice(&48_000u32.to_le_bytes());
    take.extend_from_slice(&(48_000u32 * 4).to_le_bytes());
    take.extend_from_slice(&4u16.to_le_bytes());
    take.extend_from_slice(&16u16.to_le_bytes());
    take.extend_from_slice(b"data");
    take.extend_from_slice(&4_000u32.to_le_bytes());
    let header = take.len();
    take.extend_from_slice(&[0; 4_000]);
    let wav = studio.store(&take, "audio/wav");
    // And one whose damage is in its header, so it does not decode at all.
    take[header..].fill(1);
    let unreadable = studio.store(&take, "audio/wav");
    // Same length, other bytes, under each name in the CAS `holler up` reads itself.
    let cas = cas::Cas::open(studio._dir.path().join("data").join("cas")).expect("cas");
    let damage = |hash: &str, bytes_damaged: std::ops::Range<usize>| {
        let path = cas.object_path(&cas::Hash::parse(hash).expect("hash"));
        let mut bytes = std::fs::read(&path).expect("object");
        let end = bytes_damaged.end.min(bytes.len());
        bytes[bytes_damaged.start..end].fill(b'x');
        let mut permissions = std::fs::metadata(&path).expect("object").permissions();
        #[allow(clippy::permissions_set_readonly_false)]
        permissions.set_readonly(false);
        std::fs::set_permissions(&path, permissions).expect("writable");
        std::fs::write(&path, bytes).expect("damage it");
    };
    damage(&tune, 0..usize::MAX);
    damage(&wav, header..usize::MAX);
    // Its sample rate: refused before its samples are read.
    damage(&unreadable, 24..28);
    for (endpoint, hash) in [
        ("notes", &tune),
        ("render", &tune),
        ("peaks", &wav),
        ("peaks", &unreadable),
    ] {
        let reply = studio.get(&format!("/api/{endpoint}/{hash}"));
        let status = reply.status();
        let body: Value = reply.json().expect("JSON");
        assert_eq!(body["code"], "DATA_LOSS", "{endpoint}: {}", body["message"]);
        assert_eq!(
            status,
            StatusCode::INTERNAL_SERVER_ERROR,
            "{endpoint}: {}",
            body["message"]
        );
    }
    // A gateway on its own reads through Hootenanny's range reads, which do not verify: it
    // checks the hash itself at the end.
    let apart = ServeApart::start(&studio);
    for (endpoint, hash) in [
        ("notes", &tune),
        ("render", &tune),
        ("peaks", &wav),
        ("peaks", &unreadable),
    ] {
        let reply = studio
            .http
            .get(format!("http://127.0.0.1:{}/api/{endpoint}/{hash}", apart.port))
            .bearer_auth(TOKEN)
            .send()
            .expect("through Hootenanny");
        let status = reply.status();
        let body: Value = reply.json().expect("JSON");
        assert_eq!(
            body["code"], "DATA_LOSS",
            "holler serve {endpoint}: {}",
            body["message"]
        );
        assert_eq!(
            status,
            StatusCode::INTERNAL_SERVER_ERROR,
            "holler serve {endpoint}: {}",
            body["message"]
        );
    }
    drop(apart);
    studio.up.stop();
}

#[test]
fn hostile_files_and_sizes_are_refused_with_invalid_argument() {
    let studio = Studio::start();
    let refused = |path: &str| {
        let reply = studio.get(path);
        let status = reply.status();
        let body: Value = reply.json().expect("JSON");
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
        assert_eq!(body["code"], "INVALID_ARGUMENT", "{path}: {body}");
        body["message"].as_str().unwrap_or_default().to_string()
    };
    // A header promising 5 tracks with none after it; a track chunk claiming 1 GB.
    let short = studio.store(b"MThd\0\0\0\x06\0\x01\0\x05\x01\xe0", "audio/midi");
    assert!(refused(&format!("/api/notes/{short}")).contains("tracks"));
    let mut liar = b"MThd\0\0\0\x06\0\0\0\x01\x01\xe0MTrk".to_vec();
    liar.extend_from_slice(&0x4000_0000u32.to_be_bytes());
    liar.extend_from_slice(&[0, 0x90, 60, 100]);
    let liar = studio.store(&liar, "audio/midi");
    assert!(refused(&format!("/api/notes/{liar}")).contains("declares"));
    // A WAV header declaring an hour of samples the file does not hold.
    let mut wav = Vec::new();
    wav.extend_from_slice(b"RIFF");
    wav.extend_from_slice(&u32::MAX.to_le_bytes());
    wav.extend_from_slice(b"WAVEfmt ");
    wav.extend_from_slice(&16u32.to_le_bytes());
    wav.extend_from_slice(&1u16.to_le_bytes()); // PCM
    wav.extend_from_slice(&2u16.to_le_bytes());
    wav.extend_from_slice(&48_000u32.to_le_bytes());
    wav.extend_from_slice(&(48_000u32 * 4).to_le_bytes());
    wav.extend_from_slice(&4u16.to_le_bytes());
    wav.extend_from_slice(&16u16.to_le_bytes());
    wav.extend_from_slice(b"data");
    wav.extend_from_slice(&(48_000u32 * 4 * 3600).to_le_bytes());
    wav.extend_from_slice(&[0; 64]);
    let wav = studio.store(&wav, "audio/wav");
    refused(&format!("/api/peaks/{wav}"));
    // Not media at all, and the wrong kind for each endpoint.
    let text = studio.store(b"just some words", "text/plain");
    refused(&format!("/api/notes/{text}"));
    refused(&format!("/api/peaks/{text}"));
    let tune = studio.tune();
    refused(&format!("/api/peaks/{tune}"));
    // Bucket counts out of bounds.
    refused(&format!("/api/peaks/{wav}?buckets=0"));
    refused(&format!("/api/peaks/{wav}?buckets=100000"));
    // The gateway is still fine.
    assert_eq!(studio.get(&format!("/api/notes/{tune}")).status(), StatusCode::OK);
    studio.up.stop();
}

#[test]
fn cas_objects_come_whole_or_in_byte_ranges() {
    let studio = Studio::start();
    let bytes: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    // Larger than one message: imported through the CLI on the stack's host.
    let file = studio._dir.path().join("blob.bin");
    std::fs::write(&file, &bytes).expect("write");
    let stored = common::holler(
        &studio.up,
        &studio._dir.path().join("data"),
        &["cas", "put", &file.display().to_string()],
    );
    let hash = stored["hash"].as_str().expect("hash").to_string();
    let whole = studio.get(&format!("/api/cas/{hash}"));
    assert_eq!(whole.status(), StatusCode::OK);
    assert_eq!(whole.headers()["accept-ranges"], "bytes");
    assert_eq!(whole.bytes().expect("body").as_ref(), bytes.as_slice());
    let range = |spec: &str| {
        studio
            .http
            .get(format!("{}/api/cas/{hash}", studio.base))
            .bearer_auth(TOKEN)
            .header("range", spec)
            .send()
            .expect("GET")
    };
    // Across a chunk boundary (1 MiB).
    let part = range("bytes=1048000-1049999");
    assert_eq!(part.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(part.headers()["content-range"], "bytes 1048000-1049999/3000000");
    assert_eq!(part.bytes().expect("body").as_ref(), &bytes[1_048_000..1_050_000]);
    let tail = range("bytes=-10");
    assert_eq!(tail.bytes().expect("body").as_ref(), &bytes[bytes.len() - 10..]);
    let past = range("bytes=3000000-");
    assert_eq!(past.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(past.headers()["content-range"], "bytes */3000000");
    studio.up.stop();
}

#[test]
fn mcp_hosts_that_render_apps_get_the_timeline_view_with_timeline_query() {
    let studio = Studio::start();
    let mut mcp = common::Mcp::connect_with_token(&studio.up.url(), Some(TOKEN));
    let tools = mcp.request("tools/list", json!({}));
    let timeline = tools["result"]["tools"]
        .as_array()
        .and_then(|tools| tools.iter().find(|t| t["name"] == "timeline_query"))
        .expect("timeline_query is listed");
    let uri = timeline["_meta"]["ui"]["resourceUri"].as_str().expect("a UI resource");
    assert_eq!(uri, "ui://hootenanny/timeline");
    let others_with_ui = tools["result"]["tools"]
        .as_array()
        .map_or(0, |tools| tools.iter().filter(|t| t["_meta"]["ui"].is_object()).count());
    assert_eq!(others_with_ui, 1, "only the timeline has a view");
    let listed = mcp.request("resources/list", json!({}));
    let app = listed["result"]["resources"]
        .as_array()
        .and_then(|r| r.iter().find(|r| r["uri"] == uri))
        .expect("the app is listed");
    assert_eq!(app["mimeType"], "text/html;profile=mcp-app");
    let read = mcp.request("resources/read", json!({"uri": uri}));
    let content = &read["result"]["contents"][0];
    assert_eq!(content["mimeType"], "text/html;profile=mcp-app");
    let html = content["text"].as_str().expect("HTML");
    assert!(
        html.contains("ui/initialize") && html.contains("ui/notifications/tool-result"),
        "speaks the MCP Apps protocol"
    );
    studio.up.stop();
}

#[test]
fn a_flood_of_renders_is_refused_at_once_past_the_queue_and_the_rest_are_served() {
    let studio = Studio::start();
    let tunes: Vec<String> = (1..=24).map(|n| studio.tune_opening(n)).collect();
    assert_eq!(
        tunes.iter().collect::<std::collections::HashSet<_>>().len(),
        24,
        "24 different files"
    );
    // All at once; the first render also loads the synthesizer, so the rest arrive meanwhile.
    let replies: Vec<(StatusCode, Option<String>, Value)> = std::thread::scope(|scope| {
        let asked: Vec<_> = tunes
            .iter()
            .map(|tune| {
                let studio = &studio;
                scope.spawn(move || {
                    let reply = studio.get(&format!("/api/render/{tune}"));
                    let status = reply.status();
                    let retry = reply
                        .headers()
                        .get("retry-after")
                        .map(|v| v.to_str().unwrap_or("").to_string());
                    let body = if status == StatusCode::OK {
                        Value::Null
                    } else {
                        reply.json().unwrap_or(Value::Null)
                    };
                    (status, retry, body)
                })
            })
            .collect();
        asked.into_iter().map(|h| h.join().expect("request")).collect()
    });
    let served = replies.iter().filter(|r| r.0 == StatusCode::OK).count();
    let refused: Vec<_> = replies
        .iter()
        .filter(|r| r.0 == StatusCode::SERVICE_UNAVAILABLE)
        .collect();
    assert_eq!(served + refused.len(), 24, "only served or refused: {replies:?}");
    assert!(
        served > holler::studio::render::MAX_WAITING,
        "the queue's worth is served: {served}"
    );
    assert!(
        !refused.is_empty(),
        "a flood is refused past the queue, not queued whole"
    );
    for (_, retry, body) in &refused {
        assert_eq!(retry.as_deref(), Some("2"));
        assert_eq!(body["code"], "UNAVAILABLE");
    }
    // Once the queue has drained, what was refused is served.
    let again = replies
        .iter()
        .position(|r| r.0 == StatusCode::SERVICE_UNAVAILABLE)
        .expect("one");
    assert_eq!(
        studio.get(&format!("/api/render/{}", tunes[again])).status(),
        StatusCode::OK
    );
    studio.up.stop();
}

#[test]
fn a_midi_artifact_is_heard_on_its_own_rendered_at_the_timelines_tempo() {
    let studio = Studio::start();
    let tune = studio.tune();
    let render = |tempo: f64| {
        studio.ok(
            "timeline_set_tempo",
            json!({"change": {"position_beats": 0, "tempo_bpm": tempo}}),
        );
        let reply = studio.get(&format!("/api/render/{tune}"));
        assert_eq!(reply.status(), StatusCode::OK);
        assert_eq!(reply.headers()["content-type"], "audio/wav");
        let bytes = reply.bytes().expect("WAV");
        let mut wav = hound::WavReader::new(std::io::Cursor::new(bytes.to_vec())).expect("a WAV");
        let frames = wav.duration();
        let loudest = wav
            .samples::<i16>()
            .filter_map(Result::ok)
            .map(|s| s.unsigned_abs())
            .max();
        (frames, loudest.unwrap_or(0), bytes.len())
    };
    // 8 beats of notes: 4 s at 120 bpm, 2 s at 240 (and a release tail after each).
    let (slow, loud, _) = render(120.0);
    let (fast, _, _) = render(240.0);
    assert!(loud > 300, "not silent: {loud}");
    assert!(
        slow >= 4 * 48_000 && fast >= 2 * 48_000 && fast < slow,
        "{slow} vs {fast} frames"
    );
    // Byte ranges, as <audio> asks for them.
    let part = studio
        .http
        .get(format!("{}/api/render/{tune}", studio.base))
        .bearer_auth(TOKEN)
        .header("range", "bytes=0-99")
        .send()
        .expect("range");
    assert_eq!(part.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        part.headers()["content-range"],
        format!("bytes 0-99/{}", render(240.0).2)
    );
    // Its peaks and loudness, for A/B to level it by: of the same render.
    let outline: Value = studio
        .get(&format!("/api/render/{tune}/peaks?buckets=10"))
        .json()
        .expect("JSON");
    assert_eq!(outline["frames"], fast, "{outline}");
    assert_eq!(outline["peaks"].as_array().map(Vec::len), Some(10));
    assert!(outline["rms"].as_f64().is_some_and(|rms| rms > 0.0), "{outline}");
    let too_many = studio.get(&format!("/api/render/{tune}/peaks?buckets=100000"));
    assert_eq!(too_many.status(), StatusCode::BAD_REQUEST);
    // Not MIDI: refused with the reason.
    let text = studio.store(b"just some words", "text/plain");
    let reply = studio.get(&format!("/api/render/{text}"));
    assert_eq!(reply.status(), StatusCode::BAD_REQUEST);
    let reply = studio.get(&format!("/api/render/{text}/peaks"));
    assert_eq!(reply.status(), StatusCode::BAD_REQUEST);
    studio.up.stop();
}
