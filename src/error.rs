//! The one public error type: a stable kind (exit code, HTTP status, retryable), a message
//! that says what to do next, and context lines. Secrets are never put in an `Error`.

use std::fmt;

/// What went wrong, as a stable table. Each kind maps to one exit code and one HTTP status
/// and says whether trying again can help. The table is in docs/reference/errors.md; codes
/// never change meaning once released.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorKind {
    /// Bad command-line arguments or option values.
    Usage,
    /// tidemark.toml, a schedule or the environment is wrong or incomplete.
    Config,
    /// A named thing (snapshot, workspace, object, database) does not exist.
    NotFound,
    /// Creating something that already exists (a repository, a config file, a database).
    AlreadyExists,
    /// The operation would destroy or mix data, so it was refused (e.g. a non-empty target).
    Refused,
    /// Stored data failed verification: hash mismatch, truncated or tampered object.
    Integrity,
    /// No configured age identity can decrypt the repository, or keys are malformed.
    Key,
    /// A server (Postgres, object store) could not be reached or timed out.
    Unavailable,
    /// Postgres or a Postgres tool rejected what tidemark asked of it.
    Database,
    /// The operation was interrupted (Ctrl-C, SIGTERM).
    Interrupted,
    /// No valid credentials: an API token missing, malformed, unknown, expired or revoked.
    Unauthenticated,
    /// Valid credentials without the right: a role that does not allow the action, a
    /// workspace outside the token's, an address outside its allow list.
    Forbidden,
    /// Another operation holds the workspace now (the message names it): the same call
    /// succeeds once it is done (or with `--wait`).
    Busy,
    /// Too many requests from this token or address (the API): try again after the
    /// `Retry-After` seconds.
    RateLimited,
    /// A bug or an unexpected condition inside tidemark.
    Internal,
}

impl ErrorKind {
    /// Every kind, in table order (used by the docs test that keeps docs/reference/errors.md in sync).
    pub const ALL: [ErrorKind; 15] = [
        ErrorKind::Usage,
        ErrorKind::Config,
        ErrorKind::NotFound,
        ErrorKind::AlreadyExists,
        ErrorKind::Refused,
        ErrorKind::Integrity,
        ErrorKind::Key,
        ErrorKind::Unavailable,
        ErrorKind::Database,
        ErrorKind::Interrupted,
        ErrorKind::Unauthenticated,
        ErrorKind::Forbidden,
        ErrorKind::Busy,
        ErrorKind::RateLimited,
        ErrorKind::Internal,
    ];

    /// The process exit code for this kind.
    pub fn exit_code(self) -> i32 {
        match self {
            ErrorKind::Internal => 1,
            ErrorKind::Usage => 2,
            ErrorKind::Config => 3,
            ErrorKind::NotFound => 4,
            ErrorKind::AlreadyExists => 5,
            ErrorKind::Refused => 6,
            ErrorKind::Integrity => 7,
            ErrorKind::Key => 8,
            ErrorKind::Unavailable => 9,
            ErrorKind::Database => 10,
            ErrorKind::Interrupted => 130,
            ErrorKind::Unauthenticated => 12,
            ErrorKind::Forbidden => 13,
            ErrorKind::Busy => 14,
            ErrorKind::RateLimited => 15,
        }
    }

