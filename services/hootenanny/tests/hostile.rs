//! Hootenanny against a hostile agent, over tcp loopback: graph queries are priced before they
//! run and metered while they run, lineage cannot be inflated with duplicate parents, MIME
//! types are checked where they are stored (and not trusted where they are read), and errors
//! never say where the store lives.

use std::time::{Duration, Instant};

use hooteproto::v1::*;
use hooteproto::{Client, Error, Status};

mod common;
use common::{config, start};

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

async fn create(client: &Client, hash: &str, name: &str, parents: &[&str]) -> Artifact {
    let reply = client
        .call(ArtifactCreateRequest {
            cas_hash: hash.into(),
            name: name.into(),
            parent_ids: parents.iter().map(|p| p.to_string()).collect(),
            ..Default::default()
        })
        .await
        .expect("create");
    *reply.artifact.expect("artifact")
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
async fn duplicate_parents_count_once_and_list_fan_out_is_priced() {
    let dir = tempfile::tempdir().expect("tmp");
    let hoot = start(config(dir.path())).await;
    let client = &hoot.client;
    let hash = store(client, b"MThd root").await;
    let root = create(client, &hash, "root", &[]).await;

    // The same parent 64 (and 100) times is one parent, in the reply and on disk.
    let many = vec![root.artifact_id.as_str(); 64];
    let child = create(client, &hash, "child", &many).await;
    assert_eq!(child.parent_ids, vec![root.artifact_id.clone()]);
    let stored = client
        .call(ArtifactGetRequest {
            artifact_id: child.artifact_id.clone(),
        })
        .await
        .expect("get");
    assert_eq!(
        stored.artifact.expect("artifact").parent_ids,
        vec![root.artifact_id.clone()]
    );
    let more = vec![root.artifact_id.as_str(); 100];
    assert_eq!(create(client, &hash, "again", &more).await.parent_ids.len(), 1);

    // Four levels of parents: priced at 64^4 before anything runs, and refused naming the budget.
    let fan_out = format!(
        "{{ artifact(id: \"{}\") {{ parents {{ parents {{ parents {{ parents {{ id }} }} }} }} }} }}",
        child.artifact_id
    );
    let started = Instant::now();
    let refused = refusal(query(client, fan_out).await);
    assert_eq!(refused.code, ErrorCode::InvalidArgument, "{}", refused.message);
    assert!(
        refused.message.contains("cost budget of 100000") && refused.message.contains("--graph-max-cost"),
        "{}",
        refused.message
    );
    assert!(
        refused.message.contains("costs 17043522"),
        "names the price: {}",
        refused.message
    );
    assert!(started.elapsed() < Duration::from_secs(1), "{:?}", started.elapsed());
    answers_ping(client).await;

    // The README's example fits the default budgets.
    let example = r#"{ artifacts(tag: "jazz") { name ancestors { name } } }"#;
    assert!(
        query(client, example.into())
            .await
            .expect("the README example")
            .errors
            .is_empty()
    );

    // Two levels are fine, and the lineage is what was asked.
    let two = format!(
        "{{ artifact(id: \"{}\") {{ parents {{ name children {{ name }} }} }} }}",
        child.artifact_id
    );
    let reply = query(client, two).await.expect("two levels");
    assert!(reply.errors.is_empty(), "{:?}", reply.errors);
    let json = hooteproto::wkt::value_to_json(reply.data.expect("data"));
    assert_eq!(json["artifact"]["parents"][0]["name"], "root");
    assert_eq!(json["artifact"]["parents"].as_array().map(Vec::len), Some(1));
    assert_eq!(
        json["artifact"]["parents"][0]["children"].as_array().map(Vec::len),
        Some(2)
    );

    // A smaller `first` lowers the price: ancestors of ancestors at 1000 x 1000 is refused,
    // at 10 x 10 it runs.
    let deep = |first: usize| {
        format!(
            "{{ artifact(id: \"{}\") {{ ancestors(first: {first}) {{ ancestors(first: {first}) {{ id }} }} }} }}",
            child.artifact_id
        )
    };
    assert_eq!(
        refusal(query(client, deep(1000)).await).code,
        ErrorCode::InvalidArgument
    );
    assert!(query(client, deep(10)).await.expect("cheap").errors.is_empty());
    hoot.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_that_slips_past_pricing_stops_at_its_node_byte_and_time_budgets() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut config = config(dir.path());
    config.graph.max_cost = usize::MAX; // no static pricing: only the budgets stop it
    config.graph.max_nodes = 50;
    let hoot = start(config.clone()).await;
    let client = &hoot.client;
    let hash = store(client, b"MThd fan").await;
    // Real fan-out: 8 roots, 8 artifacts each derived from all of them, one leaf from those.
    let mut roots = Vec::new();
    for i in 0..8 {
        roots.push(create(client, &hash, &format!("root{i}"), &[]).await.artifact_id);
    }
    let roots: Vec<&str> = roots.iter().map(String::as_str).collect();
    let mut middle = Vec::new();
    for i in 0..8 {
        middle.push(create(client, &hash, &format!("mid{i}"), &roots).await.artifact_id);
    }
    let middle: Vec<&str> = middle.iter().map(String::as_str).collect();
    let leaf = create(client, &hash, &"leaf".repeat(100), &middle).await;
    // 1 + 8 + 64 nodes.
    let fan_out = format!(
        "{{ artifact(id: \"{}\") {{ parents {{ parents {{ name }} }} }} }}",
        leaf.artifact_id
    );
    let refused = refusal(query(client, fan_out.clone()).await);
    assert_eq!(refused.code, ErrorCode::ResourceExhausted, "{}", refused.message);
    assert!(
        refused.message.contains("node budget") && refused.message.contains("--graph-max-nodes"),
        "{}",
        refused.message
    );
    answers_ping(client).await;
    hoot.stop().await;

    // The same query within a larger node budget runs; a small byte budget stops it.
    config.graph.max_nodes = 100;
    let hoot = start(config.clone()).await;
    let reply = query(&hoot.client, fan_out.clone()).await.expect("within the budget");
    assert!(reply.errors.is_empty(), "{:?}", reply.errors);
    let names = "{ artifacts { name } }".to_string();
    assert!(query(&hoot.client, names.clone()).await.is_ok());
    hoot.stop().await;
    config.graph.max_bytes = 300; // the leaf's name alone is 400 bytes
    let hoot = start(config.clone()).await;
    let refused = refusal(query(&hoot.client, names).await);
    assert_eq!(refused.code, ErrorCode::ResourceExhausted, "{}", refused.message);
    assert!(
        refused.message.contains("byte budget") && refused.message.contains("--graph-max-bytes"),
        "{}",
        refused.message
    );
    hoot.stop().await;

    // A query past its deadline is answered DEADLINE_EXCEEDED, naming the flag.
    config.graph.timeout = Duration::ZERO;
    let hoot = start(config).await;
    let refused = refusal(query(&hoot.client, fan_out).await);
    assert_eq!(refused.code, ErrorCode::DeadlineExceeded, "{}", refused.message);
    assert!(refused.message.contains("--graph-timeout-ms"), "{}", refused.message);
    answers_ping(&hoot.client).await;
    hoot.stop().await;
}

/// Writes `mime_type` into an object's metadata sidecar, as another process on the host could.
fn record_mime(dir: &std::path::Path, hash: &str, mime_type: &str) {
    let sidecar = common::local_objects(dir)
        .join(&hash[..2])
        .join(format!("{}.meta", &hash[2..]));
    let meta = serde_json::json!({"size": 5, "mime_type": mime_type, "created_at_unix_ms": 1});
    std::fs::write(&sidecar, serde_json::to_vec(&meta).expect("json")).expect("write the sidecar");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alias_floods_are_refused_and_a_huge_recorded_mime_type_is_never_read() {
    let dir = tempfile::tempdir().expect("tmp");
    let hoot = start(config(dir.path())).await;
    let client = &hoot.client;
    let hash = store(client, b"bytes").await;
    record_mime(dir.path(), &hash, &"x".repeat(50 * 1024 * 1024));

    let aliases = |n: usize| {
        let fields: Vec<String> = (0..n)
            .map(|i| format!("a{i}: casObject(hash: \"{hash}\") {{ mimeType }}"))
            .collect();
        format!("{{ {} }}", fields.join(" "))
    };
    let started = Instant::now();
    let refused = refusal(query(client, aliases(40)).await);
    assert_eq!(refused.code, ErrorCode::InvalidArgument, "{}", refused.message);
    assert!(
        refused.message.contains("40 aliases")
            && refused.message.contains("alias budget of 32")
            && refused.message.contains("--graph-max-aliases"),
        "{}",
        refused.message
    );
    // Fragments do not hide aliases.
    let spread = format!(
        "{{ ...F ...G }} fragment F on Query {{ {} }} fragment G on Query {{ ...F }}",
        (0..20).map(|i| format!("a{i}: tags")).collect::<Vec<_>>().join(" ")
    );
    assert_eq!(refusal(query(client, spread).await).code, ErrorCode::InvalidArgument);

    // Under the alias budget, the 50 MiB label is not read: the object reads as the default.
    let reply = query(client, aliases(30)).await.expect("30 aliases");
    assert!(reply.errors.is_empty(), "{:?}", reply.errors);
    let json = hooteproto::wkt::value_to_json(reply.data.expect("data"));
    assert_eq!(json["a29"]["mimeType"], "application/octet-stream");
    let inspected = client
        .call(CasInspectRequest { hash: hash.clone() })
        .await
        .expect("inspect");
    assert_eq!(inspected.object.expect("object").mime_type, "application/octet-stream");
    let again = client
        .call(CasStoreRequest {
            data: b"bytes".to_vec(),
            mime_type: "text/plain".into(),
        })
        .await
        .expect("store again");
    assert!(again.already_existed);
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());

    // A label with a control character, written behind Hootenanny's back, is not passed on.
    record_mime(dir.path(), &hash, "text/plain\u{1b}[2J");
    let inspected = client.call(CasInspectRequest { hash }).await.expect("inspect");
    assert_eq!(inspected.object.expect("object").mime_type, "application/octet-stream");
    answers_ping(client).await;
    hoot.stop().await;
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
    let object = common::local_objects(dir.path()).join(&stored[..2]).join(&stored[2..]);
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
    assert!(refused.message.contains("the service's log"), "{}", refused.message);
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
