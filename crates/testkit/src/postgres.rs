//! A database per test on the throwaway PostgreSQL that `scripts/postgres start` runs for the
//! test suites (it exports `HOOT_TEST_DATABASE_URL`, a URL of its `postgres` database).
//!
//! Suites that run against both stores call [`database_for`] where they configure a service:
//! with the variable unset they use the embedded store; with it set each data directory gets
//! a database of its own, the same one every time it is asked for (so a restart on the same
//! directory finds its data, as it would on sled).

use std::hash::{Hash as _, Hasher as _};
use std::path::Path;
use std::process::Command;

/// The variable `scripts/postgres start` sets.
pub const URL_VARIABLE: &str = "HOOT_TEST_DATABASE_URL";

/// Whether the suites run against PostgreSQL.
pub fn enabled() -> bool {
    std::env::var_os(URL_VARIABLE).is_some_and(|v| !v.is_empty())
}

/// The URL of a database for `dir` (created on first use), or None without a test server.
pub fn database_for(dir: &Path) -> Option<String> {
    let server = std::env::var(URL_VARIABLE).ok().filter(|v| !v.is_empty())?;
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    dir.hash(&mut hasher);
    let name = format!("hoot_test_{:016x}", hasher.finish());
    let output = Command::new("psql")
        .arg(&server)
        .args(["-v", "ON_ERROR_STOP=1", "-qc", &format!("CREATE DATABASE {name}")])
        .output()
        .unwrap_or_else(|e| panic!("psql (Debian package postgresql-client) is needed: {e}"));
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() || said.contains("already exists"),
        "creating the test database {name} failed: {said}"
    );
    let base = server.rsplit_once('/').map_or(server.as_str(), |(base, _)| base);
    Some(format!("{base}/{name}"))
}
