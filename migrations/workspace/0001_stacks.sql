-- Function stacks live in the workspace database, so every snapshot and point-in-time
-- restore carries them consistently with the data. Nothing here is ever updated or deleted:
-- history is append-only, a revert is a new change.
CREATE TABLE tidemark.stacks (
    id bigserial PRIMARY KEY,
    kind text NOT NULL CHECK (kind IN ('api', 'function', 'task', 'trigger', 'middleware', 'addon')),
    name text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    UNIQUE (kind, name)
);

CREATE TABLE tidemark.stack_changes (
    id bigserial PRIMARY KEY,
    stack_id bigint NOT NULL REFERENCES tidemark.stacks (id),
    author text NOT NULL,
    message text,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    -- SHA-256 of the canonical JSON text (keys sorted, no insignificant white space).
    content_sha256 text NOT NULL,
    content jsonb NOT NULL,
    -- For a revert: what it went back to ('version:2', 'change:17').
    reverted_to text
);
CREATE INDEX stack_changes_by_stack ON tidemark.stack_changes (stack_id, id);

CREATE TABLE tidemark.stack_versions (
    stack_id bigint NOT NULL REFERENCES tidemark.stacks (id),
    version integer NOT NULL CHECK (version > 0),
    change_id bigint NOT NULL REFERENCES tidemark.stack_changes (id),
    published_by text NOT NULL,
    message text,
    published_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (stack_id, version)
);
