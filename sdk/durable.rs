//! Group commit for services that acknowledge a write only once it is on disk.
//!
//! sled 0.34's `flush_async` runs on sled's own small thread pool and waits there for log
//! buffers whose writes need a thread of that same pool: enough concurrent calls (a burst of
//! `job_execute`s) take every thread and wait for each other forever. Measured: the P9 bench's
//! embedded phase stopped one run in six with every `sled-io` thread in `make_stable`.
//!
//! [`GroupFlush`] runs one flush at a time, on tokio's blocking threads, and lets one flush
//! cover every caller that asked before it began; callers that ask meanwhile share the next.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Makes writes durable with one flush at a time (see the module docs).
pub struct GroupFlush<E> {
    flush: Arc<dyn Fn() -> Result<(), E> + Send + Sync>,
    /// Callers so far; a caller's number is taken after its write.
    asked: AtomicU64,
    /// Every caller up to this number is covered by a finished flush.
    covered: AtomicU64,
    running: tokio::sync::Mutex<()>,
}

impl<E: Send + 'static> GroupFlush<E> {
    /// `flush` is a blocking call that makes everything written before it durable (e.g.
    /// `sled::Db::flush`).
    pub fn new(flush: impl Fn() -> Result<(), E> + Send + Sync + 'static) -> Self {
        Self {
            flush: Arc::new(flush),
            asked: AtomicU64::new(0),
            covered: AtomicU64::new(0),
            running: tokio::sync::Mutex::new(()),
        }
    }

    /// Returns once everything this task wrote before calling is durable. A flush that
    /// fails is reported to every caller it would have covered.
    pub async fn flush(&self) -> Result<(), FlushError<E>> {
        let me = self.asked.fetch_add(1, Ordering::AcqRel) + 1;
        let _turn = self.running.lock().await;
        if self.covered.load(Ordering::Acquire) >= me {
            return Ok(());
        }
        // Everyone who has asked by now wrote before this flush starts.
        let covers = self.asked.load(Ordering::Acquire);
        let flush = self.flush.clone();
        match tokio::task::spawn_blocking(move || flush()).await {
            Ok(Ok(())) => {
                self.covered.fetch_max(covers, Ordering::AcqRel);
                Ok(())
            }
            Ok(Err(error)) => Err(FlushError::Store(error)),
            Err(_) => Err(FlushError::Panicked),
        }
    }
}

/// Why a [`GroupFlush::flush`] failed.
#[derive(Debug, thiserror::Error)]
pub enum FlushError<E> {
    /// The store's flush failed.
    #[error("flushing to disk failed: {0}")]
    Store(E),
    /// The flush panicked (a bug in the store).
    #[error("flushing to disk panicked")]
    Panicked,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// Many concurrent callers: each returns only after a flush that began after it asked,
    /// and flushes do not run at once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_caller_is_covered_by_a_flush_that_began_after_its_write() {
        let written = Arc::new(AtomicU64::new(0));
        let durable = Arc::new(AtomicU64::new(0));
        let at_once = Arc::new(AtomicUsize::new(0));
        let flushes = Arc::new(AtomicUsize::new(0));
        let group = {
            let (written, durable, at_once, flushes) =
                (written.clone(), durable.clone(), at_once.clone(), flushes.clone());
            Arc::new(GroupFlush::new(move || -> Result<(), std::io::Error> {
                assert_eq!(at_once.fetch_add(1, Ordering::SeqCst), 0, "two flushes at once");
                let upto = written.load(Ordering::SeqCst);
                std::thread::sleep(std::time::Duration::from_millis(2));
                durable.fetch_max(upto, Ordering::SeqCst);
                flushes.fetch_add(1, Ordering::SeqCst);
                at_once.fetch_sub(1, Ordering::SeqCst);
                Ok(())
            }))
        };
        let tasks: Vec<_> = (0..200)
            .map(|_| {
                let (group, written, durable) = (group.clone(), written.clone(), durable.clone());
                tokio::spawn(async move {
                    let mine = written.fetch_add(1, Ordering::SeqCst) + 1;
                    group.flush().await.expect("flush");
                    assert!(durable.load(Ordering::SeqCst) >= mine, "acknowledged before durable");
                })
            })
            .collect();
        for task in tasks {
            task.await.expect("caller");
        }
        let flushes = flushes.load(Ordering::SeqCst);
        assert!(flushes < 200, "callers shared flushes ({flushes} for 200)");
    }
}
