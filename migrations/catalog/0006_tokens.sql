-- API tokens. Only a SHA-256 of each secret is kept, never the secret; `id` is the
-- display prefix (`tdm_` and the secret's first 8 characters) that names it in lists, logs
-- and the audit trail.
CREATE TABLE tokens (
    id                TEXT PRIMARY KEY,
    name              TEXT NOT NULL,
    secret_sha256     TEXT NOT NULL UNIQUE,
    role              TEXT NOT NULL,
    workspaces        TEXT NOT NULL,        -- JSON array; empty: every workspace
    allow_ips         TEXT NOT NULL,        -- JSON array of CIDRs; empty: every address
    created_by        TEXT NOT NULL,        -- the actor that made it
    created_at        TEXT NOT NULL,
    expires_at        TEXT,                 -- NULL: never (only when asked for explicitly)
    last_used_at      TEXT,
    last_used_address TEXT,
    revoked_at        TEXT
);
CREATE UNIQUE INDEX tokens_live_name ON tokens (name) WHERE revoked_at IS NULL;
