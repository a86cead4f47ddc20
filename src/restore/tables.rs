//! One table (or a few) back from a snapshot, into a new or empty database or beside the
//! live tables under a new name.
//!
//! pg_dump knows what belongs to a table (indexes, constraints, defaults, owned and
//! identity sequences, row-level security, policies, triggers, grants, comments), so
//! tidemark lets it decide: the snapshot's schema (no data) goes into a scratch database
//! on the target's server, the tables are renamed there when asked (with their indexes and
//! sequences, so nothing collides with the live ones), foreign keys to tables that are not
//! restored are dropped and listed, and `pg_dump --schema-only` of the result is the DDL.
//! Only the picked tables' data objects are read. The target gets schema, data, sequence
//! values and post-data in one transaction on one connection, and the rows are checked
//! against the snapshot's content digest before it commits: a failure leaves nothing.

use std::path::Path;

use serde::Serialize;
use sqlx::AssertSqlSafe;
use sqlx::postgres::PgConnection;

use super::database::{self, Locale, TargetState};
use super::load::SnapshotSource;
use crate::error::{Error, ErrorKind, Result};
use crate::pg::{ConnSpec, qualified, quote_ident};
use crate::progress::Progress;
use crate::repo::manifest::TableEntry;
use crate::repo::pipeline::stream_of;
use crate::source::postgres::table_digest;

/// Where the tables come from.
#[derive(Clone, Copy)]
pub enum TablesFrom<'a> {
    Snapshot(&'a SnapshotSource),
    /// A database (the workspace recovered to a moment in a throwaway cluster): its schema
    /// by pg_dump, its rows by COPY straight into the target.
    Database(&'a ConnSpec),
}

/// A picked table as its source has it.
struct SourceTable {
    schema: String,
    name: String,
    columns: Vec<String>,
    /// Rows and content digest the loaded table must have (a snapshot's manifest); from a
    /// database, computed while the rows are copied.
    expected: Option<(u64, String)>,
    parts: Vec<crate::repo::manifest::ObjectEntry>,
}

/// A table to restore and the name it gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TablePick {
    pub from: (String, String),
    pub to: (String, String),
}

/// Where the tables go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TablesInto {
    /// A new or empty database: it also gets the schemas, types, functions and extensions
    /// the snapshot has (everything but the other tables and the views over them).
    NewDatabase,
    /// A database that already holds the rest of the schema (the live one): only the
    /// tables themselves, and never over an existing relation.
    Existing,
}

/// One restored table.
#[derive(Debug, Clone, Serialize)]
pub struct RestoredTable {
    /// `schema.name` in the snapshot.
    pub table: String,
    /// `schema.name` it has now.
    pub restored_as: String,
    pub rows: u64,
    /// The sequences that came along (owned or identity), by their new names.
    pub sequences: Vec<String>,
    /// The indexes it has now, by name.
    pub indexes: Vec<String>,
}

/// A foreign key of a restored table to a table that was not restored: left out.
#[derive(Debug, Clone, Serialize)]
pub struct LeftOutKey {
    pub table: String,
    pub constraint: String,
    pub references: String,
    /// Its definition, to add it back by hand (`ALTER TABLE ... ADD CONSTRAINT ...`).
    pub definition: String,
}

/// What a table restore did.
#[derive(Debug, Clone, Serialize)]
pub struct TablesOutcome {
    pub tables: Vec<RestoredTable>,
    pub left_out_foreign_keys: Vec<LeftOutKey>,
    /// Stored bytes read from the repository: the schema and the picked tables' objects.
    pub bytes_read: u64,
    /// The snapshot's stored bytes, for comparison.
    pub snapshot_bytes: u64,
    pub created_database: bool,
}

