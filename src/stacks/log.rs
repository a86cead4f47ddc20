//! The change log in the workspace database: put, publish, revert, and reading states and
//! history. Writers of one stack are serialized by a row lock on the stack, so concurrent
//! writers never lose a change or duplicate a version number.

use serde::Serialize;
use sqlx::postgres::PgConnection;
use sqlx::{Connection, Row};

use super::{Document, Selector, StackRef};
use crate::actor::Actor;
use crate::error::{Error, ErrorKind, Result};

/// Who a change is recorded as: the author people name, and the actor tidemark knows
/// asked for it.
#[derive(Debug, Clone, Copy)]
pub struct ChangedBy<'a> {
    pub author: &'a str,
    pub actor: &'a Actor,
}

/// One logged change.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ChangeInfo {
    pub id: i64,
    pub author: String,
    /// Who asked tidemark for it (`cli:alice`); `None` for changes made before it was
    /// recorded.
    pub actor: Option<String>,
    pub message: Option<String>,
    pub at: chrono::DateTime<chrono::Utc>,
    pub content_sha256: String,
    /// The versions published from this change.
    pub versions: Vec<i32>,
    pub reverted_to: Option<String>,
}

pub use crate::repo::manifest::StackSummary;

/// What a put or revert did.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PutOutcome {
    pub stack: String,
    /// `None` when the content equals the live content: nothing was recorded.
    pub change: Option<i64>,
    pub content_sha256: String,
}

/// A published version.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Published {
    pub stack: String,
    pub version: i32,
    pub change: i64,
}

/// Locks (creating if `create`) the stack row and returns its id.
async fn lock_stack(conn: &mut PgConnection, stack: &StackRef, create: bool) -> Result<Option<i64>> {
    if create {
        sqlx::query("INSERT INTO tidemark.stacks (kind, name) VALUES ($1, $2) ON CONFLICT (kind, name) DO NOTHING")
            .bind(&stack.kind)
            .bind(&stack.name)
            .execute(&mut *conn)
            .await?;
    }
    Ok(sqlx::query_scalar("SELECT id FROM tidemark.stacks WHERE kind = $1 AND name = $2 FOR UPDATE")
        .bind(&stack.kind)
        .bind(&stack.name)
        .fetch_optional(&mut *conn)
        .await?)
}

fn missing(stack: &StackRef) -> Error {
    Error::not_found(format!("there is no stack {stack}; `tidemark stacks list` shows the stacks that exist"))
}

/// Records `doc` as the new live content, unless it equals the live content.
pub async fn put(
    conn: &mut PgConnection,
    stack: &StackRef,
    doc: &Document,
    by: ChangedBy<'_>,
    message: Option<&str>,
    reverted_to: Option<&str>,
) -> Result<PutOutcome> {
    super::storable("message", message)?;
    super::storable("author", Some(by.author))?;
    let mut tx = conn.begin().await?;
    let id = lock_stack(&mut tx, stack, true).await?.expect("created above");
    let live: Option<String> = sqlx::query_scalar(
        "SELECT content_sha256 FROM tidemark.stack_changes WHERE stack_id = $1 ORDER BY id DESC LIMIT 1",
    )
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?;
    if live.as_deref() == Some(doc.sha256.as_str()) {
        tx.rollback().await?;
        return Ok(PutOutcome { stack: stack.to_string(), change: None, content_sha256: doc.sha256.clone() });
    }
    let change: i64 = sqlx::query_scalar(
        "INSERT INTO tidemark.stack_changes (stack_id, author, message, content_sha256, content, reverted_to, actor) \
         VALUES ($1, $2, $3, $4, $5::text::jsonb, $6, $7) RETURNING id",
    )
    .bind(id)
    .bind(by.author)
    .bind(message)
    .bind(&doc.sha256)
    .bind(&doc.canonical)
    .bind(reverted_to)
    .bind(by.actor.to_string())
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(PutOutcome { stack: stack.to_string(), change: Some(change), content_sha256: doc.sha256.clone() })
}

/// Publishes the live content as the next version.
///
/// Errors: `NotFound` for a stack without changes; `AlreadyExists` when the live change is
/// already the newest version.
pub async fn publish(
    conn: &mut PgConnection,
    stack: &StackRef,
    by: ChangedBy<'_>,
    message: Option<&str>,
) -> Result<Published> {
    super::storable("message", message)?;
    super::storable("author", Some(by.author))?;
    let mut tx = conn.begin().await?;
    let id = lock_stack(&mut tx, stack, false).await?.ok_or_else(|| missing(stack))?;
    let live: i64 = sqlx::query_scalar("SELECT max(id) FROM tidemark.stack_changes WHERE stack_id = $1")
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
    let newest = sqlx::query(
        "SELECT version, change_id FROM tidemark.stack_versions WHERE stack_id = $1 ORDER BY version DESC LIMIT 1",
    )
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?;
    let next = match newest {
        Some(row) if row.get::<i64, _>(1) == live => {
            return Err(Error::new(
                ErrorKind::AlreadyExists,
                format!(
                    "{stack}'s live content is already version {}; change it before publishing again",
                    row.get::<i32, _>(0)
                ),
            ));
        }
        Some(row) => row.get::<i32, _>(0) + 1,
        None => 1,
    };
    sqlx::query(
        "INSERT INTO tidemark.stack_versions (stack_id, version, change_id, published_by, message, actor) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(id)
    .bind(next)
    .bind(live)
    .bind(by.author)
    .bind(message)
    .bind(by.actor.to_string())
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Published { stack: stack.to_string(), version: next, change: live })
}

