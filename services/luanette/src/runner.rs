//! Where scripts run: a pool of sandbox processes ([`crate::isolation`]), never this
//! process. A script can spin in a C call, exhaust its memory or crash its interpreter and
//! only its own process suffers: at its deadline (plus [`GRACE`]) or on cancel the process
//! is killed and replaced, so nothing a script does can stall the requests this service
//! answers meanwhile.
//!
//! Processes are started ahead of need (`warm` of them, never more than the pool can use at
//! once) and one is reused for the next run only when it says it is clean: no limit tripped,
//! its VM reset, its memory back near where it started. A full queue is refused.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hooteproto::Status;
use hooteproto::v1::LogEntry;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout};
use tokio_util::sync::CancellationToken;

use crate::isolation::protocol::{self, Done, Event, Hello, Run, RunKind, event};
use crate::isolation::{Program, record_event};
use crate::sandbox::{EvalError, Limits, RunContext};

/// How long past its wall limit a run may take before its process is killed: the child's
/// own hook stops ordinary Lua at the limit; this catches C calls that never return.
pub const GRACE: Duration = Duration::from_millis(150);
/// Address space a sandbox process needs beyond its Lua memory limit: the binary's
/// mappings, its runtime and stacks. Everything else it does (the Lua heap, conversions,
/// encoding, the stdlib) comes out of the run's own memory limit.
const ADDRESS_SPACE_OVERHEAD: usize = 64 << 20;
/// Events (progress, otel) a run may send; past this the process is treated as runaway.
const MAX_EVENTS: usize = 100_000;

/// How a run ended: its value or error, what it printed (also when it failed), and how long it took.
pub struct Outcome {
    pub result: Result<prost_types::Value, EvalError>,
    pub output: Vec<LogEntry>,
    pub took: Duration,
}

/// What to run.
pub enum Task {
    /// `lua_eval`: code with params, on a process's reused VM.
    Eval {
        code: String,
        params: Option<prost_types::Struct>,
        context: RunContext,
    },
    /// A job: a stored script's `main(params)`, on a VM of its own.
    Main {
        code: String,
        params: Option<prost_types::Struct>,
        context: RunContext,
    },
    /// `script_store`: the top level, then `describe()`; the value is absent (null kind)
    /// when the script defines no `describe`.
    Describe { code: String },
}

/// How a pool is sized and what its processes may use.
#[derive(Clone)]
pub struct PoolConfig {
    /// A name for logs ("lua", "job").
    pub name: &'static str,
    /// Runs at once.
    pub concurrency: usize,
    /// Runs that may wait for a free slot.
    pub queue: usize,
    /// Processes kept started while idle.
    pub warm: usize,
    /// The largest memory limit a run in this pool may ask for.
    pub memory: usize,
    /// The largest answer (result and output) read back from a run.
    pub max_reply: usize,
}

/// One sandbox process and its pipes.
struct Process {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    _live: Live,
}

/// Counts a sandbox process from the moment its start is decided until it is dropped
/// (killed, or exited with its pipes closed).
struct Live(Arc<AtomicUsize>);

impl Live {
    fn new(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::AcqRel);
        Self(count.clone())
    }

    /// A place for one more process, if fewer than `cap` exist.
    fn reserve(count: &Arc<AtomicUsize>, cap: usize) -> Option<Self> {
        count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < cap).then_some(n + 1))
            .ok()
            .map(|_| Self(count.clone()))
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

struct Inner {
    config: PoolConfig,
    program: Program,
    hello: Vec<u8>,
    idle: Mutex<Vec<Process>>,
    /// Processes in existence: idle, running a task, or starting.
    live: Arc<AtomicUsize>,
    slots: Arc<tokio::sync::Semaphore>,
    waiting: AtomicUsize,
}

/// The pool. Dropping it kills its idle processes; running ones end with their run.
pub struct Runner {
    inner: Arc<Inner>,
}

