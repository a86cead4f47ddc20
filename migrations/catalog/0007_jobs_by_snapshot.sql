-- A snapshot is taken by one job; restores and drills of it name it too, any number of
-- times. The unique index of 0001 covered every operation, so the end of a restore or
-- drill of a snapshot this catalog knew could not be recorded (the job stayed running).
DROP INDEX jobs_by_snapshot;
CREATE UNIQUE INDEX jobs_by_snapshot ON jobs (workspace, snapshot_id)
    WHERE snapshot_id IS NOT NULL AND operation = 'snapshot';
