//! `restore-tests/*.sql`: the assertions a drill runs against the restored database.
//!
//! A file is a list of named assertions. A comment line starts each one and names it; the
//! SQL up to the next such line is its query (one statement, the `;` is optional):
//!
//! ```sql
//! -- assert: users were restored
//! SELECT count(*) > 0 FROM app.users;
//!
//! -- assert-empty: every order has its customer
//! SELECT o.id FROM app.orders o LEFT JOIN app.customers c ON c.id = o.customer_id
//!  WHERE c.id IS NULL;
//! ```
//!
//! `assert` passes when the query returns one row whose first column is `true`;
//! `assert-empty` passes when it returns no rows (the first rows it did return are shown).
//! Each runs in its own read-only transaction with a statement timeout, so one failing or
//! erroring assertion never hides the others.

use std::path::{Path, PathBuf};

use sqlx::{PgConnection, Row};

use crate::error::{Error, Result};

/// The generic assertions shipped with tidemark (`restore-tests/generic.sql`), used when no
/// restore-tests folder is configured or found.
pub const BUILT_IN: &str = include_str!("../../restore-tests/generic.sql");

/// What an assertion's query must return.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// One row, first column `true`.
    True,
    /// No rows.
    NoRows,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assertion {
    /// The file it came from (its name, as reports show it).
    pub file: String,
    pub name: String,
    /// The line of its `-- assert` comment.
    pub line: usize,
    pub expect: Expect,
    pub sql: String,
}

/// Parses one file's text. `file` names it in errors and reports.
///
/// Errors: `Config` with the file and line for SQL before the first assertion, an
/// assertion without a name or without SQL, or a name used twice in the file.
pub fn parse(file: &str, text: &str) -> Result<Vec<Assertion>> {
    let mut out: Vec<Assertion> = Vec::new();
    let mut current: Option<(Assertion, Vec<&str>)> = None;
    let finish = |current: Option<(Assertion, Vec<&str>)>, out: &mut Vec<Assertion>| -> Result<()> {
        let Some((mut assertion, lines)) = current else { return Ok(()) };
        let sql = lines.join("\n");
        let sql = sql.trim().trim_end_matches(';').trim();
        let has_sql = sql.lines().any(|l| !l.trim().is_empty() && !l.trim_start().starts_with("--"));
        if !has_sql {
            return Err(Error::config(format!(
                "{file}:{}: the assertion \"{}\" has no SQL after its comment",
                assertion.line, assertion.name
            )));
        }
        if out.iter().any(|a| a.name == assertion.name) {
            return Err(Error::config(format!(
                "{file}:{}: the name \"{}\" is used twice in this file",
                assertion.line, assertion.name
            )));
        }
        assertion.sql = sql.to_string();
        out.push(assertion);
        Ok(())
    };
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        let header = line.trim_start().strip_prefix("--").map(str::trim_start);
        let parsed = header.and_then(|h| {
            if let Some(name) = h.strip_prefix("assert-empty:") {
                Some((Expect::NoRows, name.trim()))
            } else {
                h.strip_prefix("assert:").map(|name| (Expect::True, name.trim()))
            }
        });
        match parsed {
            Some((expect, name)) => {
                if name.is_empty() {
                    return Err(Error::config(format!("{file}:{number}: an assertion needs a name after the colon")));
                }
                finish(current.take(), &mut out)?;
                let assertion = Assertion {
                    file: file.to_string(),
                    name: name.to_string(),
                    line: number,
                    expect,
                    sql: String::new(),
                };
                current = Some((assertion, Vec::new()));
            }
            None => match current.as_mut() {
                Some((_, lines)) => lines.push(line),
                None if line.trim().is_empty() || line.trim_start().starts_with("--") => {}
                None => {
                    return Err(Error::config(format!(
                        "{file}:{number}: SQL before the first `-- assert: NAME` or `-- assert-empty: NAME` line"
                    )));
                }
            },
        }
    }
    finish(current, &mut out)?;
    Ok(out)
}

/// Every assertion of the `*.sql` files of `dirs`, in folder order then file name order.
///
/// Errors: `Config` when a folder cannot be read or a file does not parse.
pub fn load_dirs(dirs: &[PathBuf]) -> Result<Vec<Assertion>> {
    let mut out = Vec::new();
    for dir in dirs {
        let entries = std::fs::read_dir(dir)
            .map_err(|e| Error::config(format!("cannot read the restore-tests folder {}: {e}", dir.display())))?;
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "sql") && p.is_file())
            .collect();
        files.sort();
        for path in files {
            out.extend(load_file(&path)?);
        }
    }
    Ok(out)
}

fn load_file(path: &Path) -> Result<Vec<Assertion>> {
    let text = fs_err::read_to_string(path)
        .map_err(|e| Error::config(format!("cannot read the restore test {}: {e}", path.display())))?;
    let label = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    parse(&label, &text)
}

/// The result of running one assertion: `Ok(details)` when it held, `Err(details)` when not.
pub type Outcome = std::result::Result<String, String>;

