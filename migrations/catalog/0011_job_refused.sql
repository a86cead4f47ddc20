-- no-transaction
-- A job refused before it changed anything (another operation held the workspace, a
-- target that is not empty) ends as `refused`, not `failed`: `status` pages nobody for it.
-- SQLite cannot change a CHECK constraint in place: the table is made again, with foreign
-- keys off while it is (schedules.last_job refers to it by name and keeps doing so).
PRAGMA foreign_keys = OFF;
BEGIN;
CREATE TABLE jobs_new (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    workspace     TEXT NOT NULL,
    operation     TEXT NOT NULL,
    kind          TEXT,
    trigger       TEXT NOT NULL,
    policy        TEXT,
    scheduled_for TEXT,
    started_at    TEXT NOT NULL,
    finished_at   TEXT,
    status        TEXT NOT NULL CHECK (status IN ('running', 'succeeded', 'failed', 'aborted', 'refused')),
    attempts      INTEGER NOT NULL DEFAULT 1,
    snapshot_id   TEXT,
    bytes         INTEGER,
    error         TEXT,
    warning       TEXT,
    pid INTEGER, host TEXT, actor TEXT, phase TEXT, bytes_done INTEGER, bytes_total INTEGER,
    tables_done INTEGER, tables_total INTEGER, progress_at TEXT
);
INSERT INTO jobs_new SELECT * FROM jobs;
DROP TABLE jobs;
ALTER TABLE jobs_new RENAME TO jobs;
CREATE INDEX jobs_by_workspace ON jobs (workspace, started_at);
CREATE UNIQUE INDEX jobs_by_snapshot ON jobs (workspace, snapshot_id)
    WHERE snapshot_id IS NOT NULL AND operation = 'snapshot';
COMMIT;
PRAGMA foreign_keys = ON;
