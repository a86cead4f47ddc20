//! Restoring into a Postgres database: the target's life cycle (create, refuse when not
//! empty, drop what we created when a restore fails) and the steps that fill it.

use std::path::Path;
use std::process::Stdio;

use sqlx::AssertSqlSafe;
use sqlx::postgres::PgConnection;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::error::{Error, ErrorKind, Result};
use crate::pg::{ConnSpec, qualified, quote_ident};
use crate::repo::manifest::{MatViewEntry, SequenceEntry, SourceInfo};
use crate::repo::pipeline::ObjectStream;

/// What was found or done to the target database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetState {
    /// It did not exist; tidemark created it (and drops it again if the restore fails).
    Created,
    /// It existed and was empty.
    ExistedEmpty,
}

/// A connection to the server's maintenance database (`postgres`, else `template1`).
async fn maintenance_connection(target: &ConnSpec) -> Result<PgConnection> {
    let connected = match target.with_database("postgres").connect().await {
        Ok(c) => Ok(c),
        Err(e) if e.kind() == ErrorKind::Database => target.with_database("template1").connect().await,
        Err(e) => Err(e),
    };
    connected.map_err(|e| {
        let db = target.database().unwrap_or_default();
        e.context(format!(
            "checking for (or creating) the target database {db:?}, which needs a connection to the server's \
             postgres or template1 database as the target URL's role. A password: --target-password \
             env:VARIABLE or file:/path, PGPASSWORD, or ~/.pgpass"
        ))
    })
}

/// Makes sure the target database exists and is empty, creating it like the source
/// (encoding, collation) when it does not exist.
///
/// Errors: `Refused` when it exists and holds anything; `Database` when it cannot be created.
pub async fn prepare_target(target: &ConnSpec, source: &SourceInfo) -> Result<TargetState> {
    prepare_target_like(target, &Locale::of(source)).await
}

/// A database's encoding and locale, which a new database copies.
#[derive(Debug, Clone)]
pub struct Locale {
    pub encoding: String,
    pub collate: String,
    pub ctype: String,
}

impl Locale {
    pub fn of(source: &SourceInfo) -> Locale {
        Locale { encoding: source.encoding.clone(), collate: source.collate.clone(), ctype: source.ctype.clone() }
    }

    /// The locale of the database `conn` is connected to.
    ///
    /// Errors: `Database`.
    pub async fn read(conn: &mut PgConnection) -> Result<Locale> {
        let (encoding, collate, ctype): (String, String, String) = sqlx::query_as(
            "SELECT pg_encoding_to_char(encoding)::text, datcollate::text, datctype::text              FROM pg_database WHERE datname = current_database()",
        )
        .fetch_one(conn)
        .await?;
        Ok(Locale { encoding, collate, ctype })
    }
}

/// [`prepare_target`] with the locale given.
///
/// Errors: as [`prepare_target`].
pub async fn prepare_target_like(target: &ConnSpec, source: &Locale) -> Result<TargetState> {
    let db = target
        .database()
        .ok_or_else(|| Error::usage(format!("the target URL {} names no database", target.display())))?;
    let mut admin = maintenance_connection(target).await?;
    let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
        .bind(&db)
        .fetch_one(&mut admin)
        .await?;
    if exists {
        ConnSpec::close(admin).await;
        let mut conn = target.connect().await?;
        let objects = user_object_count(&mut conn).await?;
        let comment: Option<String> = sqlx::query_scalar(
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = current_database()",
        )
        .fetch_one(&mut conn)
        .await?;
        ConnSpec::close(conn).await;
        if let Some(mark) = comment.filter(|c| c.starts_with(INCOMPLETE_MARK)) {
            return Err(Error::new(
                ErrorKind::Refused,
                format!("the target database {db:?} holds an unfinished restore ({mark}). Drop it and restore again"),
            ));
        }
        if objects > 0 {
            return Err(Error::new(
                ErrorKind::Refused,
                format!(
                    "the target database {db:?} already holds {objects} objects; tidemark restores only \
                     into a new or empty database. Choose another name (it will be created) or empty it first"
                ),
            ));
        }
        return Ok(TargetState::ExistedEmpty);
    }
    create_database(&mut admin, &db, source, None).await?;
    ConnSpec::close(admin).await;
    Ok(TargetState::Created)
}

