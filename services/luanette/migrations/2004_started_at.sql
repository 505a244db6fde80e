-- When a worker claimed a running job. A claim is one statement: it sets the columns the queue
-- works on (state, worker, lease, this) and leaves the record as it was queued; readers show a
-- running job from these columns, and the worker writes the whole record when it finishes.
ALTER TABLE jobs ADD COLUMN started_at TIMESTAMPTZ;
