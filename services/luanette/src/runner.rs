//! A pool of OS threads that run Lua. Scripts spin the CPU until a limit stops them, so
//! they never run on the async runtime that answers pings; a full queue is refused.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hooteproto::Status;

use crate::sandbox::{self, EvalError, EvalOutput, Limits};

struct Job {
    code: String,
    params: Option<prost_types::Struct>,
    limits: Limits,
    cancel: Arc<AtomicBool>,
    reply: tokio::sync::oneshot::Sender<(Result<EvalOutput, EvalError>, Duration)>,
}

/// The pool. Dropping it lets the threads finish their current script and exit.
pub struct Runner {
    queue: mpsc::SyncSender<Job>,
}

/// Sets the cancel flag when the waiting request goes away (deadline, shutdown, disconnect).
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

impl Runner {
    /// `threads` scripts run at once; up to `queue` more wait.
    pub fn new(threads: usize, queue: usize) -> std::io::Result<Self> {
        let (sender, receiver) = mpsc::sync_channel::<Job>(queue);
        let receiver = Arc::new(Mutex::new(receiver));
        for i in 0..threads.max(1) {
            let receiver = receiver.clone();
            std::thread::Builder::new().name(format!("lua-{i}")).spawn(move || {
                loop {
                    let job = match receiver.lock() {
                        Ok(receiver) => receiver.recv(),
                        Err(_) => return,
                    };
                    let Ok(job) = job else { return };
                    if job.cancel.load(Ordering::Relaxed) {
                        let _ = job.reply.send((Err(EvalError::Cancelled), Duration::ZERO));
                        continue;
                    }
                    let started = Instant::now();
                    let result = sandbox::eval(&job.code, job.params.as_ref(), job.limits, job.cancel);
                    let _ = job.reply.send((result, started.elapsed()));
                }
            })?;
        }
        Ok(Self { queue: sender })
    }

    /// Runs a script and waits for it. If this future is dropped, the script is cancelled.
    pub async fn eval(
        &self,
        code: String,
        params: Option<prost_types::Struct>,
        limits: Limits,
    ) -> Result<(Result<EvalOutput, EvalError>, Duration), Status> {
        let cancel = Arc::new(AtomicBool::new(false));
        let _guard = CancelOnDrop(cancel.clone());
        let (reply, done) = tokio::sync::oneshot::channel();
        match self.queue.try_send(Job {
            code,
            params,
            limits,
            cancel,
            reply,
        }) {
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
}
