-- A stop asked of a running job by a process that does not run it (another API server, a
-- command line): the process that runs it looks for it and stops the job.
ALTER TABLE jobs ADD COLUMN cancel_requested_at TIMESTAMPTZ;
