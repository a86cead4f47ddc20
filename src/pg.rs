//! Talking to Postgres: connection specs that keep the password apart from the URL (so it
//! never reaches logs, errors or a process list), sqlx connections with the session settings
//! every tidemark connection uses, and finding and running the client tools (pg_dump, psql).

use std::path::{Path, PathBuf};
use std::str::FromStr;

use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{ConnectOptions, Connection};
use url::Url;

use crate::error::{Error, ErrorKind, Result};
use crate::secret::Secret;

/// A Postgres connection target: a URL without its password, plus the password apart.
#[derive(Clone)]
pub struct ConnSpec {
    url: Url,
    password: Option<String>,
}

impl std::fmt::Debug for ConnSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ConnSpec({})", self.url)
    }
}

impl ConnSpec {
    /// Parses a `postgres://` URL. The password comes from `password`, else the URL, else
    /// `PGPASSWORD`/`.pgpass` (read by libpq and sqlx themselves).
    ///
    /// Errors: `Config` for a URL that is not `postgres://` or `postgresql://`.
    pub fn parse(url: &str, password: Option<&Secret>) -> Result<ConnSpec> {
        let mut parsed = Url::parse(url)
            .map_err(|e| Error::config(format!("{} is not a valid postgres URL: {e}", redact_url(url))))?;
        if !matches!(parsed.scheme(), "postgres" | "postgresql") {
            return Err(Error::config(format!("{} is not a postgres:// URL", redact_url(url))));
        }
        let url_password = parsed.password().map(percent_decode);
        let _ = parsed.set_password(None);
        // `?password=` works too (libpq and sqlx read it): it leaves the URL as well, in
        // any case (`?PASSWORD=`), so it is never displayed.
        let query_password = take_query_password(&mut parsed);
        // A parameter sqlx does not know is logged by sqlx with its value, and pg_dump
        // (libpq) refuses it: refuse it here, by name only (its value may be a secret).
        if let Some((key, _)) = parsed.query_pairs().find(|(k, _)| !URL_PARAMETERS.contains(&k.as_ref())) {
            let mut without_query = parsed.clone();
            without_query.set_query(None);
            return Err(Error::config(format!(
                "the database URL {} has the parameter {key:?}, which tidemark does not know; parameter names \
                 are lower case, and these are passed on: {}",
                without_query,
                URL_PARAMETERS.join(", ")
            )));
        }
        path_database(&mut parsed)?;
        let password = match password {
            Some(secret) => Some(secret.resolve()?),
            None => url_password.or(query_password),
        };
        Ok(ConnSpec { url: parsed, password })
    }

    /// The database name (last path segment), `None` when the URL names none.
    pub fn database(&self) -> Option<String> {
        let db = self.url.path().trim_start_matches('/');
        (!db.is_empty()).then(|| percent_decode(db))
    }

    /// Whether both name the same database of the same server (host, port, database;
    /// users, passwords and parameters aside).
    pub fn same_database(&self, other: &ConnSpec) -> bool {
        self.same_server(other) && self.database() == other.database()
    }

    /// Whether both name the same server (host and port; a `host` or `port` parameter
    /// counts as the URL's own).
    pub fn same_server(&self, other: &ConnSpec) -> bool {
        let param = |s: &ConnSpec, key: &str| s.url.query_pairs().find(|(k, _)| k == key).map(|(_, v)| v.into_owned());
        let place = |s: &ConnSpec| {
            let host = param(s, "host").or_else(|| s.url.host_str().map(str::to_string));
            let port = param(s, "port").and_then(|p| p.parse().ok()).or(s.url.port()).unwrap_or(5432u16);
            (host, port)
        };
        place(self) == place(other)
    }

    /// The same server, another database.
    pub fn with_database(&self, db: &str) -> ConnSpec {
        let mut url = self.url.clone();
        if let Ok(mut segments) = url.path_segments_mut() {
            segments.clear().push(db);
        }
        ConnSpec { url, password: self.password.clone() }
    }

