-- Databases moved aside by an in-place restore, `import --replace` or `branch set-live`
-- (`<db>_before_*`, and `<db>_undone_*` after an undo): prune drops each once it is older
-- than its workspace's keep-replaced, and names it in its report.
CREATE TABLE replaced_databases (
    workspace   TEXT NOT NULL,
    database    TEXT NOT NULL,
    replaced_at TEXT NOT NULL,
    PRIMARY KEY (workspace, database)
) WITHOUT ROWID;
