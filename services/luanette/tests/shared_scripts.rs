//! Several front Luanettes on one PostgreSQL share their script index: a name stored on one
//! resolves on the others, versions are numbered once across all of them, tags merge, and a
//! front started later has everything before it answers.
//!
//! They need PostgreSQL: `eval "$(scripts/postgres start DIR)"`, then
//! `cargo test -p luanette --test shared_scripts -- --ignored` (scripts/test does this).

use std::path::Path;
use std::time::{Duration, Instant};

use hooteproto::v1::{LuaDescribeRequest, PingRequest, ScriptInfo, ScriptSearchRequest, ScriptStoreRequest};
use hooteproto::{Client, ClientConfig};

struct Front {
    client: Client,
    _data: tempfile::TempDir,
    _stop: tokio::sync::oneshot::Sender<()>,
}

/// A front on `database_url`, sharing the CAS at `cas_root` (as hosts share a bucket).
async fn front(database_url: &str, cas_root: &Path) -> Front {
    let data = tempfile::tempdir().expect("tmp");
    let mut config = luanette::Config::new(data.path().to_path_buf());
    config.bind = "tcp://127.0.0.1:*".into();
    config.pub_bind = None;
    config.health_bind = None;
    config.cas_root = cas_root.to_path_buf();
    config.cluster = Some(luanette::cluster::ClusterConfig::new(database_url.to_string()));
    config.local_workers = 0;
    let bound = luanette::bind(config).await.expect("front starts");
    let client = Client::connect(ClientConfig::new(bound.endpoint())).expect("client");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(bound.run(async move {
        let _ = stopped.await;
    }));
    client.call(PingRequest {}).await.expect("front answers");
    Front {
        client,
        _data: data,
        _stop: stop,
    }
}

fn database() -> (tempfile::TempDir, String) {
    let shared = tempfile::tempdir().expect("tmp");
    let url = testkit::postgres::database_for(shared.path())
        .expect("these tests need PostgreSQL: eval \"$(scripts/postgres start DIR)\"");
    (shared, url)
}

async fn store(client: &Client, content: &str, name: &str, tags: &[&str]) -> ScriptInfo {
    *client
        .call(ScriptStoreRequest {
            content: content.into(),
            name: name.into(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            ..Default::default()
        })
        .await
        .expect("store")
        .script
        .expect("script")
}

/// What `reference` resolves to on this front, once `ready` holds (replicas apply other fronts'
/// changes as PostgreSQL notifies them).
async fn describe_when(client: &Client, reference: &str, ready: impl Fn(&ScriptInfo) -> bool) -> ScriptInfo {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let found = client
            .call(LuaDescribeRequest {
                script_hash: reference.into(),
            })
            .await
            .ok()
            .and_then(|reply| reply.script);
        match found {
            Some(script) if ready(&script) => return *script,
            last => assert!(
                Instant::now() < deadline,
                "{reference} did not reach this front: last seen {last:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL (scripts/postgres); scripts/test runs it"]
async fn a_name_stored_on_one_front_resolves_on_another() {
    let (shared, url) = database();
    let cas = shared.path().join("cas");
    let a = front(&url, &cas).await;
    let b = front(&url, &cas).await;
    let first = store(&a.client, "function main() return 1 end", "riff", &["drums"]).await;
    assert_eq!((first.name.as_str(), first.version), ("riff", 1));
    let seen = describe_when(&b.client, "riff", |s| s.version == 1).await;
    assert_eq!(seen.script_hash, first.script_hash);

    let second = store(&b.client, "function main() return 2 end", "riff", &[]).await;
    assert_eq!(second.version, 2, "versions count across fronts");
    let seen = describe_when(&a.client, "riff", |s| s.version == 2).await;
    assert_eq!(seen.script_hash, second.script_hash);
    let pinned = describe_when(&a.client, &format!("riff@{}", &first.script_hash[..8]), |_| true).await;
    assert_eq!(pinned.version, 1);

    // Tags given on another front merge into the same entry.
    store(&b.client, "function main() return 1 end", "", &["bass"]).await;
    let merged = describe_when(&a.client, &first.script_hash, |s| s.tags.len() == 2).await;
    assert_eq!(merged.tags, ["bass", "drums"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL (scripts/postgres); scripts/test runs it"]
async fn stores_racing_on_two_fronts_never_share_a_version() {
    let (shared, url) = database();
    let cas = shared.path().join("cas");
    let a = front(&url, &cas).await;
    let b = front(&url, &cas).await;
    let stores = (0..12).map(|i| {
        let client = if i % 2 == 0 { a.client.clone() } else { b.client.clone() };
        async move { store(&client, &format!("function main() return {i} end"), "take", &[]).await }
    });
    let mut tasks = tokio::task::JoinSet::new();
    for store in stores {
        tasks.spawn(store);
    }
    let stored = tasks.join_all().await;
    // Every store got a version of its own (a client that resent a slow store made one more).
    let mut versions: Vec<u32> = stored.iter().map(|s| s.version).collect();
    versions.sort_unstable();
    versions.dedup();
    assert_eq!(
        versions.len(),
        stored.len(),
        "two stores shared a version: {versions:?}"
    );
    let newest = *versions.last().expect("versions");
    // Both fronts agree on every version.
    for front in [&a, &b] {
        describe_when(&front.client, "take", |s| s.version >= newest).await;
        let listed = front
            .client
            .call(ScriptSearchRequest {
                name: "take".into(),
                limit: 50,
                ..Default::default()
            })
            .await
            .expect("search")
            .scripts;
        let pairs: Vec<(u32, String)> = listed.into_iter().map(|s| (s.version, s.script_hash)).collect();
        for store in &stored {
            assert!(
                pairs.contains(&(store.version, store.script_hash.clone())),
                "version {} of take is {} on this front too",
                store.version,
                store.script_hash
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL (scripts/postgres); scripts/test runs it"]
async fn a_front_started_later_has_every_name_before_it_answers() {
    let (shared, url) = database();
    let cas = shared.path().join("cas");
    let a = front(&url, &cas).await;
    for i in 0..5 {
        store(
            &a.client,
            &format!("function main() return {i} end"),
            &format!("part{i}"),
            &[],
        )
        .await;
    }
    let late = front(&url, &cas).await;
    for i in 0..5 {
        let script = late
            .client
            .call(LuaDescribeRequest {
                script_hash: format!("part{i}"),
            })
            .await
            .expect("known at once")
            .script
            .expect("script");
        assert_eq!(script.version, 1);
    }
}
