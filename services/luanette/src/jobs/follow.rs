//! Lines a running job writes, passed on while it runs (broadcast `job_log`): batched, one
//! batch at most every [`LOG_EVERY`], so a chatty script costs followers a bounded rate. Both
//! queues use it; each says how large a batch may be and where it goes.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hooteproto::v1::{JobLog, LogEntry};
use prost::Message as _;
use tokio::sync::Notify;

use crate::sandbox::{LogFn, preview};

/// The shortest time between two batches of one job's lines.
pub(crate) const LOG_EVERY: Duration = Duration::from_millis(100);

/// Lines written and not yet passed on. Bounded by the run's own output bounds (10,001
/// lines, 1 MiB), and each line is cut to [`crate::sandbox::LOG_LINE_PREVIEW`] bytes.
#[derive(Default)]
pub(crate) struct LogFollower {
    pending: Mutex<Pending>,
    wake: Notify,
}

#[derive(Default)]
struct Pending {
    lines: VecDeque<LogEntry>,
    /// Lines passed on so far.
    sent: u64,
}

impl LogFollower {
    /// What the run calls with each line it keeps.
    pub(crate) fn sink(self: &Arc<Self>) -> LogFn {
        let follower = self.clone();
        Arc::new(move |line: &LogEntry| {
            if let Ok(mut pending) = follower.pending.lock() {
                pending.lines.push_back(preview(line));
            }
            follower.wake.notify_one();
        })
    }

    /// The next batch: the oldest lines, as many as fit in `max_bytes` encoded (at least one).
    fn batch(&self, job_id: &str, max_bytes: usize) -> Option<JobLog> {
        let mut pending = self.pending.lock().ok()?;
        let mut batch = JobLog {
            job_id: job_id.to_string(),
            lines: Vec::new(),
            first_line: pending.sent,
        };
        let mut bytes = batch.encoded_len();
        while let Some(line) = pending.lines.front() {
            let size = line.encoded_len() + 4;
            if !batch.lines.is_empty() && bytes + size > max_bytes {
                break;
            }
            bytes += size;
            batch.lines.extend(pending.lines.pop_front());
        }
        pending.sent += batch.lines.len() as u64;
        (!batch.lines.is_empty()).then_some(batch)
    }

    /// Drives `run`, handing `emit` batches of at most `max_bytes` while it runs and the
    /// rest once it has ended (before its outcome is known to anyone), then returns its output.
    pub(crate) async fn follow<T, F: Future<Output = ()>>(
        &self,
        job_id: &str,
        max_bytes: usize,
        run: impl Future<Output = T>,
        mut emit: impl FnMut(JobLog) -> F,
    ) -> T {
        tokio::pin!(run);
        let output = loop {
            // A line comes (or the run ends), a batch goes, then a pause (or the run ends).
            tokio::select! {
                output = &mut run => break output,
                () = self.wake.notified() => {}
            }
            if let Some(batch) = self.batch(job_id, max_bytes) {
                emit(batch).await;
            }
            tokio::select! {
                output = &mut run => break output,
                () = tokio::time::sleep(LOG_EVERY) => {}
            }
        };
        while let Some(batch) = self.batch(job_id, max_bytes) {
            emit(batch).await;
        }
        output
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(text: &str) -> LogEntry {
        LogEntry {
            level: 2,
            message: text.to_string(),
            time: None,
        }
    }

    #[tokio::test]
    async fn lines_arrive_in_order_in_bounded_batches_and_none_is_lost() {
        let follower = Arc::new(LogFollower::default());
        let sink = follower.sink();
        let run = async {
            for n in 0..50 {
                sink(&line(&format!("{n} {}", "x".repeat(100))));
                tokio::task::yield_now().await;
            }
            "done"
        };
        let mut batches = Vec::new();
        let output = follower
            .follow("job", 1_000, run, |batch| {
                batches.push(batch);
                async {}
            })
            .await;
        assert_eq!(output, "done");
        assert!(
            batches.iter().all(|b| b.encoded_len() <= 1_000),
            "each batch within its bound"
        );
        let mut expected_first = 0;
        let mut seen = Vec::new();
        for batch in &batches {
            assert_eq!(batch.first_line, expected_first, "first_line counts what came before");
            expected_first += batch.lines.len() as u64;
            seen.extend(
                batch
                    .lines
                    .iter()
                    .map(|l| l.message.split(' ').next().unwrap_or("").to_string()),
            );
        }
        assert_eq!(seen, (0..50).map(|n| n.to_string()).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn a_long_line_is_passed_on_cut_to_the_preview() {
        let follower = Arc::new(LogFollower::default());
        let sink = follower.sink();
        let long = "é".repeat(10_000);
        let mut batches = Vec::new();
        follower
            .follow("job", 64 * 1024, async { sink(&line(&long)) }, |batch| {
                batches.push(batch);
                async {}
            })
            .await;
        let message = &batches[0].lines[0].message;
        assert!(message.len() <= crate::sandbox::LOG_LINE_PREVIEW && message.len() > 4000);
        assert!(long.starts_with(message.as_str()));
    }
}
