//! Web console sessions as the catalog keeps them: a SHA-256 of the session's secret (the
//! browser's cookie holds the secret; the catalog never does), how it signed in, and when it
//! ends. Shared by every API server of a fleet, so a browser may be served by any of them.

use chrono::{DateTime, Utc};

use super::{Catalog, Get, on_pool};
use crate::error::Result;

/// A session, without its secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    /// How the browser signed in (`token`; single sign-on later).
    pub method: String,
    /// The token it signed in with (its display id): checked again at every request.
    pub token_id: String,
    pub address: Option<String>,
    pub created_at: DateTime<Utc>,
    /// The last request a person made (a page's own refresh does not count).
    pub last_seen_at: DateTime<Utc>,
    /// The absolute end, whatever the activity.
    pub expires_at: DateTime<Utc>,
    /// Signed out.
    pub ended_at: Option<DateTime<Utc>>,
}

fn session_of(row: &impl Get) -> std::result::Result<SessionRecord, sqlx::Error> {
    Ok(SessionRecord {
        method: row.get("method")?,
        token_id: row.get("token_id")?,
        address: row.get("address")?,
        created_at: row.get("created_at")?,
        last_seen_at: row.get("last_seen_at")?,
        expires_at: row.get("expires_at")?,
        ended_at: row.get("ended_at")?,
    })
}

super::from_row!(SessionRecord, session_of);

/// Sessions that ended (or expired) longer ago than this are deleted when a new one begins.
const KEPT_AFTER_END: chrono::TimeDelta = chrono::TimeDelta::days(1);

impl Catalog {
    /// Stores a new session under the SHA-256 of its secret, and forgets sessions that
    /// ended (or expired) more than a day before it began.
    ///
    /// Errors: `Unavailable` for the catalog.
    pub async fn insert_session(&self, id_sha256: &str, session: &SessionRecord) -> Result<()> {
        let old = session.created_at - KEPT_AFTER_END;
        on_pool!(&self.pool, |p| sqlx::query("DELETE FROM console_sessions WHERE expires_at < $1 OR ended_at < $1")
            .bind(old)
            .execute(p)
            .await
            .map(|r| r.rows_affected()))
        .map_err(|e| self.err("cannot forget old console sessions", e))?;
        on_pool!(&self.pool, |p| sqlx::query(
            "INSERT INTO console_sessions (id_sha256, method, token_id, address, created_at, last_seen_at, \
             expires_at, ended_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        )
        .bind(id_sha256)
        .bind(&session.method)
        .bind(&session.token_id)
        .bind(&session.address)
        .bind(session.created_at)
        .bind(session.last_seen_at)
        .bind(session.expires_at)
        .bind(session.ended_at)
        .execute(p)
        .await
        .map(|r| r.rows_affected()))
        .map_err(|e| self.err("cannot store a console session", e))?;
        Ok(())
    }

    /// The session stored under `id_sha256`, ended or not.
    ///
    /// Errors: `Unavailable` for the catalog.
    pub async fn session(&self, id_sha256: &str) -> Result<Option<SessionRecord>> {
        on_pool!(&self.pool, |p| sqlx::query_as("SELECT * FROM console_sessions WHERE id_sha256 = $1")
            .bind(id_sha256)
            .fetch_optional(p)
            .await)
        .map_err(|e| self.err("cannot read the console sessions", e))
    }

    /// Records a person's request in a session.
    ///
    /// Errors: `Unavailable` for the catalog.
    pub async fn session_seen(&self, id_sha256: &str, at: DateTime<Utc>) -> Result<()> {
        on_pool!(&self.pool, |p| sqlx::query(
            "UPDATE console_sessions SET last_seen_at = $1 WHERE id_sha256 = $2 AND last_seen_at < $1"
        )
        .bind(at)
        .bind(id_sha256)
        .execute(p)
        .await
        .map(|r| r.rows_affected()))
        .map_err(|e| self.err("cannot record a console session's use", e))?;
        Ok(())
    }

    /// Ends a session (signed out); returns whether it was still open.
    ///
    /// Errors: `Unavailable` for the catalog.
    pub async fn end_session(&self, id_sha256: &str, at: DateTime<Utc>) -> Result<bool> {
        let ended = on_pool!(&self.pool, |p| sqlx::query(
            "UPDATE console_sessions SET ended_at = $1 WHERE id_sha256 = $2 AND ended_at IS NULL"
        )
        .bind(at)
        .bind(id_sha256)
        .execute(p)
        .await
        .map(|r| r.rows_affected()))
        .map_err(|e| self.err("cannot end a console session", e))?;
        Ok(ended > 0)
    }
}
