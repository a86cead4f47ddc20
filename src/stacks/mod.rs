//! Function stacks: named, versioned JSON documents of a workspace, kept in a `tidemark`
//! schema inside the workspace database (so snapshots carry them with the data). Every
//! change is logged; publishing makes a numbered version; revert is a new change.
//! This module owns the names, the canonical form, the schema (migrations/workspace) and
//! the change log operations.

pub mod diff;
pub mod log;
pub mod snapshot;

use sha2::{Digest, Sha256};
use sqlx::migrate::Migrator;
use sqlx::postgres::PgConnection;

use crate::error::{Error, ErrorKind, Result};
use crate::migrations::Embedded;

/// The kinds a stack can be.
pub const KINDS: [&str; 6] = ["api", "function", "task", "trigger", "middleware", "addon"];

/// `kind/name`, e.g. `api/checkout`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct StackRef {
    pub kind: String,
    pub name: String,
}

impl StackRef {
    /// Parses `kind/name`. Errors: `Usage` for an unknown kind or a name that is not
    /// 1-128 of `A-Za-z0-9_.-` (names become file names on export) starting with a letter or digit.
    pub fn parse(text: &str) -> Result<StackRef> {
        let (kind, name) = text
            .split_once('/')
            .ok_or_else(|| Error::usage(format!("{text:?} is not a stack name: write kind/name, e.g. api/checkout")))?;
        if !KINDS.contains(&kind) {
            return Err(Error::usage(format!("unknown stack kind {kind:?}: use one of {}", KINDS.join(", "))));
        }
        let ok = !name.is_empty()
            && name.len() <= 128
            && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
            && name.chars().next().is_some_and(|c| c.is_ascii_alphanumeric());
        if !ok {
            return Err(Error::usage(format!(
                "stack name {name:?} is not allowed: use 1-128 letters, digits, '_', '.' or '-', starting with a letter or digit"
            )));
        }
        Ok(StackRef { kind: kind.to_string(), name: name.to_string() })
    }
}

impl std::fmt::Display for StackRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.kind, self.name)
    }
}

/// Which state of a stack: the live content, a published version, or a logged change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selector {
    Live,
    /// The newest published version.
    Published,
    Version(i32),
    Change(i64),
}

impl Selector {
    /// Parses `live`, `published`, `version:N`, `change:N`. Errors: `Usage`.
    pub fn parse(text: &str) -> Result<Selector> {
        let bad = || Error::usage(format!("{text:?} is not a stack state: use live, published, version:N or change:N"));
        match text {
            "live" => Ok(Selector::Live),
            "published" => Ok(Selector::Published),
            _ => match text.split_once(':') {
                Some(("version", n)) => n.parse().ok().filter(|n| *n > 0).map(Selector::Version).ok_or_else(bad),
                Some(("change", n)) => n.parse().ok().filter(|n| *n > 0).map(Selector::Change).ok_or_else(bad),
                _ => Err(bad()),
            },
        }
    }
}

impl std::fmt::Display for Selector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Selector::Live => f.write_str("live"),
            Selector::Published => f.write_str("published"),
            Selector::Version(n) => write!(f, "version:{n}"),
            Selector::Change(n) => write!(f, "change:{n}"),
        }
    }
}

/// A document ready to store: parsed, in canonical text (sorted keys, compact), hashed.
#[derive(Debug, Clone)]
pub struct Document {
    pub value: serde_json::Value,
    pub canonical: String,
    pub sha256: String,
}

impl Document {
    /// Parses JSON text. Errors: `Usage` with the line and column of the problem.
    /// Errors: also `Usage` for a NUL character (`\u0000`) anywhere in it, which
    /// Postgres cannot store.
    pub fn parse(text: &str, origin: &str) -> Result<Document> {
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| Error::usage(format!("{origin} is not valid JSON: {e}")))?;
        if holds_nul(&value) {
            return Err(Error::usage(format!(
                "{origin} holds a NUL character (\\u0000), which Postgres cannot store in a stack: remove it"
            )));
        }
        Ok(Document::from_value(value))
    }

    pub fn from_value(value: serde_json::Value) -> Document {
        // serde_json's map is ordered by key, so this text is canonical.
        let canonical = serde_json::to_string(&value).expect("a Value serializes");
        let sha256 = hex::encode(Sha256::digest(canonical.as_bytes()));
        Document { value, canonical, sha256 }
    }
}