/// Creates database `db` like `locale` (from `template0`), owned by `owner` (default: the
/// connected role; another owner needs membership in it).
///
/// Errors: `Database` naming the database, the locale and the owner.
pub async fn create_database(admin: &mut PgConnection, db: &str, locale: &Locale, owner: Option<&str>) -> Result<()> {
    let create = format!(
        "CREATE DATABASE {} TEMPLATE template0 ENCODING '{}' LC_COLLATE '{}' LC_CTYPE '{}'{}",
        quote_ident(db),
        sql_literal_body(&locale.encoding),
        sql_literal_body(&locale.collate),
        sql_literal_body(&locale.ctype),
        owner.map(|o| format!(" OWNER {}", quote_ident(o))).unwrap_or_default()
    );
    sqlx::raw_sql(AssertSqlSafe(create)).execute(admin).await.map_err(|e| {
        let owned = owner.map(|o| format!(", owned by {o:?},")).unwrap_or_default();
        Error::from(e).context(format!(
            "creating database {db:?}{owned} with encoding {} and locale {}/{}",
            locale.encoding, locale.collate, locale.ctype
        ))
    })?;
    Ok(())
}

fn sql_literal_body(s: &str) -> String {
    s.replace('\'', "''")
}

/// The live database as a replacement must copy it: its owner and locale.
#[derive(Debug, Clone)]
pub struct LiveDatabase {
    pub owner: String,
    pub locale: Locale,
}

/// Whether the role of `server` may do what in-place restores, undo and branches do beside
/// the live database `live`: create a database owned by the live one's owner (CREATEDB,
/// membership in the owner), rename and drop databases of that owner (its privileges).
/// Asked before anything is done, so a role that may not is refused with nothing taken.
///
/// Errors: `Config` naming what the role lacks and both ways to give it; `NotFound` when
/// `live` does not exist; `Unavailable`/`Database` from the server.
pub async fn check_may_replace(server: &ConnSpec, live: &str, workspace: &str) -> Result<LiveDatabase> {
    let mut conn = maintenance_connection(server).await?;
    let row = sqlx::query(
        "SELECT current_user::text, r.rolsuper, r.rolcreatedb, pg_has_role(current_user, d.datdba, 'USAGE'), \
                pg_get_userbyid(d.datdba)::text, pg_encoding_to_char(d.encoding)::text, d.datcollate::text, \
                d.datctype::text \
           FROM pg_roles r, pg_database d WHERE r.rolname = current_user AND d.datname = $1",
    )
    .bind(live)
    .fetch_optional(&mut conn)
    .await?;
    ConnSpec::close(conn).await;
    let Some(row) = row else {
        return Err(Error::not_found(format!("workspace {workspace}'s database {live:?} does not exist")));
    };
    use sqlx::Row;
    let (role, superuser, createdb, owners): (String, bool, bool, bool) =
        (row.get(0), row.get(1), row.get(2), row.get(3));
    let (owner, encoding, collate, ctype): (String, String, String, String) =
        (row.get(4), row.get(5), row.get(6), row.get(7));
    let live_db = LiveDatabase { owner: owner.clone(), locale: Locale { encoding, collate, ctype } };
    let mut lacks = Vec::new();
    if !superuser && !createdb {
        lacks.push("CREATEDB".to_string());
    }
    if !superuser && !owners {
        lacks.push(format!("the privileges of {owner:?}, the owner of {live:?}"));
    }
    if lacks.is_empty() {
        return Ok(live_db);
    }
    let mut grants = Vec::new();
    if !createdb {
        grants.push(format!("ALTER ROLE {} CREATEDB;", quote_ident(&role)));
    }
    if !owners {
        grants.push(format!("GRANT {} TO {};", quote_ident(&owner), quote_ident(&role)));
    }
    Err(Error::config(format!(
        "in-place restores of workspace {workspace}, their undo and its branches create, rename and drop databases \
         beside {live:?}: role {role:?} lacks {}. Either give it that (as a superuser: {}) or set \
         restore-database-url (and restore-password) in [workspaces.{workspace}] to a role that has it; nothing \
         was changed",
        lacks.join(" and "),
        grants.join(" ")
    )))
}

