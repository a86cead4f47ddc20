-- See migrations/catalog/0020_copy_states.sql.
CREATE TABLE copy_states (
    workspace       TEXT NOT NULL,
    copy            TEXT NOT NULL,
    caught_up_to    TIMESTAMPTZ NOT NULL,
    copied_at       TIMESTAMPTZ NOT NULL,
    missing_objects BIGINT NOT NULL,
    snapshots       BIGINT NOT NULL,
    PRIMARY KEY (workspace, copy)
);
