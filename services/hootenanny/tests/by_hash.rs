//! Finding artifacts by the CAS object they name: `artifact_list` with `cas_hash` (alone,
//! with tag and creator, in pages), GraphQL `artifacts(casHash:)`, refused hashes, and the
//! by-hash index rebuilt for a database that has artifacts but no index (as one from before
//! the index existed).

use std::time::{Duration, Instant};

use hooteproto::v1::*;
use hooteproto::{Client, ClientConfig, Error};

mod common;
use common::{Running, config, start};

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

async fn create(client: &Client, hash: &str, name: &str, tags: &[&str], creator: &str) -> Artifact {
    *client
        .call(ArtifactCreateRequest {
            cas_hash: hash.into(),
            name: name.into(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            creator: creator.into(),
            metadata: None,
            parent_ids: vec![],
        })
        .await
        .expect("create")
        .artifact
        .expect("artifact")
}

/// artifact_list's names for a filter (the first page of up to 50).
async fn listed(client: &Client, cas_hash: &str, tag: &str, creator: &str) -> Result<Vec<String>, Error> {
    client
        .call(ArtifactListRequest {
            tag: tag.into(),
            creator: creator.into(),
            cas_hash: cas_hash.into(),
            ..Default::default()
        })
        .await
        .map(|reply| reply.artifacts.into_iter().map(|a| a.name).collect())
}

/// GraphQL `artifacts(...) { name casHash }`: the names, each checked to name `cas_hash`.
async fn graph_listed(client: &Client, cas_hash: &str, tag: &str, creator: &str) -> Result<Vec<String>, String> {
    let mut arguments = vec![format!("casHash: \"{cas_hash}\"")];
    if !tag.is_empty() {
        arguments.push(format!("tag: \"{tag}\""));
    }
    if !creator.is_empty() {
        arguments.push(format!("creator: \"{creator}\""));
    }
    let reply = client
        .call(GraphQueryRequest {
            query: format!("{{ artifacts({}) {{ id name casHash }} }}", arguments.join(", ")),
            ..Default::default()
        })
        .await
        .expect("graph query");
    if !reply.errors.is_empty() {
        return Err(reply
            .errors
            .into_iter()
            .map(|e| e.message)
            .collect::<Vec<_>>()
            .join("; "));
    }
    let data = hooteproto::wkt::value_to_json(reply.data.expect("data"));
    Ok(data["artifacts"]
        .as_array()
        .expect("a list")
        .iter()
        .map(|node| {
            assert_eq!(node["casHash"], cas_hash.to_ascii_lowercase(), "{node}");
            assert!(node["id"].as_str().is_some_and(|id| id.starts_with("art-")), "{node}");
            node["name"].as_str().expect("name").to_string()
        })
        .collect())
}

/// Two objects and the artifacts naming them, created in this order:
///
/// | name | object | tags   | creator |
/// |------|--------|--------|---------|
/// | a1   | A      | verse  | alice   |
/// | b1   | B      | verse  | alice   |
/// | a2   | A      | chorus | bob     |
/// | a3   | A      | verse  | bob     |
/// | b2   | B      | chorus | bob     |
async fn two_objects(client: &Client) -> (String, String) {
    let a = store(client, b"MThd object A").await;
    let b = store(client, b"MThd object B").await;
    for (name, hash, tag, creator) in [
        ("a1", &a, "verse", "alice"),
        ("b1", &b, "verse", "alice"),
        ("a2", &a, "chorus", "bob"),
        ("a3", &a, "verse", "bob"),
        ("b2", &b, "chorus", "bob"),
    ] {
        create(client, hash, name, &[tag], creator).await;
    }
    (a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_by_cas_hash_finds_only_artifacts_naming_that_object_newest_first() {
    let dir = tempfile::tempdir().expect("tmp");
    let hoot = start(config(dir.path())).await;
    let client = &hoot.client;
    let (a, b) = two_objects(client).await;

    assert_eq!(listed(client, &a, "", "").await.expect("A"), ["a3", "a2", "a1"]);
    assert_eq!(listed(client, &b, "", "").await.expect("B"), ["b2", "b1"]);
    // Every filter given must match.
    assert_eq!(listed(client, &a, "verse", "").await.expect("A verse"), ["a3", "a1"]);
    assert_eq!(listed(client, &a, "", "bob").await.expect("A bob"), ["a3", "a2"]);
    assert_eq!(
        listed(client, &a, "verse", "alice").await.expect("A verse alice"),
        ["a1"]
    );
    assert_eq!(listed(client, &b, "chorus", "bob").await.expect("B chorus bob"), ["b2"]);
    assert!(listed(client, &b, "chorus", "alice").await.expect("none").is_empty());
    assert!(listed(client, &a, "bridge", "").await.expect("no such tag").is_empty());
    // Without cas_hash, the other filters still see every object.
    assert_eq!(
        listed(client, "", "verse", "").await.expect("verse"),
        ["a3", "b1", "a1"]
    );

    // An object with no artifacts, and a well-formed hash of nothing stored: no artifacts.
    let lonely = store(client, b"no artifact names me").await;
    assert!(listed(client, &lonely, "", "").await.expect("lonely").is_empty());
    let absent = blake3::hash(b"never stored").to_hex().to_string();
    assert!(listed(client, &absent, "", "").await.expect("absent").is_empty());

    // Pages: newest first, the token continues within the same object.
    let page = |token: String| {
        let (client, a) = (client.clone(), a.clone());
        async move {
            client
                .call(ArtifactListRequest {
                    cas_hash: a,
                    page_size: 2,
                    page_token: token,
                    ..Default::default()
                })
                .await
                .expect("page")
        }
    };
    let first = page(String::new()).await;
    let names = |reply: &ArtifactListReply| reply.artifacts.iter().map(|a| a.name.clone()).collect::<Vec<_>>();
    assert_eq!(names(&first), ["a3", "a2"]);
    assert!(!first.next_page_token.is_empty());
    let second = page(first.next_page_token.clone()).await;
    assert_eq!(names(&second), ["a1"]);
    assert!(second.next_page_token.is_empty());
    hoot.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_cas_hash_filter_is_invalid_argument() {
    let dir = tempfile::tempdir().expect("tmp");
    let hoot = start(config(dir.path())).await;
    let client = &hoot.client;
    let (a, _) = two_objects(client).await;
    for bad in [
        "abc".to_string(),
        a[..8].to_string(),
        a[..63].to_string(),
        format!("{a}0"),
        "zz".repeat(32),
        format!("{} ", &a[..63]),
        format!("../{}", &a[3..]),
    ] {
        match listed(client, &bad, "", "").await {
            Err(Error::Remote(status)) => {
                assert_eq!(status.code, ErrorCode::InvalidArgument, "{bad}: {}", status.message)
            }
            other => panic!("{bad}: expected INVALID_ARGUMENT, got {other:?}"),
        }
        let graph = graph_listed(client, &bad, "", "").await;
        assert!(graph.is_err(), "GraphQL casHash {bad}: {graph:?}");
    }
    hoot.stop().await;
}

/// The CAS spells hashes in lowercase. An uppercase spelling of a stored object's hash must
/// be treated alike by artifact_create and both listings: either accepted everywhere (and
/// then finding the same artifacts as the lowercase spelling) or refused everywhere with
/// INVALID_ARGUMENT. Never an empty list that reads as "no artifacts name this object".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_uppercase_cas_hash_is_never_silently_an_empty_listing() {
    let dir = tempfile::tempdir().expect("tmp");
    let hoot = start(config(dir.path())).await;
    let client = &hoot.client;
    let (a, _) = two_objects(client).await;
    let upper = a.to_ascii_uppercase();
    let created = client
        .call(ArtifactCreateRequest {
            cas_hash: upper.clone(),
            name: "a4".into(),
            ..Default::default()
        })
        .await;
    let listing = listed(client, &upper, "", "").await;
    let graph = graph_listed(client, &upper, "", "").await;
    match created {
        Ok(reply) => {
            assert_eq!(reply.artifact.expect("artifact").cas_hash, a, "stored in lowercase");
            assert_eq!(listing.expect("uppercase filter"), ["a4", "a3", "a2", "a1"]);
            assert_eq!(graph.expect("uppercase casHash"), ["a4", "a3", "a2", "a1"]);
            assert_eq!(listed(client, &a, "", "").await.expect("lowercase")[0], "a4");
        }
        Err(refused) => {
            assert_eq!(refused.code(), ErrorCode::InvalidArgument, "{refused}");
            match listing {
                Err(Error::Remote(status)) => assert_eq!(status.code, ErrorCode::InvalidArgument),
                other => panic!("create refused {upper} but the listing answered {other:?}"),
            }
            assert!(graph.is_err(), "create refused {upper} but GraphQL answered {graph:?}");
            let inspected = client.call(CasInspectRequest { hash: upper.clone() }).await;
            assert_eq!(
                inspected.map_err(|e| e.code()).err(),
                Some(ErrorCode::InvalidArgument),
                "the CAS refuses the spelling too"
            );
        }
    }
    hoot.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graphql_artifacts_by_cas_hash_agrees_with_artifact_list() {
    let dir = tempfile::tempdir().expect("tmp");
    let hoot = start(config(dir.path())).await;
    let client = &hoot.client;
    let (a, b) = two_objects(client).await;
    for (hash, tag, creator) in [
        (&a, "", ""),
        (&b, "", ""),
        (&a, "verse", ""),
        (&a, "", "bob"),
        (&a, "verse", "alice"),
        (&b, "chorus", "alice"),
    ] {
        let graph = graph_listed(client, hash, tag, creator).await.expect("graph");
        let list = listed(client, hash, tag, creator).await.expect("list");
        assert_eq!(graph, list, "{hash} tag={tag:?} creator={creator:?}");
    }
    assert_eq!(
        graph_listed(client, &a, "", "").await.expect("graph"),
        ["a3", "a2", "a1"]
    );
    // `first` limits it like any listing.
    let reply = client
        .call(GraphQueryRequest {
            query: format!("{{ artifacts(casHash: \"{a}\", first: 1) {{ name }} }}"),
            ..Default::default()
        })
        .await
        .expect("first: 1");
    assert!(reply.errors.is_empty(), "{:?}", reply.errors);
    assert_eq!(
        hooteproto::wkt::value_to_json(reply.data.expect("data"))["artifacts"],
        serde_json::json!([{"name": "a3"}])
    );
    hoot.stop().await;
}

/// Hootenanny's database under a data dir (services/hootenanny/src/lib.rs: `bind`).
fn db_dir(data_dir: &std::path::Path) -> std::path::PathBuf {
    data_dir.join("hootenanny").join("db")
}

/// Opens the stopped service's sled database, waiting (up to 10 s) for the lock its last
/// tasks can hold a moment after `run` returned.
fn open_db(data_dir: &std::path::Path) -> sled::Db {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match sled::open(db_dir(data_dir)) {
            Ok(db) => return db,
            Err(error) if Instant::now() < deadline => {
                let _ = error;
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(error) => panic!("opening {}: {error}", db_dir(data_dir).display()),
        }
    }
}

/// Starts Hootenanny again on a data dir whose database another handle may be closing.
async fn start_again(data_dir: &std::path::Path) -> Running {
    let deadline = Instant::now() + Duration::from_secs(10);
    let bound = loop {
        match hootenanny::bind(config(data_dir)).await {
            Ok(bound) => break bound,
            Err(error) if format!("{error:#}").contains("lock") && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(error) => panic!("hootenanny restarts: {error:#}"),
        }
    };
    let client = Client::connect(ClientConfig::new(bound.endpoint())).expect("connect");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(bound.run(async move {
        let _ = stopped.await;
    }));
    client.call(PingRequest {}).await.expect("hootenanny answers ping");
    Running { client, stop, task }
}

/// Removes the by-hash index, as in a database written before it existed.
fn drop_the_by_hash_index(data_dir: &std::path::Path) {
    let db = open_db(data_dir);
    assert!(
        db.tree_names().iter().any(|name| name.as_ref() == b"by_hash"),
        "the index this test removes is called by_hash"
    );
    assert!(db.drop_tree("by_hash").expect("drop_tree"), "by_hash was there");
    assert!(!db.open_tree("artifacts").expect("artifacts").is_empty());
    db.flush().expect("flush");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_without_the_by_hash_index_is_indexed_when_opened() {
    if testkit::postgres::enabled() {
        // The by-hash index is sled's own; PostgreSQL indexes in its migration.
        return;
    }
    let dir = tempfile::tempdir().expect("tmp");
    let hoot = start(config(dir.path())).await;
    let (a, b) = two_objects(&hoot.client).await;
    hoot.stop().await;
    drop_the_by_hash_index(dir.path());

    let hoot = start_again(dir.path()).await;
    let client = &hoot.client;
    assert_eq!(listed(client, &a, "", "").await.expect("A"), ["a3", "a2", "a1"]);
    assert_eq!(listed(client, &b, "", "").await.expect("B"), ["b2", "b1"]);
    assert_eq!(listed(client, &a, "verse", "").await.expect("A verse"), ["a3", "a1"]);
    assert_eq!(graph_listed(client, &b, "", "bob").await.expect("graph"), ["b2"]);
    // New artifacts join the rebuilt index; old ones are not listed twice.
    create(client, &a, "a4", &["verse"], "carol").await;
    assert_eq!(listed(client, &a, "", "").await.expect("A"), ["a4", "a3", "a2", "a1"]);
    hoot.stop().await;

    // The rebuilt index was made durable: it is there, whole, after another restart.
    let hoot = start_again(dir.path()).await;
    assert_eq!(
        listed(&hoot.client, &a, "", "").await.expect("A"),
        ["a4", "a3", "a2", "a1"]
    );
    assert_eq!(listed(&hoot.client, &b, "", "").await.expect("B"), ["b2", "b1"]);
    hoot.stop().await;
}

/// A by-hash index holding only some artifacts' entries: what a crash part-way through
/// the one-time indexing leaves (its inserts are not one transaction, and sled writes
/// them out in the background), or a database an older build added artifacts to after a
/// newer one had indexed it. Opening it must still make every artifact findable by hash.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partly_built_by_hash_index_is_completed_when_opened() {
    if testkit::postgres::enabled() {
        // The by-hash index is sled's own; PostgreSQL indexes in its migration.
        return;
    }
    let dir = tempfile::tempdir().expect("tmp");
    let hoot = start(config(dir.path())).await;
    let (a, b) = two_objects(&hoot.client).await;
    let a1 = listed(&hoot.client, &a, "verse", "alice").await.expect("a1");
    assert_eq!(a1, ["a1"]);
    hoot.stop().await;
    {
        // Keep one entry of the index, b2's (`<cas hash>\0<artifact id>`), and drop the rest.
        let db = open_db(dir.path());
        let index = db.open_tree("by_hash").expect("by_hash");
        let keep = index
            .iter()
            .keys()
            .map(|key| key.expect("key"))
            .filter(|key| key.starts_with(b.as_bytes()))
            .max()
            .expect("an entry for B");
        index.clear().expect("clear");
        index.insert(keep, &[]).expect("insert");
        db.flush().expect("flush");
    }
    let hoot = start_again(dir.path()).await;
    assert_eq!(
        listed(&hoot.client, &a, "", "").await.expect("A"),
        ["a3", "a2", "a1"],
        "artifacts missing from a partial index are still found by hash"
    );
    assert_eq!(listed(&hoot.client, &b, "", "").await.expect("B"), ["b2", "b1"]);
    hoot.stop().await;
}