/// Restores `picks` from the snapshot into `target`.
///
/// Errors: `NotFound` for a table the snapshot does not have; `Usage` for a partitioned
/// table or a partition (restore the whole snapshot); `Refused` when a restored name
/// exists in an `Existing` target or a `NewDatabase` target is not empty; `Integrity` when
/// an object or the loaded rows do not match the snapshot; `Database` from Postgres. A
/// database created here is dropped again on failure; the scratch database always is.
pub async fn restore_tables(
    from: TablesFrom<'_>,
    target: &ConnSpec,
    picks: &[TablePick],
    into: TablesInto,
    bin_dir: Option<&Path>,
    progress: &Progress,
) -> Result<TablesOutcome> {
    let (tables, bytes_read, snapshot_bytes, locale) = match from {
        TablesFrom::Snapshot(source) => {
            let manifest = &source.manifest;
            let entries = picked_entries(manifest, picks)?;
            let bytes_read = manifest.schema_pre.stored_size
                + manifest.schema_post.stored_size
                + entries.iter().flat_map(|t| &t.parts).map(|p| p.stored_size).sum::<u64>();
            let tables = entries
                .into_iter()
                .map(|t| SourceTable {
                    schema: t.schema.clone(),
                    name: t.name.clone(),
                    columns: t.columns.clone(),
                    expected: Some((t.rows, t.content_digest.clone())),
                    parts: t.parts.clone(),
                })
                .collect();
            (tables, bytes_read, manifest.stored_bytes(), Locale::of(&manifest.source))
        }
        TablesFrom::Database(spec) => {
            let mut conn = spec.connect().await?;
            let tables = database_tables(&mut conn, picks).await;
            let locale = Locale::read(&mut conn).await;
            ConnSpec::close(conn).await;
            (tables?, 0, 0, locale?)
        }
    };

    if into == TablesInto::Existing {
        refuse_existing(target, picks).await?;
    }
    progress.set_message("schema, in a scratch database");
    let scratch = target.with_database(&format!("tidemark_tables_{:016x}", rand::random::<u64>()));
    database::prepare_target_like(&scratch, &locale).await?;
    let prepared = async {
        let ddl = prepare_in_scratch(from, &scratch, picks, into, bin_dir).await?;
        let only = (into == TablesInto::Existing).then_some(picks);
        let pre = dump_section(bin_dir, &scratch, "pre-data", only).await?;
        let post = dump_section(bin_dir, &scratch, "post-data", only).await?;
        Ok::<_, Error>((ddl, pre, post))
    }
    .await;
    let dropped = database::drop_database(&scratch).await;
    let (ddl, pre, post) = prepared?;
    if let Err(e) = dropped {
        tracing::warn!(database = %scratch.database().unwrap_or_default(), error = %e.report(), "the scratch database could not be dropped");
    }

    let state = match into {
        TablesInto::NewDatabase => Some(database::prepare_target_like(target, &locale).await?),
        TablesInto::Existing => None,
    };
    let loaded = load(from, target, picks, &tables, &ddl, &pre, &post, progress).await;
    match loaded {
        Ok(tables) => Ok(TablesOutcome {
            tables,
            left_out_foreign_keys: ddl.left_out,
            bytes_read,
            snapshot_bytes,
            created_database: state == Some(TargetState::Created),
        }),
        Err(e) if state == Some(TargetState::Created) => match database::drop_database(target).await {
            Ok(()) => Err(e.context("(the new database was dropped again)".to_string())),
            Err(d) => {
                Err(e.context(format!("(the new database could not be dropped: {}; drop it by hand)", d.message())))
            }
        },
        Err(e) => Err(e),
    }
}

fn picked_entries<'m>(
    manifest: &'m crate::repo::manifest::Manifest,
    picks: &[TablePick],
) -> Result<Vec<&'m TableEntry>> {
    let mut seen = std::collections::BTreeSet::new();
    picks
        .iter()
        .map(|p| {
            if !seen.insert(&p.to) {
                return Err(Error::usage(format!("two tables would be restored as {}.{}", p.to.0, p.to.1)));
            }
            manifest
                .tables
                .iter()
                .find(|t| (t.schema.as_str(), t.name.as_str()) == (p.from.0.as_str(), p.from.1.as_str()))
                .ok_or_else(|| {
                    let mut near: Vec<String> = manifest
                        .tables
                        .iter()
                        .filter(|t| t.name == p.from.1 || t.name.contains(&p.from.1))
                        .map(|t| format!("{}.{}", t.schema, t.name))
                        .collect();
                    near.truncate(5);
                    let hint = match near.is_empty() {
                        true => format!(
                            "it has {} tables (`tidemark snapshot show {}` lists them)",
                            manifest.tables.len(),
                            manifest.id
                        ),
                        false => format!("did you mean {}?", near.join(", ")),
                    };
                    Error::not_found(format!("snapshot {} has no table {}.{}: {hint}", manifest.id, p.from.0, p.from.1))
                })
        })
        .collect()
}

