//! Process isolation: every script runs in a sandbox process of its own, a second copy of
//! the binary started with [`WORKER_ARG`], so that nothing it does (a C call that never
//! returns, an allocation the Lua limit does not see, a crash) reaches the service.
//!
//! - [`run_if_requested`]: the first call in `main` of any binary that embeds Luanette; it
//!   turns the process into a sandbox process when started as one.
//! - [`Program`]: which executable to start.
//! - `protocol`: the pipe between the two. - `child`: the sandbox process's loop.
//! - The parent side is [`crate::runner`].

pub(crate) mod child;
pub(crate) mod protocol;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};

/// Makes process `pid` (0: this one) background work: `SCHED_IDLE`, and the lowest niceness
/// should that policy be refused. Scripts run next to the service's request loop; under
/// `SCHED_IDLE` any ordinary thread that wakes (a ping arriving) preempts a script at once,
/// where a merely niced one could keep the core for the rest of its slice (measured here:
/// pings waited up to 20 ms behind eight niced spinning scripts, in steps of the 4 ms tick).
/// A busy host starves scripts rather than the service; their wall limit still applies.
pub(crate) fn make_background(pid: u32) {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: plain syscalls on a process id we own, with an initialised parameter.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, pid, 19);
        libc::sched_setscheduler(pid as libc::pid_t, libc::SCHED_IDLE, &param);
    }
}

/// The first argument that makes a binary a sandbox process.
pub const WORKER_ARG: &str = "__luanette-sandbox";

/// Set by [`run_if_requested`]: this executable can be a sandbox process.
static HOSTS_SANDBOX: AtomicBool = AtomicBool::new(false);

/// Call first thing in `main` of a binary that runs Luanette (`luanette`, `holler`): when
/// the process was started as a sandbox process it serves as one and exits here;
/// otherwise it returns, and Luanette will start its sandbox processes from this binary.
pub fn run_if_requested() {
    HOSTS_SANDBOX.store(true, Ordering::Relaxed);
    if std::env::args_os().nth(1).is_some_and(|arg| arg == WORKER_ARG) {
        std::process::exit(child::main());
    }
}

/// The executable sandbox processes run.
#[derive(Debug, Clone)]
pub struct Program {
    path: PathBuf,
}

impl Program {
    /// `path`, which must call [`run_if_requested`] first in its `main`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// `explicit` if given; else this executable if it hosts sandboxes (it called
    /// [`run_if_requested`]); else a `luanette` (or `holler`, which hosts them too) binary
    /// beside this executable or one directory up (where Cargo puts binaries relative to
    /// test and bench executables).
    pub fn locate(explicit: Option<PathBuf>) -> Result<Self, String> {
        if let Some(path) = explicit {
            return Ok(Self::new(path));
        }
        if HOSTS_SANDBOX.load(Ordering::Relaxed) {
            // The running image itself, even if its file has since been replaced (an upgrade,
            // a rebuild): a sandbox must speak the same pipe protocol as its service.
            return Ok(Self::new("/proc/self/exe"));
        }
        let this = std::env::current_exe().map_err(|e| format!("cannot find this executable: {e}"))?;
        let dir = this.parent().unwrap_or(Path::new("."));
        ["luanette", "holler", "../luanette", "../holler"]
            .into_iter()
            .map(|name| dir.join(name))
            .find(|candidate| candidate.is_file())
            .map(Self::new)
            .ok_or_else(|| {
                format!(
                    "no executable to run Lua sandboxes: this program ({}) does not host them and no `luanette` or \
                     `holler` binary is beside it; build luanette or set --sandbox-program (LUANETTE_SANDBOX_PROGRAM)",
                    this.display()
                )
            })
    }

    /// The executable's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The command that starts one sandbox process: pipes for stdin and stdout, stderr
    /// shared with the service (where a crash message belongs), no secrets in its
    /// environment, killed when its handle is dropped.
    pub(crate) fn command(&self) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(&self.path);
        command
            .arg(WORKER_ARG)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .current_dir("/")
            .kill_on_drop(true)
            // Fewer malloc arenas keep the process's address space near what it uses.
            .env("MALLOC_ARENA_MAX", "2");
        for secret in ["DEEPSEEK_API_KEY", "HOOT_KEY", "HOOT_KEY_FILE", "AWS_SECRET_ACCESS_KEY"] {
            command.env_remove(secret);
        }
        command
    }
}

/// Whether `name` may name an `otel.event`: 1-128 of `[A-Za-z0-9._-]`, so it can never
/// break a log line or forge one.
pub fn valid_event_name(name: &str) -> bool {
    (1..=128).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Records a script's `otel.event` in the trace it runs under. Names that are not
/// [`valid_event_name`] are dropped (the sandbox refuses them first); the attributes are
/// logged escaped (Debug), never raw.
pub fn record_event(traceparent: &str, name: &str, attributes: &str) {
    if !valid_event_name(name) {
        return;
    }
    let attributes: String = attributes.chars().take(4096).collect();
    let span = tracing::info_span!("lua.event", otel.name = %name);
    hooteproto::trace::set_remote_parent(&span, traceparent);
    span.in_scope(|| tracing::info!(event = %name, attributes = ?attributes, "script event"));
}
