//! `cargo bench -p cas --bench remote`: a 256 MiB blob into and out of object storage (a
//! Garage that this bench starts with `scripts/garage`), against the local CAS and against
//! `object_store` used directly for the same transfer, in the same run (docs/benchmarks.md P10).
//!
//! - import: `Cas::import_file` on S3 (hash the file, multipart upload) vs the local CAS's
//!   `import_file` vs a plain `object_store` multipart upload of a file of the same size.
//! - read, cold: `open_reader(verify)` on a host whose cache is empty (download, hash, cache)
//!   vs a plain `object_store` GET streamed to a file.
//! - read, cached: the same read again (served from the cache) vs the local CAS.
//!
//! Set `HOOT_BENCH_SIZE_MIB` to change the size (default 256), `HOOT_BENCH_RUNS` the runs (3).

use std::io::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use cas::{BlobConfig, Cas};

fn write_test_file(path: &Path, mib: usize, seed: u64) {
    let mut file = std::fs::File::create(path).expect("create");
    let mut block: Vec<u8> = (0..1 << 20).map(|_| rand::random::<u8>()).collect();
    for i in 0..mib {
        block[..16].copy_from_slice(&[(i as u64).to_le_bytes(), seed.to_le_bytes()].concat());
        file.write_all(&block).expect("write");
    }
    file.sync_all().expect("sync");
}

/// Times `work`, starting with no dirty pages (the server's or an earlier step's writes would
/// otherwise be flushed on whoever syncs next).
fn time<T>(work: impl FnOnce() -> T) -> (Duration, T) {
    let _ = Command::new("sync").status();
    let started = Instant::now();
    let value = work();
    (started.elapsed(), value)
}

fn read_all(cas: &Cas, hash: &cas::Hash) -> u64 {
    let mut reader = cas.open_reader(hash, true).expect("open");
    std::io::copy(&mut reader, &mut std::io::sink()).expect("read")
}

/// The peer: `object_store` itself, a multipart upload of the file and a GET to a file.
struct Peer {
    store: std::sync::Arc<dyn object_store::ObjectStore>,
    runtime: tokio::runtime::Runtime,
}

impl Peer {
    fn new(env: &[(String, String)], bucket: &str) -> Self {
        let mut builder = object_store::aws::AmazonS3Builder::new();
        for (key, value) in env {
            if let Ok(key) = key.to_ascii_lowercase().parse() {
                builder = builder.with_config(key, value);
            }
        }
        let store = builder.with_bucket_name(bucket).build().expect("client");
        Self {
            store: std::sync::Arc::new(store),
            runtime: tokio::runtime::Runtime::new().expect("runtime"),
        }
    }

    fn upload(&self, file: &Path, key: &str) {
        use tokio::io::AsyncReadExt as _;
        let store = self.store.clone();
        let key = object_store::path::Path::from(key);
        self.runtime.block_on(async move {
            let upload = store.put_multipart_opts(&key, Default::default()).await.expect("start");
            let mut writer = object_store::WriteMultipart::new_with_chunk_size(upload, 8 << 20);
            let mut source = tokio::fs::File::open(file).await.expect("open");
            let mut buffer = vec![0u8; 1 << 20];
            loop {
                let n = source.read(&mut buffer).await.expect("read");
                if n == 0 {
                    break;
                }
                writer.wait_for_capacity(4).await.expect("capacity");
                writer.write(&buffer[..n]);
            }
            writer.finish().await.expect("finish");
        });
    }