    /// The HTTP status the API answers with for this kind.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorKind::Usage | ErrorKind::Config => 400,
            ErrorKind::Key => 403,
            ErrorKind::NotFound => 404,
            ErrorKind::AlreadyExists | ErrorKind::Refused | ErrorKind::Busy => 409,
            ErrorKind::RateLimited => 429,
            ErrorKind::Integrity => 422,
            ErrorKind::Database => 502,
            ErrorKind::Unavailable => 503,
            ErrorKind::Interrupted => 499,
            ErrorKind::Unauthenticated => 401,
            ErrorKind::Forbidden => 403,
            ErrorKind::Internal => 500,
        }
    }

    /// Whether the same call may succeed later without anybody changing anything.
    pub fn is_temporary(self) -> bool {
        matches!(self, ErrorKind::Unavailable | ErrorKind::Interrupted | ErrorKind::Busy | ErrorKind::RateLimited)
    }

    /// The kind's stable name, as printed and in JSON.
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::Usage => "usage",
            ErrorKind::Config => "config",
            ErrorKind::NotFound => "not-found",
            ErrorKind::AlreadyExists => "already-exists",
            ErrorKind::Refused => "refused",
            ErrorKind::Integrity => "integrity",
            ErrorKind::Key => "key",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Database => "database",
            ErrorKind::Interrupted => "interrupted",
            ErrorKind::Unauthenticated => "unauthenticated",
            ErrorKind::Forbidden => "forbidden",
            ErrorKind::Busy => "busy",
            ErrorKind::RateLimited => "rate-limited",
            ErrorKind::Internal => "internal",
        }
    }
}

/// tidemark's error: what happened (kind + message), where (context, innermost first) and
/// why (source). The message is written for the operator and says what to do next.
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    message: String,
    context: Vec<String>,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
    /// The command already printed its JSON result (a failed drill's report): `--json`
    /// callers get that one document, not a second one for the error.
    result_printed: bool,
    /// A command's own exit code instead of the kind's (`status`: the monitoring-plugin
    /// codes).
    exit_code: Option<i32>,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
            context: Vec::new(),
            source: None,
            result_printed: false,
            exit_code: None,
        }
    }

    /// The same error under another kind (when the caller knows better what it is).
    pub fn with_kind(mut self, kind: ErrorKind) -> Self {
        self.kind = kind;
        self
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    pub fn context_lines(&self) -> &[String] {
        &self.context
    }

    /// Attaches the underlying cause. Only attach errors that cannot carry secrets.
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// Marks that the command printed its result (as JSON) before failing.
    pub fn result_printed(mut self) -> Self {
        self.result_printed = true;
        self
    }

    pub fn is_result_printed(&self) -> bool {
        self.result_printed
    }

    /// Exits the command line with `code` instead of the kind's.
    pub fn with_exit_code(mut self, code: i32) -> Self {
        self.exit_code = Some(code);
        self
    }

    /// The command line's exit code: the one set, else the kind's.
    pub fn exit_code(&self) -> i32 {
        self.exit_code.unwrap_or_else(|| self.kind.exit_code())
    }

    /// Adds a line of context ("while restoring table public.users").
    pub fn context(mut self, line: impl Into<String>) -> Self {
        self.context.push(line.into());
        self
    }

    pub fn usage(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Usage, message)
    }
    pub fn config(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Config, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::NotFound, message)
    }
    pub fn integrity(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Integrity, message)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Internal, message)
    }

    /// The whole story on one screen: message, context, and the chain of causes.
    pub fn report(&self) -> String {
        let mut out = self.message.clone();
        for line in &self.context {
            out.push_str("\n  while ");
            out.push_str(line);
        }
        let mut cause: Option<&(dyn std::error::Error + 'static)> = self.source.as_deref().map(|e| e as _);
        while let Some(e) = cause {
            let text = e.to_string();
            if !out.contains(&text) {
                out.push_str("\n  caused by: ");
                out.push_str(&text);
            }
            cause = e.source();
        }
        out
    }

    /// A JSON rendering for `--json` callers and the API.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "error": {
                "kind": self.kind.name(),
                "message": self.message,
                "context": self.context,
                "temporary": self.kind.is_temporary(),
                "exit_code": self.exit_code(),
            }
        })
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|e| e as _)
    }
}

/// Adds context to any `Result<_, Error>`.
pub trait ResultExt<T> {
    fn context(self, line: impl FnOnce() -> String) -> Result<T>;
}

