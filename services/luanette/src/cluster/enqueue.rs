//! Group commit for new jobs: `job_execute`s that arrive while an insert is in flight wait
//! for it and then go in together, as one statement with one commit (one WAL flush) and one
//! `hoot_job_queued` notification. A lone request goes in at once, as before; under load
//! the database does one round of work per batch instead of per job.

use super::*;

/// The most jobs one statement inserts.
const MAX_BATCH: usize = 64;
/// Requests that may wait for the next batch; beyond this `job_execute` waits to hand its
/// job over (the server's own request limits bound how many can be here at all).
const WAITING: usize = 1024;

/// A pending job's columns.
pub(super) struct Row {
    pub id: String,
    pub priority: i16,
    pub owner: Vec<u8>,
    pub code: String,
    pub traceparent: String,
    pub record: Vec<u8>,
    pub capabilities: Vec<String>,
}

struct Waiting {
    row: Row,
    inserted: tokio::sync::oneshot::Sender<Result<(), Status>>,
}

/// Hands jobs to the task that inserts them.
pub(super) struct Enqueuer {
    waiting: tokio::sync::mpsc::Sender<Waiting>,
}

impl Enqueuer {
    /// Starts the inserting task on this runtime; it ends when the enqueuer is dropped.
    pub fn start(pool: PgPool) -> Self {
        let (waiting, arrivals) = tokio::sync::mpsc::channel(WAITING);
        tokio::spawn(insert_batches(pool, arrivals));
        Self { waiting }
    }

    /// Inserts the job and wakes a worker; returns once it is committed.
    pub async fn insert(&self, row: Row) -> Result<(), Status> {
        let stopped = || Status::unavailable("luanette is shutting down");
        let (inserted, committed) = tokio::sync::oneshot::channel();
        self.waiting
            .send(Waiting { row, inserted })
            .await
            .map_err(|_| stopped())?;
        committed.await.map_err(|_| stopped())?
    }
}

async fn insert_batches(pool: PgPool, mut arrivals: tokio::sync::mpsc::Receiver<Waiting>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while arrivals.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let mut rows = Vec::with_capacity(batch.len());
        let mut replies = Vec::with_capacity(batch.len());
        for waiting in batch.drain(..) {
            rows.push(waiting.row);
            replies.push(waiting.inserted);
        }
        let result = insert(&pool, &rows).await;
        match result {
            // One row the database refuses must not fail the others with it: each goes in
            // alone (the database being away is everyone's failure alike).
            Err(error) if rows.len() > 1 && error.code != pb::ErrorCode::Unavailable => {
                tracing::debug!(%error, jobs = rows.len(), "a batch of new jobs was refused; inserting them one by one");
                for (row, reply) in rows.into_iter().zip(replies) {
                    let _ = reply.send(insert(&pool, std::slice::from_ref(&row)).await);
                }
            }
            result => {
                for reply in replies {
                    // A caller that gave up no longer waits; its job is queued all the same.
                    let _ = reply.send(result.clone());
                }
            }
        }
    }
}

/// One statement: the rows and the notification that wakes a worker. Capabilities travel
/// joined by commas (names are `[A-Za-z0-9._-]`, see [`valid_capability`]), since a
/// two-dimensional array cannot hold lists of different lengths.
async fn insert(pool: &PgPool, rows: &[Row]) -> Result<(), Status> {
    let column = |field: fn(&Row) -> &[u8]| rows.iter().map(field).collect::<Vec<_>>();
    let text = |field: fn(&Row) -> &str| rows.iter().map(field).collect::<Vec<_>>();
    let (ids, owners, codes) = (text(|r| &r.id), column(|r| &r.owner), column(|r| r.code.as_bytes()));
    let (traceparents, records) = (text(|r| &r.traceparent), column(|r| &r.record));
    let priorities: Vec<i16> = rows.iter().map(|r| r.priority).collect();
    let capabilities: Vec<String> = rows.iter().map(|r| r.capabilities.join(",")).collect();
    sqlx::query(
        "WITH queued AS ( \
           INSERT INTO jobs (id, state, priority, owner, code, traceparent, record, capabilities) \
           SELECT id, 1, priority, owner, code, traceparent, record, string_to_array(capabilities, ',') \
           FROM UNNEST($1::text[], $2::int2[], $3::bytea[], $4::bytea[], $5::text[], $6::bytea[], $7::text[]) \
             AS new (id, priority, owner, code, traceparent, record, capabilities) \
           RETURNING 1) \
         SELECT pg_notify($8, '') FROM (SELECT 1 FROM queued LIMIT 1) AS any_queued",
    )
    .bind(ids)
    .bind(priorities)
    .bind(owners)
    .bind(codes)
    .bind(traceparents)
    .bind(records)
    .bind(capabilities)
    .bind(QUEUED)
    .execute(pool)
    .await
    .map_err(db_error)?;
    Ok(())
}
