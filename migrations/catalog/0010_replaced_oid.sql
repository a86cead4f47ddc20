-- The oid of each database moved aside: `restore undo` swaps back exactly the database an
-- in-place restore (or `branch set-live`) moved aside, checked by oid, never a database
-- that merely has a name like it.
ALTER TABLE replaced_databases ADD COLUMN oid INTEGER;