impl<T> ResultExt<T> for Result<T> {
    fn context(self, line: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| e.context(line()))
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        let kind = match e.kind() {
            std::io::ErrorKind::NotFound => ErrorKind::NotFound,
            std::io::ErrorKind::AlreadyExists => ErrorKind::AlreadyExists,
            std::io::ErrorKind::Interrupted => ErrorKind::Interrupted,
            std::io::ErrorKind::PermissionDenied => {
                let advice = permission_denied();
                return Error::new(advice.kind(), format!("{e}; {}", advice.message()));
            }
            // The machine, not tidemark: a full disk or quota, a read-only file system.
            std::io::ErrorKind::StorageFull
            | std::io::ErrorKind::QuotaExceeded
            | std::io::ErrorKind::ReadOnlyFilesystem
            | std::io::ErrorKind::FileTooLarge => {
                return Error::new(
                    ErrorKind::Unavailable,
                    format!("{e}: make room (or write access) there, then retry"),
                );
            }
            _ => ErrorKind::Internal,
        };
        // fs-err's errors name the path ("failed to open file `/x`: ...").
        Error::new(kind, format!("I/O error: {e}"))
    }
}

/// A local permission problem is a setup problem (retrying cannot help): `Config`, saying
/// who tidemark runs as.
pub(crate) fn permission_denied() -> Error {
    let user = current_user();
    Error::new(
        ErrorKind::Config,
        format!(
            "permission denied: tidemark runs as {user}, who may not read or write there. Give it the \
             folder (chown -R {user} DIR, or add it to the folder's group and chmod -R g+rwX DIR); for \
             archive_command and restore_command that is the user the Postgres server runs as"
        ),
    )
}

/// The name of the OS user this process runs as (`uid N` when it has none).
pub fn current_user() -> String {
    nix::unistd::User::from_uid(nix::unistd::getuid())
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| format!("uid {}", nix::unistd::getuid()))
}

