//! Test helpers: `holler up` as a child process on free ports, and a minimal MCP client
//! over plain HTTP (`testkit::mcp`).
#![allow(dead_code)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Up {
    pub child: Child,
    pub port: u16,
    pub luanette: String,
    pub hootenanny: String,
    pub chaosgarden: String,
}

impl Up {
    pub fn start(data: &Path, extra: &[&str]) -> Self {
        Self::start_with(data, extra, &[])
    }

    /// `extra` goes before `up` (global flags), `up_args` after it.
    pub fn start_with(data: &Path, extra: &[&str], up_args: &[&str]) -> Self {
        Self::start_env(data, extra, up_args, &[])
    }

    /// As [`Up::start_with`], with these environment variables added.
    pub fn start_env(data: &Path, extra: &[&str], up_args: &[&str], env: &[(String, String)]) -> Self {
        let port = testkit::free_port();
        let endpoint = || format!("tcp://127.0.0.1:{}", testkit::free_port());
        let (luanette, hootenanny, chaosgarden) = (endpoint(), endpoint(), endpoint());
        let child = Command::new(env!("CARGO_BIN_EXE_holler"))
            .args([
                "--luanette",
                &luanette,
                "--hootenanny",
                &hootenanny,
                "--chaosgarden",
                &chaosgarden,
            ])
            .args(extra)
            .arg("up")
            .arg("--data-dir")
            .arg(data)
            .args([
                "--port",
                &port.to_string(),
                "--audio-device",
                "none",
                "--broadcasts",
                "none",
                "--no-health",
            ])
            .args(up_args)
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn holler up");
        let up = Up {
            child,
            port,
            luanette,
            hootenanny,
            chaosgarden,
        };
        // Generous: CI starts several stacks at once on 2 cores.
        let mut up = up;
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = up.child.try_wait() {
                panic!("holler up exited before it came up ({status}); a port taken meanwhile?");
            }
            // Any HTTP answer (401 with a token) means it is listening.
            if reqwest::blocking::get(format!("http://127.0.0.1:{port}/health")).is_ok() {
                return up;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("holler up did not come up");
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/mcp", self.port)
    }

    /// SIGTERM and wait; true when it exited cleanly.
    pub fn stop(mut self) -> bool {
        testkit::signal(self.child.id(), testkit::SIGTERM).expect("SIGTERM");
        self.child.wait().expect("wait").success()
    }
}

/// A test that fails before `stop` must not leave its stack running (one outlived a failed CI
/// run once, holding its ports and sandboxes).
impl Drop for Up {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs the CLI against `up` with `--json`, checks it succeeded, and returns what it printed.
pub fn holler(up: &Up, data: &Path, args: &[&str]) -> serde_json::Value {
    serde_json::from_slice(&holler_bytes_with(up, data, &["--json"], args)).expect("JSON")
}

/// Runs the CLI against `up`, checks it succeeded, and returns its raw standard output.
pub fn holler_bytes(up: &Up, data: &Path, args: &[&str]) -> Vec<u8> {
    holler_bytes_with(up, data, &[], args)
}

fn holler_bytes_with(up: &Up, data: &Path, global: &[&str], args: &[&str]) -> Vec<u8> {
    let output = Command::new(env!("CARGO_BIN_EXE_holler"))
        .args(["--luanette", &up.luanette, "--hootenanny", &up.hootenanny])
        .args(["--chaosgarden", &up.chaosgarden, "--timeout", "30"])
        .args(global)
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run holler");
    assert!(
        output.status.success(),
        "holler {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

#[allow(unused_imports, reason = "each test binary uses part of common")]
pub use testkit::mcp::Session as Mcp;
