-- What a finished job produced (the operation's report, as its `--json` prints it), for a
-- front end that polls the job (`GET /v1/jobs/{id}`); absent when it was too large to keep.
ALTER TABLE jobs ADD COLUMN result TEXT;
