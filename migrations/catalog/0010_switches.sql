-- The oid of each database moved aside: `restore undo` swaps back exactly the database an
-- in-place restore (or `branch set-live`) moved aside, checked by oid, never a database
-- that merely has a name like it.
ALTER TABLE replaced_databases ADD COLUMN oid INTEGER;

-- A switch of a workspace's live database under way (in-place restore, undo, branch
-- set-live): written before anything is renamed, removed when the database and the media
-- are both switched. One left behind by a process that died is finished or undone by the
-- next `serve` and by the workspace's next switch.
CREATE TABLE switch_intents (
    workspace  TEXT PRIMARY KEY,
    kind       TEXT NOT NULL,
    live       TEXT NOT NULL,
    incoming   TEXT NOT NULL,
    aside      TEXT NOT NULL,
    media_tag  TEXT,
    started_at TEXT NOT NULL,
    actor      TEXT
) WITHOUT ROWID;