/// Creates database `name` beside the live one on `server`, owned and set up like it;
/// `false` when it exists already (a restore into it then checks that it is empty).
///
/// Errors: `Database`/`Unavailable` from the server.
pub async fn create_beside(server: &ConnSpec, name: &str, live: &LiveDatabase) -> Result<bool> {
    let mut admin = maintenance_connection(server).await?;
    let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
        .bind(name)
        .fetch_one(&mut admin)
        .await?;
    let created = match exists {
        true => Ok(false),
        false => create_database(&mut admin, name, &live.locale, Some(&live.owner)).await.map(|()| true),
    };
    ConnSpec::close(admin).await;
    created
}

/// Objects in a database beyond what a fresh `CREATE DATABASE` has.
async fn user_object_count(conn: &mut PgConnection) -> Result<i64> {
    let count: i64 = sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') \
                   AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%') \
              + (SELECT count(*) FROM pg_namespace WHERE nspname NOT IN ('pg_catalog', 'information_schema', 'public') \
                   AND nspname NOT LIKE 'pg\\_toast%' AND nspname NOT LIKE 'pg\\_temp%') \
              + (SELECT count(*) FROM pg_extension WHERE extname <> 'plpgsql') \
              + (SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace \
                 WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')) \
              + (SELECT count(*) FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace \
                 WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND t.typtype <> 'b' \
                   AND NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = t.typrelid))",
    )
    .fetch_one(conn)
    .await?;
    Ok(count)
}

