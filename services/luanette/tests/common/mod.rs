//! What the black-box suites share: one Luanette configuration for both backends.
//!
//! With nothing set the suites run Luanette embedded (sled, a local CAS, jobs in this
//! process). When `scripts/postgres start` has exported `HOOT_TEST_DATABASE_URL`, the same
//! tests run it in cluster mode instead: jobs and the script index in a PostgreSQL database of
//! the data directory's own, run by the front's local worker; with `scripts/garage start`'s
//! `HOOT_TEST_BLOB_URL` its objects live in a bucket prefix of their own.

use std::path::Path;

/// The defaults for a test, on ports the OS picks, without health or broadcasts, on the
/// backends the suite runs against.
#[allow(dead_code, reason = "used by some of the test binaries that include this module")]
pub fn config(dir: &Path) -> luanette::Config {
    let mut config = luanette::Config::new(dir.to_path_buf());
    config.bind = "tcp://127.0.0.1:*".into();
    config.pub_bind = None;
    config.health_bind = None;
    if let Some(database_url) = testkit::postgres::database_for(dir) {
        config.cluster = Some(luanette::cluster::ClusterConfig::new(database_url));
    }
    config.blobs = cas::BlobConfig::from_env(testkit::blobs::url_for(dir), Some(dir.join("cache")), 0);
    config
}

/// The CAS a service configured by [`config`] on `dir` uses, opened as another host would:
/// the local directory, or the bucket through a cache of its own.
#[allow(dead_code, reason = "used by some of the test binaries that include this module")]
pub fn cas(dir: &Path) -> cas::Cas {
    let blobs = cas::BlobConfig::from_env(testkit::blobs::url_for(dir), Some(dir.join("test-cache")), 0);
    cas::Cas::open_with(&dir.join("cas"), &blobs).expect("the service's CAS")
}

/// The same choice as flags, for tests that run the `luanette` binary.
#[allow(dead_code, reason = "used by some of the test binaries that include this module")]
pub fn backend_args(dir: &Path) -> Vec<String> {
    let mut args = Vec::new();
    if let Some(database_url) = testkit::postgres::database_for(dir) {
        // Short leases: a test that kills the process waits out its worker's lease.
        args.extend(["--database-url".into(), database_url, "--lease-secs".into(), "2".into()]);
    }
    if let Some(blob_url) = testkit::blobs::url_for(dir) {
        args.extend(["--blob-url".into(), blob_url]);
    }
    args
}

/// Whether the suite runs Luanette in cluster mode.
#[allow(dead_code, reason = "used by some of the test binaries that include this module")]
pub fn cluster() -> bool {
    testkit::postgres::enabled()
}

/// Stores `content` as a script and returns its hash.
#[allow(dead_code, reason = "used by some of the test binaries that include this module")]
pub async fn store_script(client: &hooteproto::Client, content: &str) -> String {
    client
        .call(hooteproto::v1::ScriptStoreRequest {
            content: content.into(),
            ..Default::default()
        })
        .await
        .expect("script_store")
        .script
        .expect("script")
        .script_hash
}
