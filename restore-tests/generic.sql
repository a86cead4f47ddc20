-- Generic restore tests: they hold for any healthy database, so every drill runs them.
-- Format: see restore-tests/README.md. `pg_temp.tidemark_snapshot_tables` lists every
-- table of the drilled snapshot with the row count recorded at backup time (empty in a
-- point-in-time drill, which has no snapshot).

-- assert-empty: no invalid indexes
SELECT format('%I.%I', n.nspname, c.relname) AS index
  FROM pg_index i
  JOIN pg_class c ON c.oid = i.indexrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE NOT i.indisvalid OR NOT i.indisready;

-- assert-empty: no table that had rows at backup is empty
SELECT format('%I.%I', s.schema_name, s.table_name) AS empty_table
  FROM pg_temp.tidemark_snapshot_tables s
 WHERE s.rows > 0
   AND (xpath('//n/text()', query_to_xml(
          format('SELECT count(*) AS n FROM (SELECT 1 FROM ONLY %I.%I LIMIT 1) x', s.schema_name, s.table_name),
          false, true, '')))[1]::text::int = 0;

-- assert-empty: foreign keys hold for every row
-- Each validated foreign key is checked by a query built from the catalog: a child row
-- whose key columns are all set must find its parent (MATCH SIMPLE, Postgres' default).
SELECT format('%s.%I', con.conrelid::regclass, con.conname) AS violated_foreign_key
  FROM pg_constraint con
 CROSS JOIN LATERAL (
       SELECT string_agg(format('c.%I', ca.attname), ', ' ORDER BY k.i) AS child_columns,
              string_agg(format('p.%I', pa.attname), ', ' ORDER BY k.i) AS parent_columns,
              string_agg(format('c.%I IS NOT NULL', ca.attname), ' AND ' ORDER BY k.i) AS all_set
         FROM unnest(con.conkey, con.confkey) WITH ORDINALITY AS k(child_attnum, parent_attnum, i)
         JOIN pg_attribute ca ON ca.attrelid = con.conrelid AND ca.attnum = k.child_attnum
         JOIN pg_attribute pa ON pa.attrelid = con.confrelid AND pa.attnum = k.parent_attnum
       ) cols
 WHERE con.contype = 'f' AND con.convalidated AND con.conparentid = 0
   AND (xpath('//n/text()', query_to_xml(
          format('SELECT count(*) AS n FROM (SELECT 1 FROM %s c WHERE %s AND NOT EXISTS '
                 '(SELECT 1 FROM %s p WHERE (%s) = (%s)) LIMIT 1) x',
                 con.conrelid::regclass, cols.all_set, con.confrelid::regclass,
                 cols.child_columns, cols.parent_columns),
          false, true, '')))[1]::text::int > 0;

-- assert-empty: no sequence is behind the column it feeds
-- A used sequence owned by a column (serial, identity) whose value is below the column's
-- maximum makes the next insert fail with a duplicate key (a restore that forgot setval).
SELECT format('%I.%I (last value %s) behind %I.%I.%I', sn.nspname, s.relname, ps.last_value,
              tn.nspname, t.relname, a.attname) AS sequence_behind
  FROM pg_depend d
  JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S'
  JOIN pg_namespace sn ON sn.oid = s.relnamespace
  JOIN pg_sequences ps ON ps.schemaname = sn.nspname AND ps.sequencename = s.relname
  JOIN pg_class t ON t.oid = d.refobjid
  JOIN pg_namespace tn ON tn.oid = t.relnamespace
  JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = d.refobjsubid
 WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass
   AND d.deptype IN ('a', 'i') AND t.relkind IN ('r', 'p')
   AND format_type(a.atttypid, NULL) IN ('smallint', 'integer', 'bigint')
   AND ps.increment_by > 0 AND ps.last_value IS NOT NULL
   AND (xpath('//m/text()', query_to_xml(
          format('SELECT max(%I) AS m FROM %I.%I', a.attname, tn.nspname, t.relname),
          false, true, '')))[1]::text::bigint > ps.last_value;
