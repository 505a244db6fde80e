-- Luanette's job queue in PostgreSQL (cluster mode). A front process inserts pending jobs;
-- workers on any host claim them (FOR UPDATE SKIP LOCKED), hold a lease they renew with
-- heartbeats, and commit the outcome in one transaction. Each record is kept as its wire
-- message (hooteproto.v1.JobInfo) beside the columns the queue works on.

CREATE TABLE jobs (
    id               TEXT COLLATE "C" PRIMARY KEY,   -- time-ordered, so newest first is id DESC
    state            SMALLINT NOT NULL,              -- hooteproto.v1.JobState
    priority         SMALLINT NOT NULL,              -- hooteproto.v1.JobPriority
    owner            BYTEA NOT NULL,                 -- the routing id that started it (per-client quota)
    code             TEXT NOT NULL,                  -- the script's source, so a worker needs nothing else
    traceparent      TEXT NOT NULL DEFAULT '',
    worker           TEXT,                           -- who holds the lease
    lease_until      TIMESTAMPTZ,
    attempts         INTEGER NOT NULL DEFAULT 0,
    cancel_requested BOOLEAN NOT NULL DEFAULT FALSE,
    progress         DOUBLE PRECISION NOT NULL DEFAULT 0,
    progress_message TEXT NOT NULL DEFAULT '',
    finished_at      TIMESTAMPTZ,
    record           BYTEA NOT NULL
);
CREATE INDEX jobs_waiting ON jobs (priority DESC, id) WHERE state = 1;
CREATE INDEX jobs_leased ON jobs (lease_until) WHERE state = 2;
CREATE INDEX jobs_finished ON jobs (finished_at) WHERE finished_at IS NOT NULL;
CREATE INDEX jobs_by_owner ON jobs (owner) WHERE state IN (1, 2);
