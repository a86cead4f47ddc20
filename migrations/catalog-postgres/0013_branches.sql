CREATE TABLE branches (
    workspace  TEXT NOT NULL,
    name       TEXT NOT NULL,
    database   TEXT NOT NULL,
    source     TEXT NOT NULL,
    state      TEXT NOT NULL CHECK (state IN ('creating', 'ready', 'deleting')),
    created_at TIMESTAMPTZ NOT NULL,
    actor      TEXT,
    PRIMARY KEY (workspace, name)
);
