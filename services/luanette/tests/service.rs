//! Luanette over HOOT/1: lua_eval results and errors, limits that free the worker, and
//! pings that stay fast while runaway scripts are being stopped.

mod common;

use std::time::{Duration, Instant};

use hooteproto::v1::{
    ErrorCode, ListToolsRequest, LuaDescribeRequest, LuaEvalRequest, PingRequest, ScriptSearchRequest,
    ScriptStoreRequest,
};
use hooteproto::{Client, ClientConfig, Error, RequestOptions};

type Running = (
    Client,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<anyhow::Result<hooteproto::ServerStats>>,
);

/// A server on its own temporary data directory (removed when the returned guard drops).
async fn start(max_scripts: usize) -> (Client, tokio::sync::oneshot::Sender<()>, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tmp");
    let (client, stop, _task) = start_in(dir.path(), max_scripts).await;
    (client, stop, dir)
}

async fn start_in(dir: &std::path::Path, max_scripts: usize) -> Running {
    let mut config = common::config(dir);
    config.max_scripts = max_scripts;
    let bound = luanette::bind(config).await.expect("luanette starts");
    let client = Client::connect(ClientConfig::new(bound.endpoint())).expect("connect");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(bound.run(async move {
        let _ = stopped.await;
    }));
    client.call(PingRequest {}).await.expect("luanette answers ping");
    (client, stop, task)
}

