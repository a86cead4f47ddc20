-- Who made a change or published a version, as tidemark knows it (`cli:alice`,
-- `api:ci-drills`), beside the author people name. Empty for rows written before.
ALTER TABLE tidemark.stack_changes ADD COLUMN actor text;
ALTER TABLE tidemark.stack_versions ADD COLUMN actor text;
