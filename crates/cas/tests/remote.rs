//! The store on real object storage (a Garage server that `scripts/garage start` runs; it
//! exports `HOOT_TEST_BLOB_URL` and the `AWS_*` variables). Two `Cas` values with separate
//! cache directories stand for two hosts sharing one bucket.
//!
//! Run with `cargo test -p cas --test remote -- --ignored` once the server is up.

use std::io::Read as _;
use std::path::Path;
use std::time::{Duration, Instant};

use cas::{BlobConfig, Cas, CasError, ErrorKind, Hash};

/// A bucket prefix of its own for each test, so tests share the server but not objects.
fn config(test: &str, cache: &Path, cache_max: u64) -> BlobConfig {
    let bucket = std::env::var("HOOT_TEST_BLOB_URL").expect("scripts/garage start exports HOOT_TEST_BLOB_URL");
    let run: u64 = rand::random();
    BlobConfig::from_env(
        Some(format!("{bucket}/{test}-{run:016x}")),
        Some(cache.to_path_buf()),
        cache_max,
    )
}

/// A second host: the same bucket and prefix, its own cache.
fn other_host(config: &BlobConfig, cache: &Path) -> Cas {
    let mut config = config.clone();
    config.cache_dir = Some(cache.to_path_buf());
    Cas::open_with(Path::new("/nonexistent"), &config).expect("second host")
}

fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

fn cached_bytes(root: &Path) -> u64 {
    let mut total = 0;
    for fanout in std::fs::read_dir(root.join("objects")).expect("objects").flatten() {
        for file in std::fs::read_dir(fanout.path()).expect("fanout").flatten() {
            if file.path().extension().is_none() {
                total += file.metadata().expect("stat").len();
            }
        }
    }
    total
}

#[test]
#[ignore = "needs an S3 server: eval \"$(scripts/garage start DIR)\""]
fn what_one_host_stores_another_reads_verified() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config("roundtrip", &dir.path().join("a"), 0);
    let a = Cas::open_with(Path::new("/nonexistent"), &config).expect("open");
    let b = other_host(&config, &dir.path().join("b"));

    let stored = a.store(b"X:1\nK:C\nCDEF|", "text/vnd.abc").expect("store");
    assert!(!stored.already_existed);
    let again = b.store(b"X:1\nK:C\nCDEF|", "text/plain").expect("store again");
    assert!(again.already_existed, "idempotent by hash across hosts");
    assert_eq!(again.info.mime_type, "text/vnd.abc", "the first store's metadata stays");

    let hash = stored.info.hash;
    assert!(!b.contains(&hash), "not cached on b before it reads");
    assert!(b.exists(&hash).expect("exists"));
    let info = b.inspect(&hash).expect("inspect");
    assert_eq!((info.size, info.mime_type.as_str()), (13, "text/vnd.abc"));
    assert_eq!(b.read(&hash, 1 << 20, true).expect("read"), b"X:1\nK:C\nCDEF|");
    assert!(b.contains(&hash), "cached after the first read");

    let missing = Hash::of(b"never stored");
    assert!(!b.exists(&missing).expect("exists"));
    assert_eq!(
        b.read(&missing, 10, true).expect_err("missing").kind(),
        ErrorKind::NotFound
    );
}

#[test]
#[ignore = "needs an S3 server: eval \"$(scripts/garage start DIR)\""]
fn large_files_go_up_in_parts_and_come_back_whole() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config("multipart", &dir.path().join("a"), 0);
    let a = Cas::open_with(Path::new("/nonexistent"), &config).expect("open");
    let content = noise(3 * cas::remote::PART_SIZE + 12345, 7);
    let source = dir.path().join("take.wav");
    std::fs::write(&source, &content).expect("write source");
    let stored = a.import_file(&source, "audio/wav").expect("import");
    assert_eq!(stored.info.hash, Hash::of(&content));

    let b = other_host(&config, &dir.path().join("b"));
    // A read with a smaller limit is refused before anything is downloaded.
    let refused = b.read(&stored.info.hash, 1 << 20, true).expect_err("too large");
    assert_eq!(refused.kind(), ErrorKind::ResourceExhausted, "{refused}");
    assert!(!b.contains(&stored.info.hash), "nothing was cached");
    let mut reader = b.open_reader(&stored.info.hash, true).expect("open");
    assert_eq!(reader.size(), content.len() as u64);
    let mut back = Vec::new();
    reader.read_to_end(&mut back).expect("read");
    assert!(back == content, "the object came back different");
    let range = b.read_range(&stored.info.hash, 1_000_000, 10, 100).expect("range");
    assert_eq!(range, &content[1_000_000..1_000_010]);
}

