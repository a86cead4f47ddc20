-- Copies (`[copies.NAME]`, issue #35): how far each copy of each workspace is, as its last
-- copy left it. `caught_up_to`: everything the primary held before this moment is in the
-- copy (the start of a copy that left nothing missing, else when the oldest object it
-- lacks was written); `status`, `/metrics` and the stale alert measure a copy's lag from it.
CREATE TABLE copy_states (
    workspace       TEXT NOT NULL,
    copy            TEXT NOT NULL,
    caught_up_to    TEXT NOT NULL,
    copied_at       TEXT NOT NULL,      -- when that copy ended
    missing_objects INTEGER NOT NULL,   -- what it still lacked then
    snapshots       INTEGER NOT NULL,   -- the snapshots it holds
    PRIMARY KEY (workspace, copy)
);
