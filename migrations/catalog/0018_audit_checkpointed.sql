-- The newest audit record whose checkpoint a process took on to write: each checkpoint
-- (chain, seq) is written by one process of the fleet only (its content is encrypted, so
-- two writers of one key would leave the object of one with the signature of the other).
ALTER TABLE audit_chain ADD COLUMN checkpointed INTEGER;