    /// The same database and role on another server (a restored copy, say); a `host`
    /// query parameter (a Unix socket folder) is dropped.
    pub fn with_host_port(&self, host: &str, port: u16) -> Result<ConnSpec> {
        let mut url = self.url.clone();
        url.set_host(Some(host)).map_err(|e| Error::usage(format!("{host} is not a host name: {e}")))?;
        let _ = url.set_port(Some(port));
        drop_query_parameters(&mut url, |k| k == "host");
        Ok(ConnSpec { url, password: self.password.clone() })
    }

    /// The URL for display: never contains the password.
    pub fn display(&self) -> String {
        self.url.to_string()
    }

    pub(crate) fn connect_options(&self) -> Result<PgConnectOptions> {
        let mut opts = PgConnectOptions::from_str(self.url.as_str())
            .map_err(|e| Error::config(format!("{} is not usable: {e}", self.display())))?
            .application_name("tidemark")
            .log_statements(tracing::log::LevelFilter::Debug)
            .log_slow_statements(tracing::log::LevelFilter::Debug, std::time::Duration::from_secs(10));
        if let Some(p) = &self.password {
            opts = opts.password(p);
        } else if let Ok(p) = std::env::var("PGPASSWORD") {
            opts = opts.password(&p);
        }
        Ok(opts)
    }

    /// Opens a connection with tidemark's session settings (ISO dates, UTC, exact floats,
    /// row security off so that RLS can never silently hide rows from a backup).
    ///
    /// Errors: `Unavailable` when the server cannot be reached, `Database` otherwise.
    pub async fn connect(&self) -> Result<PgConnection> {
        let mut conn = self
            .connect_options()?
            .connect()
            .await
            .map_err(|e| Error::from(e).context(format!("connecting to {}", self.display())))?;
        sqlx::raw_sql(SESSION_SETTINGS).execute(&mut conn).await?;
        Ok(conn)
    }

    /// Environment and arguments for a libpq tool: the URL goes on the command line without
    /// the password; the password goes in `PGPASSWORD`.
    pub fn apply_to_command(&self, cmd: &mut tokio::process::Command) {
        cmd.arg(format!("--dbname={}", self.url));
        if let Some(p) = &self.password {
            cmd.env("PGPASSWORD", p);
        }
        cmd.env("PGAPPNAME", "tidemark");
    }

    /// [`Self::apply_to_command`] for a tool that takes the connection as its last argument
    /// (pg_amcheck's `dbname`, which may be a connection string).
    pub fn apply_as_argument(&self, cmd: &mut tokio::process::Command) {
        cmd.arg(self.url.as_str());
        if let Some(p) = &self.password {
            cmd.env("PGPASSWORD", p);
        }
        cmd.env("PGAPPNAME", "tidemark");
    }

    /// Closes a connection, ignoring errors (the work is already done or failed).
    pub async fn close(conn: PgConnection) {
        let _ = conn.close().await;
    }
}

/// Settings of every session tidemark opens: output that is the same on every server and
/// round-trips exactly (what pg_dump sets too). On PostgreSQL 14+, the server also checks
/// every 5 s that tidemark is still there, so the sessions of an aborted snapshot (a
/// daemon shutdown, Ctrl-C) end instead of waiting on a lock until it is released.
pub const SESSION_SETTINGS: &str = "SET DateStyle = ISO; SET IntervalStyle = postgres; \
     SET extra_float_digits = 3; SET TimeZone = 'UTC'; SET row_security = off; \
     SET statement_timeout = 0; SET lock_timeout = 0; SET idle_in_transaction_session_timeout = 0; \
     SET bytea_output = 'hex'; \
     SELECT set_config('client_connection_check_interval', '5s', false) \
     WHERE current_setting('server_version_num')::int >= 140000";