/// The error and its sources, as one text (to recognise what a store's error means).
pub(crate) fn chain_text(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Whether an io error of this kind is somewhere in the chain.
pub(crate) fn has_io_kind(e: &(dyn std::error::Error + 'static), kind: std::io::ErrorKind) -> bool {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = current {
        if c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == kind) {
            return true;
        }
        current = c.source();
    }
    false
}

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            // tidemark's own catalog, not a workspace's Postgres.
            sqlx::Error::Database(db) if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() => {
                let code = db.code().map(std::borrow::Cow::into_owned).unwrap_or_default();
                // The primary result code is the low byte of an extended one.
                let kind = match code.parse::<i32>().map(|c| c & 0xff) {
                    // SQLITE_BUSY, LOCKED, IOERR, FULL, CANTOPEN: the machine or another process.
                    Ok(5 | 6 | 10 | 13 | 14) => ErrorKind::Unavailable,
                    // SQLITE_CORRUPT, NOTADB: the file is damaged (`catalog rebuild` makes a new one).
                    Ok(11 | 26) => ErrorKind::Integrity,
                    // SQLITE_PERM, READONLY: who may write the file.
                    Ok(3 | 8) => ErrorKind::Config,
                    _ => ErrorKind::Internal,
                };
                Error::new(kind, format!("the catalog (SQLite) said: {} (code {code})", db.message()))
            }
            sqlx::Error::Database(db) => {
                let code = db.code().map(std::borrow::Cow::into_owned).unwrap_or_default();
                // Class 08 = connection exception, 57P0x = server shutting down.
                let kind = if code.starts_with("08") || code.starts_with("57P0") {
                    ErrorKind::Unavailable
                } else {
                    ErrorKind::Database
                };
                Error::new(kind, format!("postgres said: {} (SQLSTATE {code})", db.message()))
            }
            sqlx::Error::Io(io) => Error::new(
                ErrorKind::Unavailable,
                format!("could not talk to postgres: {io}. Is the server running and reachable?"),
            ),
            sqlx::Error::PoolTimedOut => {
                Error::new(ErrorKind::Unavailable, "timed out waiting for a postgres connection")
            }
            sqlx::Error::Tls(t) => Error::new(ErrorKind::Unavailable, format!("TLS to postgres failed: {t}")),
            sqlx::Error::RowNotFound => Error::new(ErrorKind::NotFound, "postgres returned no row"),
            other => Error::new(ErrorKind::Database, format!("postgres error: {other}")),
        }
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Error::new(ErrorKind::Integrity, format!("malformed JSON: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_are_unique_and_stable() {
        let mut seen = std::collections::HashSet::new();
        for kind in ErrorKind::ALL {
            assert!(seen.insert(kind.exit_code()), "duplicate exit code for {kind:?}");
            assert!(kind.exit_code() != 0);
        }
        assert_eq!(ErrorKind::Integrity.exit_code(), 7);
        assert_eq!(ErrorKind::Unavailable.http_status(), 503);
        assert!(ErrorKind::Unavailable.is_temporary());
        assert!(!ErrorKind::Integrity.is_temporary());
    }

    /// docs/reference/errors.md's table is the code's: one row per kind, with its
    /// exit code, HTTP status and whether it is temporary.
    #[test]
    fn the_error_table_in_the_docs_is_the_codes() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/reference/errors.md");
        let text = fs_err::read_to_string(&path).unwrap();
        let rows: Vec<Vec<String>> = text
            .lines()
            .skip_while(|l| !l.starts_with("| kind |"))
            .skip(2)
            .take_while(|l| l.starts_with('|'))
            .map(|l| l.trim_matches('|').split('|').map(|c| c.trim().to_string()).collect())
            .collect();
        let mut documented: Vec<[String; 4]> =
            rows.iter().map(|r| [r[0].clone(), r[1].clone(), r[2].clone(), r[3].clone()]).collect();
        let mut code: Vec<[String; 4]> = ErrorKind::ALL
            .iter()
            .map(|k| {
                let temporary = if k.is_temporary() { "yes" } else { "no" };
                [k.name().to_string(), k.exit_code().to_string(), k.http_status().to_string(), temporary.to_string()]
            })
            .collect();
        // By exit code: the docs put the bug (`internal`, exit 1) first.
        let by_exit = |row: &[String; 4]| row[1].parse::<i32>().unwrap_or(-1);
        documented.sort_by_key(by_exit);
        code.sort_by_key(by_exit);
        assert_eq!(documented, code, "docs/reference/errors.md's table and ErrorKind differ");
    }

    #[test]
    fn io_errors_name_their_path_and_the_machines_kind() {
        let missing = Error::from(fs_err::read_to_string("/nonexistent-tidemark/x.toml").unwrap_err());
        assert_eq!(missing.kind(), ErrorKind::NotFound);
        assert!(missing.report().contains("/nonexistent-tidemark/x.toml"), "{}", missing.report());
        let full = Error::from(std::io::Error::from(std::io::ErrorKind::StorageFull));
        assert_eq!(full.kind(), ErrorKind::Unavailable);
        assert_ne!(Error::from(std::io::Error::other("?")).kind(), ErrorKind::Unavailable);
    }

    #[tokio::test]
    async fn the_catalogs_errors_name_the_catalog_not_postgres() {
        use sqlx::Connection;
        let mut conn = sqlx::SqliteConnection::connect("sqlite::memory:").await.unwrap();
        let e = Error::from(sqlx::query("SELEC 1").execute(&mut conn).await.unwrap_err());
        assert!(e.message().starts_with("the catalog (SQLite) said:"), "{}", e.message());
        assert!(!e.message().contains("postgres"), "{}", e.message());
        assert_eq!(e.kind(), ErrorKind::Internal, "a malformed statement is a bug");
    }

    #[test]
    fn report_shows_context_and_cause_once() {
        let io = std::io::Error::other("disk on fire");
        let e = Error::new(ErrorKind::Internal, "could not write").with_source(io).context("writing x");
        let r = e.report();
        assert!(r.contains("could not write"));
        assert!(r.contains("while writing x"));
        assert_eq!(r.matches("disk on fire").count(), 1);
    }
}
