-- The fleet (see migrations/catalog/0016_fleet.sql): members with heartbeats, named
-- leases with a generation (the fencing token), and scheduled slots claimed once.
CREATE TABLE fleet_members (
    id           BIGSERIAL PRIMARY KEY,
    role         TEXT NOT NULL,
    host         TEXT NOT NULL,
    pid          BIGINT NOT NULL,
    version      TEXT NOT NULL,
    started_at   TIMESTAMPTZ NOT NULL,
    heartbeat_at TIMESTAMPTZ NOT NULL,
    stopped_at   TIMESTAMPTZ,
    stop_reason  TEXT,
    takeovers    BIGINT NOT NULL DEFAULT 0,
    serves       TEXT
);
CREATE INDEX fleet_members_live ON fleet_members (stopped_at, heartbeat_at);

CREATE TABLE leases (
    name       TEXT PRIMARY KEY,
    generation BIGINT NOT NULL,
    member     BIGINT,
    holder     TEXT,
    taken_at   TIMESTAMPTZ NOT NULL
);
CREATE INDEX leases_by_member ON leases (member);

CREATE TABLE slot_claims (
    workspace  TEXT NOT NULL,
    policy     TEXT NOT NULL,
    slot       TIMESTAMPTZ NOT NULL,
    member     BIGINT NOT NULL,
    claimed_at TIMESTAMPTZ NOT NULL,
    done       BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (workspace, policy, slot)
);
CREATE INDEX slot_claims_open ON slot_claims (done, member);

ALTER TABLE jobs ADD COLUMN member BIGINT;
CREATE INDEX jobs_by_member ON jobs (member, status);

DROP TABLE workspace_locks;