/// Drops a database tidemark created for a restore that failed.
pub async fn drop_database(target: &ConnSpec) -> Result<()> {
    let Some(db) = target.database() else { return Ok(()) };
    let mut admin = maintenance_connection(target).await?;
    sqlx::raw_sql(AssertSqlSafe(format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", quote_ident(&db))))
        .execute(&mut admin)
        .await?;
    ConnSpec::close(admin).await;
    Ok(())
}

/// Copies database `from` (on any server) into `to`, a new or empty database created like
/// it: `pg_dump | psql --single-transaction`, so a copy that fails leaves nothing in `to`
/// (and a database created here is dropped again).
///
/// Errors: `Refused` when `to` is not empty; `Database` with pg_dump's or psql's own
/// message.
pub async fn copy_database(bin_dir: Option<&Path>, from: &ConnSpec, to: &ConnSpec) -> Result<TargetState> {
    let mut conn = from.connect().await?;
    let locale = Locale::read(&mut conn).await?;
    ConnSpec::close(conn).await;
    let state = prepare_target_like(to, &locale).await?;
    let copied = pipe_dump(bin_dir, from, to).await;
    match copied {
        Ok(()) => Ok(state),
        Err(e) if state == TargetState::Created => {
            let _ = drop_database(to).await;
            Err(e.context(format!("(the new database {} was dropped again)", to.display())))
        }
        Err(e) => Err(e),
    }
}

async fn pipe_dump(bin_dir: Option<&Path>, from: &ConnSpec, to: &ConnSpec) -> Result<()> {
    let dump_path = crate::pg::tool(bin_dir, "pg_dump");
    let mut dump = tokio::process::Command::new(&dump_path);
    dump.args(["--no-password"]).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
    from.apply_to_command(&mut dump);
    let mut dump = dump.spawn().map_err(|e| crate::pg::tool_spawn_error(&dump_path, &e))?;
    let psql_path = crate::pg::tool(bin_dir, "psql");
    let mut psql = tokio::process::Command::new(&psql_path);
    psql.args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "--single-transaction", "--no-password", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .env("PGOPTIONS", "-c synchronous_commit=off")
        .kill_on_drop(true);
    to.apply_to_command(&mut psql);
    let mut psql = psql.spawn().map_err(|e| crate::pg::tool_spawn_error(&psql_path, &e))?;
    let (mut out, mut input) = (dump.stdout.take().expect("piped stdout"), psql.stdin.take().expect("piped stdin"));
    let fed = tokio::io::copy(&mut out, &mut input).await;
    drop(input);
    if let Err(e) = fed {
        // psql stopped reading: its own message says why.
        let _ = dump.kill().await;
        crate::source::postgres::wait_tool(psql, "psql loading the copy").await?;
        return Err(Error::from(e).context("copying the dump into psql".to_string()));
    }
    if let Err(e) = crate::source::postgres::wait_tool(dump, "pg_dump of the database to copy").await {
        let _ = psql.kill().await; // its transaction rolls back
        return Err(e);
    }
    crate::source::postgres::wait_tool(psql, "psql loading the copy").await
}

/// Feeds an SQL object (pg_dump output) to `psql` in one transaction, stopping at the first
/// error. `what` names the object in errors.
///
/// Errors: `Database` with psql's own message; the stream's error if the object fails
/// verification (psql is then killed, so its transaction rolls back).
pub async fn apply_sql(bin_dir: Option<&Path>, target: &ConnSpec, mut sql: ObjectStream, what: &str) -> Result<()> {
    let path = crate::pg::tool(bin_dir, "psql");
    let mut cmd = tokio::process::Command::new(&path);
    cmd.args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "--single-transaction", "--no-password", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .env("PGOPTIONS", "-c synchronous_commit=off")
        .kill_on_drop(true);
    target.apply_to_command(&mut cmd);
    let mut child = cmd.spawn().map_err(|e| crate::pg::tool_spawn_error(&path, &e))?;
    let mut stdin = child.stdin.take().expect("piped stdin");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let errors = tokio::spawn(async move {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text).await;
        text
    });
    let mut feed_error = None;
    while let Some(chunk) = sql.recv().await {
        match chunk {
            Ok(bytes) => {
                if stdin.write_all(&bytes).await.is_err() {
                    break; // psql stopped reading: its exit status and stderr say why
                }
            }
            Err(e) => {
                feed_error = Some(e);
                break;
            }
        }
    }
    if let Some(e) = feed_error {
        let _ = child.kill().await;
        return Err(e.context(format!("applying {what}")));
    }
    drop(stdin);
    let status = child.wait().await?;
    let stderr = errors.await.unwrap_or_default();
    if status.success() {
        return Ok(());
    }
    let tail: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = tail[tail.len().saturating_sub(8)..].join("\n");
    let mut message = format!("applying {what} failed: {tail}");
    if tail.contains("role") && tail.contains("does not exist") {
        message.push_str("\nThe snapshot names roles that this server lacks: create them first (CREATE ROLE ...)");
    }
    Err(Error::new(ErrorKind::Database, message))
}

/// Applies a pre-data section: everything but its privileges through psql in one
/// transaction, then each GRANT/REVOKE in a savepoint of its own. A privilege the
/// restoring role may not give (`insufficient_privilege`: a grant on a function of
/// `pg_catalog` that a superuser made, a grant on another role's object) is skipped and
/// returned, so that a role that can restore everything else does; any other error fails
/// the restore. This is tidemark's default, where pg_restore has only all
/// (`--no-privileges` off) or none: a restore that stops on a grant it cannot repeat leaves
/// the user with nothing, while the skipped statements, named, are one `psql` away for a
/// superuser.
///
/// Errors: those of [`apply_sql`]; `Database` for a privilege statement that fails other
/// than for want of privilege (named).
pub async fn apply_pre_data(
    bin_dir: Option<&Path>,
    target: &ConnSpec,
    sql: ObjectStream,
    what: &str,
) -> Result<Vec<String>> {
    let text = crate::repo::pipeline::read_to_end(sql).await.map_err(|e| e.context(format!("reading {what}")))?;
    let (rest, privileges) = match std::str::from_utf8(&text) {
        Ok(text) => super::postdata::without_privileges(text),
        // Not UTF-8 (a database in another encoding): psql takes it whole, as before.
        Err(_) => {
            apply_sql(bin_dir, target, crate::repo::pipeline::stream_of(text), what).await?;
            return Ok(Vec::new());
        }
    };
    apply_sql(bin_dir, target, crate::repo::pipeline::stream_of(rest.into_bytes()), what).await?;
    apply_privileges(target, &privileges).await
}

/// Runs privilege statements in one transaction, each in a savepoint; returns those the
/// connected role may not run (see [`apply_pre_data`]).
///
/// Errors: `Database` for any other failure, naming the statement.
pub async fn apply_privileges(target: &ConnSpec, statements: &[String]) -> Result<Vec<String>> {
    if statements.is_empty() {
        return Ok(Vec::new());
    }
    let mut conn = target.connect().await?;
    sqlx::raw_sql("SELECT pg_catalog.set_config('search_path', '', false); BEGIN").execute(&mut conn).await?;
    let mut skipped = Vec::new();
    for statement in statements {
        sqlx::raw_sql("SAVEPOINT tidemark_privilege").execute(&mut conn).await?;
        match sqlx::raw_sql(AssertSqlSafe(statement.clone())).execute(&mut conn).await {
            Ok(_) => {
                sqlx::raw_sql("RELEASE SAVEPOINT tidemark_privilege").execute(&mut conn).await?;
            }
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42501") => {
                sqlx::raw_sql("ROLLBACK TO SAVEPOINT tidemark_privilege").execute(&mut conn).await?;
                skipped.push(statement.clone());
            }
            Err(e) => return Err(Error::from(e).context(format!("applying the privilege `{statement}`"))),
        }
    }
    sqlx::raw_sql("COMMIT").execute(&mut conn).await?;
    ConnSpec::close(conn).await;
    if !skipped.is_empty() {
        tracing::warn!(
            target = %target.display(),
            skipped = skipped.len(),
            "privileges the restoring role may not give were skipped"
        );
    }
    Ok(skipped)
}

