//! What a drill checks on a restored copy: every table's rows and content digest and the
//! sequences against the manifest, the schema fingerprint, the function stacks, the media
//! files' hashes, and the restore-tests assertions. Each gives a [`Check`].

use std::path::Path;
use std::time::Instant;

use sqlx::PgConnection;

use super::Check;
use super::assertions::{self, Assertion};
use crate::error::{Error, Result};
use crate::pg::{ConnSpec, quote_ident};
use crate::repo::manifest::Manifest;

fn ms(since: Instant) -> u64 {
    since.elapsed().as_millis() as u64
}

/// Creates the roles the snapshot's objects refer to, so owners and grants load.
pub async fn create_roles(admin: &ConnSpec, roles: &[String]) -> Result<()> {
    if roles.is_empty() {
        return Ok(());
    }
    let mut conn = admin.connect().await?;
    let existing: Vec<String> = sqlx::query_scalar("SELECT rolname::text FROM pg_roles").fetch_all(&mut conn).await?;
    for role in roles.iter().filter(|r| !existing.contains(r)) {
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE ROLE {} NOLOGIN", quote_ident(role))))
            .execute(&mut conn)
            .await
            .map_err(|e| Error::from(e).context(format!("creating role {role} in the throwaway cluster")))?;
    }
    ConnSpec::close(conn).await;
    Ok(())
}

/// Readies the throwaway cluster for a restore as `role` (not a superuser), as a restore
/// into the workspace's own server runs: the role may log in, is a member of what it is a
/// member of there, and the empty database `db` belongs to `owner` (the source database's,
/// as an in-place restore gives it; the role's own when it is not a member of that).
/// Returns how to connect as it.
///
/// Errors: `Database` naming the role or the database.
pub async fn restoring_role(
    admin: &ConnSpec,
    role: &crate::repo::manifest::RoleInfo,
    owner: Option<&str>,
    db: &str,
    locale: &crate::restore::database::Locale,
) -> Result<ConnSpec> {
    let mut conn = admin.connect().await?;
    let name = quote_ident(&role.name);
    let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)")
        .bind(&role.name)
        .fetch_one(&mut conn)
        .await?;
    let mut statements = vec![match exists {
        true => format!("ALTER ROLE {name} LOGIN NOSUPERUSER"),
        false => format!("CREATE ROLE {name} LOGIN NOSUPERUSER"),
    }];
    statements.extend(role.member_of.iter().map(|m| format!("GRANT {} TO {name}", quote_ident(m))));
    for statement in statements {
        sqlx::raw_sql(sqlx::AssertSqlSafe(statement.clone())).execute(&mut conn).await.map_err(|e| {
            Error::from(e).context(format!("preparing role {} in the throwaway cluster ({statement})", role.name))
        })?;
    }
    let owner = owner.filter(|o| role.member_of.iter().any(|m| m == o)).unwrap_or(&role.name);
    crate::restore::database::create_database(&mut conn, db, locale, Some(owner)).await?;
    ConnSpec::close(conn).await;
    let mut url = url::Url::parse(&admin.with_database(db).display())
        .map_err(|e| Error::internal(format!("the throwaway cluster's URL: {e}")))?;
    url.set_username(&role.name).map_err(|()| Error::internal("the throwaway cluster's URL takes no user"))?;
    ConnSpec::parse(url.as_str(), None)
}

/// The drill's word on privileges: which role restored (the one the workspace's restores
/// run as, when it is not a superuser), and what it could not give.
pub fn privileges_check(role: Option<&str>, note: Option<&str>, skipped: &[String]) -> Check {
    let who = match (role, note) {
        (Some(role), _) => format!("restored as role {role} (not a superuser), as the workspace's restores run"),
        (None, Some(note)) => format!("restored as a superuser: {note}"),
        (None, None) => "restored as a superuser, as the workspace's restores run".to_string(),
    };
    let outcome = match skipped {
        [] => format!("{who}; every privilege statement applied"),
        _ => format!(
            "{who}; {} privilege statements the role may not give were skipped, as a real restore skips them \
             (a superuser can apply them): {}",
            skipped.len(),
            skipped.join(" ")
        ),
    };
    Check::new("privileges", Ok(outcome), 0)
}

