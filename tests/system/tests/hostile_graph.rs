//! The hostile graph queries of issue 14, replayed against the real Hootenanny binary while a
//! second client pings it throughout:
//! - an artifact that names one parent 64 times, then `parents` four levels deep (it made the
//!   process unreachable for 10 s and then aborted it);
//! - 40 aliases of `casObject { mimeType }` over an object whose sidecar records a 50 MiB MIME
//!   type (3.9 GB RSS, 12 s blocked);
//! - and a query priced within budget that reads more than the node budget at run time.
//!
//! Each is refused with the budget named, pings stay fast meanwhile (p99 printed and
//! asserted), the process stays small, and it answers normally afterwards.

use std::time::{Duration, Instant};

use hooteproto::v1::*;
use hooteproto::{Client, Error, RequestOptions, Status};
use system_tests::{Cluster, Pinger, Service, percentile};

/// Ping p99 must stay under this while the hostile queries run. 10 ms is the goal; the
/// assertion allows for a 2-core host shared with parallel builds (the p99 is printed).
const PING_P99_LIMIT: Duration = Duration::from_millis(50);
/// Peak RSS of Hootenanny over the whole test (it reached 3.9 GB before).
const PEAK_RSS_LIMIT_KIB: u64 = 512 * 1024;

fn options() -> RequestOptions {
    RequestOptions {
        timeout: Some(Duration::from_secs(20)),
        ..Default::default()
    }
}

async fn create(client: &Client, hash: &str, name: &str, parents: &[String]) -> Artifact {
    let reply = client
        .call_with(
            ArtifactCreateRequest {
                cas_hash: hash.into(),
                name: name.into(),
                parent_ids: parents.to_vec(),
                ..Default::default()
            },
            options(),
        )
        .await
        .unwrap_or_else(|e| panic!("create {name}: {e}"));
    *reply.artifact.expect("an artifact")
}

async fn query(client: &Client, query: &str) -> Result<GraphQueryReply, Error> {
    client
        .call_with(
            GraphQueryRequest {
                query: query.into(),
                ..Default::default()
            },
            options(),
        )
        .await
}

/// The refusal of a query, checked to be `code` and to name `budget`; returns how long it took.
async fn refused(client: &Client, text: &str, code: ErrorCode, budget: &str) -> Duration {
    let started = Instant::now();
    let status: Status = match query(client, text).await {
        Err(Error::Remote(status)) => status,
        other => panic!("expected {code:?} naming {budget}, got {other:?}"),
    };
    assert_eq!(status.code, code, "{}", status.message);
    assert!(
        status.message.contains(budget),
        "does not name {budget}: {}",
        status.message
    );
    started.elapsed()
}

