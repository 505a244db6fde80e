-- Jobs may require capabilities (e.g. 'gpu'); a worker takes only jobs whose requirements
-- it has. And the queue as operators watch it (KEDA's PostgreSQL scaler can read this view):
-- per priority and capability set, how many jobs wait, how many run, and how long the oldest
-- has waited.

ALTER TABLE jobs ADD COLUMN capabilities TEXT[] NOT NULL DEFAULT '{}';
ALTER TABLE jobs ADD COLUMN created_at TIMESTAMPTZ NOT NULL DEFAULT now();

CREATE VIEW job_queue_stats AS
SELECT priority,
       capabilities,
       count(*) FILTER (WHERE state = 1) AS pending,
       count(*) FILTER (WHERE state = 2) AS running,
       COALESCE(EXTRACT(EPOCH FROM now() - min(created_at) FILTER (WHERE state = 1)), 0)::float8
           AS oldest_pending_seconds
FROM jobs
WHERE state IN (1, 2)
GROUP BY priority, capabilities;
