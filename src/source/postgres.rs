//! The Postgres side of a snapshot: one transaction exports a snapshot that every other
//! connection and pg_dump import, so schema and every table are read at the same instant.

use std::path::Path;
use std::process::Stdio;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use sqlx::postgres::PgConnection;
use sqlx::{AssertSqlSafe, Row};
use tokio::io::AsyncReadExt;

use crate::error::{Error, ErrorKind, Result};
use crate::pg::{ConnSpec, qualified, quote_ident};
use crate::repo::manifest::{MatViewEntry, SequenceEntry, SourceInfo};

/// A table whose data a snapshot copies.
#[derive(Debug, Clone)]
pub struct TableInfo {
    pub schema: String,
    pub name: String,
    pub columns: Vec<String>,
    /// Heap size in bytes (the work estimate and the basis for splitting).
    pub bytes: i64,
}

/// A block range of a table, for splitting large tables into parts read in parallel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockRange {
    pub start: i64,
    /// Exclusive; `None` reads to the end (so rows in blocks past the estimate are not lost).
    pub end: Option<i64>,
}

/// The open, exporting transaction of a snapshot and what was read in it.
pub struct SnapshotSession {
    conn: PgConnection,
    pub snapshot_name: String,
    pub info: SourceInfo,
    pub tables: Vec<TableInfo>,
    pub sequences: Vec<SequenceEntry>,
    pub materialized_views: Vec<MatViewEntry>,
    pub block_size: i64,
    /// What this snapshot cannot carry, said out loud (also recorded in the manifest).
    pub warnings: Vec<String>,
    /// The function stacks as of the snapshot (empty when the workspace has none).
    pub stacks: Vec<crate::stacks::log::StackSummary>,
    /// The schema's fingerprint and the roles it refers to, as of the snapshot.
    pub schema_fingerprint: std::collections::BTreeMap<String, String>,
    pub roles: Vec<String>,
    /// The role the snapshot is taken as, and the owner of the database.
    pub taken_as: crate::repo::manifest::RoleInfo,
    pub database_owner: String,
}

const USER_RELATIONS: &str = "n.nspname NOT IN ('pg_catalog', 'information_schema') \
     AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%' \
     AND c.relpersistence <> 't' \
     AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass \
                     AND d.objid = c.oid AND d.deptype = 'e')";

