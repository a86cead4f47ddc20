//! Verify a database against a snapshot's manifest: every table's row count and content
//! digest (computed exactly as the snapshot computed them while streaming) and every
//! sequence value. The demo uses it, the tests use it, and drills will.

use serde::Serialize;
use sqlx::{AssertSqlSafe, Row};

use crate::error::Result;
use crate::pg::{ConnSpec, qualified};
use crate::repo::manifest::{Manifest, TableEntry};
use crate::source::postgres::{BlockRange, table_digest, table_digest_range};

#[derive(Debug, Clone, Serialize)]
pub struct TableCheck {
    pub schema: String,
    pub name: String,
    pub expected_rows: u64,
    pub actual_rows: u64,
    pub expected_digest: String,
    pub actual_digest: String,
    pub ok: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct SequenceCheck {
    pub schema: String,
    pub name: String,
    pub expected: (i64, bool),
    pub actual: Option<(i64, bool)>,
    pub ok: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    pub tables: Vec<TableCheck>,
    pub sequences: Vec<SequenceCheck>,
    pub ok: bool,
}

/// Reads every table of `manifest` from the database at `spec` and compares.
///
/// Errors: `Unavailable`/`Database` when the database cannot be read (a missing table is an
/// error, not a failed check, since the schema itself is then wrong).
pub async fn verify_database(spec: &ConnSpec, manifest: &Manifest) -> Result<VerifyReport> {
    verify_database_after(spec, manifest, Vec::new()).await
}

/// Reads one table of a snapshot back and compares its rows and content digest.
///
/// Errors: `Database` when it cannot be read.
pub async fn verify_table(conn: &mut sqlx::PgConnection, t: &TableEntry) -> Result<TableCheck> {
    let digest = table_digest(conn, &t.schema, &t.name, &t.columns).await?;
    Ok(table_check(t, &digest))
}

fn table_check(t: &TableEntry, digest: &crate::source::digest::RowDigest) -> TableCheck {
    TableCheck {
        schema: t.schema.clone(),
        name: t.name.clone(),
        expected_rows: t.rows,
        actual_rows: digest.rows(),
        expected_digest: t.content_digest.clone(),
        actual_digest: digest.hex(),
        ok: digest.rows() == t.rows && digest.hex() == t.content_digest,
    }
}

/// [`verify_database`] for the tables not in `checked` (read already, while the restore
/// went on) and every sequence; the report lists the tables in the manifest's order.
///
/// Errors: as [`verify_database`].
pub async fn verify_database_after(
    spec: &ConnSpec,
    manifest: &Manifest,
    checked: Vec<TableCheck>,
) -> Result<VerifyReport> {
    let mut conn = spec.connect().await?;
    sqlx::raw_sql("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY").execute(&mut conn).await?;
    let mut checked: std::collections::HashMap<(String, String), TableCheck> =
        checked.into_iter().map(|c| ((c.schema.clone(), c.name.clone()), c)).collect();
    let mut tables = Vec::with_capacity(manifest.tables.len());
    for t in &manifest.tables {
        match checked.remove(&(t.schema.clone(), t.name.clone())) {
            Some(done) => tables.push(done),
            None => tables.push(verify_table(&mut conn, t).await?),
        }
    }
    let mut sequences = Vec::with_capacity(manifest.sequences.len());
    for s in &manifest.sequences {
        let actual =
            sqlx::query(AssertSqlSafe(format!("SELECT last_value, is_called FROM {}", qualified(&s.schema, &s.name))))
                .fetch_one(&mut conn)
                .await
                .map(|r| Some((r.get::<i64, _>(0), r.get::<bool, _>(1))))
                .map_err(|e| {
                    crate::error::Error::from(e).context(format!("reading sequence {}.{}", s.schema, s.name))
                })?;
        let expected = (s.last_value, s.is_called);
        sequences.push(SequenceCheck {
            schema: s.schema.clone(),
            name: s.name.clone(),
            expected,
            ok: actual == Some(expected),
            actual,
        });
    }
    sqlx::raw_sql("COMMIT").execute(&mut conn).await?;
    ConnSpec::close(conn).await;
    let ok = tables.iter().all(|t| t.ok) && sequences.iter().all(|s| s.ok);
    Ok(VerifyReport { tables, sequences, ok })
}

/// The schema as `pg_dump --schema-only --no-owner` prints it, without comments, blank
/// lines and `\restrict` lines (which carry a random key): equal text means equal schema.
///
/// Errors: `Database` when pg_dump fails.
pub async fn schema_fingerprint(bin_dir: Option<&std::path::Path>, spec: &ConnSpec) -> Result<String> {
    let path = crate::pg::tool(bin_dir, "pg_dump");
    let mut cmd = tokio::process::Command::new(&path);
    cmd.args(["--schema-only", "--no-owner", "--no-password"]);
    spec.apply_to_command(&mut cmd);
    let out = cmd.output().await.map_err(|e| crate::pg::tool_spawn_error(&path, &e))?;
    if !out.status.success() {
        return Err(crate::error::Error::new(
            crate::error::ErrorKind::Database,
            format!("pg_dump --schema-only failed: {}", String::from_utf8_lossy(&out.stderr).trim()),
        ));
    }
    Ok(normalize_schema_dump(&String::from_utf8_lossy(&out.stdout)))
}

/// Drops what differs between two dumps of the same schema: comments, blank lines and the
/// `\restrict`/`\unrestrict` lines.
pub fn normalize_schema_dump(dump: &str) -> String {
    dump.lines()
        .filter(|l| !l.starts_with("--") && !l.trim().is_empty())
        .filter(|l| !l.starts_with("\\restrict") && !l.starts_with("\\unrestrict"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// What [`compare_databases`] found.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    /// Tables and sequences compared.
    pub compared: usize,
    /// Rows in the tables compared.
    pub rows: u64,
    /// What differs (empty: the same).
    pub differences: Vec<String>,
}

/// Compares every table (rows and content digest) and sequence value of two databases:
/// a copy of a recovered database against the recovered database it copied.
///
/// Errors: `Unavailable`/`Database` when either cannot be read.
pub async fn compare_databases(expected: &ConnSpec, actual: &ConnSpec) -> Result<Comparison> {
    let ((want, rows), (got, _)) = (contents(expected).await?, contents(actual).await?);
    let mut differences = Vec::new();
    for (name, value) in &want {
        match got.get(name) {
            Some(v) if v == value => {}
            Some(v) => differences.push(format!("{name}: {v} instead of {value}")),
            None => differences.push(format!("{name} is missing")),
        }
    }
    differences.extend(got.keys().filter(|k| !want.contains_key(*k)).map(|k| format!("{k} is extra")));
    Ok(Comparison { compared: want.len(), rows, differences })
}

/// Per table `rows:digest`, per sequence `value/called`, in one read-only snapshot; and
/// the rows of all tables.
async fn contents(spec: &ConnSpec) -> Result<(std::collections::BTreeMap<String, String>, u64)> {
    let mut conn = spec.connect().await?;
    sqlx::raw_sql("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY").execute(&mut conn).await?;
    let relations: Vec<(String, String, String, Vec<String>)> = sqlx::query_as(
        "SELECT n.nspname::text, c.relname::text, c.relkind::text, \
                coalesce(array_agg(a.attname::text ORDER BY a.attnum) FILTER (WHERE a.attnum > 0), '{}') \
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = '' \
         WHERE c.relkind IN ('r', 'S') AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
           AND n.nspname NOT LIKE 'pg\\_%' \
         GROUP BY 1, 2, 3 ORDER BY 1, 2",
    )
    .fetch_all(&mut conn)
    .await?;
    let (mut out, mut rows) = (std::collections::BTreeMap::new(), 0);
    for (schema, name, kind, columns) in relations {
        let value = if kind == "S" {
            let sql = format!("SELECT last_value, is_called FROM {}", qualified(&schema, &name));
            let row = sqlx::query(AssertSqlSafe(sql)).fetch_one(&mut conn).await?;
            format!("{}/{}", row.get::<i64, _>(0), row.get::<bool, _>(1))
        } else {
            let digest = table_digest(&mut conn, &schema, &name, &columns).await?;
            rows += digest.rows();
            format!("{} rows, digest {}", digest.rows(), digest.hex())
        };
        out.insert(format!("{schema}.{name}"), value);
    }
    sqlx::raw_sql("COMMIT").execute(&mut conn).await?;
    ConnSpec::close(conn).await;
    Ok((out, rows))
}

/// Reads restored tables back while a restore goes on: `done` names each table (by its
/// index in the manifest) once its rows and indexes are in, until the restore drops its
/// end of the channel. A large table is read in block ranges over `jobs` connections at
/// once (Postgres 14 and later: a TID range scan reads only its range). A table that
/// cannot be read here is left out, so the pass after the restore reads it again and
/// reports the error.
pub async fn verify_tables_as_loaded(
    manifest: &Manifest,
    target: &ConnSpec,
    jobs: usize,
    mut done: tokio::sync::mpsc::UnboundedReceiver<usize>,
) -> Vec<TableCheck> {
    let mut checked = Vec::new();
    let mut conns: Vec<sqlx::PgConnection> = Vec::new();
    while let Some(i) = done.recv().await {
        let Some(table) = manifest.tables.get(i) else { continue };
        while conns.len() < jobs.max(1) {
            match target.connect().await {
                Ok(c) => conns.push(c),
                Err(_) => break,
            }
        }
        if conns.is_empty() {
            continue;
        }
        if let Ok(check) = verify_table_ranged(&mut conns, table, RANGED_BLOCKS).await {
            checked.push(check);
        }
    }
    for c in conns {
        ConnSpec::close(c).await;
    }
    checked
}

/// Tables of more blocks than this are read in ranges, one per connection.
const RANGED_BLOCKS: i64 = 16_384; // 128 MiB of 8 KiB blocks

/// Reads table `t` back, in block ranges over `conns` when it has at least `min_blocks`
/// blocks (and the server can scan TID ranges: PG 14+), else on the first connection.
async fn verify_table_ranged(conns: &mut [sqlx::PgConnection], t: &TableEntry, min_blocks: i64) -> Result<TableCheck> {
    let (blocks, version): (i64, i32) = sqlx::query_as(
        "SELECT (pg_relation_size($1::regclass) / current_setting('block_size')::bigint), \
                current_setting('server_version_num')::int",
    )
    .bind(qualified(&t.schema, &t.name))
    .fetch_one(&mut conns[0])
    .await?;
    let n = conns.len() as i64;
    if blocks < min_blocks || n < 2 || version < 140_000 {
        return verify_table(&mut conns[0], t).await;
    }
    let step = (blocks + n - 1) / n;
    let reads = conns.iter_mut().enumerate().map(|(k, conn)| {
        let k = k as i64;
        let range = BlockRange { start: k * step, end: (k + 1 < n).then_some((k + 1) * step) };
        table_digest_range(conn, &t.schema, &t.name, &t.columns, Some(range))
    });
    let mut digest = crate::source::digest::RowDigest::new();
    for part in futures::future::join_all(reads).await {
        digest.combine(&part?);
    }
    Ok(table_check(t, &digest))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The ranged read-back (tables over 128 MiB in a drill) on a real server, with the
    /// threshold lowered: the ranges' digests add up to the whole table's, no row lost or
    /// counted twice at a range's edge, and a changed row in the last range is seen.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_table_read_back_in_block_ranges_has_the_digest_of_the_whole() {
        use crate::pgcluster::{Cluster, ClusterOptions};
        let cluster =
            tokio::task::spawn_blocking(|| Cluster::start(&ClusterOptions::default())).await.unwrap().unwrap();
        let spec = ConnSpec::parse(&cluster.url("postgres"), None).unwrap();
        let mut conn = spec.connect().await.unwrap();
        sqlx::raw_sql(
            "CREATE TABLE t (id int, body text); \
             INSERT INTO t SELECT i, repeat(md5(i::text), 4) FROM generate_series(1, 5000) i;",
        )
        .execute(&mut conn)
        .await
        .unwrap();
        let blocks: i64 = sqlx::query_scalar("SELECT pg_relation_size('t') / 8192").fetch_one(&mut conn).await.unwrap();
        assert!(blocks > 9, "{blocks} blocks: enough for three ranges");
        let columns = vec!["id".to_string(), "body".to_string()];
        let whole = table_digest(&mut conn, "public", "t", &columns).await.unwrap();
        let entry = TableEntry {
            schema: "public".into(),
            name: "t".into(),
            columns,
            rows: whole.rows(),
            content_digest: whole.hex(),
            parts: Vec::new(),
        };
        let mut conns = Vec::new();
        for _ in 0..3 {
            conns.push(spec.connect().await.unwrap());
        }
        let check = verify_table_ranged(&mut conns, &entry, 1).await.unwrap();
        assert_eq!((check.actual_rows, &check.actual_digest), (5000, &entry.content_digest));
        sqlx::raw_sql("UPDATE t SET body = 'changed' WHERE id = 5000").execute(&mut conn).await.unwrap();
        let check = verify_table_ranged(&mut conns, &entry, 1).await.unwrap();
        assert_eq!(check.actual_rows, 5000);
        assert_ne!(check.actual_digest, entry.content_digest, "a changed row is seen");
    }
}
