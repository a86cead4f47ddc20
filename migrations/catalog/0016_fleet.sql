-- The fleet: every tidemark process that takes leases (daemons, API servers, a command
-- line holding a workspace) is a member with a heartbeat; a member whose heartbeat is
-- older than the lease timeout is dead, and what it held can be taken over. Leases are
-- named (`workspace shop`, `wal-stream shop`); each taking bumps the generation, which is
-- the fencing token checked before an irreversible step. A scheduled slot is claimed once
-- (its primary key) by the daemon that runs it.
CREATE TABLE fleet_members (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    role         TEXT NOT NULL,                  -- daemon, api, daemon+api, cli
    host         TEXT NOT NULL,
    pid          INTEGER NOT NULL,
    version      TEXT NOT NULL,
    started_at   TEXT NOT NULL,
    heartbeat_at TEXT NOT NULL,
    stopped_at   TEXT,
    stop_reason  TEXT,
    takeovers    INTEGER NOT NULL DEFAULT 0,     -- dead members this one reaped
    serves       TEXT                            -- a daemon's scheduled workspaces (JSON array)
);
CREATE INDEX fleet_members_live ON fleet_members (stopped_at, heartbeat_at);

CREATE TABLE leases (
    name       TEXT PRIMARY KEY,
    generation INTEGER NOT NULL,
    member     INTEGER,                          -- NULL: free
    holder     TEXT,                             -- JSON: operation, actor, pid, host, since
    taken_at   TEXT NOT NULL
);
CREATE INDEX leases_by_member ON leases (member);

CREATE TABLE slot_claims (
    workspace  TEXT NOT NULL,
    policy     TEXT NOT NULL,
    slot       TEXT NOT NULL,                    -- the cron slot (a catch-up: the first one missed)
    member     INTEGER NOT NULL,
    claimed_at TEXT NOT NULL,
    done       INTEGER NOT NULL DEFAULT 0,       -- 1 once its job ended (not aborted)
    PRIMARY KEY (workspace, policy, slot)
);
CREATE INDEX slot_claims_open ON slot_claims (done, member);

ALTER TABLE jobs ADD COLUMN member INTEGER;
CREATE INDEX jobs_by_member ON jobs (member, status);

-- The holder of a workspace lock in a PostgreSQL catalog is now its lease's holder.
DROP TABLE workspace_locks;