#[test]
#[ignore = "needs an S3 server: eval \"$(scripts/garage start DIR)\""]
fn an_object_larger_than_the_whole_cache_streams_from_the_bucket_verified() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config("streamed", &dir.path().join("a"), 0);
    let a = Cas::open_with(Path::new("/nonexistent"), &config).expect("open");
    let small = a.store(b"kept in the cache", "text/plain").expect("store small");
    let content = noise(3 << 20, 11);
    let big = a.store(&content, "audio/wav").expect("store big");

    // A host whose cache holds 1 MiB: the 3 MiB object cannot be cached.
    let mut bounded = config.clone();
    bounded.cache_max = 1 << 20;
    let b_cache = dir.path().join("b");
    let b = other_host(&bounded, &b_cache);
    assert_eq!(
        b.read(&small.info.hash, 100, true).expect("small"),
        b"kept in the cache"
    );
    let mut reader = b.open_reader(&big.info.hash, false).expect("open");
    assert_eq!(reader.size(), content.len() as u64);
    let mut back = Vec::new();
    reader.read_to_end(&mut back).expect("read");
    assert!(back == content, "the object came back different");
    assert!(!b.contains(&big.info.hash), "the large object was not cached");
    assert!(b.contains(&small.info.hash), "nor did it evict what was");
    assert!(cached_bytes(&b_cache) < 1 << 20, "the cache stayed within its bound");
    let range = b.read_range(&big.info.hash, 2_000_000, 16, 100).expect("range");
    assert_eq!(range, &content[2_000_000..2_000_016]);
}

#[test]
#[ignore = "needs an S3 server: eval \"$(scripts/garage start DIR)\""]
fn prefixes_resolve_against_the_bucket() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config("prefix", &dir.path().join("a"), 0);
    let a = Cas::open_with(Path::new("/nonexistent"), &config).expect("open");
    let b = other_host(&config, &dir.path().join("b"));
    let hashes: Vec<Hash> = (0..40u64)
        .map(|i| a.store(&i.to_le_bytes(), "").expect("store").info.hash)
        .collect();
    let first = hashes[0].to_string();
    assert_eq!(b.resolve(&first[..12]).expect("resolve"), hashes[0], "unique prefix");
    // Two contents whose names share 8 hex digits (a birthday search: some 65,000 hashes).
    let mut seen = std::collections::HashMap::new();
    let twins = (0u64..)
        .find_map(|i| {
            let content = i.to_be_bytes();
            let head = Hash::of(&content).to_string()[..8].to_string();
            seen.insert(head, content).map(|earlier| (earlier, content))
        })
        .expect("a shared prefix");
    a.store(&twins.0, "").expect("store twin");
    a.store(&twins.1, "").expect("store twin");
    let shared = &Hash::of(&twins.0).to_string()[..8];
    match b.resolve(shared) {
        Err(CasError::Ambiguous { count, .. }) => assert_eq!(count, 2),
        other => panic!("{shared} names two objects, got {other:?}"),
    }
    assert_eq!(
        b.resolve(&Hash::of(&twins.1).to_string()[..20]).expect("longer"),
        Hash::of(&twins.1)
    );
    assert_eq!(
        b.resolve("00000000").expect_err("no such prefix").kind(),
        ErrorKind::NotFound
    );
    assert!(matches!(b.resolve("zz").expect_err("bad"), CasError::InvalidPrefix(_)));
}

#[test]
#[ignore = "needs an S3 server: eval \"$(scripts/garage start DIR)\""]
fn the_cache_stays_within_its_bound_and_refetches_what_it_evicted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cache_max = 1 << 20;
    let config = config("bound", &dir.path().join("a"), cache_max);
    let a = Cas::open_with(Path::new("/nonexistent"), &config).expect("open");
    let objects: Vec<(Hash, Vec<u8>)> = (0..12)
        .map(|i| {
            let content = noise(200_000, i + 1);
            (a.store(&content, "").expect("store").info.hash, content)
        })
        .collect();
    assert!(cached_bytes(a.root()) <= cache_max, "{} cached", cached_bytes(a.root()));
    let b = other_host(&config, &dir.path().join("b"));
    for (hash, content) in objects.iter().chain(objects.iter()) {
        assert!(b.read(hash, 1 << 20, true).expect("read") == *content);
        let cached = cached_bytes(b.root());
        assert!(cached <= cache_max, "{cached} bytes cached over a bound of {cache_max}");
    }
}

#[test]
#[ignore = "needs an S3 server: eval \"$(scripts/garage start DIR)\""]
fn a_process_that_only_reads_the_cache_leaves_it_and_the_first_to_add_trims_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let generous = config("lazy", &dir.path().join("a"), 8 << 20);
    let a = Cas::open_with(Path::new("/nonexistent"), &generous).expect("open");
    let hashes: Vec<Hash> = (0..10)
        .map(|i| a.store(&noise(200_000, 101 + 2 * i), "").expect("store").info.hash)
        .collect();
    let full = cached_bytes(a.root());
    assert!(full >= 2_000_000, "{full} cached");
    // Another process on the same cache with a smaller bound (a sandbox, say): opening it
    // and reading from it evicts nothing.
    let mut tight = generous.clone();
    tight.cache_max = 1 << 20;
    let b = Cas::open_with(Path::new("/nonexistent"), &tight).expect("open");
    assert_eq!(b.read(&hashes[0], 1 << 20, true).expect("read").len(), 200_000);
    assert_eq!(cached_bytes(b.root()), full, "reading trims nothing");
    // Its first addition scans the cache and brings it within its bound.
    b.store(&noise(1_000, 999), "").expect("store");
    let trimmed = cached_bytes(b.root());
    assert!(trimmed <= 1 << 20, "{trimmed} cached over a bound of {}", 1 << 20);
}

