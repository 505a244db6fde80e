//! Hootenanny, black-box: through the SDK client over tcp loopback, against `run` in-process
//! or the real binary (for SIGKILL).

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hooteproto::v1::envelope::Payload;
use hooteproto::v1::*;
use hooteproto::{Client, ClientConfig, Error};
use prost_types::value::Kind;

mod common;
use common::{config, start};

fn code(result: Result<impl std::fmt::Debug, Error>) -> ErrorCode {
    match result {
        Err(e) => e.code(),
        Ok(v) => panic!("expected an error, got {v:?}"),
    }
}

async fn store(client: &Client, bytes: &[u8]) -> String {
    client
        .call(CasStoreRequest {
            data: bytes.to_vec(),
            mime_type: "audio/midi".into(),
        })
        .await
        .expect("store")
        .hash
}

async fn create(client: &Client, hash: &str, name: &str, tags: &[&str], creator: &str, parents: &[&str]) -> Artifact {
    let reply = client
        .call(ArtifactCreateRequest {
            cas_hash: hash.into(),
            name: name.into(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            creator: creator.into(),
            metadata: Some(hooteproto::wkt::Struct::from_json(
                serde_json::json!({"tempo": 120})
                    .as_object()
                    .cloned()
                    .unwrap_or_default(),
            )),
            parent_ids: parents.iter().map(|p| p.to_string()).collect(),
        })
        .await
        .expect("create");
    *reply.artifact.expect("artifact")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cas_payloads_and_their_errors() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut config = config(dir.path());
    config.max_message_size = 256 * 1024;
    let hoot = start(config).await;
    let client = &hoot.client;

    let bytes: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let stored = client
        .call(CasStoreRequest {
            data: bytes.clone(),
            mime_type: "audio/wav".into(),
        })
        .await
        .expect("store");
    assert_eq!(stored.hash, blake3::hash(&bytes).to_hex().to_string());
    assert!(!stored.already_existed);
    assert!(
        client
            .call(CasStoreRequest {
                data: bytes.clone(),
                mime_type: String::new()
            })
            .await
            .expect("again")
            .already_existed
    );

    let inspected = client
        .call(CasInspectRequest {
            hash: stored.hash[..10].into(),
        })
        .await
        .expect("inspect by prefix");
    let object = inspected.object.expect("object");
    assert_eq!(
        (object.hash.as_str(), object.size, object.mime_type.as_str()),
        (stored.hash.as_str(), 200_000, "audio/wav")
    );

    // Whole object: over this server's reply limit, with a hint; a range works.
    let whole = client
        .call(CasGetRequest {
            hash: stored.hash.clone(),
            offset: 0,
            length: 0,
        })
        .await;
    match whole {
        Err(Error::Remote(status)) => {
            assert_eq!(status.code, ErrorCode::ResourceExhausted);
            assert!(status.message.contains("byte range"), "{}", status.message);
        }
        other => panic!("expected RESOURCE_EXHAUSTED, got {other:?}"),
    }
    let range = client
        .call(CasGetRequest {
            hash: stored.hash.clone(),
            offset: 1000,
            length: 5000,
        })
        .await
        .expect("range");
    assert_eq!((range.offset, range.data.as_slice()), (1000, &bytes[1000..6000]));

    assert_eq!(
        code(
            client
                .call(CasGetRequest {
                    hash: "../../etc/passwd".into(),
                    offset: 0,
                    length: 0
                })
                .await
        ),
        ErrorCode::InvalidArgument
    );
    assert_eq!(
        code(client.call(CasInspectRequest { hash: "0".repeat(64) }).await),
        ErrorCode::NotFound
    );
    assert_eq!(
        code(client.call(CasInspectRequest { hash: "abc".into() }).await),
        ErrorCode::InvalidArgument
    );
    // Over the message limit: refused by the sender, never sent.
    let mut small = ClientConfig::new(client.endpoint());
    small.max_message_size = 256 * 1024;
    let small = Client::connect(small).expect("connect");
    let oversize = small
        .call(CasStoreRequest {
            data: vec![7; 300 * 1024],
            mime_type: String::new(),
        })
        .await;
    let error = oversize.expect_err("refused");
    assert!(matches!(error, Error::MessageTooLarge { .. }), "{error:?}");
    assert!(
        error.to_string().contains("import the file"),
        "points to direct CAS import: {error}"
    );
    // Something hootenanny does not serve.
    assert_eq!(
        code(client.request(Payload::LuaEval(LuaEvalRequest::default())).await),
        ErrorCode::Unimplemented
    );
    hoot.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn artifacts_lineage_listing_and_errors() {
    let dir = tempfile::tempdir().expect("tmp");
    let hoot = start(config(dir.path())).await;
    let client = &hoot.client;
    let hash = store(client, b"MThd verse").await;

    let missing = ArtifactCreateRequest {
        cas_hash: "1".repeat(64),
        ..Default::default()
    };
    assert_eq!(code(client.call(missing).await), ErrorCode::NotFound);
    let malformed = ArtifactCreateRequest {
        cas_hash: hash[..12].into(),
        ..Default::default()
    };
    assert_eq!(
        code(client.call(malformed).await),
        ErrorCode::InvalidArgument,
        "writes need full hashes"
    );
    let orphan = ArtifactCreateRequest {
        cas_hash: hash.clone(),
        parent_ids: vec!["art-nope".into()],
        ..Default::default()
    };
    assert_eq!(code(client.call(orphan).await), ErrorCode::NotFound);
    let too_many = ArtifactCreateRequest {
        cas_hash: hash.clone(),
        tags: (0..100).map(|i| i.to_string()).collect(),
        ..Default::default()
    };
    assert_eq!(code(client.call(too_many).await), ErrorCode::InvalidArgument);

    let verse = create(client, &hash, "verse", &["verse", "jazz"], "alice", &[]).await;
    let bridge = create(
        client,
        &hash,
        "bridge",
        &["bridge", "jazz"],
        "orpheus",
        &[&verse.artifact_id],
    )
    .await;
    let outro = create(client, &hash, "outro", &["outro"], "alice", &[&bridge.artifact_id]).await;

    let got = client
        .call(ArtifactGetRequest {
            artifact_id: bridge.artifact_id.clone(),
        })
        .await
        .expect("get");
    assert_eq!(*got.artifact.expect("artifact"), bridge);
    assert_eq!(
        code(
            client
                .call(ArtifactGetRequest {
                    artifact_id: "art-missing".into()
                })
                .await
        ),
        ErrorCode::NotFound
    );

    let names = |reply: ArtifactListReply| reply.artifacts.into_iter().map(|a| a.name).collect::<Vec<_>>();
    let all = client.call(ArtifactListRequest::default()).await.expect("list");
    assert_eq!(names(all), ["outro", "bridge", "verse"], "newest first");
    let jazz = client
        .call(ArtifactListRequest {
            tag: "jazz".into(),
            ..Default::default()
        })
        .await
        .expect("by tag");
    assert_eq!(names(jazz), ["bridge", "verse"]);
    let alice = client
        .call(ArtifactListRequest {
            creator: "alice".into(),
            ..Default::default()
        })
        .await
        .expect("by creator");
    assert_eq!(names(alice), ["outro", "verse"]);
    let page1 = client
        .call(ArtifactListRequest {
            page_size: 2,
            ..Default::default()
        })
        .await
        .expect("page 1");
    assert!(!page1.next_page_token.is_empty());
    let token = page1.next_page_token.clone();
    assert_eq!(names(page1), ["outro", "bridge"]);
    let page2 = client
        .call(ArtifactListRequest {
            page_size: 2,
            page_token: token,
            ..Default::default()
        })
        .await
        .expect("page 2");
    assert!(page2.next_page_token.is_empty());
    assert_eq!(names(page2), ["verse"]);
    let _ = outro;
    hoot.stop().await;
}

fn data_at<'a>(value: &'a prost_types::Value, path: &[&str]) -> &'a prost_types::Value {
    let mut current = value;
    for key in path {
        current = match &current.kind {
            Some(Kind::StructValue(s)) => s.fields.get(*key).unwrap_or_else(|| panic!("no {key} in {current:?}")),
            Some(Kind::ListValue(l)) => &l.values[key.parse::<usize>().expect("index")],
            _ => panic!("cannot descend into {current:?}"),
        };
    }
    current
}