/// `postgres://user:secret@host/db` -> `postgres://user:***@host/db`; unparsable input is
/// replaced entirely, since it might be a secret.
pub fn redact_url(url: &str) -> String {
    match Url::parse(url) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            if take_query_password(&mut u).is_some() {
                u.query_pairs_mut().append_pair("password", "***");
            }
            u.to_string()
        }
        Err(_) => "<unparsable URL>".to_string(),
    }
}

/// The query parameters of a database URL that both sqlx and libpq (pg_dump, psql)
/// understand alike.
pub const URL_PARAMETERS: [&str; 11] = [
    "host",
    "hostaddr",
    "port",
    "dbname",
    "user",
    "application_name",
    "options",
    "sslmode",
    "sslrootcert",
    "sslcert",
    "sslkey",
];

/// Removes the query parameters whose names `drop` picks, keeping the others in order.
pub fn drop_query_parameters(url: &mut Url, drop: impl Fn(&str) -> bool) {
    let kept: Vec<(String, String)> =
        url.query_pairs().filter(|(k, _)| !drop(k)).map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
    url.set_query(None);
    if !kept.is_empty() {
        url.query_pairs_mut().extend_pairs(kept);
    }
}

/// Moves a `dbname` query parameter into the URL's path, where tidemark reads and replaces
/// the database (a branch, a restore, the maintenance connection): left in the query, it
/// would win over the path in sqlx and libpq alike, and send every connection meant for
/// another database to the one it names.
///
/// Errors: `Config` when the path and the parameter name different databases, or the
/// parameter is given twice.
fn path_database(url: &mut Url) -> Result<()> {
    let named: Vec<String> = url.query_pairs().filter(|(k, _)| k == "dbname").map(|(_, v)| v.into_owned()).collect();
    let Some(db) = named.first().cloned() else { return Ok(()) };
    let mut shown = url.clone();
    shown.set_query(None);
    let path = url.path().trim_start_matches('/').to_string();
    if named.len() > 1 || (!path.is_empty() && percent_decode(&path) != db) {
        return Err(Error::config(format!(
            "the database URL {shown} names its database twice (in its path and a dbname parameter): name it \
             once, in the path (postgres://host/DATABASE)"
        )));
    }
    drop_query_parameters(url, |k| k == "dbname");
    if let Ok(mut segments) = url.path_segments_mut() {
        segments.clear().push(&db);
    }
    Ok(())
}

/// Removes every `password` query parameter (in any case: `PASSWORD` too) from the URL
/// and returns the first one's value.
fn take_query_password(url: &mut Url) -> Option<String> {
    let is_password = |k: &str| k.eq_ignore_ascii_case("password");
    let password = url.query_pairs().find(|(k, _)| is_password(k)).map(|(_, v)| v.into_owned())?;
    let kept: Vec<(String, String)> =
        url.query_pairs().filter(|(k, _)| !is_password(k)).map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
    url.set_query(None);
    if !kept.is_empty() {
        url.query_pairs_mut().extend_pairs(kept);
    }
    Some(password)
}

fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned()
}

/// Quotes an SQL identifier: always quoted, so every name (spaces, capitals, keywords,
/// unicode, dots) survives.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Quotes a value for `postgresql.conf`: single quotes doubled and backslashes escaped
/// (the server reads `\x` in a quoted value as `x`, and `\n` as a new line).
pub fn conf_quote(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "''"))
}

/// `"schema"."name"`.
pub fn qualified(schema: &str, name: &str) -> String {
    format!("{}.{}", quote_ident(schema), quote_ident(name))
}

