//! How far each copy (`[copies.NAME]`) of each workspace is, as its last copy left it: what
//! `status`, `/metrics` and the stale alert measure a copy's lag from, without listing two
//! repositories at every look.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{Catalog, Get, on_pool};
use crate::error::Result;

/// One copy of one workspace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct CopyStateRow {
    pub workspace: String,
    pub copy: String,
    /// Everything the primary held before this moment is in the copy.
    pub caught_up_to: DateTime<Utc>,
    /// When the copy that left it so ended.
    pub copied_at: DateTime<Utc>,
    /// What that copy still lacked.
    pub missing_objects: i64,
    /// The snapshots the copy holds.
    pub snapshots: i64,
}

impl CopyStateRow {
    /// Seconds the copy is behind at `now`.
    pub fn lag_seconds(&self, now: DateTime<Utc>) -> u64 {
        (now - self.caught_up_to).num_seconds().max(0) as u64
    }
}

fn state_of(row: &impl Get) -> std::result::Result<CopyStateRow, sqlx::Error> {
    Ok(CopyStateRow {
        workspace: row.get("workspace")?,
        copy: row.get("copy")?,
        caught_up_to: row.get("caught_up_to")?,
        copied_at: row.get("copied_at")?,
        missing_objects: row.get("missing_objects")?,
        snapshots: row.get("snapshots")?,
    })
}

super::from_row!(CopyStateRow, state_of);

impl Catalog {
    /// Records what a copy left (replacing what the one before left), unless a copy that
    /// ended later already recorded more (two processes copying at once).
    ///
    /// Errors: `Unavailable` for the catalog.
    pub async fn record_copy_state(&self, state: &CopyStateRow) -> Result<()> {
        on_pool!(&self.pool, |p| sqlx::query(
            "INSERT INTO copy_states (workspace, copy, caught_up_to, copied_at, missing_objects, snapshots) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (workspace, copy) DO UPDATE SET \
             caught_up_to = excluded.caught_up_to, copied_at = excluded.copied_at, \
             missing_objects = excluded.missing_objects, snapshots = excluded.snapshots \
             WHERE copy_states.copied_at <= excluded.copied_at"
        )
        .bind(&state.workspace)
        .bind(&state.copy)
        .bind(state.caught_up_to)
        .bind(state.copied_at)
        .bind(state.missing_objects)
        .bind(state.snapshots)
        .execute(p)
        .await
        .map(|r| r.rows_affected()))
        .map_err(|e| self.err("cannot record a copy's state", e))?;
        Ok(())
    }

    /// Every copy state, by workspace and copy.
    ///
    /// Errors: `Unavailable` for the catalog.
    pub async fn copy_states(&self) -> Result<Vec<CopyStateRow>> {
        on_pool!(&self.pool, |p| sqlx::query_as("SELECT * FROM copy_states ORDER BY workspace, copy")
            .fetch_all(p)
            .await)
        .map_err(|e| self.err("cannot read the copies' states", e))
    }
}
