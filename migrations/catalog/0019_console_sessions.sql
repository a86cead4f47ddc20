-- Web console sessions: a browser signed in (with a token today; the `method` column leaves
-- room for single sign-on). The session's secret lives only in the browser's cookie; the
-- catalog keeps its SHA-256, so a copy of the catalog signs nobody in. Every request checks
-- the token it was made from again (a revoked token ends its sessions at once).
CREATE TABLE console_sessions (
    id_sha256    TEXT PRIMARY KEY,
    method       TEXT NOT NULL,         -- how the browser signed in: `token`
    token_id     TEXT NOT NULL,         -- the token's display id (`tdm_` + 8)
    address      TEXT,                  -- where it signed in from
    created_at   TEXT NOT NULL,
    last_seen_at TEXT NOT NULL,         -- the last request a person made (not a refresh)
    expires_at   TEXT NOT NULL,         -- the absolute end, whatever the activity
    ended_at     TEXT                   -- signed out, or ended by an administrator
);
CREATE INDEX console_sessions_token ON console_sessions (token_id);
