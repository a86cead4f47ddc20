-- Which process runs a job, so a job whose process died (SIGKILL, power loss) is not listed
-- as running forever: `tidemark jobs` and `serve` mark it aborted when that process is gone
-- from this host. Rows written before this migration have neither and are left alone.
ALTER TABLE jobs ADD COLUMN pid INTEGER;
ALTER TABLE jobs ADD COLUMN host TEXT;
