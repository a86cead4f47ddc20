CREATE TABLE snapshots (
    workspace   TEXT NOT NULL,
    id          TEXT NOT NULL,
    summary     TEXT NOT NULL,
    PRIMARY KEY (workspace, id)
);

CREATE TABLE snapshot_index (
    workspace   TEXT PRIMARY KEY,
    synced_at   TIMESTAMPTZ NOT NULL
);

-- A summary as JSON, or NULL when it is not JSON (edited by hand): what SQLite's
-- json_valid and json_extract give the metrics' sums.
CREATE FUNCTION tidemark_json(text) RETURNS jsonb LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    RETURN $1::jsonb;
EXCEPTION WHEN others THEN
    RETURN NULL;
END
$$;