/// The content of a state, with the change it comes from.
///
/// Errors: `NotFound` for a missing stack, version or change (or a change of another stack).
pub async fn read(conn: &mut PgConnection, stack: &StackRef, selector: Selector) -> Result<(i64, Document)> {
    let id: i64 = sqlx::query_scalar("SELECT id FROM tidemark.stacks WHERE kind = $1 AND name = $2")
        .bind(&stack.kind)
        .bind(&stack.name)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| missing(stack))?;
    let change: Option<i64> = match selector {
        Selector::Live => {
            sqlx::query_scalar("SELECT max(id) FROM tidemark.stack_changes WHERE stack_id = $1")
                .bind(id)
                .fetch_one(&mut *conn)
                .await?
        }
        Selector::Published => {
            sqlx::query_scalar(
                "SELECT change_id FROM tidemark.stack_versions WHERE stack_id = $1 ORDER BY version DESC LIMIT 1",
            )
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?
        }
        Selector::Version(v) => {
            sqlx::query_scalar("SELECT change_id FROM tidemark.stack_versions WHERE stack_id = $1 AND version = $2")
                .bind(id)
                .bind(v)
                .fetch_optional(&mut *conn)
                .await?
        }
        Selector::Change(c) => {
            sqlx::query_scalar("SELECT id FROM tidemark.stack_changes WHERE stack_id = $1 AND id = $2")
                .bind(id)
                .bind(c)
                .fetch_optional(&mut *conn)
                .await?
        }
    };
    let change = change.ok_or_else(|| Error::not_found(format!("{stack} has no {selector}")))?;
    let content: String = sqlx::query_scalar("SELECT content::text FROM tidemark.stack_changes WHERE id = $1")
        .bind(change)
        .fetch_one(&mut *conn)
        .await?;
    let value: serde_json::Value = serde_json::from_str(&content)?;
    Ok((change, Document::from_value(value)))
}

/// Every change of a stack, oldest first, with the versions published from each.
pub async fn history(conn: &mut PgConnection, stack: &StackRef) -> Result<Vec<ChangeInfo>> {
    let rows = sqlx::query(
        "SELECT c.id, c.author, c.message, c.created_at, c.content_sha256, c.reverted_to, \
                coalesce(array_agg(v.version ORDER BY v.version) FILTER (WHERE v.version IS NOT NULL), '{}'), \
                to_jsonb(c) ->> 'actor' \
         FROM tidemark.stacks s JOIN tidemark.stack_changes c ON c.stack_id = s.id \
         LEFT JOIN tidemark.stack_versions v ON v.change_id = c.id \
         WHERE s.kind = $1 AND s.name = $2 GROUP BY c.id ORDER BY c.id",
    )
    .bind(&stack.kind)
    .bind(&stack.name)
    .fetch_all(&mut *conn)
    .await?;
    if rows.is_empty() {
        return Err(missing(stack));
    }
    Ok(rows
        .into_iter()
        .map(|r| ChangeInfo {
            id: r.get(0),
            author: r.get(1),
            message: r.get(2),
            at: r.get(3),
            content_sha256: r.get(4),
            reverted_to: r.get(5),
            versions: r.get(6),
            // Read through jsonb: a schema installed before the column existed has none.
            actor: r.get(7),
        })
        .collect())
}

/// Whether the database has the stack tables (`install` creates them on first write).
pub async fn installed(conn: &mut PgConnection) -> Result<bool> {
    Ok(sqlx::query_scalar("SELECT to_regclass('tidemark.stack_versions') IS NOT NULL").fetch_one(&mut *conn).await?)
}

/// Every stack with its live state; none when the stack tables were never installed.
pub async fn list_if_installed(conn: &mut PgConnection) -> Result<Vec<StackSummary>> {
    if installed(conn).await? { list(conn).await } else { Ok(Vec::new()) }
}

/// Every stack with its live state.
pub async fn list(conn: &mut PgConnection) -> Result<Vec<StackSummary>> {
    let rows = sqlx::query(
        "SELECT s.kind || '/' || s.name, count(c.id), max(c.id), \
                (SELECT content_sha256 FROM tidemark.stack_changes WHERE id = max(c.id)), \
                (SELECT max(version) FROM tidemark.stack_versions WHERE stack_id = s.id) \
         FROM tidemark.stacks s JOIN tidemark.stack_changes c ON c.stack_id = s.id \
         GROUP BY s.id ORDER BY s.kind, s.name",
    )
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| StackSummary {
            stack: r.get(0),
            changes: r.get(1),
            live_change: r.get(2),
            live_sha256: r.get(3),
            latest_version: r.get(4),
        })
        .collect())
}
