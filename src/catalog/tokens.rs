//! API tokens as the catalog keeps them: a SHA-256 of the secret and what it grants, never
//! the secret itself.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Catalog, Get, on_pool};
use crate::access::Role;
use crate::error::{Error, ErrorKind, Result};

/// A token, without its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TokenRecord {
    /// The display prefix: `tdm_` and the secret's first 8 characters.
    pub id: String,
    pub name: String,
    pub role: Role,
    /// Empty: every workspace.
    pub workspaces: Vec<String>,
    /// CIDRs the token may be used from; empty: every address.
    pub allow_ips: Vec<String>,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub last_used_address: Option<String>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// A stored token: the record and the SHA-256 of its secret.
struct Stored(TokenRecord, String);

fn token_of(row: &impl Get) -> std::result::Result<Stored, sqlx::Error> {
    let list = |col: &str| -> std::result::Result<Vec<String>, sqlx::Error> {
        let text: String = row.get(col)?;
        Ok(serde_json::from_str(&text).unwrap_or_default())
    };
    let role: String = row.get("role")?;
    let record = TokenRecord {
        id: row.get("id")?,
        name: row.get("name")?,
        // An unknown role (edited by hand) grants nothing useful: read as the least.
        role: role.parse().unwrap_or(Role::Viewer),
        workspaces: list("workspaces")?,
        allow_ips: list("allow_ips")?,
        created_by: row.get("created_by")?,
        created_at: row.get("created_at")?,
        expires_at: row.get("expires_at")?,
        last_used_at: row.get("last_used_at")?,
        last_used_address: row.get("last_used_address")?,
        revoked_at: row.get("revoked_at")?,
    };
    Ok(Stored(record, row.get("secret_sha256")?))
}

super::from_row!(Stored, token_of);

impl Catalog {
    /// Stores a new token.
    ///
    /// Errors: `AlreadyExists` for a name a live token has; `Unavailable` for the catalog.
    pub async fn insert_token(&self, token: &TokenRecord, secret_sha256: &str) -> Result<()> {
        let inserted = on_pool!(&self.pool, |p| sqlx::query(
            "INSERT INTO tokens (id, name, secret_sha256, role, workspaces, allow_ips, created_by, created_at, \
             expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&token.id)
        .bind(&token.name)
        .bind(secret_sha256)
        .bind(token.role.as_str())
        .bind(serde_json::to_string(&token.workspaces).expect("a list serializes"))
        .bind(serde_json::to_string(&token.allow_ips).expect("a list serializes"))
        .bind(&token.created_by)
        .bind(token.created_at)
        .bind(token.expires_at)
        .execute(p)
        .await
        .map(|r| r.rows_affected()));
        match inserted {
            Ok(_) => Ok(()),
            Err(sqlx::Error::Database(db)) if db.is_unique_violation() => Err(Error::new(
                ErrorKind::AlreadyExists,
                format!("a token named {:?} exists; revoke it first or choose another name", token.name),
            )),
            Err(e) => Err(self.err("cannot store a token", e)),
        }
    }

    /// Every token, newest first (revoked ones too, for the record).
    ///
    /// Errors: `Unavailable` for the catalog.
    pub async fn tokens(&self) -> Result<Vec<TokenRecord>> {
        let rows: Vec<Stored> =
            on_pool!(&self.pool, |p| sqlx::query_as("SELECT * FROM tokens ORDER BY created_at DESC")
                .fetch_all(p)
                .await)
            .map_err(|e| self.err("cannot read the tokens", e))?;
        Ok(rows.into_iter().map(|Stored(t, _)| t).collect())
    }

    /// The token whose secret has this SHA-256, with the stored hash (for a constant-time
    /// comparison by the caller).
    ///
    /// Errors: `Unavailable` for the catalog.
    pub async fn token_by_hash(&self, secret_sha256: &str) -> Result<Option<(TokenRecord, String)>> {
        let row: Option<Stored> =
            on_pool!(&self.pool, |p| sqlx::query_as("SELECT * FROM tokens WHERE secret_sha256 = $1")
                .bind(secret_sha256)
                .fetch_optional(p)
                .await)
            .map_err(|e| self.err("cannot read the tokens", e))?;
        Ok(row.map(|Stored(t, hash)| (t, hash)))
    }

    /// The token with the display id `id` (revoked or expired too: the caller decides).
    ///
    /// Errors: `Unavailable` for the catalog.
    pub async fn token_by_id(&self, id: &str) -> Result<Option<TokenRecord>> {
        let row: Option<Stored> = on_pool!(&self.pool, |p| sqlx::query_as("SELECT * FROM tokens WHERE id = $1")
            .bind(id)
            .fetch_optional(p)
            .await)
        .map_err(|e| self.err("cannot read the tokens", e))?;
        Ok(row.map(|Stored(t, _)| t))
    }

    /// Records a use of a token.
    ///
    /// Errors: `Unavailable` for the catalog.
    pub async fn token_used(&self, id: &str, at: DateTime<Utc>, address: Option<&str>) -> Result<()> {
        on_pool!(&self.pool, |p| sqlx::query(
            "UPDATE tokens SET last_used_at = $1, last_used_address = $2 WHERE id = $3"
        )
        .bind(at)
        .bind(address)
        .bind(id)
        .execute(p)
        .await
        .map(|r| r.rows_affected()))
        .map_err(|e| self.err("cannot record a token's use", e))?;
        Ok(())
    }

    /// Revokes the live token named `name` or with the display id `name` when `may` says
    /// so of it; returns it.
    ///
    /// Errors: `NotFound` when no live token has that name or id, or `may` refuses it (the
    /// caller is not told that a token it may not manage exists).
    pub async fn revoke_token(
        &self,
        name: &str,
        at: DateTime<Utc>,
        may: impl Fn(&TokenRecord) -> bool,
    ) -> Result<TokenRecord> {
        let row: Option<Stored> = on_pool!(&self.pool, |p| sqlx::query_as(
            "SELECT * FROM tokens WHERE (name = $1 OR id = $1) AND revoked_at IS NULL"
        )
        .bind(name)
        .fetch_optional(p)
        .await)
        .map_err(|e| self.err("cannot read the tokens", e))?;
        let Some(Stored(mut token, _)) = row else {
            return Err(Error::not_found(format!("no live token named {name:?}; `tidemark token list` shows them")));
        };
        if !may(&token) {
            return Err(Error::not_found(format!("no live token named {name:?}; `tidemark token list` shows them")));
        }
        on_pool!(&self.pool, |p| sqlx::query("UPDATE tokens SET revoked_at = $1 WHERE id = $2")
            .bind(at)
            .bind(&token.id)
            .execute(p)
            .await
            .map(|r| r.rows_affected()))
        .map_err(|e| self.err("cannot revoke a token", e))?;
        token.revoked_at = Some(at);
        Ok(token)
    }
}
