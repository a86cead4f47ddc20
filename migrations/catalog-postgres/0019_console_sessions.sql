-- See migrations/catalog/0019_console_sessions.sql.
CREATE TABLE console_sessions (
    id_sha256    TEXT PRIMARY KEY,
    method       TEXT NOT NULL,
    token_id     TEXT NOT NULL,
    address      TEXT,
    created_at   TIMESTAMPTZ NOT NULL,
    last_seen_at TIMESTAMPTZ NOT NULL,
    expires_at   TIMESTAMPTZ NOT NULL,
    ended_at     TIMESTAMPTZ
);
CREATE INDEX console_sessions_token ON console_sessions (token_id);