/// The picked tables as a database has them: each must be there, its columns in order.
///
/// Errors: `NotFound` naming a table the database does not have.
async fn database_tables(conn: &mut PgConnection, picks: &[TablePick]) -> Result<Vec<SourceTable>> {
    let mut out = Vec::new();
    for p in picks {
        let columns: Option<Vec<String>> = sqlx::query_scalar(
            "SELECT array_agg(a.attname::text ORDER BY a.attnum) FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = '' \
             WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')",
        )
        .bind(&p.from.0)
        .bind(&p.from.1)
        .fetch_one(&mut *conn)
        .await?;
        let Some(columns) = columns else {
            return Err(Error::not_found(format!(
                "the workspace had no table {}.{} at that moment",
                p.from.0, p.from.1
            )));
        };
        out.push(SourceTable {
            schema: p.from.0.clone(),
            name: p.from.1.clone(),
            columns,
            expected: None,
            parts: Vec::new(),
        });
    }
    Ok(out)
}

/// An `Existing` target must not have any of the new names.
async fn refuse_existing(target: &ConnSpec, picks: &[TablePick]) -> Result<()> {
    let mut conn = target.connect().await?;
    for p in picks {
        let found: Option<String> = sqlx::query_scalar("SELECT to_regclass($1)::text")
            .bind(qualified(&p.to.0, &p.to.1))
            .fetch_one(&mut conn)
            .await?;
        if found.is_some() {
            ConnSpec::close(conn).await;
            return Err(Error::new(
                ErrorKind::Refused,
                format!(
                    "{}.{} already exists in {}: tidemark never restores over an existing table. \
                     Choose another name with --as",
                    p.to.0,
                    p.to.1,
                    target.display()
                ),
            ));
        }
    }
    ConnSpec::close(conn).await;
    Ok(())
}

/// `(schema, name)`.
type Qualified = (String, String);

/// What the scratch database says about the picked tables once renamed.
struct Prepared {
    left_out: Vec<LeftOutKey>,
    /// Per pick: (sequence in the snapshot, its new name), and the index names.
    sequences: Vec<Vec<(Qualified, Qualified)>>,
    indexes: Vec<Vec<String>>,
}

/// Applies the snapshot's schema to the scratch database and shapes it: picked tables
/// renamed (indexes and sequences too), foreign keys out of the picked set dropped, and for
/// a new database every other table and view dropped with what depends on it.
async fn prepare_in_scratch(
    from: TablesFrom<'_>,
    scratch: &ConnSpec,
    picks: &[TablePick],
    into: TablesInto,
    bin_dir: Option<&Path>,
) -> Result<Prepared> {
    let (pre, post) = match from {
        TablesFrom::Snapshot(source) => {
            let manifest = &source.manifest;
            (source.open(&manifest.schema_pre).await?, source.open(&manifest.schema_post).await?)
        }
        TablesFrom::Database(spec) => {
            let pre = dump_section(bin_dir, spec, "pre-data", None).await?;
            let post = dump_section(bin_dir, spec, "post-data", None).await?;
            (stream_of(pre.into_bytes()), stream_of(post.into_bytes()))
        }
    };
    // A grant the role may not give is skipped here as in a whole restore.
    database::apply_pre_data(bin_dir, scratch, pre, "the schema (pre-data)").await?;
    database::apply_sql(bin_dir, scratch, post, "the schema (post-data)").await?;
    let mut conn = scratch.connect().await?;
    let result = shape(&mut conn, picks, into).await;
    ConnSpec::close(conn).await;
    result
}

