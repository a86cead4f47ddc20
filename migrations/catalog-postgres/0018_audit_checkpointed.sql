-- See migrations/catalog/0018_audit_checkpointed.sql.
ALTER TABLE audit_chain ADD COLUMN checkpointed BIGINT;
