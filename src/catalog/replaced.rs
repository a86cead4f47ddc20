//! Databases a switch moved aside, and when: what prune drops once they are old enough.

use chrono::{DateTime, Utc};

use super::{Catalog, on_pool};
use crate::error::Result;

impl Catalog {
    /// Records that `database` (oid `oid`) of `workspace` was moved aside at `at`.
    pub async fn record_replaced(&self, workspace: &str, database: &str, oid: u32, at: DateTime<Utc>) -> Result<()> {
        on_pool!(&self.pool, |p| sqlx::query(
            "INSERT INTO replaced_databases (workspace, database, replaced_at, oid) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (workspace, database) DO UPDATE SET replaced_at = excluded.replaced_at, oid = excluded.oid",
        )
        .bind(workspace)
        .bind(database)
        .bind(at)
        .bind(i64::from(oid))
        .execute(p)
        .await
        .map(|r| r.rows_affected()))
        .map_err(|e| self.err("cannot record a replaced database", e))?;
        Ok(())
    }

    /// Forgets `database` (it is live again, or dropped).
    pub async fn forget_replaced(&self, workspace: &str, database: &str) -> Result<()> {
        on_pool!(&self.pool, |p| sqlx::query("DELETE FROM replaced_databases WHERE workspace = $1 AND database = $2")
            .bind(workspace)
            .bind(database)
            .execute(p)
            .await
            .map(|r| r.rows_affected()))
        .map_err(|e| self.err("cannot forget a replaced database", e))?;
        Ok(())
    }

    /// The database of `workspace` moved aside last whose name starts with `prefix`, with
    /// its oid (`None` for one recorded before oids were).
    ///
    /// Errors: `Unavailable` for the catalog.
    pub async fn newest_replaced(&self, workspace: &str, prefix: &str) -> Result<Option<(String, Option<u32>)>> {
        let rows: Vec<(String, Option<i64>)> = on_pool!(&self.pool, |p| sqlx::query_as(
            "SELECT database, oid FROM replaced_databases WHERE workspace = $1 ORDER BY replaced_at DESC",
        )
        .bind(workspace)
        .fetch_all(p)
        .await)
        .map_err(|e| self.err("cannot read the replaced databases", e))?;
        Ok(rows
            .into_iter()
            .find(|(db, _)| db.starts_with(prefix))
            .map(|(db, oid)| (db, oid.and_then(|o| u32::try_from(o).ok()))))
    }

    /// The databases of `workspace` moved aside, oldest first.
    pub async fn replaced(&self, workspace: &str) -> Result<Vec<(String, DateTime<Utc>)>> {
        on_pool!(&self.pool, |p| sqlx::query_as(
            "SELECT database, replaced_at FROM replaced_databases WHERE workspace = $1 ORDER BY replaced_at"
        )
        .bind(workspace)
        .fetch_all(p)
        .await)
        .map_err(|e| self.err("cannot read the replaced databases", e))
    }
}