/// Counts a run waiting for a slot while it exists.
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Runner {
    /// A pool whose processes run `program` and reach `services` as the stdlib's CAS and
    /// models. Starts `config.warm` processes in the background.
    pub fn new(config: PoolConfig, program: Program, services: &crate::stdlib::Services) -> Self {
        let address_space = (config.memory.saturating_add(ADDRESS_SPACE_OVERHEAD)) as u64;
        let hello = Hello::new(services.cas.as_ref(), &services.models, &services.peers, address_space);
        let inner = Arc::new(Inner {
            slots: Arc::new(tokio::sync::Semaphore::new(config.concurrency.max(1))),
            config,
            program,
            hello: protocol::frame(&hello),
            idle: Mutex::new(Vec::new()),
            live: Arc::default(),
            waiting: AtomicUsize::new(0),
        });
        inner.clone().top_up();
        Self { inner }
    }

    /// Runs a task and waits for it. Cancelling `cancel` kills the process running it at
    /// once; so does dropping this future.
    pub async fn run(&self, task: Task, limits: Limits, cancel: CancellationToken) -> Result<Outcome, Status> {
        let inner = &self.inner;
        if inner.waiting.fetch_add(1, Ordering::Relaxed) >= inner.config.queue {
            inner.waiting.fetch_sub(1, Ordering::Relaxed);
            return Err(Status::resource_exhausted(format!(
                "too many scripts are waiting to run (at most {} queued); try again shortly",
                inner.config.queue
            )));
        }
        let waiting = Waiting(&inner.waiting);
        let permit = inner
            .slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| Status::unavailable("the Lua runner has stopped"))?;
        drop(waiting);
        if cancel.is_cancelled() {
            return Ok(Outcome {
                result: Err(EvalError::Cancelled),
                output: Vec::new(),
                took: Duration::ZERO,
            });
        }
        let started = Instant::now();
        let outcome = inner.drive(task, limits, &cancel).await;
        drop(permit);
        inner.clone().top_up();
        let (result, output) = outcome?;
        Ok(Outcome {
            result,
            output,
            took: started.elapsed(),
        })
    }
}

impl Inner {
    fn take_idle(&self) -> Option<Process> {
        let mut idle = self.idle.lock().ok()?;
        // A process that died while idle (killed from outside) is dropped here.
        while let Some(mut process) = idle.pop() {
            if matches!(process.child.try_wait(), Ok(None)) {
                return Some(process);
            }
        }
        None
    }

    /// Starts processes in the background until `warm` are idle, but never more than can
    /// be used at once: a spare started while every slot is busy would only be thrown away
    /// (with the start-up it cost) when the runs hand their processes back.
    fn top_up(self: Arc<Self>) {
        let idle = self.idle.lock().map(|idle| idle.len()).unwrap_or(usize::MAX);
        let cap = self.capacity();
        let places: Vec<Live> = (idle..self.config.warm)
            .map_while(|_| Live::reserve(&self.live, cap))
            .collect();
        if places.is_empty() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        runtime.spawn(async move {
            for live in places {
                match self.start(live).await {
                    Ok(process) => self.put_idle(process),
                    Err(error) => {
                        tracing::warn!(pool = self.config.name, error = %error.message, "could not start a sandbox process");
                        return;
                    }
                }
            }
        });
    }

    /// The most processes the pool keeps: one per slot, or `warm` if that is more.
    fn capacity(&self) -> usize {
        self.config.concurrency.max(self.config.warm).max(1)
    }

    fn put_idle(&self, process: Process) {
        if let Ok(mut idle) = self.idle.lock()
            && idle.len() < self.capacity()
        {
            idle.push(process);
        }
    }

