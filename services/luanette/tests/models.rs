//! Model clients against local HTTP servers that speak the contracts in docs/models.md:
//! results land in the CAS, failures become clear Lua errors, and waits honour cancel and
//! time limits without blocking other scripts.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use hooteproto::v1::{
    ErrorCode, JobCancelRequest, JobExecuteRequest, JobPollRequest, JobState, LuaEvalRequest, PingRequest, PollMode,
    ScriptStoreRequest,
};
use hooteproto::{Client, ClientConfig, Error};
use testkit::{HttpServer, Reply};

/// A fake backend: answers each request as `reply` says.
fn backend(reply: Reply) -> (String, Arc<HttpServer>) {
    let server = Arc::new(HttpServer::start(reply));
    (server.url.clone(), server)
}

fn json(value: serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(&value).expect("json")
}

/// A one-note Standard MIDI File.
fn midi_bytes(pitch: u8) -> Vec<u8> {
    let mut track = vec![0x00, 0x90, pitch, 0x64, 0x60, 0x80, pitch, 0x00, 0x00, 0xFF, 0x2F, 0x00];
    let mut bytes = b"MThd\0\0\0\x06\0\0\0\x01\0\x60MTrk".to_vec();
    bytes.extend_from_slice(&(track.len() as u32).to_be_bytes());
    bytes.append(&mut track);
    bytes
}