#[test]
#[ignore = "needs an S3 server: eval \"$(scripts/garage start DIR)\""]
fn content_that_does_not_match_its_name_is_refused_and_not_cached() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config("corrupt", &dir.path().join("a"), 0);
    let prefix = config.url.clone().expect("url");
    let named = Hash::of(b"what the name promises");
    // Write other bytes under that name, as a faulty or hostile writer could.
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        use object_store::ObjectStoreExt as _;
        let (bucket, path) = prefix.trim_start_matches("s3://").split_once('/').expect("prefix");
        let store = object_store::aws::AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .build()
            .expect("client");
        let key = object_store::path::Path::from(format!("{path}/objects/{named}"));
        store.put(&key, b"something else".to_vec().into()).await.expect("put");
    });
    let b = other_host(&config, &dir.path().join("b"));
    let error = b.read(&named, 1 << 20, true).expect_err("corrupt");
    assert_eq!(error.kind(), ErrorKind::DataLoss, "{error}");
    assert!(!b.contains(&named), "corrupt content must not be cached");
}

#[test]
#[ignore = "needs an S3 server: eval \"$(scripts/garage start DIR)\""]
fn with_the_server_gone_errors_are_quick_and_clear_and_the_cache_still_serves() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config("down", &dir.path().join("a"), 0);
    let a = Cas::open_with(Path::new("/nonexistent"), &config).expect("open");
    let kept = a.store(b"cached before the outage", "").expect("store").info.hash;
    drop(a);

    // The same cache, pointed at a port where nothing listens.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
    let port = closed.local_addr().expect("addr").port();
    drop(closed);
    let mut down = config.clone();
    for (key, value) in &mut down.aws_env {
        if key == "AWS_ENDPOINT_URL" {
            *value = format!("http://127.0.0.1:{port}");
        }
    }
    let a = Cas::open_with(Path::new("/nonexistent"), &down).expect("open while the server is down");
    assert_eq!(
        a.read(&kept, 1 << 20, true).expect("cached"),
        b"cached before the outage"
    );
    assert_eq!(a.resolve(&kept.to_string()[..10]).expect("cached prefix"), kept);

    let started = Instant::now();
    let error = a.store(b"new while down", "").expect_err("store while down");
    assert_eq!(error.kind(), ErrorKind::Unavailable, "{error}");
    assert!(error.to_string().contains("object storage"), "{error}");
    let error = a
        .read(&Hash::of(b"not cached"), 100, true)
        .expect_err("read while down");
    assert_eq!(error.kind(), ErrorKind::Unavailable, "{error}");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "failing took {:?}",
        started.elapsed()
    );
    assert!(!a.contains(&Hash::of(b"new while down")), "nothing half-stored");
}

#[test]
fn a_directory_with_objects_is_not_taken_as_a_cache() {
    let dir = tempfile::tempdir().expect("tempdir");
    let local = Cas::open(dir.path().join("cas")).expect("local");
    local.store(b"only here", "").expect("store");
    let config = BlobConfig {
        url: Some("s3://bucket".into()),
        cache_dir: Some(dir.path().join("cas")),
        ..BlobConfig::default()
    };
    let error = Cas::open_with(Path::new("/nonexistent"), &config).expect_err("refused");
    assert!(error.to_string().contains("not a blob cache"), "{error}");
    assert!(local.contains(&Hash::of(b"only here")));
}

#[test]
fn a_cache_written_before_a_reboot_is_emptied() {
    // Cache writes do not wait for the disk, so what a previous boot wrote may be torn.
    let dir = tempfile::tempdir().expect("tempdir");
    let config = BlobConfig {
        url: Some("s3://bucket".into()),
        cache_dir: Some(dir.path().join("cache")),
        ..BlobConfig::default()
    };
    let cache = Cas::open_with(Path::new("/nonexistent"), &config).expect("open");
    let fanout = cache.root().join("objects/ab");
    std::fs::create_dir_all(&fanout).expect("fanout");
    std::fs::write(fanout.join("c".repeat(62)), b"written this boot").expect("object");
    drop(cache);
    let again = Cas::open_with(Path::new("/nonexistent"), &config).expect("reopen");
    assert!(fanout.join("c".repeat(62)).exists(), "same boot: kept");
    drop(again);
    std::fs::write(
        dir.path().join("cache/BLOB-CACHE"),
        "a read-through cache of object storage; anything here may be deleted\nboot another\n",
    )
    .expect("pretend a reboot");
    let _after = Cas::open_with(Path::new("/nonexistent"), &config).expect("reopen after a reboot");
    assert!(!fanout.join("c".repeat(62)).exists(), "emptied after a reboot");
}