impl SnapshotSession {
    /// Opens the exporting transaction, reads the catalog and locks every table against
    /// concurrent DDL (ACCESS SHARE, as pg_dump does: writers are not blocked).
    ///
    /// Errors: `Unavailable` when the server cannot be reached, `Database` for missing
    /// privileges or a lock that cannot be had within a minute.
    pub async fn begin(spec: &ConnSpec, pg_dump_version: String) -> Result<SnapshotSession> {
        let mut conn = spec.connect().await?;
        sqlx::raw_sql("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY").execute(&mut conn).await?;
        let snapshot_name: String = sqlx::query_scalar("SELECT pg_export_snapshot()").fetch_one(&mut conn).await?;
        let info_row = sqlx::query(
            "SELECT current_database()::text, current_setting('server_version'), \
                    current_setting('server_version_num')::int4, pg_encoding_to_char(d.encoding)::text, \
                    d.datcollate::text, d.datctype::text, \
                    (CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() \
                          ELSE pg_current_wal_lsn() END)::text, \
                    CASE WHEN has_function_privilege('pg_control_system()', 'execute') \
                         THEN (SELECT system_identifier::text FROM pg_control_system()) ELSE '' END, \
                    current_setting('block_size')::int8 \
             FROM pg_database d WHERE d.datname = current_database()",
        )
        .fetch_one(&mut conn)
        .await?;
        let info = SourceInfo {
            database: info_row.get(0),
            server_version: info_row.get(1),
            server_version_num: info_row.get(2),
            encoding: info_row.get(3),
            collate: info_row.get(4),
            ctype: info_row.get(5),
            snapshot_lsn: info_row.get::<Option<String>, _>(6).unwrap_or_default(),
            system_identifier: info_row.get(7),
            pg_dump_version,
        };
        let block_size: i64 = info_row.get(8);

        let table_rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT c.oid::int8, n.nspname::text, c.relname::text, pg_relation_size(c.oid)::int8 \
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind = 'r' AND {USER_RELATIONS} ORDER BY 2, 3"
        )))
        .fetch_all(&mut conn)
        .await?;
        let oids: Vec<i64> = table_rows.iter().map(|r| r.get(0)).collect();
        let column_rows = sqlx::query(
            "SELECT a.attrelid::int8, a.attname::text FROM pg_attribute a \
             WHERE a.attrelid::int8 = ANY($1) AND a.attnum > 0 AND NOT a.attisdropped \
               AND a.attgenerated = '' ORDER BY a.attrelid, a.attnum",
        )
        .bind(&oids)
        .fetch_all(&mut conn)
        .await?;
        let mut tables: Vec<TableInfo> = table_rows
            .iter()
            .map(|r| TableInfo { schema: r.get(1), name: r.get(2), columns: Vec::new(), bytes: r.get(3) })
            .collect();
        for row in &column_rows {
            let oid: i64 = row.get(0);
            if let Some(i) = oids.iter().position(|o| *o == oid) {
                tables[i].columns.push(row.get(1));
            }
        }

        if !tables.is_empty() {
            let list: Vec<String> = tables.iter().map(|t| qualified(&t.schema, &t.name)).collect();
            sqlx::raw_sql(AssertSqlSafe(format!(
                "SET LOCAL lock_timeout = '60s'; LOCK TABLE {} IN ACCESS SHARE MODE; SET LOCAL lock_timeout = 0",
                list.join(", ")
            )))
            .execute(&mut conn)
            .await
            .map_err(|e| Error::from(e).context("locking the tables against concurrent DDL".to_string()))?;
        }

        let seq_rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT n.nspname::text, c.relname::text FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind = 'S' AND {USER_RELATIONS} ORDER BY 1, 2"
        )))
        .fetch_all(&mut conn)
        .await?;
        let mut sequences = Vec::with_capacity(seq_rows.len());
        for row in seq_rows {
            let (schema, name): (String, String) = (row.get(0), row.get(1));
            let values =
                sqlx::query(AssertSqlSafe(format!("SELECT last_value, is_called FROM {}", qualified(&schema, &name))))
                    .fetch_one(&mut conn)
                    .await?;
            sequences.push(SequenceEntry { schema, name, last_value: values.get(0), is_called: values.get(1) });
        }

        let mv_rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT n.nspname::text, c.relname::text, c.relispopulated FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind = 'm' AND {USER_RELATIONS} ORDER BY c.oid"
        )))
        .fetch_all(&mut conn)
        .await?;
        let materialized_views = mv_rows
            .into_iter()
            .map(|r| MatViewEntry { schema: r.get(0), name: r.get(1), populated: r.get(2) })
            .collect();

        let mut warnings = Vec::new();
        let large_objects: i64 =
            sqlx::query_scalar("SELECT count(*) FROM pg_largeobject_metadata").fetch_one(&mut conn).await?;
        if large_objects > 0 {
            warnings.push(format!(
                "the database has {large_objects} large objects (pg_largeobject); snapshots do not include \
                 them yet: back them up with pg_dump --large-objects"
            ));
        }
        let stacks = crate::stacks::log::list_if_installed(&mut conn).await?;
        let schema_fingerprint = super::fingerprint::schema_fingerprint(&mut conn).await?;
        let roles = super::fingerprint::referenced_roles(&mut conn).await?;
        let taken_as = super::fingerprint::connected_role(&mut conn, &roles).await?;
        let database_owner: String = sqlx::query_scalar(
            "SELECT pg_get_userbyid(datdba)::text FROM pg_database WHERE datname = current_database()",
        )
        .fetch_one(&mut conn)
        .await?;
        Ok(SnapshotSession {
            conn,
            snapshot_name,
            info,
            tables,
            sequences,
            materialized_views,
            block_size,
            warnings,
            stacks,
            schema_fingerprint,
            roles,
            taken_as,
            database_owner,
        })
    }

    /// Ends the exporting transaction (after every importer has finished).
    pub async fn finish(mut self) -> Result<()> {
        sqlx::raw_sql("COMMIT").execute(&mut self.conn).await?;
        ConnSpec::close(self.conn).await;
        Ok(())
    }

    /// Splits a table into block ranges of about `part_bytes` of heap each. Servers before
    /// 14 have no TID range scans, so there a table is never split.
    pub fn block_ranges(&self, table: &TableInfo, part_bytes: u64) -> Vec<Option<BlockRange>> {
        let bytes = table.bytes.max(0) as u64;
        if self.info.server_version_num < 140000 || part_bytes == 0 || bytes <= part_bytes {
            return vec![None];
        }
        let blocks = (bytes / self.block_size as u64) as i64;
        let parts = bytes.div_ceil(part_bytes) as i64;
        let per = (blocks + parts - 1) / parts;
        (0..parts)
            .map(|i| {
                let start = i * per;
                let end = (i + 1 < parts).then_some((i + 1) * per);
                Some(BlockRange { start, end })
            })
            .collect()
    }
}

/// Opens a connection that reads inside the exported snapshot `snapshot_name`.
pub async fn import_snapshot(spec: &ConnSpec, snapshot_name: &str) -> Result<PgConnection> {
    let mut conn = spec.connect().await?;
    sqlx::raw_sql(AssertSqlSafe(format!(
        "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY; SET TRANSACTION SNAPSHOT '{}'",
        snapshot_name.replace('\'', "''")
    )))
    .execute(&mut conn)
    .await?;
    Ok(conn)
}