/// A table's name as a user writes it: `schema.name`, or `name` (schema `public`); either
/// part in double quotes keeps dots, capitals and spaces (`"My.Schema"."Orders"`), and
/// unquoted parts fold to lower case as Postgres folds them.
///
/// Errors: `Usage` for an empty part, an unclosed quote or more than two parts.
pub fn parse_table_name(text: &str) -> Result<(String, String)> {
    let bad = |why: &str| {
        Error::usage(format!("table name {text:?}: {why}; write schema.name (or a quoted \"Schema\".\"Name\")"))
    };
    let mut parts: Vec<String> = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        let mut part = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        part.push('"');
                    }
                    Some('"') => break,
                    Some(c) => part.push(c),
                    None => return Err(bad("a quote is not closed")),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == '.' {
                    break;
                }
                if c == '"' {
                    return Err(bad("a quote in the middle of a name"));
                }
                part.extend(c.to_lowercase());
                chars.next();
            }
        }
        if part.is_empty() {
            return Err(bad("a part is empty"));
        }
        parts.push(part);
        match chars.next() {
            None => break,
            Some('.') => {}
            Some(_) => return Err(bad("text after a quoted name")),
        }
    }
    match <[String; 2]>::try_from(parts) {
        Ok([schema, name]) => Ok((schema, name)),
        Err(parts) if parts.len() == 1 => Ok(("public".to_string(), parts[0].clone())),
        Err(_) => Err(bad("more than two parts")),
    }
}

