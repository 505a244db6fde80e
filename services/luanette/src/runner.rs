//! A pool of OS threads that run Lua. Scripts spin the CPU until a limit stops them, so
//! they never run on the async runtime that answers pings; a full queue is refused.
//!
//! Each thread keeps one sandboxed VM for quick evaluations and resets it between runs
//! ([`crate::sandbox::Vm::reset`]); a VM that tripped a limit is dropped and rebuilt.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hooteproto::Status;

use hooteproto::v1::LogEntry;

use crate::sandbox::{EvalError, Limits, RunContext, Vm};

/// How a run ended: its value or error, what it printed (also when it failed), and how long it took.
pub struct Outcome {
    pub result: Result<prost_types::Value, EvalError>,
    pub output: Vec<LogEntry>,
    pub took: Duration,
}

/// What a worker thread owns: its runtime (for scripts that wait on HTTP), its services and its VM.
struct Worker {
    runtime: tokio::runtime::Runtime,
    services: crate::stdlib::Services,
    slot: Option<Vm>,
}

type Work = Box<dyn FnOnce(&mut Worker) + Send>;

/// What to run.
pub enum Task {
    /// `lua_eval`: code with params, on the thread's reused VM.
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
}

/// The pool. Dropping it lets the threads finish their current script and exit.
pub struct Runner {
    queue: mpsc::SyncSender<Work>,
}

/// Sets the cancel flag when the waiting request goes away (deadline, shutdown, disconnect).
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

fn run_task(
    runtime: &tokio::runtime::Runtime,
    services: &crate::stdlib::Services,
    slot: &mut Option<Vm>,
    task: Task,
    limits: Limits,
    cancel: Arc<AtomicBool>,
) -> (Result<prost_types::Value, EvalError>, Vec<LogEntry>) {
    let vm = match (slot.take(), &task) {
        (Some(vm), Task::Eval { .. }) => vm,
        _ => match Vm::with_services(services) {
            Ok(vm) => vm,
            Err(error) => return (Err(error), Vec::new()),
        },
    };
    let result = runtime.block_on(async {
        match task {
            Task::Eval { code, params, context } => {
                vm.eval_async(&code, params.as_ref(), limits, cancel, context).await
            }
            Task::Main { code, params, context } => {
                vm.run_main_async(&code, params.as_ref(), limits, cancel, context).await
            }
        }
    });
    let (result, output) = match result {
        Ok(output) => (Ok(output.result), output.output),
        Err(error) => (Err(error), vm.take_output().unwrap_or_default()),
    };
    if vm.reset() {
        *slot = Some(vm);
    }
    (result, output)
}

impl Runner {
    /// `threads` scripts run at once; up to `queue` more wait.
    pub fn new(name: &str, threads: usize, queue: usize, services: crate::stdlib::Services) -> std::io::Result<Self> {
        let (sender, receiver) = mpsc::sync_channel::<Work>(queue);
        let receiver = Arc::new(Mutex::new(receiver));
        for i in 0..threads.max(1) {
            let receiver = receiver.clone();
            let services = services.clone();
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            std::thread::Builder::new().name(format!("{name}-{i}")).spawn(move || {
                // Each thread has its own HTTP client: pooled connections are driven by the
                // runtime that opened them, and this thread's runtime only runs while it works.
                let mut worker = Worker {
                    services: services.for_this_thread(),
                    runtime,
                    slot: None,
                };
                loop {
                    let work = match receiver.lock() {
                        Ok(receiver) => receiver.recv(),
                        Err(_) => return,
                    };
                    let Ok(work) = work else { return };
                    work(&mut worker);
                }
            })?;
        }
        Ok(Self { queue: sender })
    }

    /// Runs a task and waits for it. If this future is dropped, `cancel` is set and the
    /// script stops within its hook interval.
    pub async fn run(&self, task: Task, limits: Limits, cancel: Arc<AtomicBool>) -> Result<Outcome, Status> {
        let _guard = CancelOnDrop(cancel.clone());
        let (reply, done) = tokio::sync::oneshot::channel();
        let work: Work = Box::new(move |worker| {
            if cancel.load(Ordering::Relaxed) {
                let _ = reply.send(Outcome {
                    result: Err(EvalError::Cancelled),
                    output: Vec::new(),
                    took: Duration::ZERO,
                });
                return;
            }
            let started = Instant::now();
            let (result, output) = run_task(
                &worker.runtime,
                &worker.services,
                &mut worker.slot,
                task,
                limits,
                cancel,
            );
            let _ = reply.send(Outcome {
                result,
                output,
                took: started.elapsed(),
            });
        });
        match self.queue.try_send(work) {
            Ok(()) => {}
            Err(mpsc::TrySendError::Full(_)) => {
                return Err(Status::resource_exhausted(
                    "too many scripts are waiting to run; try again shortly",
                ));
            }
            Err(mpsc::TrySendError::Disconnected(_)) => return Err(Status::unavailable("the Lua runner has stopped")),
        }
        done.await.map_err(|_| Status::internal("a Lua worker thread died"))
    }

    /// Runs any blocking closure on the pool (for `describe()` at store time).
    pub async fn call<R: Send + 'static>(&self, f: impl FnOnce() -> R + Send + 'static) -> Result<R, Status> {
        let (reply, done) = tokio::sync::oneshot::channel();
        let work: Work = Box::new(move |_| {
            let _ = reply.send(f());
        });
        self.queue.try_send(work).map_err(|e| match e {
            mpsc::TrySendError::Full(_) => Status::resource_exhausted("too many scripts are waiting to run"),
            mpsc::TrySendError::Disconnected(_) => Status::unavailable("the Lua runner has stopped"),
        })?;
        done.await.map_err(|_| Status::internal("a Lua worker thread died"))
    }
}