async fn shape(conn: &mut PgConnection, picks: &[TablePick], into: TablesInto) -> Result<Prepared> {
    let run = |sql: String| sqlx::raw_sql(AssertSqlSafe(sql));
    let mut oids = Vec::new();
    for p in picks {
        let row: Option<(sqlx::postgres::types::Oid, String, bool)> = sqlx::query_as(
            "SELECT c.oid, c.relkind::text, c.relispartition FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = $2",
        )
        .bind(&p.from.0)
        .bind(&p.from.1)
        .fetch_optional(&mut *conn)
        .await?;
        let name = format!("{}.{}", p.from.0, p.from.1);
        match row {
            Some((oid, kind, false)) if kind == "r" => oids.push(oid),
            Some((_, kind, partition)) if kind == "p" || partition => {
                return Err(Error::usage(format!(
                    "{name} is partitioned or a partition: restore the whole snapshot into a new database \
                     and copy from there"
                )));
            }
            _ => return Err(Error::not_found(format!("the snapshot's schema has no ordinary table {name}"))),
        }
    }

    // Foreign keys leaving the picked set cannot come along.
    let keys: Vec<(String, String, String, String, String)> = sqlx::query_as(
        "SELECT conrelid::regclass::text, conname::text, confrelid::regclass::text, \
                pg_get_constraintdef(oid), format('ALTER TABLE %s DROP CONSTRAINT %I', conrelid::regclass, conname) \
         FROM pg_constraint WHERE contype = 'f' AND conrelid = ANY($1) AND NOT confrelid = ANY($1) \
         ORDER BY 1, 2",
    )
    .bind(&oids)
    .fetch_all(&mut *conn)
    .await?;
    let mut left_out = Vec::new();
    for (table, constraint, references, definition, drop) in keys {
        run(drop).execute(&mut *conn).await?;
        left_out.push(LeftOutKey { table, constraint, references, definition });
    }

    if into == TablesInto::NewDatabase {
        let others: Vec<String> = sqlx::query_scalar(
            "SELECT format('DROP %s IF EXISTS %s CASCADE', CASE c.relkind WHEN 'v' THEN 'VIEW' \
                    WHEN 'm' THEN 'MATERIALIZED VIEW' WHEN 'f' THEN 'FOREIGN TABLE' ELSE 'TABLE' END, \
                    c.oid::regclass) \
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') AND NOT c.oid = ANY($1) \
               AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_toast%' \
               AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass \
                               AND d.objid = c.oid AND d.deptype = 'e')",
        )
        .bind(&oids)
        .fetch_all(&mut *conn)
        .await?;
        for drop in others {
            run(drop).execute(&mut *conn).await?;
        }
    }

    let mut sequences = Vec::new();
    let mut indexes = Vec::new();
    for (p, oid) in picks.iter().zip(&oids) {
        let owned: Vec<(String, String)> = sqlx::query_as(
            "SELECT n.nspname::text, s.relname::text FROM pg_depend d \
             JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S' JOIN pg_namespace n ON n.oid = s.relnamespace \
             WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass \
               AND d.refobjid = $1 AND d.deptype IN ('a', 'i') ORDER BY 2",
        )
        .bind(oid)
        .fetch_all(&mut *conn)
        .await?;
        let index_names: Vec<String> =
            sqlx::query_scalar("SELECT c.relname::text FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = $1 ORDER BY 1")
                .bind(oid)
                .fetch_all(&mut *conn)
                .await?;
        if p.from == p.to {
            sequences.push(owned.into_iter().map(|s| (s.clone(), s)).collect());
            indexes.push(index_names);
            continue;
        }
        let (old_schema, old_name) = &p.from;
        let (schema, name) = &p.to;
        run(format!("CREATE SCHEMA IF NOT EXISTS {}", quote_ident(schema))).execute(&mut *conn).await?;
        run(format!("ALTER TABLE {} RENAME TO {}", qualified(old_schema, old_name), quote_ident(name)))
            .execute(&mut *conn)
            .await?;
        if schema != old_schema {
            // Moves the indexes, constraints and owned sequences along.
            run(format!("ALTER TABLE {} SET SCHEMA {}", qualified(old_schema, name), quote_ident(schema)))
                .execute(&mut *conn)
                .await?;
        }
        let mut new_indexes = Vec::new();
        for index in index_names {
            let renamed = derived_name(&index, old_name, name);
            run(format!("ALTER INDEX {} RENAME TO {}", qualified(schema, &index), quote_ident(&renamed)))
                .execute(&mut *conn)
                .await?;
            new_indexes.push(renamed);
        }
        let mut pairs = Vec::new();
        for (seq_schema, seq) in owned {
            let renamed = derived_name(&seq, old_name, name);
            // SET SCHEMA took every owned sequence along, wherever it was.
            let now_in = if schema == old_schema { seq_schema.clone() } else { schema.clone() };
            run(format!("ALTER SEQUENCE {} RENAME TO {}", qualified(&now_in, &seq), quote_ident(&renamed)))
                .execute(&mut *conn)
                .await?;
            pairs.push(((seq_schema, seq), (now_in, renamed)));
        }
        sequences.push(pairs);
        indexes.push(new_indexes);
    }
    Ok(Prepared { left_out, sequences, indexes })
}

