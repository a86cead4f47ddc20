-- tidemark's own catalog (SQLite): the job history and the schedules' last runs.
-- Timestamps are RFC 3339 text in UTC. The repository stays the truth: `tidemark catalog
-- rebuild` recreates what it can from it.

CREATE TABLE jobs (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    workspace     TEXT NOT NULL,
    operation     TEXT NOT NULL,                 -- 'snapshot'
    kind          TEXT,                          -- the snapshot kind: automatic, manual, ...
    trigger       TEXT NOT NULL,                 -- schedule, catch-up, cli, rebuilt
    policy        TEXT,                          -- the schedule that asked for it
    scheduled_for TEXT,                          -- the cron slot it serves
    started_at    TEXT NOT NULL,
    finished_at   TEXT,
    status        TEXT NOT NULL CHECK (status IN ('running', 'succeeded', 'failed', 'aborted')),
    attempts      INTEGER NOT NULL DEFAULT 1,
    snapshot_id   TEXT,
    bytes         INTEGER,
    error         TEXT,                          -- the last error (never a secret)
    warning       TEXT                           -- e.g. retention failed after a good snapshot
);
CREATE INDEX jobs_by_workspace ON jobs (workspace, started_at);
CREATE UNIQUE INDEX jobs_by_snapshot ON jobs (workspace, snapshot_id) WHERE snapshot_id IS NOT NULL;

-- The last cron slot each schedule served (or, before its first run, the moment the
-- daemon first saw it), so a slot missed while the daemon was down is caught up once.
CREATE TABLE schedule_runs (
    workspace     TEXT NOT NULL,
    policy        TEXT NOT NULL,
    last_slot     TEXT NOT NULL,
    last_status   TEXT NOT NULL,
    last_job      INTEGER REFERENCES jobs (id),
    PRIMARY KEY (workspace, policy)
);
