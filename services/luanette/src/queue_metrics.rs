//! The job queue's depth and age as OpenTelemetry gauges (cluster mode), for autoscalers that
//! read metrics rather than SQL: `hoot.jobs.pending`, `hoot.jobs.running` and
//! `hoot.jobs.oldest_pending_seconds`, each per `priority` and `capabilities` (comma-separated,
//! empty for none).
//!
//! The values are the `job_queue_stats` view as of the previous collection: a collection
//! answers from the last snapshot and starts a refresh for the next one, so the exporter's
//! thread never waits on the database. Without an OTLP endpoint nothing collects, and the
//! database is never asked.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use hooteproto::v1::JobQueueStats;
use opentelemetry::KeyValue;
use opentelemetry::metrics::ObservableGauge;

/// The registered gauges; dropping them unregisters nothing (the SDK keeps callbacks until
/// the meter provider shuts down), so keep them as long as the queue.
pub struct QueueGauges {
    _pending: ObservableGauge<u64>,
    _running: ObservableGauge<u64>,
    _oldest: ObservableGauge<f64>,
}

/// The last snapshot, and whether a refresh is under way.
struct Snapshot {
    queues: Mutex<Vec<JobQueueStats>>,
    refreshing: AtomicBool,
}

fn attributes(queue: &JobQueueStats) -> [KeyValue; 2] {
    let priority = match queue.priority {
        1 => "low",
        3 => "high",
        _ => "normal",
    };
    [
        KeyValue::new("priority", priority),
        KeyValue::new("capabilities", queue.required_capabilities.join(",")),
    ]
}

/// Registers the gauges; `refresh` reads the view (it runs on `runtime`).
pub fn register<F, Fut>(runtime: tokio::runtime::Handle, refresh: F) -> QueueGauges
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Option<Vec<JobQueueStats>>> + Send + 'static,
{
    let snapshot = Arc::new(Snapshot {
        queues: Mutex::new(Vec::new()),
        refreshing: AtomicBool::new(false),
    });
    let refresh = Arc::new(refresh);
    // Each collection starts a refresh (one at a time) that the next collection reads.
    let start_refresh = {
        let snapshot = snapshot.clone();
        move || {
            if snapshot.refreshing.swap(true, Ordering::AcqRel) {
                return;
            }
            let (snapshot, refresh) = (snapshot.clone(), refresh.clone());
            runtime.spawn(async move {
                if let Some(queues) = refresh().await {
                    *snapshot.queues.lock().unwrap_or_else(|e| e.into_inner()) = queues;
                }
                snapshot.refreshing.store(false, Ordering::Release);
            });
        }
    };
    let read = move |snapshot: &Snapshot| snapshot.queues.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let meter = opentelemetry::global::meter("luanette");
    let pending = {
        let snapshot = snapshot.clone();
        meter
            .u64_observable_gauge("hoot.jobs.pending")
            .with_description("Jobs waiting for a worker, per priority and required capabilities")
            .with_callback(move |observer| {
                start_refresh();
                for queue in read(&snapshot) {
                    observer.observe(queue.pending, &attributes(&queue));
                }
            })
            .build()
    };
    let running = {
        let snapshot = snapshot.clone();
        meter
            .u64_observable_gauge("hoot.jobs.running")
            .with_description("Jobs running on a worker, per priority and required capabilities")
            .with_callback(move |observer| {
                for queue in read(&snapshot) {
                    observer.observe(queue.running, &attributes(&queue));
                }
            })
            .build()
    };
    let oldest = meter
        .f64_observable_gauge("hoot.jobs.oldest_pending_seconds")
        .with_unit("s")
        .with_description("How long the oldest waiting job has waited, per priority and required capabilities")
        .with_callback(move |observer| {
            for queue in read(&snapshot) {
                observer.observe(queue.oldest_pending_seconds, &attributes(&queue));
            }
        })
        .build();
    QueueGauges {
        _pending: pending,
        _running: running,
        _oldest: oldest,
    }
}