/// The name an index or sequence of a renamed table gets: the table's old name at its
/// start replaced by the new one (`orders_pkey` → `orders_restored_pkey`), else the new
/// name put in front; at most 63 bytes, as Postgres allows.
fn derived_name(object: &str, old_table: &str, new_table: &str) -> String {
    let mut name = match object.strip_prefix(old_table) {
        Some(rest) => format!("{new_table}{rest}"),
        None => format!("{new_table}_{object}"),
    };
    while name.len() > 63 {
        name.pop();
    }
    name
}

/// One section of a database's schema: all of it, or `only` the picked tables (by their
/// new names), without psql's `\restrict` lines.
async fn dump_section(
    bin_dir: Option<&Path>,
    spec: &ConnSpec,
    section: &str,
    only: Option<&[TablePick]>,
) -> Result<String> {
    let path = crate::pg::tool(bin_dir, "pg_dump");
    let mut cmd = tokio::process::Command::new(&path);
    cmd.args(["--schema-only", &format!("--section={section}"), "--no-password"]);
    if let Some(picks) = only {
        for p in picks {
            // Inside double quotes a pattern's special characters are literal.
            cmd.arg(format!("--table={}", qualified(&p.to.0, &p.to.1)));
        }
    }
    spec.apply_to_command(&mut cmd);
    let out = cmd.output().await.map_err(|e| crate::pg::tool_spawn_error(&path, &e))?;
    if !out.status.success() {
        return Err(Error::new(
            ErrorKind::Database,
            format!(
                "pg_dump --section={section} of {} failed: {}",
                spec.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        ));
    }
    let text = String::from_utf8(out.stdout).map_err(|_| Error::internal("pg_dump printed text that is not UTF-8"))?;
    let mut sql = String::with_capacity(text.len());
    for line in text.lines() {
        if line.starts_with("\\restrict") || line.starts_with("\\unrestrict") {
            continue;
        }
        if line.starts_with('\\') {
            return Err(Error::internal(format!("pg_dump printed a psql command tidemark cannot run: {line}")));
        }
        sql.push_str(line);
        sql.push('\n');
    }
    Ok(sql)
}

/// Schema, rows, sequence values and post-data in one transaction, checked before commit.
#[allow(clippy::too_many_arguments)]
async fn load(
    from: TablesFrom<'_>,
    target: &ConnSpec,
    picks: &[TablePick],
    tables: &[SourceTable],
    ddl: &Prepared,
    pre: &str,
    post: &str,
    progress: &Progress,
) -> Result<Vec<RestoredTable>> {
    let mut source = match from {
        TablesFrom::Database(spec) => {
            let mut conn = spec.connect().await?;
            sqlx::raw_sql("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY").execute(&mut conn).await?;
            Some(conn)
        }
        TablesFrom::Snapshot(_) => None,
    };
    let mut conn = target.connect().await?;
    let run = |sql: String| sqlx::raw_sql(AssertSqlSafe(sql));
    run("BEGIN; SET LOCAL synchronous_commit = off".to_string()).execute(&mut conn).await?;
    let work = async {
        progress.set_message("schema");
        run(pre.to_string())
            .execute(&mut conn)
            .await
            .map_err(|e| Error::from(e).context("creating the tables".to_string()))?;
        let mut out = Vec::new();
        progress.set_tables(0, picks.len() as u64);
        for (i, (p, t)) in picks.iter().zip(tables).enumerate() {
            progress.set_message(format!("table {}.{}", p.to.0, p.to.1));
            let statement = database::copy_in_statement(&p.to.0, &p.to.1, &t.columns, false);
            let expected = match (from, source.as_mut()) {
                (TablesFrom::Snapshot(snapshot), _) => {
                    for part in &t.parts {
                        database::copy_in(&mut conn, &statement, snapshot.open(part).await?, Some(progress))
                            .await
                            .map_err(|e| e.context(format!("loading {}.{} ({})", t.schema, t.name, part.name)))?;
                    }
                    t.expected.clone().expect("a snapshot's table has its digest")
                }
                (TablesFrom::Database(_), Some(source)) => copy_across(source, &mut conn, t, &statement, progress)
                    .await
                    .map_err(|e| e.context(format!("copying {}.{} from the recovered database", t.schema, t.name)))?,
                (TablesFrom::Database(_), None) => unreachable!("the source connection is opened above"),
            };
            check_rows(&mut conn, p, t, &expected).await?;
            let mut sequences = Vec::new();
            for (old, new) in &ddl.sequences[i] {
                let value = match (from, source.as_mut()) {
                    (TablesFrom::Snapshot(snapshot), _) => snapshot
                        .manifest
                        .sequences
                        .iter()
                        .find(|s| (&s.schema, &s.name) == (&old.0, &old.1))
                        .map(|s| (s.last_value, s.is_called)),
                    (TablesFrom::Database(_), Some(source)) => {
                        let sql = format!("SELECT last_value, is_called FROM {}", qualified(&old.0, &old.1));
                        Some(sqlx::query_as(AssertSqlSafe(sql)).fetch_one(&mut *source).await?)
                    }
                    (TablesFrom::Database(_), None) => None,
                };
                if let Some((last_value, is_called)) = value {
                    let moved = crate::repo::manifest::SequenceEntry {
                        schema: new.0.clone(),
                        name: new.1.clone(),
                        last_value,
                        is_called,
                    };
                    database::set_sequences(&mut conn, std::slice::from_ref(&moved)).await?;
                }
                sequences.push(format!("{}.{}", new.0, new.1));
            }
            out.push(RestoredTable {
                table: format!("{}.{}", t.schema, t.name),
                restored_as: format!("{}.{}", p.to.0, p.to.1),
                rows: expected.0,
                sequences,
                indexes: ddl.indexes[i].clone(),
            });
            progress.set_tables(i as u64 + 1, picks.len() as u64);
        }
        progress.set_message("indexes, constraints, triggers, policies");
        run(post.to_string())
            .execute(&mut conn)
            .await
            .map_err(|e| Error::from(e).context("building indexes, constraints and triggers".to_string()))?;
        run("COMMIT".to_string()).execute(&mut conn).await?;
        Ok::<_, Error>(out)
    }
    .await;
    if work.is_err() {
        let _ = run("ROLLBACK".to_string()).execute(&mut conn).await;
    }
    ConnSpec::close(conn).await;
    if let Some(source) = source {
        ConnSpec::close(source).await;
    }
    work
}

/// Streams a table's rows from `source` into `target` (COPY out, COPY in), digesting them
/// on the way. Returns the rows and digest sent.
///
/// Errors: `Database` from either side (the COPY in is then aborted).
async fn copy_across(
    source: &mut PgConnection,
    target: &mut PgConnection,
    t: &SourceTable,
    statement: &str,
    progress: &Progress,
) -> Result<(u64, String)> {
    let mut digest = crate::source::digest::RowDigest::new();
    let mut copy = target.copy_in_raw(statement).await?;
    let out = crate::source::postgres::copy_out_statement(&t.schema, &t.name, &t.columns, None);
    let mut rows = crate::source::postgres::copy_out(source, &out).await?;
    while let Some(chunk) = futures::StreamExt::next(&mut rows).await {
        match chunk {
            Ok(bytes) => {
                digest.update(&bytes);
                progress.add_bytes(bytes.len() as u64);
                copy.send(bytes).await?;
            }
            Err(e) => {
                let _ = copy.abort("tidemark: reading the source failed").await;
                return Err(e);
            }
        }
    }
    copy.finish().await?;
    digest.finish();
    Ok((digest.rows(), digest.hex()))
}

/// The loaded rows must be the source's: same count, same content digest.
async fn check_rows(conn: &mut PgConnection, p: &TablePick, t: &SourceTable, expected: &(u64, String)) -> Result<()> {
    let digest = table_digest(conn, &p.to.0, &p.to.1, &t.columns).await?;
    if digest.rows() != expected.0 || digest.hex() != expected.1 {
        return Err(Error::integrity(format!(
            "{}.{} restored as {}.{} does not match its source ({} rows, expected {}); nothing was committed",
            t.schema,
            t.name,
            p.to.0,
            p.to.1,
            digest.rows(),
            expected.0
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::derived_name;

    #[test]
    fn renamed_tables_carry_their_index_and_sequence_names_along() {
        assert_eq!(derived_name("orders_pkey", "orders", "orders_restored"), "orders_restored_pkey");
        assert_eq!(derived_name("orders_id_seq", "orders", "orders_restored"), "orders_restored_id_seq");
        assert_eq!(derived_name("by_customer", "orders", "old_orders"), "old_orders_by_customer");
        let long = derived_name(&"x".repeat(60), "orders", &"y".repeat(40));
        assert_eq!(long.len(), 63);
    }
}