/// Tables, sequences, schema fingerprint and function stacks against the manifest; the
/// tables in `checked` were read back already (while the restore went on).
pub async fn check_contents(
    manifest: &Manifest,
    target: &ConnSpec,
    checked: Vec<crate::drill::verify::TableCheck>,
) -> Vec<Check> {
    let mut checks: Vec<Check> = Vec::new();
    let clock = Instant::now();
    match crate::drill::verify::verify_database_after(target, manifest, checked).await {
        Ok(verified) => {
            for t in &verified.tables {
                let outcome = if t.ok {
                    Ok(format!("{} rows, content digest {}", t.actual_rows, t.actual_digest))
                } else {
                    Err(format!(
                        "expected {} rows with digest {}, found {} rows with digest {}",
                        t.expected_rows, t.expected_digest, t.actual_rows, t.actual_digest
                    ))
                };
                checks.push(Check::new(format!("table {}.{}", t.schema, t.name), outcome, 0));
            }
            let wrong: Vec<String> = verified
                .sequences
                .iter()
                .filter(|s| !s.ok)
                .map(|s| format!("{}.{} expected {:?}, found {:?}", s.schema, s.name, s.expected, s.actual))
                .collect();
            let outcome = if wrong.is_empty() {
                Ok(format!("{} sequences at their snapshot values", verified.sequences.len()))
            } else {
                Err(wrong.join("; "))
            };
            checks.push(Check::new("sequences", outcome, 0));
        }
        Err(e) => {
            checks.push(Check::new("tables", Err(e.report()), ms(clock)));
            checks.push(Check::skipped("sequences", "the tables could not be read"));
        }
    }
    let tables_ms = ms(clock);
    if let Some(first) = checks.iter_mut().find(|c| c.name.starts_with("table ")) {
        first.duration_ms = tables_ms; // one pass read them all
    }

    let clock = Instant::now();
    let fingerprint = async {
        let mut conn = target.connect().await?;
        let actual = crate::source::fingerprint::schema_fingerprint(&mut conn).await;
        let stacks = crate::stacks::log::list_if_installed(&mut conn).await;
        ConnSpec::close(conn).await;
        Ok::<_, Error>((actual?, stacks?))
    }
    .await;
    match fingerprint {
        Ok((actual, stacks)) => {
            let outcome = if manifest.schema_fingerprint.is_empty() {
                None
            } else {
                let differs =
                    crate::source::fingerprint::fingerprint_differences(&manifest.schema_fingerprint, &actual);
                Some(if differs.is_empty() {
                    Ok(format!("{} kinds of schema objects identical", actual.len()))
                } else {
                    Err(format!("these kinds of schema objects differ from the snapshot: {}", differs.join(", ")))
                })
            };
            match outcome {
                Some(outcome) => checks.push(Check::new("schema-fingerprint", outcome, ms(clock))),
                None => checks.push(Check::skipped(
                    "schema-fingerprint",
                    "the snapshot predates schema fingerprints (taken by an older tidemark)",
                )),
            }
            let outcome = if stacks == manifest.stacks {
                Ok(format!("{} stacks with their change counts, live states and versions", stacks.len()))
            } else {
                let describe = |s: &[crate::stacks::log::StackSummary]| {
                    s.iter()
                        .map(|s| format!("{} (changes {}, version {:?})", s.stack, s.changes, s.latest_version))
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                Err(format!("snapshot: [{}]; restored: [{}]", describe(&manifest.stacks), describe(&stacks)))
            };
            checks.push(Check::new("function-stacks", outcome, 0));
        }
        Err(e) => {
            checks.push(Check::new("schema-fingerprint", Err(e.report()), ms(clock)));
            checks.push(Check::skipped("function-stacks", "the restored database could not be read"));
        }
    }
    checks
}

/// Every media file of the snapshot in the restored folder, with its size and SHA-256.
pub async fn check_media(manifest: &Manifest, dir: &Path) -> Check {
    let Some(media) = &manifest.media else {
        return Check::skipped("media-hashes", "the snapshot has no media");
    };
    let clock = Instant::now();
    let (files, dir) = (media.files.clone(), dir.to_path_buf());
    let problems = tokio::task::spawn_blocking(move || {
        use sha2::{Digest, Sha256};
        let mut problems = Vec::new();
        for f in &files {
            let path = dir.join(&f.path);
            let hashed = std::fs::File::open(&path).and_then(|mut file| {
                let mut hash = Sha256::new();
                let size = std::io::copy(&mut file, &mut hash)?;
                Ok((size, hex::encode(hash.finalize())))
            });
            match hashed {
                Ok((size, sha)) if size == f.size && sha == f.sha256 => {}
                Ok((size, sha)) => {
                    problems.push(format!("{}: {size} bytes sha256 {sha}, expected {}", f.path, f.sha256));
                }
                Err(e) => problems.push(format!("{}: {e}", f.path)),
            }
        }
        problems
    })
    .await
    .unwrap_or_else(|e| vec![format!("media check task: {e}")]);
    let outcome = if problems.is_empty() {
        Ok(format!("{} files, {} bytes, every SHA-256 as recorded", media.files.len(), media.bytes))
    } else {
        Err(problems.join("; "))
    };
    Check::new("media-hashes", outcome, ms(clock))
}

/// Runs the restore-tests assertions, one check each, with the snapshot's tables (and
/// their row counts at backup) in `pg_temp.tidemark_snapshot_tables`.
pub async fn run_assertions(
    conn: &mut PgConnection,
    assertions: &[Assertion],
    tables: &[(String, String, i64)],
    timeout: std::time::Duration,
) -> Vec<Check> {
    let mut checks = Vec::new();
    let setup = async {
        sqlx::raw_sql(
            "CREATE TEMP TABLE tidemark_snapshot_tables (schema_name text, table_name text, \"rows\" bigint)",
        )
        .execute(&mut *conn)
        .await?;
        for (schema, name, rows) in tables {
            sqlx::query("INSERT INTO pg_temp.tidemark_snapshot_tables VALUES ($1, $2, $3)")
                .bind(schema)
                .bind(name)
                .bind(rows)
                .execute(&mut *conn)
                .await?;
        }
        Ok::<_, sqlx::Error>(())
    };
    if let Err(e) = setup.await {
        return vec![Check::new("restore-tests", Err(Error::from(e).report()), 0)];
    }
    for assertion in assertions {
        let clock = Instant::now();
        let outcome = assertions::run(conn, assertion, timeout).await;
        checks.push(Check::new(format!("restore-test {}: {}", assertion.file, assertion.name), outcome, ms(clock)));
    }
    checks
}
