//! Hootenanny against a hostile agent, over tcp loopback: MIME types are checked where they are
//! stored, and errors never say where the store lives.

use std::time::{Duration, Instant};

use hooteproto::v1::*;
use hooteproto::{Client, ClientConfig, Error, Status};

struct Running {
    client: Client,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<anyhow::Result<hooteproto::ServerStats>>,
}

impl Running {
    async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.expect("task").expect("run");
    }
}

fn config(dir: &std::path::Path) -> hootenanny::Config {
    let mut config = hootenanny::Config::new(dir.to_path_buf());
    config.bind = format!("tcp://127.0.0.1:{}", testkit::free_port());
    config.health_bind = None;
    config
}

async fn start(config: hootenanny::Config) -> Running {
    let client = Client::connect(ClientConfig::new(&config.bind)).expect("connect");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(hootenanny::run(config, async move {
        let _ = stopped.await;
    }));
    client.call(PingRequest {}).await.expect("hootenanny answers ping");
    Running { client, stop, task }
}

/// The error a call failed with.
fn refusal(result: Result<impl std::fmt::Debug, Error>) -> Status {
    match result {
        Err(Error::Remote(status)) => status,
        other => panic!("expected an error reply, got {other:?}"),
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

async fn query(client: &Client, query: String) -> Result<GraphQueryReply, Error> {
    client
        .call(GraphQueryRequest {
            query,
            ..Default::default()
        })
        .await
}

/// A ping answers, and quickly.
async fn answers_ping(client: &Client) {
    let started = Instant::now();
    client.call(PingRequest {}).await.expect("ping");
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mime_types_are_capped_where_they_are_stored() {
    let dir = tempfile::tempdir().expect("tmp");
    let hoot = start(config(dir.path())).await;
    let client = &hoot.client;
    for (mime_type, why) in [
        ("a".repeat(256), "256 bytes long"),
        ("x".repeat(50 * 1024 * 1024), "52428800 bytes long"),
        ("audio/midi\n".to_string(), "not printable ASCII"),
        ("audio/m\u{ef}di".to_string(), "not printable ASCII"),
        ("audio/\u{0}".to_string(), "not printable ASCII"),
    ] {
        let refused = refusal(
            client
                .call(CasStoreRequest {
                    data: b"label me".to_vec(),
                    mime_type,
                })
                .await,
        );
        assert_eq!(refused.code, ErrorCode::InvalidArgument, "{}", refused.message);
        assert!(
            refused.message.contains(why) && refused.message.contains("255 bytes of printable ASCII"),
            "{}",
            refused.message
        );
    }
    // Nothing was stored by the refusals.
    let hash = blake3::hash(b"label me").to_hex().to_string();
    assert_eq!(
        refusal(client.call(CasInspectRequest { hash: hash.clone() }).await).code,
        ErrorCode::NotFound
    );
    // 255 printable bytes are a MIME type, kept as given.
    let longest = format!(
        "application/{}",
        "x".repeat(hootenanny::MAX_MIME - "application/".len())
    );
    client
        .call(CasStoreRequest {
            data: b"label me".to_vec(),
            mime_type: longest.clone(),
        })
        .await
        .expect("255 bytes");
    let inspected = client.call(CasInspectRequest { hash }).await.expect("inspect");
    assert_eq!(inspected.object.expect("object").mime_type, longest);
    hoot.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cas_get_past_the_end_is_out_of_range_and_no_error_names_a_path() {
    let dir = tempfile::tempdir().expect("tmp");
    let hoot = start(config(dir.path())).await;
    let client = &hoot.client;
    let hash = store(client, b"0123456789").await;
    let get = |offset: u64, length: u64| CasGetRequest {
        hash: hash.clone(),
        offset,
        length,
    };
    // At the end: nothing, but fine. Past it: OUT_OF_RANGE, saying where the end is.
    let at_end = client.call(get(10, 0)).await.expect("offset == size");
    assert!(at_end.data.is_empty());
    assert_eq!(client.call(get(4, 1 << 40)).await.expect("clamped").data, b"456789");
    let root = dir.path().to_string_lossy().to_string();
    for offset in [11, 1 << 40, i64::MAX as u64 + 1, u64::MAX] {
        let refused = refusal(client.call(get(offset, 0)).await);
        assert_eq!(refused.code, ErrorCode::OutOfRange, "{offset}: {}", refused.message);
        assert!(
            refused.message.contains(&format!("offset {offset} is past the end"))
                && refused.message.contains("(10 bytes)"),
            "{}",
            refused.message
        );
        assert!(!refused.message.contains(&root), "leaks a path: {}", refused.message);
    }

    // A filesystem failure (an object that became a directory) is INTERNAL without the path.
    let stored = store(client, b"soon a directory").await;
    let object = dir.path().join("cas/objects").join(&stored[..2]).join(&stored[2..]);
    std::fs::remove_file(&object).expect("remove");
    std::fs::create_dir(&object).expect("mkdir");
    let refused = refusal(
        client
            .call(CasGetRequest {
                hash: stored[..16].into(),
                offset: 0,
                length: 0,
            })
            .await,
    );
    assert_eq!(refused.code, ErrorCode::Internal, "{}", refused.message);
    assert!(
        !refused.message.contains(&root) && !refused.message.contains("objects/"),
        "leaks a path: {}",
        refused.message
    );
    assert!(refused.message.contains("hootenanny's log"), "{}", refused.message);
    // The graph reports CAS failures the same way.
    let reply = query(
        client,
        format!("{{ casObject(hash: \"{}\") {{ size }} }}", &stored[..16]),
    )
    .await
    .expect("reply");
    for error in &reply.errors {
        assert!(!error.message.contains(&root), "leaks a path: {}", error.message);
    }
    answers_ping(client).await;
    hoot.stop().await;
}