/// Hootenanny's peak resident set (VmHWM) in KiB, found by its command line.
fn peak_rss_kib(cluster: &Cluster) -> Option<u64> {
    let data_dir = cluster.data_dir().to_string_lossy().to_string();
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        let ours = args.first().is_some_and(|a| a.ends_with(b"/hootenanny")) && args.contains(&data_dir.as_bytes());
        if !ours {
            continue;
        }
        let status = std::fs::read_to_string(entry.path().join("status")).ok()?;
        return status
            .lines()
            .find_map(|line| line.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok());
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_graph_queries_are_refused_while_pings_stay_fast() {
    let cluster = Cluster::start(&[]).await;
    let client = cluster.client(Service::Hootenanny);

    // Row 1's data: one parent named 64 times (kept once).
    let hash = client
        .call_with(
            CasStoreRequest {
                data: b"hostile graph".to_vec(),
                mime_type: "audio/midi".into(),
            },
            options(),
        )
        .await
        .expect("cas_store")
        .hash;
    let root = create(&client, &hash, "root", &[]).await;
    let duplicated = create(&client, &hash, "dup", &vec![root.artifact_id.clone(); 64]).await;
    assert_eq!(
        duplicated.parent_ids,
        vec![root.artifact_id.clone()],
        "parents deduplicated"
    );

    // Row 2's data: a 50 MiB MIME type in the object's sidecar, as another process on this
    // host (sharing the CAS) could write it.
    let object = cluster.data_dir().join("cas/objects").join(&hash[..2]).join(&hash[2..]);
    assert!(object.is_file(), "the CAS is not at {}", object.display());
    let meta = serde_json::json!({"size": 13, "mime_type": "x".repeat(50 << 20), "created_at_unix_ms": 1});
    std::fs::write(object.with_extension("meta"), serde_json::to_vec(&meta).expect("json")).expect("write the sidecar");

    // Row 3's data: 64 roots and 60 artifacts derived from all of them, so that three aliases
    // of `artifacts(first: 200) { parents { id } }` are priced at ~40,000 (within the cost
    // budget) but read ~12,000 artifacts (over the 10,000-node budget).
    let mut roots = Vec::new();
    for i in 0..64 {
        roots.push(create(&client, &hash, &format!("r{i}"), &[]).await.artifact_id);
    }
    for chunk in 0..6 {
        let creates: Vec<_> = (0..10)
            .map(|i| {
                let (client, hash, roots) = (client.clone(), hash.clone(), roots.clone());
                tokio::spawn(async move { create(&client, &hash, &format!("m{chunk}-{i}"), &roots).await })
            })
            .collect();
        for created in creates {
            assert_eq!(created.await.expect("create task").parent_ids.len(), 64);
        }
    }

    let fan_out = format!(
        "{{ artifact(id: \"{}\") {{ parents {{ parents {{ parents {{ parents {{ id }} }} }} }} }} }}",
        duplicated.artifact_id
    );
    let alias_flood = |n: usize| {
        let fields: Vec<String> = (0..n)
            .map(|i| format!("a{i}: casObject(hash: \"{hash}\") {{ mimeType }}"))
            .collect();
        format!("{{ {} }}", fields.join(" "))
    };
    let over_nodes = "{ a: artifacts(first: 200) { parents { id } } b: artifacts(first: 200) { parents { id } } \
                      c: artifacts(first: 200) { parents { id } } }";

    // Ping throughout, from a client of its own.
    let pinger = Pinger::start(
        vec![("hootenanny".into(), cluster.client(Service::Hootenanny))],
        Duration::from_millis(1),
    );
    tokio::time::sleep(Duration::from_millis(200)).await;

    let mut slowest = [Duration::ZERO; 4];
    for _ in 0..10 {
        let took = [
            refused(&client, &fan_out, ErrorCode::InvalidArgument, "--graph-max-cost").await,
            refused(
                &client,
                &alias_flood(40),
                ErrorCode::InvalidArgument,
                "--graph-max-aliases",
            )
            .await,
            refused(&client, over_nodes, ErrorCode::ResourceExhausted, "--graph-max-nodes").await,
            {
                // Under the alias budget the query runs, and the 50 MiB label is never read.
                let started = Instant::now();
                let reply = query(&client, &alias_flood(30)).await.expect("30 aliases");
                assert!(reply.errors.is_empty(), "{:?}", reply.errors);
                let json = hooteproto::wkt::value_to_json(reply.data.expect("data"));
                assert_eq!(json["a29"]["mimeType"], "application/octet-stream");
                started.elapsed()
            },
        ];
        for (slowest, took) in slowest.iter_mut().zip(took) {
            *slowest = (*slowest).max(took);
        }
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let latencies = pinger.finish().await.remove(0).1;
    let (p50, p99, max) = (
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
        latencies[latencies.len() - 1],
    );
    let peak_rss = peak_rss_kib(&cluster);
    eprintln!(
        "hostile graph: {} pings, p50 {p50:?}, p99 {p99:?}, max {max:?}; slowest answers: fan-out {:?}, \
         40 aliases {:?}, over the node budget {:?}, 30 aliases {:?}; hootenanny peak RSS {:?} KiB",
        latencies.len(),
        slowest[0],
        slowest[1],
        slowest[2],
        slowest[3],
        peak_rss
    );
    assert!(
        p99 < PING_P99_LIMIT,
        "ping p99 {p99:?} over {PING_P99_LIMIT:?}\n{}",
        cluster.log(Service::Hootenanny)
    );
    for (row, took) in ["fan-out", "40 aliases", "over the node budget", "30 aliases"]
        .iter()
        .zip(slowest)
    {
        assert!(took < Duration::from_secs(3), "{row} took {took:?}");
    }
    if let Some(peak_rss) = peak_rss {
        assert!(peak_rss < PEAK_RSS_LIMIT_KIB, "hootenanny peaked at {peak_rss} KiB");
    }

    // Still serving, and still answering honest queries.
    let started = Instant::now();
    client.call(PingRequest {}).await.expect("ping afterwards");
    assert!(started.elapsed() < Duration::from_secs(1), "{:?}", started.elapsed());
    let lineage = format!(
        "{{ artifact(id: \"{}\") {{ parents {{ name }} }} }}",
        duplicated.artifact_id
    );
    let reply = query(&client, &lineage).await.expect("an honest query");
    let json = hooteproto::wkt::value_to_json(reply.data.expect("data"));
    assert_eq!(json["artifact"]["parents"][0]["name"], "root");
    assert_eq!(json["artifact"]["parents"].as_array().map(Vec::len), Some(1));
}