/// Loads one object of COPY text into a table.
///
/// Errors: the stream's error (the COPY is then aborted, so nothing of it is committed) or
/// `Database` when Postgres rejects the data.
pub async fn copy_in(
    conn: &mut PgConnection,
    statement: &str,
    mut data: ObjectStream,
    progress: Option<&crate::progress::Progress>,
) -> Result<u64> {
    let mut copy = conn.copy_in_raw(statement).await?;
    while let Some(chunk) = data.recv().await {
        match chunk {
            Ok(bytes) => {
                // Counted as it goes in: a large table's restore shows its bytes moving.
                let n = bytes.len() as u64;
                copy.send(bytes).await?;
                if let Some(progress) = progress {
                    progress.add_bytes(n);
                }
            }
            Err(e) => {
                let _ = copy.abort("tidemark: the backup object failed verification").await;
                return Err(e);
            }
        }
    }
    Ok(copy.finish().await?)
}

/// The `COPY ... FROM STDIN` statement for a table's listed columns; with `freeze`, rows
/// are written frozen (only valid in the transaction that created or truncated the table).
pub fn copy_in_statement(schema: &str, name: &str, columns: &[String], freeze: bool) -> String {
    let table = qualified(schema, name);
    let options = if freeze { " WITH (FREEZE)" } else { "" };
    if columns.is_empty() {
        format!("COPY {table} FROM STDIN{options}")
    } else {
        let cols: Vec<String> = columns.iter().map(|c| quote_ident(c)).collect();
        format!("COPY {table} ({}) FROM STDIN{options}", cols.join(", "))
    }
}

