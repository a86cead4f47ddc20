-- Who asked for a job or drill (`cli:alice`, `schedule:nightly`), and a running job's
-- progress, updated at most once a second, for front ends that poll the catalog.
ALTER TABLE jobs ADD COLUMN actor TEXT;
ALTER TABLE jobs ADD COLUMN phase TEXT;
ALTER TABLE jobs ADD COLUMN bytes_done INTEGER;
ALTER TABLE jobs ADD COLUMN bytes_total INTEGER;
ALTER TABLE jobs ADD COLUMN tables_done INTEGER;
ALTER TABLE jobs ADD COLUMN tables_total INTEGER;
ALTER TABLE jobs ADD COLUMN progress_at TEXT;
ALTER TABLE drills ADD COLUMN actor TEXT;
