CREATE TABLE audit (
    seq          BIGINT PRIMARY KEY,
    at           TIMESTAMPTZ NOT NULL,
    actor_kind   TEXT NOT NULL,
    actor_name   TEXT NOT NULL,
    token_prefix TEXT,
    address      TEXT,
    action       TEXT NOT NULL,
    target       TEXT NOT NULL,
    outcome      TEXT NOT NULL,
    details      TEXT NOT NULL,
    prev_hash    TEXT NOT NULL,
    hash         TEXT NOT NULL
);
CREATE TABLE audit_chain (
    id      TEXT NOT NULL,
    created TIMESTAMPTZ NOT NULL
);