/// Runs one assertion on `conn` in a read-only transaction that is rolled back.
pub async fn run(conn: &mut PgConnection, assertion: &Assertion, timeout: std::time::Duration) -> Outcome {
    let setup = format!("BEGIN READ ONLY; SET LOCAL statement_timeout = {}", timeout.as_millis().max(1));
    if let Err(e) = sqlx::raw_sql(sqlx::AssertSqlSafe(setup)).execute(&mut *conn).await {
        return Err(format!("cannot start a read-only transaction: {}", Error::from(e).report()));
    }
    let outcome = evaluate(conn, assertion).await;
    if let Err(e) = sqlx::raw_sql("ROLLBACK").execute(&mut *conn).await {
        return Err(format!("{}; then ROLLBACK failed: {}", describe(&outcome), Error::from(e).report()));
    }
    outcome
}

fn describe(outcome: &Outcome) -> &str {
    match outcome {
        Ok(d) | Err(d) => d,
    }
}

async fn evaluate(conn: &mut PgConnection, assertion: &Assertion) -> Outcome {
    let failed = |e: sqlx::Error| format!("the query failed: {}", Error::from(e).report());
    match assertion.expect {
        Expect::True => {
            let rows =
                sqlx::query(sqlx::AssertSqlSafe(assertion.sql.clone())).fetch_all(&mut *conn).await.map_err(failed)?;
            if rows.len() != 1 {
                return Err(format!("expected one row holding true, got {} rows", rows.len()));
            }
            match rows[0].try_get::<Option<bool>, _>(0) {
                Ok(Some(true)) => Ok("true".into()),
                Ok(Some(false)) => Err("returned false".into()),
                Ok(None) => Err("returned NULL".into()),
                Err(e) => Err(format!("the first column is not a boolean: {e}")),
            }
        }
        Expect::NoRows => {
            const SHOWN: usize = 5;
            let wrapped =
                format!("SELECT tidemark_row::text FROM ({}\n) AS tidemark_row LIMIT {}", assertion.sql, SHOWN + 1);
            let rows: Vec<String> =
                sqlx::query_scalar(sqlx::AssertSqlSafe(wrapped)).fetch_all(&mut *conn).await.map_err(failed)?;
            if rows.is_empty() {
                return Ok("no rows".into());
            }
            let more = if rows.len() > SHOWN { ", ..." } else { "" };
            let shown: Vec<&str> = rows.iter().take(SHOWN).map(String::as_str).collect();
            Err(format!("expected no rows, got: {}{more}", shown.join(", ")))
        }
    }
}

/// The restore-tests assertions of the workspace: the shared folder's (or the built-in
/// generic ones), then the workspace's own folder's.
pub fn load_for(config: &crate::config::LoadedConfig, ws: &crate::config::WorkspaceConfig) -> Result<Vec<Assertion>> {
    let mut out = Vec::new();
    for dir in config.restore_test_dirs(ws) {
        match dir {
            Some(dir) => out.extend(load_dirs(std::slice::from_ref(&dir))?),
            None => out.extend(parse("generic.sql (built in)", BUILT_IN)?),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_named_assertions_with_multi_line_sql() {
        let text = "-- Checks for the shop.\n\n-- assert: users exist\nSELECT count(*) > 0\n  FROM app.users;\n\n\
                    --assert-empty:  orphans  \n-- a note inside\nSELECT 1 FROM t WHERE false\n";
        let parsed = parse("shop.sql", text).unwrap();
        assert_eq!(parsed.len(), 2);
        assert_eq!(parsed[0].name, "users exist");
        assert_eq!(parsed[0].expect, Expect::True);
        assert_eq!(parsed[0].line, 3);
        assert_eq!(parsed[0].sql, "SELECT count(*) > 0\n  FROM app.users");
        assert_eq!(parsed[1].name, "orphans");
        assert_eq!(parsed[1].expect, Expect::NoRows);
        assert_eq!(parsed[1].sql, "-- a note inside\nSELECT 1 FROM t WHERE false");
    }

    #[test]
    fn refuses_what_would_run_unnamed_or_nothing() {
        let err = |text: &str| parse("x.sql", text).unwrap_err().to_string();
        assert!(err("SELECT 1;\n-- assert: a\nSELECT true").contains("x.sql:1: SQL before the first"));
        assert!(err("-- assert: a\n\n-- assert: b\nSELECT true").contains("x.sql:1: the assertion \"a\" has no SQL"));
        assert!(err("-- assert: a\n-- only a comment\n").contains("has no SQL"));
        assert!(err("-- assert:\nSELECT true").contains("x.sql:1: an assertion needs a name"));
        assert!(err("-- assert: a\nSELECT true;\n-- assert-empty: a\nSELECT 1").contains("used twice"));
        assert!(parse("x.sql", "-- nothing yet\n\n").unwrap().is_empty());
    }

    #[test]
    fn the_shipped_generic_file_parses() {
        let parsed = parse("generic.sql", BUILT_IN).unwrap();
        assert!(parsed.len() >= 3, "{parsed:?}");
        assert!(parsed.iter().any(|a| a.name.contains("foreign keys")));
    }
}
