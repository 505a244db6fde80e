//! The registry of workers (Chaosgarden and others) that announced themselves with
//! `register`. A worker counts as connected while it keeps sending requests (pings are
//! enough) at least every three heartbeat intervals.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use hooteproto::Status;
use hooteproto::v1::{RegisterReply, WorkerRegistration};

/// How often a registered worker should ping.
pub const HEARTBEAT: Duration = Duration::from_secs(5);
/// Most workers remembered; the longest-silent one is forgotten to make room.
const MAX_WORKERS: usize = 1024;
/// Longest id, type, name, endpoint or version; most capabilities.
const MAX_LABEL: usize = 256;
const MAX_CAPABILITIES: usize = 64;

struct Worker {
    registration: WorkerRegistration,
    peer: Vec<u8>,
    registered_at: SystemTime,
    last_seen: Instant,
}

/// Registered workers by id.
#[derive(Default)]
pub struct Workers {
    workers: Mutex<HashMap<String, Worker>>,
}

fn too_long(registration: &WorkerRegistration) -> bool {
    [
        &registration.worker_id,
        &registration.worker_type,
        &registration.name,
        &registration.endpoint,
        &registration.version,
    ]
    .iter()
    .any(|s| s.len() > MAX_LABEL)
        || registration.capabilities.len() > MAX_CAPABILITIES
        || registration.capabilities.iter().any(|c| c.len() > MAX_LABEL)
}

impl Workers {
    /// Registers (or re-registers) a worker connected as `peer`; an empty id gets one assigned.
    pub fn register(&self, registration: Option<WorkerRegistration>, peer: &[u8]) -> Result<RegisterReply, Status> {
        let mut registration = registration.ok_or_else(|| Status::invalid_argument("registration is required"))?;
        if registration.worker_type.is_empty() {
            return Err(Status::invalid_argument(
                "registration.worker_type is required (e.g. \"chaosgarden\")",
            ));
        }
        if too_long(&registration) {
            return Err(Status::invalid_argument(format!(
                "registration fields are at most {MAX_LABEL} bytes and {MAX_CAPABILITIES} capabilities"
            )));
        }
        let mut workers = self
            .workers
            .lock()
            .map_err(|_| Status::internal("worker registry lock poisoned"))?;
        if registration.worker_id.is_empty() {
            registration.worker_id = format!("{}-{}", registration.worker_type, hex(peer));
        }
        if !workers.contains_key(&registration.worker_id)
            && workers.len() >= MAX_WORKERS
            && let Some(stalest) = workers
                .iter()
                .min_by_key(|(_, w)| w.last_seen)
                .map(|(id, _)| id.clone())
        {
            workers.remove(&stalest);
        }
        let worker_id = registration.worker_id.clone();
        // Workers re-register at every heartbeat: only a new one is worth an info line.
        let registered_at = match workers.get(&worker_id) {
            Some(known) => {
                tracing::debug!(worker = %worker_id, "worker refreshed");
                known.registered_at
            }
            None => {
                tracing::info!(worker = %worker_id, kind = %registration.worker_type, "worker registered");
                SystemTime::now()
            }
        };
        workers.insert(
            worker_id.clone(),
            Worker {
                registration,
                peer: peer.to_vec(),
                registered_at,
                last_seen: Instant::now(),
            },
        );
        Ok(RegisterReply {
            worker_id,
            heartbeat_interval_ms: HEARTBEAT.as_millis() as u32,
        })
    }

    /// Notes that `peer` sent something.
    pub fn seen(&self, peer: &[u8]) {
        if let Ok(mut workers) = self.workers.lock() {
            for worker in workers.values_mut().filter(|w| w.peer == peer) {
                worker.last_seen = Instant::now();
            }
        }
    }

    /// The registry as JSON (for `lua://workers`), newest registration first.
    pub fn to_json(&self) -> serde_json::Value {
        let Ok(workers) = self.workers.lock() else {
            return serde_json::json!([]);
        };
        let mut list: Vec<_> = workers.values().collect();
        list.sort_by_key(|w| std::cmp::Reverse(w.registered_at));
        serde_json::Value::Array(
            list.into_iter()
                .map(|w| {
                    let silent = w.last_seen.elapsed();
                    let registered = prost_types::Timestamp::from(w.registered_at).to_string();
                    serde_json::json!({
                        "worker_id": w.registration.worker_id,
                        "worker_type": w.registration.worker_type,
                        "name": w.registration.name,
                        "capabilities": w.registration.capabilities,
                        "endpoint": w.registration.endpoint,
                        "version": w.registration.version,
                        "registered_at": registered,
                        "seconds_since_seen": silent.as_secs(),
                        "connected": silent < HEARTBEAT * 3,
                    })
                })
                .collect(),
        )
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
