-- Who holds each workspace's lock, as its holder wrote it (JSON: operation, actor, pid,
-- host, since). Read and written with a PostgreSQL catalog, whose workspace locks are
-- advisory locks of the holder's session; a SQLite catalog's locks are files beside it,
-- which hold their holder themselves.
CREATE TABLE workspace_locks (
    workspace TEXT PRIMARY KEY,
    holder    TEXT NOT NULL
);
