ALTER TABLE replaced_databases ADD COLUMN oid BIGINT;

CREATE TABLE switch_intents (
    workspace  TEXT PRIMARY KEY,
    kind       TEXT NOT NULL,
    live       TEXT NOT NULL,
    incoming   TEXT NOT NULL,
    aside      TEXT NOT NULL,
    media_tag  TEXT,
    started_at TIMESTAMPTZ NOT NULL,
    actor      TEXT
);
