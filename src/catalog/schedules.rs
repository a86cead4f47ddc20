//! The schedules' last runs: the slot each schedule last served, so a slot missed while
//! the daemon was down is caught up once.

use chrono::{DateTime, Utc};

use super::{Catalog, on_pool};
use crate::error::Result;

impl Catalog {
    /// The last slot a schedule served (or when the daemon first saw it).
    pub async fn last_slot(&self, workspace: &str, policy: &str) -> Result<Option<DateTime<Utc>>> {
        let row: Option<(DateTime<Utc>,)> = on_pool!(&self.pool, |p| sqlx::query_as(
            "SELECT last_slot FROM schedule_runs WHERE workspace = $1 AND policy = $2"
        )
        .bind(workspace)
        .bind(policy)
        .fetch_optional(p)
        .await)
        .map_err(|e| self.err("cannot read a schedule's last run", e))?;
        Ok(row.map(|r| r.0))
    }

    /// Records the slot a schedule served. A slot earlier than the recorded one is
    /// ignored: a schedule never moves backwards (`catalog rebuild` relies on this).
    pub async fn set_last_slot(
        &self,
        workspace: &str,
        policy: &str,
        slot: DateTime<Utc>,
        status: &str,
        job: Option<i64>,
    ) -> Result<()> {
        on_pool!(&self.pool, |p| sqlx::query(
            "INSERT INTO schedule_runs (workspace, policy, last_slot, last_status, last_job) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (workspace, policy) DO UPDATE SET last_slot = excluded.last_slot, \
             last_status = excluded.last_status, last_job = excluded.last_job \
             WHERE excluded.last_slot >= schedule_runs.last_slot",
        )
        .bind(workspace)
        .bind(policy)
        .bind(slot)
        .bind(status)
        .bind(job)
        .execute(p)
        .await.map(|r| r.rows_affected()))
        .map_err(|e| self.err("cannot record a schedule's last run", e))?;
        Ok(())
    }
}
