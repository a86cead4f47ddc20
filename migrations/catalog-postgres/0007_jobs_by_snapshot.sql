DROP INDEX jobs_by_snapshot;
CREATE UNIQUE INDEX jobs_by_snapshot ON jobs (workspace, snapshot_id)
    WHERE snapshot_id IS NOT NULL AND operation = 'snapshot';