/// A short mono 16-bit WAV.
fn wav_bytes() -> Vec<u8> {
    let samples: Vec<u8> = (0..100i16).flat_map(|s| (s * 100).to_le_bytes()).collect();
    let mut bytes = b"RIFF".to_vec();
    bytes.extend_from_slice(&(36 + samples.len() as u32).to_le_bytes());
    bytes.extend_from_slice(b"WAVEfmt ");
    bytes.extend_from_slice(&16u32.to_le_bytes());
    bytes.extend_from_slice(&1u16.to_le_bytes()); // PCM
    bytes.extend_from_slice(&1u16.to_le_bytes()); // mono
    bytes.extend_from_slice(&32000u32.to_le_bytes());
    bytes.extend_from_slice(&64000u32.to_le_bytes());
    bytes.extend_from_slice(&2u16.to_le_bytes());
    bytes.extend_from_slice(&16u16.to_le_bytes());
    bytes.extend_from_slice(b"data");
    bytes.extend_from_slice(&(samples.len() as u32).to_le_bytes());
    bytes.extend_from_slice(&samples);
    bytes
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

struct Luanette {
    client: Client,
    dir: tempfile::TempDir,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn start(url: &str, configure: impl FnOnce(&mut luanette::Config)) -> Luanette {
    let dir = tempfile::tempdir().expect("tmp");
    let mut config = common::config(dir.path());
    for backend in [
        &mut config.models.orpheus,
        &mut config.models.musicgen,
        &mut config.models.deepseek,
    ] {
        backend.url = Some(url.to_string());
        backend.timeout = Duration::from_secs(5);
        backend.retries = 2;
    }
    config.models.deepseek_key = Some("test-key".into());
    configure(&mut config);
    let bound = luanette::bind(config).await.expect("luanette starts");
    let client = Client::connect(ClientConfig::new(bound.endpoint())).expect("connect");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(bound.run(async move {
        let _ = stopped.await;
    }));
    client.call(PingRequest {}).await.expect("ping");
    Luanette {
        client,
        dir,
        _stop: stop,
    }
}

impl Luanette {
    async fn eval(&self, code: &str) -> Result<serde_json::Value, Error> {
        let reply = self
            .client
            .call(LuaEvalRequest {
                code: code.into(),
                params: None,
            })
            .await?;
        Ok(hooteproto::wkt::value_to_json(reply.result.expect("result")))
    }

    async fn error(&self, code: &str) -> String {
        match self.eval(code).await {
            Err(Error::Remote(status)) => {
                assert_eq!(status.code, ErrorCode::InvalidArgument, "{}", status.message);
                status.message
            }
            other => panic!("{code}: expected an error, got {other:?}"),
        }
    }

    fn cas(&self) -> cas::Cas {
        common::cas(self.dir.path())
    }

    fn read(&self, hash: &str) -> (Vec<u8>, String) {
        let cas = self.cas();
        let hash = cas::Hash::parse(hash).expect("hash");
        let info = cas.inspect(&hash).expect("inspect");
        (cas.read(&hash, 1 << 20, true).expect("read"), info.mime_type)
    }

    async fn job(&self, code: &str) -> String {
        let hash = common::store_script(&self.client, code).await;
        self.client
            .call(JobExecuteRequest {
                script_hash: hash,
                params: None,
                tags: vec![],
                ..Default::default()
            })
            .await
            .expect("execute")
            .job_id
    }

    async fn wait(&self, job_id: &str) -> hooteproto::v1::JobInfo {
        let mut reply = self
            .client
            .call(JobPollRequest {
                job_ids: vec![job_id.into()],
                timeout_ms: 8000,
                mode: PollMode::Any as i32,
            })
            .await
            .expect("poll");
        assert!(!reply.timed_out, "job {job_id} did not finish");
        reply.completed.remove(0)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orpheus_results_are_stored_in_the_cas_and_returned_as_hashes() {
    let (url, seen) = backend(Box::new(|request, _| {
        match request.json()["task"].as_str().map(str::to_string).as_deref() {
            Some("classify") => (
                200,
                json(
                    serde_json::json!({"labels": [{"label": "machine", "confidence": 0.2}, {"label": "human", "confidence": 0.8}]}),
                ),
                Duration::ZERO,
            ),
            _ => (
                200,
                json(
                    serde_json::json!({"variations": [{"midi": b64(&midi_bytes(60))}, {"midi": b64(&midi_bytes(64))}]}),
                ),
                Duration::ZERO,
            ),
        }
    }));
    let lua = start(&url, |_| {}).await;
    let hashes = lua
        .eval("return orpheus.generate{variations = 2, temperature = 1.2}")
        .await
        .expect("generate");
    let hashes: Vec<&str> = hashes
        .as_array()
        .expect("list")
        .iter()
        .map(|h| h.as_str().expect("hash"))
        .collect();
    assert_eq!(hashes.len(), 2);
    let (bytes, mime) = lua.read(hashes[1]);
    assert_eq!((bytes, mime.as_str()), (midi_bytes(64), "audio/midi"));
    let request = seen.requests()[0].clone();
    assert_eq!(request.path, "/predict");
    assert_eq!(
        (
            &request.json()["task"],
            &request.json()["model"],
            &request.json()["num_variations"],
            &request.json()["temperature"],
            &request.json()["top_p"],
            &request.json()["max_tokens"]
        ),
        (
            &serde_json::json!("generate"),
            &serde_json::json!("base"),
            &serde_json::json!(2),
            &serde_json::json!(1.2),
            &serde_json::json!(0.95),
            &serde_json::json!(1024)
        )
    );

    // Inputs travel as base64 of the CAS objects they name.
    let a = lua
        .cas()
        .store(&midi_bytes(50), "audio/midi")
        .expect("a")
        .info
        .hash
        .to_string();
    let b = lua
        .cas()
        .store(&midi_bytes(55), "audio/midi")
        .expect("b")
        .info
        .hash
        .to_string();
    lua.eval(&format!("return orpheus.bridge{{a = '{a}', b = '{b}'}}"))
        .await
        .expect("bridge");
    let request = seen.requests()[1].clone();
    assert_eq!(
        (&request.json()["task"], &request.json()["model"]),
        (&serde_json::json!("bridge"), &serde_json::json!("bridge"))
    );
    assert_eq!(request.json()["midi_a"], b64(&midi_bytes(50)));
    assert_eq!(request.json()["midi_b"], b64(&midi_bytes(55)));

    let labels = lua
        .eval(&format!("return orpheus.classify{{midi = '{a}'}}"))
        .await
        .expect("classify");
    assert_eq!(labels[0]["label"], "human", "most confident first");
    assert_eq!(seen.requests()[2].json()["midi_input"], b64(&midi_bytes(50)));
    assert!(
        lua.error("return orpheus.generate{model = 'gpt'}")
            .await
            .contains("is not one of")
    );
    assert!(
        lua.error("return orpheus.generate{temperature = 3}")
            .await
            .contains("temperature")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_failures_become_clear_lua_errors() {
    let (url, seen) = backend(Box::new(|request, count| {
        let task = request.json()["model"].as_str().unwrap_or_default().to_string();
        match (task.as_str(), count) {
            ("children", _) => (500, b"CUDA out of memory on device 0".to_vec(), Duration::ZERO),
            ("mono_melodies", _) => (200, b"{\"variations\": [".to_vec(), Duration::ZERO),
            ("loops", _) => (
                200,
                json(serde_json::json!({"variations": [{"midi": b64(b"not midi")}]})),
                Duration::ZERO,
            ),
            ("bridge", _) => (200, vec![b' '; 3 << 20], Duration::ZERO),
            ("classifier", _) => (200, json(serde_json::json!({})), Duration::from_secs(3)),
            _ => (200, json(serde_json::json!({"variations": []})), Duration::ZERO),
        }
    }));
    let lua = start(&url, |c| c.models.max_response = 1 << 20).await;
    for (code, expected) in [
        ("return orpheus.generate{model = 'children'}", "orpheus: HTTP 500 from"),
        ("return orpheus.generate{model = 'children'}", "CUDA out of memory"),
        ("return orpheus.generate{model = 'mono_melodies'}", "malformed JSON"),
        ("return orpheus.generate{model = 'loops'}", "not MIDI"),
        ("return orpheus.generate{model = 'bridge'}", "larger than 1 MiB"),
        ("return orpheus.generate{model = 'classifier', timeout = 0.5}", "within"),
    ] {
        let message = lua.error(code).await;
        assert!(message.contains(expected), "{code}: {message}");
    }
    let before = seen.requests().len();
    let chosen = lua
        .error("return orpheus.generate{url = 'http://127.0.0.1:9', retries = 1}")
        .await;
    assert!(chosen.contains("`url` is not a per-call option"), "{chosen}");
    assert_eq!(seen.requests().len(), before, "nothing was sent anywhere");
    let job = lua
        .job("function main() return pcall(orpheus.generate, {model = 'children'}) end")
        .await;
    let done = lua.wait(&job).await;
    assert_eq!(
        done.state,
        JobState::Succeeded as i32,
        "a script can catch a backend failure"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_to_another_host_is_not_followed_so_the_key_stays_with_its_host() {
    let (elsewhere, elsewhere_seen) = backend(Box::new(|_, _| (200, json(serde_json::json!({})), Duration::ZERO)));
    let target = format!("{elsewhere}/chat/completions");
    let (url, seen) = backend(Box::new(move |request, _| {
        if request.path == "/moved" {
            (307, target.clone().into_bytes(), Duration::ZERO)
        } else {
            (307, b"/moved".to_vec(), Duration::ZERO)
        }
    }));
    let lua = start(&url, |_| {}).await;
    let message = lua
        .error("return deepseek.chat{messages = {{role = 'user', content = 'hi'}}, retries = 0}")
        .await;
    assert!(message.contains("HTTP 307"), "{message}");
    let requests = seen.requests();
    assert_eq!(
        requests.iter().map(|r| r.path.as_str()).collect::<Vec<_>>(),
        ["/chat/completions", "/moved"],
        "a redirect on the configured host is followed"
    );
    assert!(requests[1].has_header("authorization", "Bearer test-key"));
    assert!(
        elsewhere_seen.requests().is_empty(),
        "the request (and its key) went to a host nobody configured"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overloaded_backends_are_retried() {
    let (url, seen) = backend(Box::new(|_, count| {
        if count < 2 {
            (503, b"busy".to_vec(), Duration::ZERO)
        } else {
            (
                200,
                json(serde_json::json!({"variations": [{"midi": b64(&midi_bytes(70))}]})),
                Duration::ZERO,
            )
        }
    }));
    let lua = start(&url, |_| {}).await;
    let hashes = lua.eval("return orpheus.generate{}").await.expect("third time lucky");
    assert_eq!(hashes.as_array().map(Vec::len), Some(1));
    assert_eq!(seen.requests().len(), 3);
    let (busy, busy_seen) = backend(Box::new(|_, _| (503, b"busy".to_vec(), Duration::ZERO)));
    let lua = start(&busy, |_| {}).await;
    let message = lua.error("return orpheus.generate{retries = 0}").await;
    assert!(message.contains("HTTP 503"), "{message}");
    assert_eq!(busy_seen.requests().len(), 1, "no retry when told so");
    let message = lua.error("return orpheus.generate{retries = 1}").await;
    assert!(message.contains("HTTP 503"), "{message}");
    assert_eq!(busy_seen.requests().len(), 3, "one retry, then the error");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_on_a_model_honours_cancel_and_limits_and_blocks_nobody() {
    let (url, _seen) = backend(Box::new(|_, _| {
        (
            200,
            json(serde_json::json!({"variations": []})),
            Duration::from_secs(20),
        )
    }));
    let lua = start(&url, |c| {
        c.max_jobs = 2;
        c.models.orpheus.timeout = Duration::from_secs(60);
    })
    .await;
    let waiting = lua.job("function main() return orpheus.generate{} end").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Others still run while it waits.
    let started = Instant::now();
    assert_eq!(lua.eval("return 6 * 7").await.expect("eval"), 42.0);
    let quick = lua.job("function main() return 'done' end").await;
    assert_eq!(lua.wait(&quick).await.state, JobState::Succeeded as i32);
    assert!(started.elapsed() < Duration::from_secs(2));

    let cancelled_at = Instant::now();
    let reply = lua
        .client
        .call(JobCancelRequest {
            job_id: waiting.clone(),
        })
        .await
        .expect("cancel");
    assert_eq!(reply.state, JobState::Cancelled as i32);
    assert!(
        cancelled_at.elapsed() < Duration::from_secs(1),
        "took {:?}",
        cancelled_at.elapsed()
    );

    let limited = start(&url, |c| c.job_limits.wall = Duration::from_millis(500)).await;
    let job = limited.job("function main() return orpheus.generate{} end").await;
    let done = limited.wait(&job).await;
    assert_eq!(done.state, JobState::Failed as i32);
    assert_eq!(done.error.expect("error").code, ErrorCode::DeadlineExceeded as i32);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn musicgen_and_deepseek_speak_their_contracts() {
    let (url, seen) = backend(Box::new(|request, _| match request.path.as_str() {
        "/generate" if request.json()["prompt"] == "broken" => (
            200,
            json(serde_json::json!({"audio": b64(b"RIFF nonsense")})),
            Duration::ZERO,
        ),
        "/generate" => (
            200,
            json(serde_json::json!({"audio": b64(&wav_bytes()), "sample_rate": 32000})),
            Duration::ZERO,
        ),
        "/chat/completions" => (
            200,
            json(serde_json::json!({
                "model": "deepseek-chat",
                "choices": [{"message": {"role": "assistant", "content": "G7"}}],
                "usage": {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11}
            })),
            Duration::ZERO,
        ),
        _ => (404, b"no such path".to_vec(), Duration::ZERO),
    }));
    let lua = start(&url, |_| {}).await;
    let hash = lua
        .eval("return musicgen.generate{prompt = 'lofi piano', duration = 8}")
        .await
        .expect("musicgen");
    let (bytes, mime) = lua.read(hash.as_str().expect("hash"));
    assert_eq!((bytes, mime.as_str()), (wav_bytes(), "audio/wav"));
    let request = seen.requests()[0].clone();
    assert_eq!(
        (&request.json()["prompt"], &request.json()["duration"]),
        (&serde_json::json!("lofi piano"), &serde_json::json!(8.0))
    );
    assert!(
        lua.error("return musicgen.generate{prompt = 'broken'}")
            .await
            .contains("not WAV")
    );
    assert!(lua.error("return musicgen.generate{}").await.contains("prompt"));

    let answer = lua
        .eval(
            "return deepseek.chat{messages = {{role = 'user', content = 'What comes after Dm7?'}}, temperature = 0.2}",
        )
        .await
        .expect("chat");
    assert_eq!(answer["text"], "G7");
    assert_eq!(answer["usage"]["total_tokens"], 11.0);
    let request = seen.requests().last().cloned().expect("request");
    assert_eq!(request.path, "/chat/completions");
    assert_eq!(request.json()["messages"][0]["content"], "What comes after Dm7?");
    assert!(
        request
            .headers
            .contains(&("authorization".into(), "Bearer test-key".into()))
    );
}

/// The pitch of a one-note file from [`midi_bytes`].
fn pitch_of(encoded: &str) -> u8 {
    base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .expect("base64")[24]
}

/// The repository's example scripts (services/luanette/lua/) run end to end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_scripts_run() {
    let (url, seen) = backend(Box::new(|request, _| {
        match request.json()["task"].as_str().map(str::to_string).as_deref() {
            Some("bridge") => {
                // A bridge built from both sections' pitches, so the test can tell it used them.
                let pitch = pitch_of(request.json()["midi_a"].as_str().unwrap_or_default()) + 1;
                (
                    200,
                    json(serde_json::json!({"variations": [{"midi": b64(&midi_bytes(pitch))}]})),
                    Duration::ZERO,
                )
            }
            Some("generate") => (
                200,
                {
                    let variations: Vec<_> = [60u8, 67, 62, 64]
                        .iter()
                        .map(|p| serde_json::json!({"midi": b64(&midi_bytes(*p))}))
                        .collect();
                    json(serde_json::json!({ "variations": variations }))
                },
                Duration::ZERO,
            ),
            Some("classify") => {
                let human = f64::from(pitch_of(request.json()["midi_input"].as_str().unwrap_or_default())) / 100.0;
                (
                    200,
                    json(
                        serde_json::json!({"labels": [{"label": "human", "confidence": human}, {"label": "machine", "confidence": 1.0 - human}]}),
                    ),
                    Duration::ZERO,
                )
            }
            _ => (400, b"unknown task".to_vec(), Duration::ZERO),
        }
    }));
    let lua = start(&url, |_| {}).await;
    let store = |content: &'static str| {
        let client = lua.client.clone();
        async move {
            client
                .call(ScriptStoreRequest {
                    content: content.into(),
                    tags: vec!["example".into()],
                    creator: "repo".into(),
                    ..Default::default()
                })
                .await
                .expect("store")
                .script
                .expect("script")
                .script_hash
        }
    };
    let run = |hash: String, params: serde_json::Value| {
        let client = lua.client.clone();
        async move {
            client
                .call(JobExecuteRequest {
                    script_hash: hash,
                    params: Some(hooteproto::wkt::Struct::from_json(
                        params.as_object().cloned().unwrap_or_default(),
                    )),
                    tags: vec![],
                    ..Default::default()
                })
                .await
                .expect("execute")
                .job_id
        }
    };

    let current = lua
        .cas()
        .store(&midi_bytes(48), "audio/midi")
        .expect("a")
        .info
        .hash
        .to_string();
    let next = lua
        .cas()
        .store(&midi_bytes(53), "audio/midi")
        .expect("b")
        .info
        .hash
        .to_string();
    let transition = store(include_str!("../lua/transition.lua")).await;
    let job = run(
        transition,
        serde_json::json!({"current_section": current, "next_section": next, "beats_available": 0.5, "tempo": 90}),
    )
    .await;
    let done = lua.wait(&job).await;
    assert_eq!(done.state, JobState::Succeeded as i32, "{:?}", done.error);
    let result = hooteproto::wkt::value_to_json(done.result.expect("result"));
    assert_eq!(result["beats"], 0.5, "fitted to the beats available");
    let notes = lua
        .eval(&format!(
            "local s = midi.load('{}') return {{midi.notes(s)[1].pitch, math.floor(s.bpm + 0.5)}}",
            result["bridge"].as_str().expect("hash")
        ))
        .await
        .expect("inspect the bridge");
    assert_eq!(notes, serde_json::json!([49.0, 90.0]));
    assert_eq!(seen.requests()[0].json()["midi_b"], b64(&midi_bytes(53)));

    let best_of_four = store(include_str!("../lua/best_of_four.lua")).await;
    let job = run(best_of_four, serde_json::json!({"temperature": 1.1})).await;
    let done = lua.wait(&job).await;
    assert_eq!(done.state, JobState::Succeeded as i32, "{:?}", done.error);
    let result = hooteproto::wkt::value_to_json(done.result.expect("result"));
    assert_eq!(result["candidates"].as_array().map(Vec::len), Some(4));
    assert_eq!(result["human"], 0.67);
    assert_eq!(
        lua.read(result["best"].as_str().expect("hash")).0,
        midi_bytes(67),
        "the most human one"
    );
    assert_eq!(done.logs.len(), 4, "one log line per rating");
}
