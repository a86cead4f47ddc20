-- A job may end `refused` (PostgreSQL changes the CHECK in place; SQLite made the table again).
ALTER TABLE jobs DROP CONSTRAINT jobs_status_check;
ALTER TABLE jobs ADD CONSTRAINT jobs_status_check
    CHECK (status IN ('running', 'succeeded', 'failed', 'aborted', 'refused'));
