CREATE TABLE replaced_databases (
    workspace   TEXT NOT NULL,
    database    TEXT NOT NULL,
    replaced_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (workspace, database)
);