    /// Starts one sandbox process and hands it its configuration.
    async fn start(&self, live: Live) -> Result<Process, Status> {
        let failed = |e: std::io::Error| Status::unavailable(format!("the Lua sandbox could not be started: {e}"));
        let mut child = spawn(self.program.command()).await.map_err(failed)?;
        if let Some(pid) = child.id() {
            // Its start-up (loading, building a VM) is background work too; the process
            // does the same to itself once it runs, in case this came too late.
            crate::isolation::make_background(pid);
        }
        let (Some(mut stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(Status::internal("the Lua sandbox has no pipes"));
        };
        stdin.write_all(&self.hello).await.map_err(failed)?;
        Ok(Process {
            child,
            stdin,
            stdout: BufReader::new(stdout),
            _live: live,
        })
    }

    /// Sends the task to a process and follows it to its end, its deadline or its cancel.
    async fn drive(
        &self,
        task: Task,
        limits: Limits,
        cancel: &CancellationToken,
    ) -> Result<(Result<prost_types::Value, EvalError>, Vec<LogEntry>), Status> {
        let (kind, code, params, context) = match task {
            Task::Eval { code, params, context } => (RunKind::Eval, code, params, context),
            Task::Main { code, params, context } => (RunKind::Main, code, params, context),
            Task::Describe { code } => (RunKind::Describe, code, None, RunContext::default()),
        };
        let limits = Limits {
            wall: limits.wall,
            memory: limits.memory.min(self.config.memory),
        };
        let run = Run {
            kind: kind as i32,
            code,
            params,
            wall_us: u64::try_from(limits.wall.as_micros()).unwrap_or(u64::MAX),
            memory: limits.memory as u64,
            traceparent: context.traceparent.clone(),
            progress: context.progress.is_some(),
            logs: context.logs.is_some(),
            job_id: context.identity.job_id.clone(),
            script_hash: context.identity.script_hash.clone(),
            script_name: context.identity.script_name.clone(),
        };
        let frame = protocol::frame(&run);
        // An idle process can have died since it was last used (killed from outside); then
        // the run goes to a fresh one rather than failing.
        let mut idle = self.take_idle();
        let sent = match idle.as_mut() {
            Some(process) => process.stdin.write_all(&frame).await.is_ok(),
            None => false,
        };
        let process = match idle {
            Some(process) if sent => process,
            _ => {
                let mut fresh = self.start(Live::new(&self.live)).await?;
                if let Err(error) = fresh.stdin.write_all(&frame).await {
                    return Err(Status::unavailable(format!("the Lua sandbox went away: {error}")));
                }
                fresh
            }
        };
        let deadline = tokio::time::Instant::now() + limits.wall + GRACE;
        let mut events = 0usize;
        let Process {
            mut child,
            stdin,
            stdout,
            _live: live,
        } = process;
        // Reading a frame is not cancel-safe, so the read in progress lives across the
        // loop's turns and hands the pipe back when it completes.
        let mut reading = Box::pin(read_event(stdout, self.config.max_reply));
        let ended = loop {
            tokio::select! {
                (stdout, event) = &mut reading => match event {
                    Ok(Some(Event { kind: Some(event::Kind::Done(done)) })) => break Ended::Done(done, stdout),
                    Ok(Some(Event { kind })) => {
                        events += 1;
                        if events > MAX_EVENTS {
                            break Ended::Runaway;
                        }
                        match kind {
                            Some(event::Kind::Progress(p)) => {
                                if let Some(report) = &context.progress && (0.0..=1.0).contains(&p.fraction) {
                                    report(p.fraction, &p.message);
                                }
                            }
                            Some(event::Kind::Otel(e)) => record_event(&context.traceparent, &e.name, &e.attributes),
                            Some(event::Kind::Line(line)) => {
                                if let Some(follow) = &context.logs {
                                    follow(&line);
                                }
                            }
                            Some(event::Kind::Done(_)) | None => {}
                        }
                        reading = Box::pin(read_event(stdout, self.config.max_reply));
                    }
                    Err(error) if error.kind() == std::io::ErrorKind::InvalidData => break Ended::TooLarge,
                    Ok(None) | Err(_) => break Ended::Died,
                },
                _ = tokio::time::sleep_until(deadline) => break Ended::Deadline,
                _ = cancel.cancelled() => break Ended::Cancelled,
            }
        };
        drop(reading);
        match ended {
            Ended::Done(done, stdout) => {
                let reusable = done.reusable;
                let result = outcome_of(kind, done);
                if reusable {
                    self.put_idle(Process {
                        child,
                        stdin,
                        stdout,
                        _live: live,
                    });
                }
                Ok(result)
            }
            Ended::Deadline => {
                kill(&mut child).await;
                Ok((Err(EvalError::TimeLimit(limits.wall)), Vec::new()))
            }
            Ended::Cancelled => {
                kill(&mut child).await;
                Ok((Err(EvalError::Cancelled), Vec::new()))
            }
            Ended::Runaway => {
                kill(&mut child).await;
                Err(Status::resource_exhausted(format!(
                    "the script sent more than {MAX_EVENTS} progress reports and events"
                )))
            }
            Ended::TooLarge => {
                kill(&mut child).await;
                Err(Status::resource_exhausted(format!(
                    "the script's result and output are larger than {} bytes; store large data with cas.store and return its hash",
                    self.config.max_reply
                )))
            }
            Ended::Died => {
                let status = match tokio::time::timeout(GRACE, child.wait()).await {
                    Ok(Ok(status)) => Some(status),
                    _ => {
                        kill(&mut child).await;
                        None
                    }
                };
                Ok((Err(died(status, limits.memory)), Vec::new()))
            }
        }
    }
}

/// How a sandbox's run ended, as the parent saw it.
#[allow(
    clippy::large_enum_variant,
    reason = "one value per run, moved once; boxing the common `Done` would buy nothing"
)]
enum Ended {
    Done(Done, BufReader<ChildStdout>),
    Deadline,
    Cancelled,
    Runaway,
    TooLarge,
    Died,
}

