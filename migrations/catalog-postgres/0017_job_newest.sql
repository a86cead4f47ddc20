-- A workspace's newest finished job of each operation and outcome (see
-- migrations/catalog/0017_job_newest.sql), filled from the history.
CREATE TABLE job_newest (
    workspace  TEXT NOT NULL,
    operation  TEXT NOT NULL,
    status     TEXT NOT NULL,
    job        BIGINT NOT NULL REFERENCES jobs (id),
    started_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (workspace, operation, status)
);
INSERT INTO job_newest (workspace, operation, status, job, started_at)
SELECT workspace, operation, status, id, started_at FROM (
    SELECT jobs.*, ROW_NUMBER() OVER (PARTITION BY workspace, operation, status ORDER BY started_at DESC, id DESC)
        AS newest
    FROM jobs WHERE status IN ('succeeded', 'failed')
) ranked WHERE newest = 1;

CREATE INDEX jobs_running ON jobs (workspace) WHERE status = 'running';