/// Where the Postgres binaries are: the configured folder, `pg_config --bindir`, the newest
/// `/usr/lib/postgresql/*/bin`, or whatever `PATH` finds.
pub fn bin_dir(configured: Option<&Path>) -> Option<PathBuf> {
    if let Some(dir) = configured {
        return Some(dir.to_path_buf());
    }
    if let Some(dir) = std::env::var_os("TIDEMARK_PG_BIN_DIR") {
        return Some(PathBuf::from(dir));
    }
    if let Ok(out) = std::process::Command::new("pg_config").arg("--bindir").output()
        && out.status.success()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if dir.join("pg_dump").exists() {
            return Some(dir);
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let major = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("pg_dump").exists().then_some((major, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, dir)| dir)
}

/// The path of a Postgres tool (`pg_dump`, `psql`, `initdb`...).
pub fn tool(bin_dir: Option<&Path>, name: &str) -> PathBuf {
    match bin_dir {
        Some(dir) => dir.join(name),
        None => PathBuf::from(name),
    }
}

/// Error for a tool that could not be started.
pub fn tool_spawn_error(path: &Path, e: &std::io::Error) -> Error {
    Error::new(
        ErrorKind::Config,
        format!(
            "cannot run {}: {e}. Install the PostgreSQL client tools (Debian: postgresql-client) \
             or set postgres.bin-dir in tidemark.toml",
            path.display()
        ),
    )
}

/// Postgres' limit on a name (NAMEDATALEN - 1), in bytes.
pub const MAX_NAME_BYTES: usize = 63;

/// That `name` fits Postgres' limit on names.
///
/// Errors: `Usage` naming `what` and the length.
pub fn check_name_length(name: &str, what: &str) -> Result<()> {
    if name.is_empty() || name.len() > MAX_NAME_BYTES {
        return Err(Error::usage(format!(
            "{what} {name:?} has {} bytes: Postgres takes names of 1 to {MAX_NAME_BYTES} bytes",
            name.len()
        )));
    }
    Ok(())
}

/// The name of a database a caller asks tidemark to create: ASCII letters, digits and
/// `_`, not starting with a digit, at most [`MAX_NAME_BYTES`] (no quoting surprises on
/// any front end). Validated once, here; every front end takes this type.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(transparent)]
pub struct DatabaseName(String);

impl DatabaseName {
    /// Errors: `Usage` saying what a database name may be.
    pub fn new(name: &str) -> Result<DatabaseName> {
        let ok = (1..=MAX_NAME_BYTES).contains(&name.len())
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            && !name.starts_with(|c: char| c.is_ascii_digit());
        if !ok {
            return Err(Error::usage(format!(
                "{name:?} is not a new database's name: 1 to {MAX_NAME_BYTES} letters, digits or '_', not \
                 starting with a digit"
            )));
        }
        Ok(DatabaseName(name.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> serde::Deserialize<'de> for DatabaseName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<DatabaseName, D::Error> {
        let text = String::deserialize(d)?;
        DatabaseName::new(&text).map_err(|e| serde::de::Error::custom(e.message()))
    }
}

impl std::fmt::Display for DatabaseName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn table_names_parse_like_postgres_reads_them() {
        use super::parse_table_name as p;
        let pair = |a: &str, b: &str| (a.to_string(), b.to_string());
        assert_eq!(p("public.orders").unwrap(), pair("public", "orders"));
        assert_eq!(p("Orders").unwrap(), pair("public", "orders"));
        assert_eq!(p("\"My.Schema\".\"Or\"\"ders\"").unwrap(), pair("My.Schema", "Or\"ders"));
        for bad in ["", "a.", ".b", "a.b.c", "\"open", "a\"b", "\"a\"x.b"] {
            assert!(p(bad).is_err(), "{bad:?} should be refused");
        }
    }

    use super::*;

    #[test]
    fn passwords_leave_the_url() {
        let spec = ConnSpec::parse("postgres://u:p%40ss@db.example:5433/shop?sslmode=require", None).unwrap();
        assert!(!spec.display().contains("p%40ss"));
        assert_eq!(spec.password.as_deref(), Some("p@ss"));
        assert_eq!(spec.database().as_deref(), Some("shop"));
        let other = spec.with_database("shop copy");
        assert_eq!(other.database().as_deref(), Some("shop copy"));
        assert!(other.display().contains("sslmode=require"));
    }

    #[test]
    fn a_password_in_the_query_leaves_the_url_too() {
        let url = "postgres://u@db.example/shop?sslmode=require&password=s3cr%26t";
        let spec = ConnSpec::parse(url, None).unwrap();
        assert_eq!(spec.password.as_deref(), Some("s3cr&t"));
        assert_eq!(spec.display(), "postgres://u@db.example/shop?sslmode=require");
        assert!(!redact_url(url).contains("s3cr"), "{}", redact_url(url));
        assert!(redact_url(url).contains("sslmode=require"));
    }

    /// Issue 11.4: `?PASSWORD=` was printed by `workspace list` and logged by sqlx.
    #[test]
    fn a_password_parameter_in_any_case_leaves_the_url_and_unknown_ones_are_refused() {
        let url = "postgres://u@db.example/shop?PASSWORD=hunter2&sslmode=require&Password=hunter3";
        let spec = ConnSpec::parse(url, None).unwrap();
        assert_eq!(spec.password.as_deref(), Some("hunter2"));
        assert_eq!(spec.display(), "postgres://u@db.example/shop?sslmode=require");
        assert!(!redact_url(url).contains("hunter"), "{}", redact_url(url));
        // Refused by name, without the value (it may be a secret or a typo of one).
        let e = ConnSpec::parse("postgres://u@h/db?pasword=hunter2", None).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config);
        assert!(e.message().contains("\"pasword\"") && !e.report().contains("hunter2"), "{}", e.report());
        assert!(ConnSpec::parse("postgres://u@h/db?ssl-mode=require", None).is_err(), "libpq would refuse it");
        for ok in ["sslmode=disable", "host=/var/run/postgresql", "application_name=x&options=-c%20a%3Db"] {
            ConnSpec::parse(&format!("postgres://u@h/db?{ok}"), None).unwrap();
        }
    }

    #[test]
    fn config_password_wins_over_url() {
        let spec = ConnSpec::parse("postgres://u:old@h/db", Some(&Secret::literal("new"))).unwrap();
        assert_eq!(spec.password.as_deref(), Some("new"));
    }

    #[test]
    fn redaction() {
        assert_eq!(redact_url("postgres://u:secret@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact_url("not a url secret"), "<unparsable URL>");
    }

    #[test]
    fn identifiers_are_always_quoted() {
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(qualified("my schema", "Table.1"), "\"my schema\".\"Table.1\"");
    }
}