/// Sets every sequence to the value it had at the snapshot.
pub async fn set_sequences(conn: &mut PgConnection, sequences: &[SequenceEntry]) -> Result<()> {
    for s in sequences {
        sqlx::query("SELECT pg_catalog.setval($1::regclass, $2, $3)")
            .bind(qualified(&s.schema, &s.name))
            .bind(s.last_value)
            .bind(s.is_called)
            .execute(&mut *conn)
            .await
            .map_err(|e| Error::from(e).context(format!("setting sequence {}.{}", s.schema, s.name)))?;
    }
    Ok(())
}

/// Refreshes the materialized views that were populated at the source. A view that reads
/// another view must wait for it, so views that fail are retried after the others, for as
/// long as each pass makes progress (the order pg_restore reaches by dependencies).
pub async fn refresh_materialized_views(conn: &mut PgConnection, views: &[MatViewEntry]) -> Result<()> {
    let mut pending: Vec<&MatViewEntry> = views.iter().filter(|v| v.populated).collect();
    while !pending.is_empty() {
        let mut failed = Vec::new();
        let mut last_error = None;
        for v in &pending {
            let sql = format!("REFRESH MATERIALIZED VIEW {}", qualified(&v.schema, &v.name));
            if let Err(e) = sqlx::raw_sql(AssertSqlSafe(sql)).execute(&mut *conn).await {
                last_error = Some(Error::from(e).context(format!("refreshing {}.{}", v.schema, v.name)));
                failed.push(*v);
            }
        }
        if failed.len() == pending.len() {
            return Err(last_error.expect("a failure was recorded"));
        }
        pending = failed;
    }
    Ok(())
}

/// The post-data entries that are not indexes or constraints (foreign keys, triggers,
/// policies, index attachments, comments), in dump order, in one transaction.
///
/// Errors: `Database` naming the statement kind that failed.
pub async fn apply_serial_post_data(target: &ConnSpec, split: &super::postdata::Split) -> Result<()> {
    let mut conn = target.connect().await?;
    sqlx::raw_sql(AssertSqlSafe(split.preamble.clone())).execute(&mut conn).await?;
    sqlx::raw_sql("BEGIN").execute(&mut conn).await?;
    for entry in split.serial() {
        sqlx::raw_sql(AssertSqlSafe(entry.sql.clone())).execute(&mut conn).await.map_err(|e| {
            Error::from(e).context(format!("applying {} `{}`", entry.kind.to_lowercase(), first_line(&entry.sql)))
        })?;
    }
    sqlx::raw_sql("COMMIT").execute(&mut conn).await?;
    ConnSpec::close(conn).await;
    Ok(())
}

fn first_line(sql: &str) -> &str {
    sql.lines().next().unwrap_or("")
}

/// Marks the target as incomplete while a restore fills it (a database comment), so a
/// restore cut short by a kill or power loss is visible as such; cleared when done.
pub async fn mark_incomplete(target: &ConnSpec, snapshot: &str) -> Result<()> {
    set_database_comment(target, Some(&format!("{INCOMPLETE_MARK} {snapshot}: incomplete until this comment is gone")))
        .await
}

/// Clears the mark set by [`mark_incomplete`].
pub async fn mark_complete(target: &ConnSpec) -> Result<()> {
    set_database_comment(target, None).await
}

/// The start of the comment an unfinished restore leaves on its database.
pub const INCOMPLETE_MARK: &str = "tidemark: restore of snapshot";

async fn set_database_comment(target: &ConnSpec, comment: Option<&str>) -> Result<()> {
    let db = target.database().unwrap_or_default();
    let value = match comment {
        Some(c) => format!("'{}'", c.replace('\'', "''")),
        None => "NULL".to_string(),
    };
    let mut conn = target.connect().await?;
    sqlx::raw_sql(AssertSqlSafe(format!("COMMENT ON DATABASE {} IS {value}", quote_ident(&db))))
        .execute(&mut conn)
        .await?;
    ConnSpec::close(conn).await;
    Ok(())
}

