-- A workspace's newest finished job of each operation and outcome (succeeded, failed),
-- kept as jobs end, so `status` and the freshness watch read every workspace's in one
-- statement that does not grow with the job history. Filled from the history here.
CREATE TABLE job_newest (
    workspace  TEXT NOT NULL,
    operation  TEXT NOT NULL,
    status     TEXT NOT NULL,
    job        INTEGER NOT NULL REFERENCES jobs (id),
    started_at TEXT NOT NULL,
    PRIMARY KEY (workspace, operation, status)
);
INSERT INTO job_newest (workspace, operation, status, job, started_at)
SELECT workspace, operation, status, id, started_at FROM (
    SELECT jobs.*, ROW_NUMBER() OVER (PARTITION BY workspace, operation, status ORDER BY started_at DESC, id DESC)
        AS newest
    FROM jobs WHERE status IN ('succeeded', 'failed')
) ranked WHERE newest = 1;

-- The jobs running now, of every workspace, without reading the history.
CREATE INDEX jobs_running ON jobs (workspace) WHERE status = 'running';
