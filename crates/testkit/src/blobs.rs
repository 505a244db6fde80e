//! A bucket prefix per test on the throwaway Garage that `scripts/garage start` runs for the
//! test suites (it exports `HOOT_TEST_BLOB_URL`, an `s3://` URL of its bucket, and the
//! `AWS_*` variables that reach it).
//!
//! Suites that run against both blob stores call [`url_for`] where they configure a service:
//! with the variable unset they use the local CAS; with it set each data directory gets a
//! prefix of its own in the bucket, the same one every time it is asked for (so a restart on
//! the same directory finds its objects, as it would on disk).

use std::hash::{Hash as _, Hasher as _};
use std::path::Path;

/// The variable `scripts/garage start` sets.
pub const URL_VARIABLE: &str = "HOOT_TEST_BLOB_URL";

/// Whether the suites keep blobs on object storage.
pub fn enabled() -> bool {
    std::env::var_os(URL_VARIABLE).is_some_and(|v| !v.is_empty())
}

/// The blob URL for `dir` (a prefix of the test bucket), or None without a test server.
pub fn url_for(dir: &Path) -> Option<String> {
    let bucket = std::env::var(URL_VARIABLE).ok().filter(|v| !v.is_empty())?;
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    dir.hash(&mut hasher);
    Some(format!("{}/t{:016x}", bucket.trim_end_matches('/'), hasher.finish()))
}
