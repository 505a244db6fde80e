//! The sandbox process itself: reads runs from stdin, runs each in a Lua VM, writes events
//! and the outcome to stdout. It holds nothing of the service (no sockets, no database),
//! limits its own address space, and dies with its parent.

use std::io::{self, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prost::Message as _;

use super::protocol::{self, Done, Event, Hello, OtelEvent, Progress, Run, RunError, RunKind, event};
use crate::sandbox::{EvalError, RunContext, Vm};
use crate::stdlib::Services;

/// The largest run accepted from the parent (code and params are bounded far below this
/// by the service; this only bounds the pipe).
const MAX_RUN: usize = 128 << 20;
/// Memory the process may hold above its size after start-up before it is replaced
/// rather than reused.
const REUSE_SLACK: u64 = 64 << 20;
/// Progress reports closer together than this are folded into the next one.
const PROGRESS_EVERY: Duration = Duration::from_millis(20);

/// Runs the sandbox process until its parent closes stdin. Returns the exit code.
pub fn main() -> i32 {
    close_inherited_descriptors();
    die_with_parent();
    let mut stdin = io::stdin().lock();
    let hello: Hello = match protocol::read_frame(&mut stdin, 1 << 20) {
        Ok(Some(hello)) => hello,
        _ => return 2,
    };
    limit_resources(hello.address_space);
    // I/O and timers for model calls; no signal or process driver (nothing to reap here).
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .max_blocking_threads(2)
        .build()
    else {
        return 3;
    };
    let blobs: ::cas::BlobConfig = serde_json::from_str(&hello.blobs).unwrap_or_default();
    let cas = match hello.cas_root.as_str() {
        "" => None,
        root => ::cas::Cas::open_with(std::path::Path::new(root), &blobs).ok(),
    };
    let services = Services {
        cas,
        models: Arc::new(hello.models()),
        peers: Arc::new(hello.peers()),
        ..Services::default()
    }
    .for_this_thread();
    let baseline = resident_bytes();
    let mut reused: Option<Vm> = None;
    let mut runs = 0u64;
    loop {
        let run: Run = match protocol::read_frame(&mut stdin, MAX_RUN) {
            Ok(Some(run)) => run,
            Ok(None) => return 0,
            Err(_) => return 4,
        };
        let (done, clean) = perform(&runtime, &services, &mut reused, run);
        // Reading /proc costs more than a small run: look after every run that moved a lot
        // of data, and every 16th run otherwise.
        runs += 1;
        let heavy = done.encoded_len() > 1 << 20 || runs.is_multiple_of(16);
        let reusable = clean && (!heavy || resident_bytes() <= baseline + REUSE_SLACK);
        let done = Done { reusable, ..done };
        if send(&Event {
            kind: Some(event::Kind::Done(done)),
        })
        .is_err()
            || !reusable
        {
            return 0;
        }
    }
}

/// Writes one event to the parent in a single `write(2)`: straight to descriptor 1, not
/// through std's line-buffered stdout (which splits a frame at every newline byte in it).
fn send(event: &Event) -> io::Result<()> {
    use std::os::fd::FromRawFd as _;
    // SAFETY: descriptor 1 is this process's stdout, open for its whole life; ManuallyDrop
    // keeps the File from closing it.
    let mut out = std::mem::ManuallyDrop::new(unsafe { std::fs::File::from_raw_fd(1) });
    out.write_all(&protocol::frame(event))
}

/// One run. Returns its outcome and whether nothing tripped (so the process stays clean).
fn perform(runtime: &tokio::runtime::Runtime, services: &Services, reused: &mut Option<Vm>, run: Run) -> (Done, bool) {
    let kind = RunKind::try_from(run.kind).unwrap_or(RunKind::Unspecified);
    let vm = match (reused.take(), kind) {
        (Some(vm), RunKind::Eval) => Ok(vm),
        _ => Vm::with_services(services),
    };
    let vm = match vm {
        Ok(vm) => vm,
        Err(error) => return (failed(&error, Vec::new()), false),
    };
    let limits = run.limits();
    let progress = Arc::new(Mutex::new(Throttle::default()));
    let context = RunContext {
        traceparent: run.traceparent.clone(),
        progress: run.progress.then(|| {
            let progress = progress.clone();
            Arc::new(move |fraction: f64, message: &str| {
                if let Ok(mut throttle) = progress.lock() {
                    throttle.report(fraction, message);
                }
            }) as crate::sandbox::ProgressFn
        }),
        events: Some(Arc::new(|name: &str, attributes: &str| {
            let _ = send(&Event {
                kind: Some(event::Kind::Otel(OtelEvent {
                    name: name.to_string(),
                    attributes: attributes.to_string(),
                })),
            });
        })),
        logs: run.logs.then(|| {
            Arc::new(|line: &hooteproto::v1::LogEntry| {
                let _ = send(&Event {
                    kind: Some(event::Kind::Line(crate::sandbox::preview(line))),
                });
            }) as crate::sandbox::LogFn
        }),
        identity: run.identity(),
    };
    let cancel = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let params = run.params.as_ref();
    let result = match kind {
        RunKind::Eval => runtime.block_on(vm.eval_async(&run.code, params, limits, cancel, context)),
        RunKind::Main => runtime.block_on(vm.run_main_async(&run.code, params, limits, cancel, context)),
        RunKind::Describe => vm
            .describe(&run.code, limits)
            .map(|described| crate::sandbox::EvalOutput {
                result: described.unwrap_or_default(),
                output: Vec::new(),
            }),
        RunKind::Unspecified => Err(EvalError::Setup("unknown run kind".into())),
    };
    if let Ok(mut throttle) = progress.lock() {
        throttle.flush();
    }
    let (done, tripped) = match result {
        Ok(output) => {
            let value = match kind {
                // `describe` absent: no value at all (an explicit nil would be a null value).
                RunKind::Describe if output.result.kind.is_none() => None,
                _ => Some(output.result),
            };
            (
                Done {
                    value,
                    error: None,
                    output: output.output,
                    reusable: false,
                },
                false,
            )
        }
        Err(error) => {
            let tripped = matches!(
                error,
                EvalError::TimeLimit(_) | EvalError::Cancelled | EvalError::MemoryLimit(_) | EvalError::Setup(_)
            );
            (failed(&error, vm.take_output().unwrap_or_default()), tripped)
        }
    };
    // An eval's VM is kept only if it resets cleanly; a fresh VM is dropped either way.
    let clean = !tripped && (kind != RunKind::Eval || vm.reset());
    if clean && kind == RunKind::Eval {
        *reused = Some(vm);
    }
    (done, clean)
}

fn failed(error: &EvalError, output: Vec<hooteproto::v1::LogEntry>) -> Done {
    Done {
        value: None,
        error: Some(RunError::from(error)),
        output,
        reusable: false,
    }
}

/// Sends progress at most every [`PROGRESS_EVERY`], keeping the latest for the end.
#[derive(Default)]
struct Throttle {
    last_sent: Option<Instant>,
    pending: Option<Progress>,
}

impl Throttle {
    fn report(&mut self, fraction: f64, message: &str) {
        let progress = Progress {
            fraction,
            message: message.chars().take(1024).collect(),
        };
        let due = self.last_sent.is_none_or(|last| last.elapsed() >= PROGRESS_EVERY) || fraction >= 1.0;
        if due {
            self.last_sent = Some(Instant::now());
            self.pending = None;
            let _ = send(&Event {
                kind: Some(event::Kind::Progress(progress)),
            });
        } else {
            self.pending = Some(progress);
        }
    }

    fn flush(&mut self) {
        if let Some(progress) = self.pending.take() {
            let _ = send(&Event {
                kind: Some(event::Kind::Progress(progress)),
            });
        }
    }
}

/// Closes every descriptor but stdin, stdout and stderr: whatever the parent had open
/// (its sockets, its database) is not the sandbox's business.
fn close_inherited_descriptors() {
    let Ok(entries) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    let descriptors: Vec<i32> = entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .filter(|fd| *fd > 2)
        .collect();
    for fd in descriptors {
        // SAFETY: closing a descriptor number; the read_dir handle above is already closed,
        // and nothing else in this process has started using descriptors yet.
        unsafe {
            libc::close(fd);
        }
    }
}

/// The kernel kills this process when the service that started it dies, even while a
/// script is inside a long C call and never reads stdin.
fn die_with_parent() {
    // SAFETY: plain prctl/getppid calls with constant arguments.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        if libc::getppid() == 1 {
            libc::_exit(0);
        }
    }
}

/// Caps the address space (so no allocation anywhere in the process, Lua's or Rust's, can
/// grow past it: Lua gets a memory error, Rust aborts the process) and forbids core dumps.
fn limit_resources(address_space: u64) {
    let set = |resource, value: u64| {
        let limit = libc::rlimit {
            rlim_cur: value as libc::rlim_t,
            rlim_max: value as libc::rlim_t,
        };
        // SAFETY: setrlimit with a valid, initialised struct.
        unsafe { libc::setrlimit(resource, &limit) }
    };
    set(libc::RLIMIT_CORE, 0);
    super::make_background(0);
    if address_space > 0 {
        set(libc::RLIMIT_AS, address_space);
    }
    let _ = io::stderr().flush();
}

/// This process's resident set, in bytes (0 if unknown).
pub fn resident_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|statm| statm.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map(|pages| pages * 4096)
        .unwrap_or(0)
}