fn eval(code: &str) -> LuaEvalRequest {
    LuaEvalRequest {
        code: code.into(),
        params: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lua_eval_returns_result_and_output() {
    let (client, _stop, _dir) = start(2).await;
    let params =
        hooteproto::wkt::Struct::from_json(serde_json::json!({"n": 20}).as_object().cloned().unwrap_or_default());
    let reply = client
        .call(LuaEvalRequest {
            code: "print('adding') return {sum = params.n + 1, ok = true}".into(),
            params: Some(params),
        })
        .await
        .expect("eval");
    let result = hooteproto::wkt::value_to_json(reply.result.expect("result"));
    assert_eq!(result, serde_json::json!({"sum": 21.0, "ok": true}));
    assert_eq!(reply.output[0].message, "adding");
    let tools = client.call(ListToolsRequest {}).await.expect("tools").tools;
    assert_eq!(tools[0].name, "lua_eval");
    let schema = tools[0].input_schema.as_ref().expect("schema").to_json().expect("json");
    assert_eq!(schema["properties"]["code"]["type"], "string");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn script_errors_carry_kind_line_and_code() {
    let (client, _stop, _dir) = start(2).await;
    for (code, expected, kind) in [
        ("return 1 +", ErrorCode::InvalidArgument, "syntax"),
        ("local x = nil\nreturn x.y", ErrorCode::InvalidArgument, "runtime"),
        ("return io.open('/etc/passwd')", ErrorCode::InvalidArgument, "runtime"),
        ("return function() end", ErrorCode::InvalidArgument, "conversion"),
    ] {
        match client.call(eval(code)).await {
            Err(Error::Remote(status)) => {
                assert_eq!(status.code, expected, "{code}: {}", status.message);
                let details = status.details.expect("details").to_json().expect("json");
                assert_eq!(details["kind"], kind, "{code}");
            }
            other => panic!("{code}: expected an error, got {other:?}"),
        }
    }
    match client.call(eval("local x = nil\nreturn x.y")).await {
        Err(Error::Remote(status)) => {
            let details = status.details.expect("details").to_json().expect("json");
            assert_eq!(details["line"], 2.0);
            assert!(
                details["traceback"]
                    .as_str()
                    .is_some_and(|t| t.contains("stack traceback"))
            );
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timed_out_script_frees_its_worker() {
    let (client, _stop, _dir) = start(1).await; // one runner: a stuck VM would block everything
    let options = RequestOptions {
        timeout: Some(Duration::from_millis(300)),
        ..Default::default()
    };
    let runaway = client.call_with(eval("while true do end"), options).await;
    assert_eq!(runaway.map_err(|e| e.code()).err(), Some(ErrorCode::DeadlineExceeded));
    let started = Instant::now();
    let reply = client.call(eval("return 42")).await.expect("the worker is free again");
    assert_eq!(
        hooteproto::wkt::value_to_json(reply.result.expect("result")),
        serde_json::json!(42.0)
    );
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "next script waited {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pings_stay_fast_while_runaway_scripts_are_stopped() {
    let (client, _stop, _dir) = start(4).await;
    let runaways: Vec<_> = (0..50)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move {
                let options = RequestOptions {
                    timeout: Some(Duration::from_millis(1500)),
                    ..Default::default()
                };
                client.call_with(eval("while true do end"), options).await
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut slowest = Duration::ZERO;
    for _ in 0..20 {
        let started = Instant::now();
        client.call(PingRequest {}).await.expect("ping");
        slowest = slowest.max(started.elapsed());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        slowest < Duration::from_millis(100),
        "slowest ping {slowest:?} while 50 runaway scripts are being stopped"
    );
    for runaway in runaways {
        let code = runaway.await.expect("task").map_err(|e| e.code()).err();
        assert_eq!(code, Some(ErrorCode::DeadlineExceeded));
    }
}

const TRANSPOSE: &str = r#"
function describe()
  return {
    name = "transpose",
    description = "Moves a section up by some semitones",
    params = { type = "object", properties = { semitones = { type = "integer" } } },
  }
end
function main(params) return params.semitones end
"#;

fn store(content: &str, tags: &[&str], creator: &str) -> ScriptStoreRequest {
    ScriptStoreRequest {
        content: content.into(),
        tags: tags.iter().map(|t| t.to_string()).collect(),
        creator: creator.into(),
        ..Default::default()
    }
}

fn search(tag: &str, creator: &str, vibe: &str) -> ScriptSearchRequest {
    ScriptSearchRequest {
        tag: tag.into(),
        creator: creator.into(),
        vibe: vibe.into(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripts_are_stored_by_hash_described_searched_and_kept() {
    let dir = tempfile::tempdir().expect("tmp");
    let (client, stop, task) = start_in(dir.path(), 2).await;

    let reply = client
        .call(store(TRANSPOSE, &["midi", "jazz"], "alice"))
        .await
        .expect("store");
    let script = reply.script.expect("script");
    assert!(!reply.already_existed);
    assert_eq!(
        script.script_hash,
        blake3::hash(TRANSPOSE.as_bytes()).to_hex().to_string()
    );
    let description = script.description.clone().expect("described");
    assert_eq!(
        (description.name.as_str(), script.creator.as_str()),
        ("transpose", "alice")
    );
    let schema = description.params_schema.expect("schema").to_json().expect("json");
    assert_eq!(schema["properties"]["semitones"]["type"], "integer");
    // The source is in the shared CAS under that hash.
    let cas = common::cas(dir.path());
    let hash = cas::Hash::parse(&script.script_hash).expect("hash");
    assert_eq!(cas.read(&hash, 1 << 20, true).expect("source"), TRANSPOSE.as_bytes());

    let again = client
        .call(store(TRANSPOSE, &["bridge"], "bob"))
        .await
        .expect("store again");
    assert!(again.already_existed);
    let merged = again.script.expect("script");
    assert_eq!(
        (merged.tags.as_slice(), merged.creator.as_str()),
        (&["bridge".to_string(), "jazz".into(), "midi".into()][..], "alice")
    );

    for (bad, why) in [
        ("function describe( return 1 end", "syntax"),
        ("function describe() return 42 end", "describe() must return a table"),
        ("while true do end", "time limit"),
    ] {
        match client.call(store(bad, &[], "mallory")).await {
            Err(Error::Remote(status)) => {
                assert_eq!(status.code, ErrorCode::InvalidArgument, "{bad}");
                assert!(status.message.contains(why), "{bad}: {}", status.message);
            }
            other => panic!("{bad}: expected INVALID_ARGUMENT, got {other:?}"),
        }
    }

    let described = client
        .call(LuaDescribeRequest {
            script_hash: script.script_hash[..10].into(),
        })
        .await
        .expect("by prefix");
    assert_eq!(described.script.expect("script").script_hash, script.script_hash);
    let missing = client
        .call(LuaDescribeRequest {
            script_hash: "0".repeat(64),
        })
        .await;
    assert_eq!(missing.map_err(|e| e.code()).err(), Some(ErrorCode::NotFound));
    let invalid = client
        .call(LuaDescribeRequest {
            script_hash: "../x".into(),
        })
        .await;
    assert_eq!(invalid.map_err(|e| e.code()).err(), Some(ErrorCode::InvalidArgument));

    let count = |reply: hooteproto::v1::ScriptSearchReply| reply.scripts.len();
    assert_eq!(
        count(client.call(search("", "", "")).await.expect("all")),
        1,
        "rejected scripts are not indexed"
    );
    assert_eq!(count(client.call(search("jazz", "", "")).await.expect("tag")), 1);
    assert_eq!(
        count(client.call(search("", "", "SEMITONES please")).await.expect("vibe")),
        1
    );
    assert_eq!(count(client.call(search("", "", "polka")).await.expect("vibe")), 0);
    assert_eq!(count(client.call(search("jazz", "bob", "")).await.expect("creator")), 0);

    let _ = stop.send(());
    task.await.expect("task").expect("run");
    let (client, _stop, _task) = start_in(dir.path(), 2).await;
    let kept = client
        .call(LuaDescribeRequest {
            script_hash: script.script_hash.clone(),
        })
        .await
        .expect("after restart");
    assert_eq!(kept.script.expect("script").tags.len(), 3);
}
