-- The audit trail: one append-only, hash-chained log of every state-changing operation
-- (and, with the API, every denied request). Each record's hash covers its content and the
-- previous record's hash; the head of the chain is checkpointed into the repository, so an
-- edited, deleted, reordered, inserted or cut record is found by `tidemark audit verify`.
CREATE TABLE audit (
    seq          INTEGER PRIMARY KEY,       -- 1, 2, 3, ... without gaps
    at           TEXT NOT NULL,             -- RFC 3339, UTC, microseconds
    actor_kind   TEXT NOT NULL,             -- cli | ci | schedule | api
    actor_name   TEXT NOT NULL,
    token_prefix TEXT,                      -- an API token's display prefix, never its secret
    address      TEXT,                      -- the client's address (API)
    action       TEXT NOT NULL,             -- snapshot, restore, prune, pin, stacks.put, ...
    target       TEXT NOT NULL,             -- workspace[/id]
    outcome      TEXT NOT NULL,             -- ok | failed | denied
    details      TEXT NOT NULL,             -- JSON, never a secret
    prev_hash    TEXT NOT NULL,
    hash         TEXT NOT NULL
);
-- The chain's identity: checkpoints in the repository are kept per chain.
CREATE TABLE audit_chain (
    id      TEXT NOT NULL,
    created TEXT NOT NULL
);