fn holds_nul(value: &serde_json::Value) -> bool {
    match value {
        serde_json::Value::String(s) => s.contains('\0'),
        serde_json::Value::Array(items) => items.iter().any(holds_nul),
        serde_json::Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || holds_nul(v)),
        _ => false,
    }
}

/// Refuses text Postgres cannot store (a NUL character), naming `what` it is.
///
/// Errors: `Usage`.
pub fn storable(what: &str, text: Option<&str>) -> Result<()> {
    match text {
        Some(t) if t.contains('\0') => {
            Err(Error::usage(format!("the {what} holds a NUL character (\\u0000), which Postgres cannot store")))
        }
        _ => Ok(()),
    }
}

/// The workspace schema's migrations, embedded in the binary.
const WORKSPACE_MIGRATIONS: Embedded = Embedded(&[
    (1, "stacks", include_str!("../../migrations/workspace/0001_stacks.sql")),
    (2, "actor", include_str!("../../migrations/workspace/0002_actor.sql")),
]);

/// Installs or upgrades the `tidemark` schema in a workspace database (idempotent; the
/// migrations table lives in that schema too, never in `public`).
///
/// Errors: `Database` when the role may not create the schema.
pub async fn install(conn: &mut PgConnection) -> Result<()> {
    let mut migrator =
        Migrator::new(WORKSPACE_MIGRATIONS).await.map_err(|e| Error::internal(format!("embedded migrations: {e}")))?;
    migrator.create_schema("tidemark");
    migrator.dangerous_set_table_name("tidemark._sqlx_migrations");
    // run_direct, not run: `run` over `Acquire` makes the future not `Send` (sqlx notes this).
    migrator.run_direct(None, conn, false).await.map_err(|e| {
        Error::new(ErrorKind::Database, format!("installing the tidemark schema in the workspace database failed: {e}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refs_and_selectors_parse_or_explain() {
        assert_eq!(StackRef::parse("api/checkout").unwrap().to_string(), "api/checkout");
        assert!(StackRef::parse("apix/checkout").unwrap_err().message().contains("unknown stack kind"));
        assert!(StackRef::parse("api/../x").is_err());
        assert!(StackRef::parse("checkout").is_err());
        assert_eq!(Selector::parse("version:3").unwrap(), Selector::Version(3));
        assert_eq!(Selector::parse("change:17").unwrap(), Selector::Change(17));
        assert!(Selector::parse("version:0").is_err());
        assert!(Selector::parse("tip").is_err());
    }

    #[test]
    fn canonical_form_ignores_key_order_and_spacing() {
        let a = Document::parse("{\"b\": 1, \"a\": [1, 2]}", "a").unwrap();
        let b = Document::parse("{\"a\":[1,2],\"b\":1}", "b").unwrap();
        assert_eq!(a.sha256, b.sha256);
        assert_eq!(a.canonical, "{\"a\":[1,2],\"b\":1}");
        assert!(Document::parse("{oops", "f.json").unwrap_err().message().contains("f.json is not valid JSON"));
    }

    #[test]
    fn text_postgres_cannot_store_is_refused_before_anything_is_written() {
        for json in [r#"{"a": "x\u0000y"}"#, r#"{"k\u0000": 1}"#, r#"[1, {"deep": ["\u0000"]}]"#] {
            let e = Document::parse(json, "the body").unwrap_err();
            assert_eq!(e.kind(), crate::error::ErrorKind::Usage, "{json}");
            assert!(e.message().contains("NUL"), "{}", e.message());
        }
        assert!(Document::parse(r#"{"a": "\u0001 is fine"}"#, "b").is_ok());
        assert_eq!(storable("message", Some("m\0")).unwrap_err().kind(), crate::error::ErrorKind::Usage);
        assert!(storable("message", Some("fine")).is_ok() && storable("message", None).is_ok());
    }
}