fn string(value: &prost_types::Value) -> &str {
    match &value.kind {
        Some(Kind::StringValue(s)) => s,
        other => panic!("not a string: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graph_queries_lineage_and_bindings() {
    let dir = tempfile::tempdir().expect("tmp");
    let hoot = start(config(dir.path())).await;
    let client = &hoot.client;
    let hash = store(client, b"MThd chorus").await;
    let a = create(client, &hash, "a", &["x"], "alice", &[]).await;
    let b = create(client, &hash, "b", &["x"], "bob", &[&a.artifact_id]).await;
    let c = create(client, &hash, "c", &["y"], "alice", &[&b.artifact_id]).await;

    let query = r#"query($id: ID!) { artifact(id: $id) { name ancestors { name } parents { name } object { size mimeType } }
                    tags creators }"#;
    let variables = hooteproto::wkt::Struct::from_json(
        serde_json::json!({"id": c.artifact_id})
            .as_object()
            .cloned()
            .unwrap_or_default(),
    );
    let reply = client
        .call(GraphQueryRequest {
            query: query.into(),
            variables: Some(variables),
            operation_name: String::new(),
        })
        .await
        .expect("graph query");
    assert!(reply.errors.is_empty(), "{:?}", reply.errors);
    let data = reply.data.expect("data");
    assert_eq!(string(data_at(&data, &["artifact", "name"])), "c");
    assert_eq!(string(data_at(&data, &["artifact", "ancestors", "0", "name"])), "b");
    assert_eq!(string(data_at(&data, &["artifact", "ancestors", "1", "name"])), "a");
    assert_eq!(
        string(data_at(&data, &["artifact", "object", "mimeType"])),
        "audio/midi"
    );
    assert_eq!(string(data_at(&data, &["creators", "1"])), "bob");

    let children = client
        .call(GraphQueryRequest {
            query: format!("{{ artifact(id: \"{}\") {{ children {{ name }} }} }}", a.artifact_id),
            ..Default::default()
        })
        .await
        .expect("children");
    assert_eq!(
        string(data_at(
            &children.data.expect("data"),
            &["artifact", "children", "0", "name"]
        )),
        "b"
    );

    let hints = DeviceHints {
        midi_port_patterns: vec!["*Minilogue*".into()],
        usb_ids: vec!["0x1234:0x5678".into()],
        ..Default::default()
    };
    let bound = client
        .call(GraphBindRequest {
            identity: "bass-synth".into(),
            hints: Some(hints),
        })
        .await
        .expect("bind");
    assert_eq!(bound.binding.expect("binding").identity, "bass-synth");
    let found = client
        .call(GraphQueryRequest {
            query: "{ binding(identity: \"bass-synth\") { midiPortPatterns usbIds } }".into(),
            ..Default::default()
        })
        .await
        .expect("binding query");
    assert_eq!(
        string(data_at(
            &found.data.expect("data"),
            &["binding", "midiPortPatterns", "0"]
        )),
        "*Minilogue*"
    );
    assert_eq!(
        code(
            client
                .call(GraphBindRequest {
                    identity: "../etc".into(),
                    hints: None
                })
                .await
        ),
        ErrorCode::InvalidArgument
    );

    // A bad query is a GraphQL error in the reply, not a failed request.
    let bad = client
        .call(GraphQueryRequest {
            query: "{ nope }".into(),
            ..Default::default()
        })
        .await
        .expect("reply");
    assert!(
        !bad.errors.is_empty() && bad.errors[0].message.contains("nope"),
        "{:?}",
        bad.errors
    );
    let _ = b;
    hoot.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tools_and_the_schema_resource() {
    let dir = tempfile::tempdir().expect("tmp");
    let hoot = start(config(dir.path())).await;
    let tools = hoot.client.call(ListToolsRequest {}).await.expect("tools").tools;
    let names: Vec<_> = tools.iter().map(|t| t.name.as_str()).collect();
    let declared: Vec<_> = hooteproto::tools::Service::Hootenanny.tools().map(|t| t.name).collect();
    assert_eq!(names, declared, "hootenanny lists the tools the schema gives it");
    assert!(
        tools
            .iter()
            .all(|t| t.service == "hootenanny" && t.output_schema.is_some())
    );
    let store = tools.iter().find(|t| t.name == "cas_store").expect("cas_store");
    assert!(store.idempotent && !store.read_only && !store.destructive);
    let schema = store.input_schema.as_ref().expect("schema").to_json().expect("json");
    assert_eq!(schema["properties"]["data"]["contentEncoding"], "base64", "{schema:?}");
    assert_eq!(schema["properties"]["mime_type"]["type"], "string");
    let resources = hoot
        .client
        .call(ListResourcesRequest::default())
        .await
        .expect("resources");
    assert_eq!(resources.resources[0].uri, hootenanny::GRAPH_SCHEMA_URI);
    let sdl = hoot
        .client
        .call(ReadResourceRequest {
            uri: hootenanny::GRAPH_SCHEMA_URI.into(),
        })
        .await
        .expect("read");
    match &sdl.contents[0].content {
        Some(resource_content::Content::Text(text)) => {
            assert!(text.contains("type Artifact") && text.contains("ancestors"), "{text}")
        }
        other => panic!("expected text, got {other:?}"),
    }
    assert_eq!(
        code(
            hoot.client
                .call(ReadResourceRequest {
                    uri: "file:///etc/passwd".into()
                })
                .await
        ),
        ErrorCode::NotFound
    );
    hoot.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everything_acknowledged_survives_a_restart() {
    let dir = tempfile::tempdir().expect("tmp");
    let config = config(dir.path());
    let hoot = start(config.clone()).await;
    let hash = store(&hoot.client, b"persist me").await;
    let artifact = create(&hoot.client, &hash, "kept", &["keep"], "alice", &[]).await;
    hoot.client
        .call(GraphBindRequest {
            identity: "drums".into(),
            hints: None,
        })
        .await
        .expect("bind");
    hoot.stop().await;

    let hoot = start(config).await;
    let got = hoot
        .client
        .call(ArtifactGetRequest {
            artifact_id: artifact.artifact_id.clone(),
        })
        .await
        .expect("get");
    assert_eq!(*got.artifact.expect("artifact"), artifact);
    let object = hoot.client.call(CasInspectRequest { hash }).await.expect("inspect");
    assert_eq!(object.object.expect("object").size, 10);
    let bindings = hoot
        .client
        .call(GraphQueryRequest {
            query: "{ bindings { identity } }".into(),
            ..Default::default()
        })
        .await
        .expect("query");
    assert_eq!(
        string(data_at(&bindings.data.expect("data"), &["bindings", "0", "identity"])),
        "drums"
    );
    hoot.stop().await;
}

fn spawn_binary(dir: &std::path::Path, bind: &str, health: &str) -> std::process::Child {
    let mut command = Command::new(env!("CARGO_BIN_EXE_hootenanny"));
    if let Some(url) = testkit::postgres::database_for(dir) {
        command.env("HOOT_DATABASE_URL", url);
    }
    if let Some(url) = testkit::blobs::url_for(dir) {
        command.env("HOOT_BLOB_URL", url);
    }
    command
        .args([
            "--bind",
            bind,
            "--data-dir",
            dir.to_str().expect("utf8"),
            "--health-bind",
            health,
        ])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn hootenanny")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_writes_keeps_every_acknowledged_artifact() {
    let dir = tempfile::tempdir().expect("tmp");
    let bind = format!("tcp://127.0.0.1:{}", testkit::free_port());
    let mut child = spawn_binary(dir.path(), &bind, "none");
    let client = Client::connect(ClientConfig::new(&bind)).expect("connect");
    client.call(PingRequest {}).await.expect("up");
    let hash = store(&client, b"stream").await;
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let client = client.clone();
            let hash = hash.clone();
            tokio::spawn(async move {
                let mut acknowledged = Vec::new();
                let started = Instant::now();
                while started.elapsed() < Duration::from_millis(1500) {
                    let request = ArtifactCreateRequest {
                        cas_hash: hash.clone(),
                        name: format!("w{w}"),
                        tags: vec![format!("w{w}")],
                        ..Default::default()
                    };
                    let options = hooteproto::RequestOptions {
                        timeout: Some(Duration::from_millis(500)),
                        ..Default::default()
                    };
                    match client.call_with(request, options).await {
                        Ok(reply) => acknowledged.push(reply.artifact.expect("artifact").artifact_id),
                        Err(_) => break, // the server is gone
                    }
                }
                acknowledged
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(600)).await;
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");
    let mut acknowledged = Vec::new();
    for writer in writers {
        acknowledged.extend(writer.await.expect("writer"));
    }
    assert!(acknowledged.len() > 10, "writes were flowing: {}", acknowledged.len());

    let mut child = spawn_binary(dir.path(), &bind, "none");
    client.call(PingRequest {}).await.expect("restarted");
    for id in &acknowledged {
        let got = client
            .call(ArtifactGetRequest {
                artifact_id: id.clone(),
            })
            .await;
        assert!(got.is_ok(), "acknowledged artifact {id} lost after SIGKILL: {got:?}");
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// A real gRPC health client.
async fn health_probe(address: SocketAddr) -> tonic_health::pb::health_client::HealthClient<tonic::transport::Channel> {
    let channel = tonic::transport::Channel::from_shared(format!("http://{address}"))
        .expect("uri")
        .connect()
        .await
        .expect("health connect");
    tonic_health::pb::health_client::HealthClient::new(channel)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_health_reports_serving_then_not_found_for_strangers() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut config = config(dir.path());
    let health: SocketAddr = format!("127.0.0.1:{}", testkit::free_port()).parse().expect("addr");
    config.health_bind = Some(health);
    let hoot = start(config).await;
    let mut probe = health_probe(health).await;
    for service in ["", hootenanny::HEALTH_SERVICE] {
        let reply = probe
            .check(tonic_health::pb::HealthCheckRequest {
                service: service.into(),
            })
            .await
            .expect("check")
            .into_inner();
        assert_eq!(
            reply.status,
            tonic_health::pb::health_check_response::ServingStatus::Serving as i32,
            "{service:?}"
        );
    }
    let stranger = probe
        .check(tonic_health::pb::HealthCheckRequest { service: "nope".into() })
        .await;
    assert_eq!(stranger.expect_err("unknown service").code(), tonic::Code::NotFound);
    hoot.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_watchers_see_not_serving_on_shutdown_and_do_not_hold_it_up() {
    use tonic_health::pb::health_check_response::ServingStatus;
    let dir = tempfile::tempdir().expect("tmp");
    let mut config = config(dir.path());
    let health: SocketAddr = format!("127.0.0.1:{}", testkit::free_port()).parse().expect("addr");
    config.health_bind = Some(health);
    let hoot = start(config).await;
    let mut probe = health_probe(health).await;
    let mut watch = probe
        .watch(tonic_health::pb::HealthCheckRequest {
            service: hootenanny::HEALTH_SERVICE.into(),
        })
        .await
        .expect("watch")
        .into_inner();
    let first = watch.message().await.expect("stream").expect("a status");
    assert_eq!(first.status, ServingStatus::Serving as i32);

    // Shut down over HOOT/1 while the watch stream is open.
    let reply = hoot
        .client
        .call(ShutdownRequest { reason: "test".into() })
        .await
        .expect("shutdown accepted");
    assert!(reply.drain_deadline_ms > 0);
    let next = watch.message().await.expect("stream").expect("a status");
    assert_eq!(
        next.status,
        ServingStatus::NotServing as i32,
        "watchers learn about the drain"
    );
    let started = Instant::now();
    let stats = tokio::time::timeout(Duration::from_secs(10), hoot.task)
        .await
        .expect("exits despite the open watch");
    stats.expect("task").expect("run");
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    drop(hoot.stop);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bind_holds_the_port_before_serving_and_a_taken_port_fails_at_bind() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut first = config(&dir.path().join("first"));
    first.bind = "tcp://127.0.0.1:*".into();
    let bound = hootenanny::bind(first).await.expect("bind");
    let endpoint = bound.endpoint().to_string();
    assert!(!endpoint.ends_with('*'), "the real port: {endpoint}");

    // A second hootenanny on that port fails when it binds, not later while "running".
    let mut second = config(&dir.path().join("second"));
    second.bind = endpoint.clone();
    let error = match hootenanny::bind(second).await {
        Ok(_) => panic!("a second hootenanny bound {endpoint} too"),
        Err(e) => format!("{e:#}"),
    };
    assert!(error.to_lowercase().contains("in use"), "{error}");

    // A client that connects once bind returned is answered as soon as it runs.
    let client = Client::connect(ClientConfig::new(&endpoint)).expect("connect");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(bound.run(async move {
        let _ = stopped.await;
    }));
    let pong = client.call(PingRequest {}).await.expect("ping");
    assert_eq!(pong.service, "hootenanny");
    let _ = stop.send(());
    task.await.expect("task").expect("run");
}
