-- An index of the repository's snapshots (their manifests' summaries), so a listing does
-- not read and decrypt every manifest. The repository stays the truth: the index of a
-- workspace is compared with its listing when it is older than a minute, and a snapshot
-- this host takes or deletes is added or removed at once.
CREATE TABLE snapshots (
    workspace   TEXT NOT NULL,
    id          TEXT NOT NULL,
    summary     TEXT NOT NULL,
    PRIMARY KEY (workspace, id)
) WITHOUT ROWID;

CREATE TABLE snapshot_index (
    workspace   TEXT PRIMARY KEY,
    synced_at   TEXT NOT NULL
);
