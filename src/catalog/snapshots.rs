//! The index of the repository's snapshots: one row per snapshot with its summary (JSON,
//! what `snapshot list` shows; what a summary is belongs to `ops`), and when each
//! workspace's index was last compared with the repository.

use chrono::{DateTime, Utc};

use super::{Catalog, on_pool};
use crate::error::Result;

impl Catalog {
    /// Adds or replaces a snapshot's summary.
    pub async fn index_snapshot(&self, workspace: &str, id: &str, summary: &str) -> Result<()> {
        on_pool!(&self.pool, |p| sqlx::query(
            "INSERT INTO snapshots (workspace, id, summary) VALUES ($1, $2, $3) \
             ON CONFLICT (workspace, id) DO UPDATE SET summary = excluded.summary"
        )
        .bind(workspace)
        .bind(id)
        .bind(summary)
        .execute(p)
        .await
        .map(|r| r.rows_affected()))
        .map_err(|e| self.err("cannot index a snapshot", e))?;
        Ok(())
    }

    /// Removes snapshots from the index (deleted from the repository).
    pub async fn unindex_snapshots(&self, workspace: &str, ids: &[String]) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        on_pool!(&self.pool, |p| {
            let mut tx = p.begin().await.map_err(|e| self.err("cannot update the snapshot index", e))?;
            for id in ids {
                sqlx::query("DELETE FROM snapshots WHERE workspace = $1 AND id = $2")
                    .bind(workspace)
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| self.err("cannot update the snapshot index", e))?;
            }
            tx.commit().await.map_err(|e| self.err("cannot update the snapshot index", e))
        })
    }

    /// The index of `workspace`: each snapshot's id and summary, oldest first.
    pub async fn indexed_snapshots(&self, workspace: &str) -> Result<Vec<(String, String)>> {
        on_pool!(&self.pool, |p| sqlx::query_as("SELECT id, summary FROM snapshots WHERE workspace = $1 ORDER BY id")
            .bind(workspace)
            .fetch_all(p)
            .await)
        .map_err(|e| self.err("cannot read the snapshot index", e))
    }

    /// The ids the index holds for `workspace`, oldest first.
    pub async fn indexed_snapshot_ids(&self, workspace: &str) -> Result<Vec<String>> {
        on_pool!(&self.pool, |p| sqlx::query_scalar("SELECT id FROM snapshots WHERE workspace = $1 ORDER BY id")
            .bind(workspace)
            .fetch_all(p)
            .await)
        .map_err(|e| self.err("cannot read the snapshot index", e))
    }

    /// Summaries of `workspace`, newest first, older than `before` (an id) when given.
    pub async fn snapshot_summaries(&self, workspace: &str, before: Option<&str>, limit: u32) -> Result<Vec<String>> {
        on_pool!(&self.pool, |p| sqlx::query_scalar(
            "SELECT summary FROM snapshots WHERE workspace = $1 AND ($2 IS NULL OR id < $2) ORDER BY id DESC LIMIT $3",
        )
        .bind(workspace)
        .bind(before)
        .bind(i64::from(limit))
        .fetch_all(p)
        .await)
        .map_err(|e| self.err("cannot read the snapshot index", e))
    }

    /// When the index of `workspace` was last compared with the repository.
    pub async fn snapshot_index_synced(&self, workspace: &str) -> Result<Option<DateTime<Utc>>> {
        on_pool!(&self.pool, |p| sqlx::query_scalar("SELECT synced_at FROM snapshot_index WHERE workspace = $1")
            .bind(workspace)
            .fetch_optional(p)
            .await)
        .map_err(|e| self.err("cannot read the snapshot index", e))
    }

    /// Records that the index of `workspace` was compared with the repository at `at`
    /// (`None`: forget it, so the next listing compares).
    pub async fn set_snapshot_index_synced(&self, workspace: &str, at: Option<DateTime<Utc>>) -> Result<()> {
        on_pool!(&self.pool, |p| match at {
            Some(at) => {
                sqlx::query(
                    "INSERT INTO snapshot_index (workspace, synced_at) VALUES ($1, $2) \
                     ON CONFLICT (workspace) DO UPDATE SET synced_at = excluded.synced_at",
                )
                .bind(workspace)
                .bind(at)
                .execute(p)
                .await
            }
            None => sqlx::query("DELETE FROM snapshot_index WHERE workspace = $1").bind(workspace).execute(p).await,
        }
        .map(|r| r.rows_affected()))
        .map_err(|e| self.err("cannot update the snapshot index", e))?;
        Ok(())
    }
}