/// The databases on `server` whose names start with `prefix`, oldest first (by oid: the
/// order they were created in).
///
/// Errors: `Database`/`Unavailable` from Postgres.
pub async fn databases_named(server: &ConnSpec, prefix: &str) -> Result<Vec<String>> {
    let mut admin = maintenance_connection(server).await?;
    let pattern = format!("{}%", prefix.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_"));
    let names: Vec<String> =
        sqlx::query_scalar("SELECT datname::text FROM pg_database WHERE datname LIKE $1 ORDER BY oid")
            .bind(pattern)
            .fetch_all(&mut admin)
            .await?;
    ConnSpec::close(admin).await;
    Ok(names)
}

/// What stands between a live database's name and the names tidemark keeps beside it: the
/// database an in-place restore moved aside, its restored copy before the switch, the one
/// an undo moved aside, a branch.
pub const BEFORE: &str = "_before_";
pub const RESTORING: &str = "_restoring_";
pub const UNDONE: &str = "_undone_";
pub const BRANCH: &str = "_branch_";

/// The prefixes of the names tidemark keeps beside live database `db`. No request may name
/// one: an undo or a prune would take it for tidemark's own.
pub fn reserved_names(db: &str) -> [String; 4] {
    [BEFORE, RESTORING, UNDONE, BRANCH].map(|tag| format!("{db}{tag}"))
}

/// Databases no restore goes into: every later `CREATE DATABASE` copies `template1`, and
/// the others are the server's own.
pub const SYSTEM_DATABASES: [&str; 3] = ["postgres", "template0", "template1"];

pub use crate::pg::MAX_NAME_BYTES;

/// Whether `actor` may restore into `target`, for every front end: never a server's system
/// database; never a name reserved beside a workspace's database on the same server
/// (unless `reserved`: the operation that reserved it); never a workspace's live database
/// while it exists (that is an in-place restore), and one that is gone (a lost database
/// restored under its own name) only with the right to replace it.
///
/// Errors: `Refused` for a system, reserved or existing live name; `Forbidden` for a lost
/// live database without the right; `Database`/`Unavailable` when the server cannot say.
pub async fn guard_target(
    workspaces: &std::collections::BTreeMap<String, crate::config::WorkspaceConfig>,
    target: &ConnSpec,
    grant: &crate::access::Grant,
    reserved: bool,
) -> Result<()> {
    let name = target.database().unwrap_or_default();
    // Postgres would cut a longer name short and restore into the name that leaves.
    crate::pg::check_name_length(&name, "the database name")?;
    if SYSTEM_DATABASES.contains(&name.as_str()) {
        return Err(Error::new(
            ErrorKind::Refused,
            format!("{name} is the server's own database: restore into a new database instead"),
        ));
    }
    for (workspace, ws) in workspaces {
        let Ok(live) = ConnSpec::parse(&ws.database_url, None) else { continue };
        if !live.same_server(target) {
            continue;
        }
        let db = live.database().unwrap_or_default();
        if !reserved && !db.is_empty() && reserved_names(&db).iter().any(|prefix| name.starts_with(prefix.as_str())) {
            return Err(Error::new(
                ErrorKind::Refused,
                format!(
                    "{name} is a name tidemark keeps for databases beside workspace {workspace}'s (in-place \
                     restores, undo, branches): choose another name"
                ),
            ));
        }
        if live.same_database(target) {
            if database_oid(target, &name).await?.is_some() {
                return Err(Error::new(
                    ErrorKind::Refused,
                    format!(
                        "{name} is workspace {workspace}'s live database: restore into a new database, or replace \
                         it with an in-place restore"
                    ),
                ));
            }
            crate::access::check(grant, crate::access::Action::ReplaceLive, Some(workspace)).map_err(|e| {
                Error::new(ErrorKind::Forbidden, format!("{name} is workspace {workspace}'s database: {}", e.message()))
            })?;
        }
    }
    Ok(())
}

/// What a switch did.
#[derive(Debug, Clone, Copy)]
pub struct Switched {
    /// How long connections to the live name were held off.
    pub window: std::time::Duration,
    /// The oid of the database moved aside (what an undo checks before it swaps it back).
    pub aside_oid: u32,
}

/// How long a switch keeps trying to end the connections to the databases it renames.
const SWITCH_PATIENCE: std::time::Duration = std::time::Duration::from_secs(30);

/// Swaps databases on one server atomically: `live` becomes `aside` and `incoming` becomes
/// `live`, in one transaction, so a crash or a failure at any point leaves either the old
/// names or the new ones, never a server without `live`. The client connections to both
/// are ended inside it; the first rename locks `live`, so connections arriving meanwhile
/// wait for the commit. Background workers (autovacuum on a fresh copy) are never ended
/// (that needs a superuser): the rename waits for them, and the switch tries again until
/// they are gone.
///
/// Errors: `Database` (the role must own both databases and may end their connections:
/// superuser, or owner with CREATEDB and pg_signal_backend); `Unavailable` when the
/// connections do not go away within 30 s. Nothing is switched then.
pub async fn swap_in(server: &ConnSpec, live: &str, incoming: &str, aside: &str) -> Result<Switched> {
    swap_in_within(server, live, incoming, aside, SWITCH_PATIENCE).await
}

/// [`swap_in`], trying for `patience` at most.
///
/// Errors: those of [`swap_in`].
pub async fn swap_in_within(
    server: &ConnSpec,
    live: &str,
    incoming: &str,
    aside: &str,
    patience: std::time::Duration,
) -> Result<Switched> {
    use sqlx::Connection;
    let mut admin = maintenance_connection(server).await?;
    let (l, i, a) = (quote_ident(live), quote_ident(incoming), quote_ident(aside));
    let started = std::time::Instant::now();
    loop {
        let mut tx = admin.begin().await?;
        sqlx::query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = ANY($1) AND pid <> pg_backend_pid() AND backend_type = 'client backend'",
        )
        .bind([live, incoming])
        .execute(&mut *tx)
        .await?;
        let renamed = async {
            sqlx::raw_sql(AssertSqlSafe(format!("ALTER DATABASE {l} RENAME TO {a}"))).execute(&mut *tx).await?;
            crate::faults::point("switch-renamed-live-aside");
            sqlx::raw_sql(AssertSqlSafe(format!("ALTER DATABASE {i} RENAME TO {l}"))).execute(&mut *tx).await?;
            crate::faults::point("switch-renamed-incoming-live");
            sqlx::query_scalar::<_, sqlx::postgres::types::Oid>("SELECT oid FROM pg_database WHERE datname = $1")
                .bind(aside)
                .fetch_one(&mut *tx)
                .await
        }
        .await;
        match renamed {
            Ok(oid) => {
                tx.commit().await?;
                ConnSpec::close(admin).await;
                return Ok(Switched { window: started.elapsed(), aside_oid: oid.0 });
            }
            // 55006: "is being accessed by other users": a background worker, or a client
            // that connected between the ending and the lock.
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("55006") => {
                tx.rollback().await?;
                if started.elapsed() > patience {
                    return Err(Error::new(
                        ErrorKind::Unavailable,
                        format!(
                            "the connections to database {live:?} or {incoming:?} did not end within {} s ({}); \
                             nothing was switched",
                            patience.as_secs(),
                            e.message()
                        ),
                    ));
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            Err(e) => {
                let _ = tx.rollback().await;
                return Err(
                    Error::from(e).context(format!("switching {incoming:?} in as {live:?}; nothing was switched"))
                );
            }
        }
    }
}

/// The oid of database `name` on `server` (`None` when there is none).
///
/// Errors: `Database`/`Unavailable` from Postgres.
pub async fn database_oid(server: &ConnSpec, name: &str) -> Result<Option<u32>> {
    let mut admin = maintenance_connection(server).await?;
    let oid = sqlx::query_scalar::<_, sqlx::postgres::types::Oid>("SELECT oid FROM pg_database WHERE datname = $1")
        .bind(name)
        .fetch_optional(&mut admin)
        .await?;
    ConnSpec::close(admin).await;
    Ok(oid.map(|o| o.0))
}