    fn download(&self, key: &str, to: &Path) -> u64 {
        use futures::StreamExt as _;
        use object_store::ObjectStoreExt as _;
        let store = self.store.clone();
        let key = object_store::path::Path::from(key);
        self.runtime.block_on(async move {
            let mut stream = store.get(&key).await.expect("get").into_stream();
            let mut file = std::fs::File::create(to).expect("create");
            let mut total = 0;
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.expect("chunk");
                total += chunk.len() as u64;
                file.write_all(&chunk).expect("write");
            }
            file.sync_all().expect("sync");
            total
        })
    }
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn main() {
    let mib: usize = std::env::var("HOOT_BENCH_SIZE_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    let runs: usize = std::env::var("HOOT_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let dir = tempfile::tempdir().expect("tempdir");
    let garage_dir = format!("/tmp/hoot-bench-s3-{}", std::process::id());
    let (garage, env) = testkit::servers::ScriptServer::start("garage", garage_dir.into(), None);
    let bucket_url = testkit::servers::exported(&env, "HOOT_TEST_BLOB_URL");
    let bucket = bucket_url.trim_start_matches("s3://").to_string();
    let aws_env: Vec<(String, String)> = env.iter().filter(|(k, _)| k.starts_with("AWS_")).cloned().collect();
    let peer = Peer::new(&aws_env, &bucket);
    let bytes = (mib as f64) * 1024.0 * 1024.0;
    let rate = |d: Duration| bytes / secs(d) / 1e6;

    println!("blob transfers, {mib} MiB, {runs} runs (MB/s; ratio = ours / peer's throughput)");
    println!(
        "| run | import: S3 CAS | local CAS | object_store | ratio | cold read: S3 CAS | object_store | ratio | cached read | local CAS read |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for run in 0..runs {
        let source = dir.path().join(format!("take-{run}.wav"));
        write_test_file(&source, mib, run as u64);
        // Other bytes for the peer: Garage stores blocks by content, so sending the same file
        // again would skip its disk writes and flatter whoever goes second.
        let peer_source = dir.path().join(format!("peer-{run}.wav"));
        write_test_file(&peer_source, mib, 1000 + run as u64);
        let config = |name: &str| BlobConfig {
            url: Some(format!("{bucket_url}/run{run}")),
            cache_dir: Some(dir.path().join(format!("cache-{name}-{run}"))),
            cache_max: 4 << 30,
            aws_env: aws_env.clone(),
        };
        let host_a = Cas::open_with(Path::new("/nonexistent"), &config("a")).expect("open");
        let local = Cas::open(dir.path().join(format!("local-{run}"))).expect("local");

        let (import_s3, stored) = time(|| host_a.import_file(&source, "audio/wav").expect("import"));
        let (import_local, _) = time(|| local.import_file(&source, "audio/wav").expect("import"));
        let (upload_peer, ()) = time(|| peer.upload(&peer_source, &format!("peer/run{run}")));

        let host_b = Cas::open_with(Path::new("/nonexistent"), &config("b")).expect("open");
        let hash = stored.info.hash;
        let (cold, read) = time(|| read_all(&host_b, &hash));
        assert_eq!(read, (mib as u64) << 20);
        let (download_peer, got) = time(|| peer.download(&format!("peer/run{run}"), &dir.path().join("peer.out")));
        assert_eq!(got, (mib as u64) << 20);
        let (cached, _) = time(|| read_all(&host_b, &hash));
        let (local_read, _) = time(|| read_all(&local, &hash));
        println!(
            "| {run} | {:.0} | {:.0} | {:.0} | {:.2} | {:.0} | {:.0} | {:.2} | {:.0} | {:.0} |",
            rate(import_s3),
            rate(import_local),
            rate(upload_peer),
            secs(upload_peer) / secs(import_s3),
            rate(cold),
            rate(download_peer),
            secs(download_peer) / secs(cold),
            rate(cached),
            rate(local_read),
        );
        for path in [source, peer_source, dir.path().join("peer.out")] {
            let _ = std::fs::remove_file(path);
        }
        for name in ["a", "b"] {
            let _ = std::fs::remove_dir_all(dir.path().join(format!("cache-{name}-{run}")));
        }
        let _ = std::fs::remove_dir_all(dir.path().join(format!("local-{run}")));
    }
    drop(garage);
}
