-- Restore drills: one row per drill, with its whole report (JSON) for `drill history`.
CREATE TABLE drills (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    workspace     TEXT NOT NULL,
    kind          TEXT NOT NULL,             -- logical | pitr
    source        TEXT NOT NULL,             -- snapshot id, or base backup id
    trigger       TEXT NOT NULL,             -- cli | schedule | catch-up
    started_at    TEXT NOT NULL,
    finished_at   TEXT NOT NULL,
    passed        INTEGER NOT NULL,
    checks        INTEGER NOT NULL,
    failed_checks INTEGER NOT NULL,
    restore_ms    INTEGER NOT NULL,
    stored_bytes  INTEGER NOT NULL,
    report        TEXT NOT NULL
);
CREATE INDEX drills_by_workspace ON drills (workspace, started_at);