/// The `COPY ... TO STDOUT` statement for a table or one block range of it.
pub fn copy_out_statement(schema: &str, name: &str, columns: &[String], range: Option<BlockRange>) -> String {
    let table = qualified(schema, name);
    let cols: Vec<String> = columns.iter().map(|c| quote_ident(c)).collect();
    match range {
        None if cols.is_empty() => format!("COPY {table} TO STDOUT"),
        None => format!("COPY {table} ({}) TO STDOUT", cols.join(", ")),
        Some(r) => {
            let mut filter = format!("ctid >= '({},0)'::tid", r.start);
            if let Some(end) = r.end {
                filter.push_str(&format!(" AND ctid < '({end},0)'::tid"));
            }
            format!("COPY (SELECT {} FROM ONLY {table} WHERE {filter}) TO STDOUT", cols.join(", "))
        }
    }
}

/// Starts a COPY out and returns its rows as a stream of chunks.
pub async fn copy_out<'c>(conn: &'c mut PgConnection, statement: &str) -> Result<BoxStream<'c, Result<Bytes>>> {
    let stream = conn.copy_out_raw(statement).await?;
    Ok(stream.map(|r| r.map_err(Error::from)).boxed())
}

/// The row digest of a whole table as a snapshot computes it (the columns in the
/// manifest's order), read on `conn` (inside its transaction, if one is open).
///
/// Errors: `Database` when the table cannot be read.
pub async fn table_digest(
    conn: &mut PgConnection,
    schema: &str,
    name: &str,
    columns: &[String],
) -> Result<super::digest::RowDigest> {
    table_digest_range(conn, schema, name, columns, None).await
}

/// [`table_digest`] of the rows in one block range (digests of the ranges of a table add
/// up to the table's: see [`super::digest::RowDigest::combine`]).
///
/// Errors: `Database` when the table cannot be read.
pub async fn table_digest_range(
    conn: &mut PgConnection,
    schema: &str,
    name: &str,
    columns: &[String],
    range: Option<BlockRange>,
) -> Result<super::digest::RowDigest> {
    let statement = copy_out_statement(schema, name, columns, range);
    let mut digest = super::digest::RowDigest::new();
    {
        let mut rows =
            copy_out(conn, &statement).await.map_err(|e| e.context(format!("reading table {schema}.{name}")))?;
        while let Some(chunk) = rows.next().await {
            digest.update(&chunk?);
        }
    }
    digest.finish();
    Ok(digest)
}

/// Which part of the schema pg_dump writes.
#[derive(Debug, Clone, Copy)]
pub enum Section {
    PreData,
    PostData,
}

impl Section {
    fn arg(self) -> &'static str {
        match self {
            Section::PreData => "--section=pre-data",
            Section::PostData => "--section=post-data",
        }
    }
}

/// Spawns `pg_dump --schema-only` for one section inside the exported snapshot; its
/// stdout is the SQL. The child is killed if dropped.
pub fn spawn_schema_dump(
    bin_dir: Option<&Path>,
    spec: &ConnSpec,
    snapshot_name: &str,
    section: Section,
) -> Result<tokio::process::Child> {
    let path = crate::pg::tool(bin_dir, "pg_dump");
    let mut cmd = tokio::process::Command::new(&path);
    cmd.arg("--schema-only")
        .arg(section.arg())
        .arg(format!("--snapshot={snapshot_name}"))
        .arg("--no-password")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    spec.apply_to_command(&mut cmd);
    cmd.spawn().map_err(|e| crate::pg::tool_spawn_error(&path, &e))
}

/// Waits for a tool and turns a failure into an error carrying its stderr.
pub async fn wait_tool(mut child: tokio::process::Child, what: &str) -> Result<()> {
    let mut stderr = String::new();
    if let Some(mut err) = child.stderr.take() {
        let _ = err.read_to_string(&mut stderr).await;
    }
    let status = child.wait().await?;
    if status.success() {
        Ok(())
    } else {
        let tail: Vec<&str> = stderr.lines().rev().take(12).collect::<Vec<_>>().into_iter().rev().collect();
        Err(Error::new(ErrorKind::Database, format!("{what} failed ({status}): {}", tail.join("\n"))))
    }
}

/// `pg_dump --version`, recorded in the manifest.
pub async fn pg_dump_version(bin_dir: Option<&Path>) -> Result<String> {
    let path = crate::pg::tool(bin_dir, "pg_dump");
    let out = tokio::process::Command::new(&path)
        .arg("--version")
        .output()
        .await
        .map_err(|e| crate::pg::tool_spawn_error(&path, &e))?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_statements_quote_everything() {
        let cols = vec!["id".to_string(), "Weird \"col\"".to_string()];
        assert_eq!(
            copy_out_statement("my schema", "T", &cols, None),
            "COPY \"my schema\".\"T\" (\"id\", \"Weird \"\"col\"\"\") TO STDOUT"
        );
        assert_eq!(copy_out_statement("s", "empty", &[], None), "COPY \"s\".\"empty\" TO STDOUT");
        let ranged = copy_out_statement("s", "t", &cols[..1], Some(BlockRange { start: 10, end: None }));
        assert_eq!(ranged, "COPY (SELECT \"id\" FROM ONLY \"s\".\"t\" WHERE ctid >= '(10,0)'::tid) TO STDOUT");
    }
}