type SpawnRequest = (
    tokio::process::Command,
    tokio::runtime::Handle,
    tokio::sync::oneshot::Sender<std::io::Result<Child>>,
);

/// Starts a process from one long-lived thread. Starting blocks the calling thread until
/// the child has exec'd, so it stays off the threads that answer requests; and the thread
/// must outlive its children, because their parent-death signal (see `isolation::child`)
/// fires when the thread that started them exits, as the blocking pool's idle threads do.
async fn spawn(command: tokio::process::Command) -> std::io::Result<Child> {
    static SPAWNER: std::sync::OnceLock<Option<Mutex<std::sync::mpsc::Sender<SpawnRequest>>>> =
        std::sync::OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (sender, receiver) = std::sync::mpsc::channel::<SpawnRequest>();
        std::thread::Builder::new()
            .name("lua-sandbox-spawner".into())
            .spawn(move || {
                for (mut command, runtime, reply) in receiver {
                    let _entered = runtime.enter();
                    let _ = reply.send(command.spawn());
                }
            })
            .ok()
            .map(|_| Mutex::new(sender))
    });
    let (reply, spawned) = tokio::sync::oneshot::channel();
    let sent = spawner
        .as_ref()
        .and_then(|sender| sender.lock().ok())
        .map(|sender| sender.send((command, tokio::runtime::Handle::current(), reply)).is_ok());
    if sent != Some(true) {
        return Err(std::io::Error::other("the sandbox spawner thread is not running"));
    }
    spawned
        .await
        .unwrap_or_else(|_| Err(std::io::Error::other("the sandbox spawner thread stopped")))
}

/// Reads one event (at most `max` bytes) and hands the pipe back; `Ok(None)` at its end.
async fn read_event(
    mut stdout: BufReader<ChildStdout>,
    max: usize,
) -> (BufReader<ChildStdout>, std::io::Result<Option<Event>>) {
    let result = async {
        let mut length = [0u8; 4];
        match stdout.read_exact(&mut length).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e),
        }
        let length = u32::from_le_bytes(length) as usize;
        if length > max {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("an answer of {length} bytes (at most {max})"),
            ));
        }
        let mut body = vec![0u8; length];
        stdout.read_exact(&mut body).await?;
        <Event as prost::Message>::decode(body.as_slice())
            .map(Some)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
    }
    .await;
    (stdout, result)
}

async fn kill(child: &mut Child) {
    let _ = child.start_kill();
    let _ = child.wait().await;
}

/// Why a sandbox process ended without an answer. Its address space is capped, and an
/// allocation past the cap aborts it (SIGABRT), so an abort is the script's memory use.
fn died(status: Option<std::process::ExitStatus>, memory: usize) -> EvalError {
    use std::os::unix::process::ExitStatusExt as _;
    match status.and_then(|s| s.signal()) {
        Some(libc::SIGABRT) | Some(libc::SIGSEGV) | Some(libc::SIGBUS) => EvalError::MemoryLimit(memory),
        Some(signal) => EvalError::Setup(format!("the sandbox process was killed by signal {signal}")),
        None => match status.and_then(|s| s.code()) {
            Some(code) => EvalError::Setup(format!("the sandbox process exited with code {code} mid-run")),
            None => EvalError::Setup("the sandbox process stopped answering".into()),
        },
    }
}

fn outcome_of(kind: RunKind, done: Done) -> (Result<prost_types::Value, EvalError>, Vec<LogEntry>) {
    let result = match (done.error, done.value) {
        (Some(error), _) => Err(EvalError::from(error)),
        (None, Some(value)) => Ok(value),
        (None, None) if kind == RunKind::Describe => Ok(prost_types::Value::default()),
        (None, None) => Ok(prost_types::Value {
            kind: Some(prost_types::value::Kind::NullValue(0)),
        }),
    };
    (result, done.output)
}
