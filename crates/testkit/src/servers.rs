//! The throwaway servers of `scripts/postgres` and `scripts/garage`, started by tests and
//! benchmarks that need one of their own (on an address of their choosing, or to restart it):
//! the variables the script exports, and a stop (which deletes its directory) on drop.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A server a script started; stopped when dropped, however the test ends.
pub struct ScriptServer {
    script: PathBuf,
    dir: PathBuf,
}

impl ScriptServer {
    /// Runs `scripts/<name> start <dir> [address]`; returns the server and what it exported
    /// (`HOOT_TEST_DATABASE_URL`, or `HOOT_TEST_BLOB_URL` and the `AWS_*` variables).
    pub fn start(name: &str, dir: PathBuf, address: Option<&str>) -> (Self, Vec<(String, String)>) {
        let server = Self {
            script: Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts").join(name),
            dir,
        };
        let output = server.run_with("start", address);
        let exported = String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter_map(|line| line.strip_prefix("export ")?.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        (server, exported)
    }

    /// Runs another of the script's commands on this server (`pause`, `resume`).
    pub fn run(&self, command: &str) -> Output {
        self.run_with(command, None)
    }

    fn run_with(&self, command: &str, address: Option<&str>) -> Output {
        let output = Command::new(&self.script)
            .arg(command)
            .arg(&self.dir)
            .args(address)
            .output()
            .unwrap_or_else(|e| panic!("{}: {e}", self.script.display()));
        assert!(
            output.status.success(),
            "{} {command}: {}",
            self.script.display(),
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }
}

impl Drop for ScriptServer {
    fn drop(&mut self) {
        let _ = Command::new(&self.script).arg("stop").arg(&self.dir).status();
    }
}

/// The value of `key` among a script's exports.
pub fn exported(vars: &[(String, String)], key: &str) -> String {
    vars.iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| panic!("{key} was not exported"))
}
