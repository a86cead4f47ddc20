//! API tokens as the catalog keeps them: a SHA-256 of the secret and what it grants, never
//! the secret itself.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::Row;

use super::Catalog;
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

fn token_of(row: &sqlx::sqlite::SqliteRow) -> std::result::Result<(TokenRecord, String), sqlx::Error> {
    let list = |col: &str| -> std::result::Result<Vec<String>, sqlx::Error> {
        let text: String = row.try_get(col)?;
        Ok(serde_json::from_str(&text).unwrap_or_default())
    };
    let role: String = row.try_get("role")?;
    let record = TokenRecord {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        // An unknown role (edited by hand) grants nothing useful: read as the least.
        role: role.parse().unwrap_or(Role::Viewer),
        workspaces: list("workspaces")?,
        allow_ips: list("allow_ips")?,
        created_by: row.try_get("created_by")?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
        last_used_at: row.try_get("last_used_at")?,
        last_used_address: row.try_get("last_used_address")?,
        revoked_at: row.try_get("revoked_at")?,
    };
    Ok((record, row.try_get("secret_sha256")?))
}

impl Catalog {
    /// Stores a new token.
    ///
    /// Errors: `AlreadyExists` for a name a live token has; `Unavailable` for the catalog.
    pub async fn insert_token(&self, token: &TokenRecord, secret_sha256: &str) -> Result<()> {
        let inserted = sqlx::query(
            "INSERT INTO tokens (id, name, secret_sha256, role, workspaces, allow_ips, created_by, created_at, \
             expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
        .execute(&self.pool)
        .await;
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
        let rows = sqlx::query("SELECT * FROM tokens ORDER BY created_at DESC")
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.err("cannot read the tokens", e))?;
        rows.iter()
            .map(|r| token_of(r).map(|(t, _)| t))
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| self.err("cannot read the tokens", e))
    }

    /// The token whose secret has this SHA-256, with the stored hash (for a constant-time
    /// comparison by the caller).
    ///
    /// Errors: `Unavailable` for the catalog.
    pub async fn token_by_hash(&self, secret_sha256: &str) -> Result<Option<(TokenRecord, String)>> {
        let row = sqlx::query("SELECT * FROM tokens WHERE secret_sha256 = ?")
            .bind(secret_sha256)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.err("cannot read the tokens", e))?;
        row.as_ref().map(token_of).transpose().map_err(|e| self.err("cannot read the tokens", e))
    }

    /// Records a use of a token.
    ///
    /// Errors: `Unavailable` for the catalog.
    pub async fn token_used(&self, id: &str, at: DateTime<Utc>, address: Option<&str>) -> Result<()> {
        sqlx::query("UPDATE tokens SET last_used_at = ?, last_used_address = ? WHERE id = ?")
            .bind(at)
            .bind(address)
            .bind(id)
            .execute(&self.pool)
            .await
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
        let row = sqlx::query("SELECT * FROM tokens WHERE (name = ?1 OR id = ?1) AND revoked_at IS NULL")
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.err("cannot read the tokens", e))?;
        let Some(row) = row else {
            return Err(Error::not_found(format!("no live token named {name:?}; `tidemark token list` shows them")));
        };
        let (mut token, _) = token_of(&row).map_err(|e| self.err("cannot read the tokens", e))?;
        if !may(&token) {
            return Err(Error::not_found(format!("no live token named {name:?}; `tidemark token list` shows them")));
        }
        sqlx::query("UPDATE tokens SET revoked_at = ? WHERE id = ?")
            .bind(at)
            .bind(&token.id)
            .execute(&self.pool)
            .await
            .map_err(|e| self.err("cannot revoke a token", e))?;
        token.revoked_at = Some(at);
        Ok(token)
    }
}
