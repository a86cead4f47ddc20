-- Branches (`branch create`): copies of a workspace's database beside the live one. Rows
-- here, never entries in tidemark.toml: a running server does not write the operator's
-- config. The primary key claims a name: of two creates of one branch, one gets it.
CREATE TABLE branches (
    workspace  TEXT NOT NULL,
    name       TEXT NOT NULL,
    database   TEXT NOT NULL,
    source     TEXT NOT NULL,
    -- creating (restoring), ready, deleting (its database being dropped)
    state      TEXT NOT NULL CHECK (state IN ('creating', 'ready', 'deleting')),
    created_at TEXT NOT NULL,
    actor      TEXT,
    PRIMARY KEY (workspace, name)
) WITHOUT ROWID;
