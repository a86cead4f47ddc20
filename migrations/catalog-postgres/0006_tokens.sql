CREATE TABLE tokens (
    id                TEXT PRIMARY KEY,
    name              TEXT NOT NULL,
    secret_sha256     TEXT NOT NULL UNIQUE,
    role              TEXT NOT NULL,
    workspaces        TEXT NOT NULL,
    allow_ips         TEXT NOT NULL,
    created_by        TEXT NOT NULL,
    created_at        TIMESTAMPTZ NOT NULL,
    expires_at        TIMESTAMPTZ,
    last_used_at      TIMESTAMPTZ,
    last_used_address TEXT,
    revoked_at        TIMESTAMPTZ
);
CREATE UNIQUE INDEX tokens_live_name ON tokens (name) WHERE revoked_at IS NULL;
