//! Restore drills: one row per drill, with its whole report (JSON) for `drill history`.
//! The catalog keeps the report as JSON; what a report is belongs to `drill`.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{Catalog, Trigger, on_pool};
use crate::error::{Error, Result};

/// A drill as the catalog keeps it: its id, what started it, who asked, and the report.
#[derive(Debug, Clone, Serialize)]
pub struct DrillRecord {
    pub id: i64,
    pub trigger: String,
    /// Who asked (`cli:alice`); `None` for drills recorded before it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    #[serde(flatten)]
    pub report: serde_json::Value,
}

/// A drill to record: the columns the catalog lists by, and the whole report.
#[derive(Debug, Clone)]
pub struct DrillRow {
    pub workspace: String,
    pub kind: String,
    pub source: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub passed: bool,
    pub checks: usize,
    pub failed_checks: usize,
    pub restore_ms: u64,
    pub stored_bytes: u64,
    pub report: serde_json::Value,
}

impl Catalog {
    /// Records a finished drill with its whole report; returns its id.
    pub async fn record_drill(&self, row: &DrillRow, trigger: Trigger, actor: Option<&str>) -> Result<i64> {
        let row: (i64,) = on_pool!(&self.pool, |p| sqlx::query_as(
            "INSERT INTO drills (workspace, kind, source, trigger, started_at, finished_at, passed, checks, \
             failed_checks, restore_ms, stored_bytes, report, actor) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) RETURNING id",
        )
        .bind(&row.workspace)
        .bind(&row.kind)
        .bind(&row.source)
        .bind(trigger.as_str())
        .bind(row.started_at)
        .bind(row.finished_at)
        .bind(row.passed)
        .bind(row.checks as i64)
        .bind(row.failed_checks as i64)
        .bind(row.restore_ms as i64)
        .bind(row.stored_bytes as i64)
        .bind(row.report.to_string())
        .bind(actor)
        .fetch_one(p)
        .await)
        .map_err(|e| self.err("cannot record a drill", e))?;
        Ok(row.0)
    }

    /// Records a drill read back from the repository unless the catalog has it (same
    /// workspace, start and source); returns whether it was added.
    pub async fn insert_rebuilt_drill(&self, row: &DrillRow, trigger: Trigger) -> Result<bool> {
        let known: Option<(i64,)> = on_pool!(&self.pool, |p| sqlx::query_as(
            "SELECT id FROM drills WHERE workspace = $1 AND started_at = $2 AND source = $3"
        )
        .bind(&row.workspace)
        .bind(row.started_at)
        .bind(&row.source)
        .fetch_optional(p)
        .await)
        .map_err(|e| self.err("cannot read the drills", e))?;
        if known.is_some() {
            return Ok(false);
        }
        self.record_drill(row, trigger, None).await?;
        Ok(true)
    }

    /// The newest drills first, optionally of one workspace, with their reports.
    pub async fn drills(&self, workspace: Option<&str>, limit: u32) -> Result<Vec<DrillRecord>> {
        let rows: Vec<(i64, String, Option<String>, String)> = on_pool!(&self.pool, |p| sqlx::query_as(
            "SELECT id, trigger, actor, report FROM drills WHERE ($1 IS NULL OR workspace = $1) \
             ORDER BY started_at DESC, id DESC LIMIT $2",
        )
        .bind(workspace)
        .bind(i64::from(limit))
        .fetch_all(p)
        .await)
        .map_err(|e| self.err("cannot list drills", e))?;
        rows.into_iter()
            .map(|(id, trigger, actor, report)| {
                let report = serde_json::from_str(&report)
                    .map_err(|e| Error::integrity(format!("the catalog's drill {id} has an unreadable report: {e}")))?;
                Ok(DrillRecord { id, trigger, actor, report })
            })
            .collect()
    }
}
