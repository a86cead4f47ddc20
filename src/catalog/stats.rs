//! Aggregates for `/metrics`: finished jobs by workspace, operation and outcome (count,
//! duration histogram, newest end) and every workspace's newest drill, each one query
//! whose cost does not grow with what a scrape returns.

use super::Catalog;
use crate::error::Result;

/// Upper bounds (seconds) of the job-duration histogram; a last bucket is `+Inf`.
pub const JOB_BUCKETS: [f64; 9] = [1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 14400.0];

/// The finished jobs of one workspace, operation and outcome.
#[derive(Debug, Clone, PartialEq)]
pub struct JobStats {
    pub workspace: String,
    pub operation: String,
    /// `succeeded`, `failed` or `aborted`.
    pub outcome: String,
    pub count: u64,
    pub seconds_sum: f64,
    /// Jobs per bucket of [`JOB_BUCKETS`] (not cumulative), then those above the last.
    pub buckets: Vec<u64>,
    /// When the newest of them finished (unix seconds).
    pub newest_end: Option<f64>,
}

/// A workspace's newest drill.
#[derive(Debug, Clone, PartialEq)]
pub struct NewestDrill {
    pub workspace: String,
    /// Unix seconds.
    pub finished: f64,
    pub passed: bool,
    pub restore_seconds: f64,
}

/// Unix seconds of a stored timestamp, in SQL.
fn unix(column: &str) -> String {
    format!("((julianday({column}) - 2440587.5) * 86400.0)")
}

impl Catalog {
    /// Finished jobs by workspace, operation and outcome.
    ///
    /// Errors: `Unavailable` for the catalog.
    pub async fn job_stats(&self) -> Result<Vec<JobStats>> {
        let mut buckets = Vec::new();
        let mut lower = f64::NEG_INFINITY;
        for upper in JOB_BUCKETS {
            buckets.push(format!("COALESCE(sum(d > {lower:?} AND d <= {upper:?}), 0)"));
            lower = upper;
        }
        buckets.push(format!("COALESCE(sum(d > {lower:?}), 0)"));
        let sql = format!(
            "SELECT workspace, operation, status, count(*), COALESCE(sum(d), 0.0), max({}), {} \
             FROM (SELECT workspace, operation, status, finished_at, \
                          max(0.0, (julianday(finished_at) - julianday(started_at)) * 86400.0) AS d \
                   FROM jobs WHERE status != 'running' AND finished_at IS NOT NULL) \
             GROUP BY workspace, operation, status ORDER BY workspace, operation, status",
            unix("finished_at"),
            buckets.join(", ").replace("-inf", "-1e308")
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(&self.pool).await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            use sqlx::Row;
            let mut counts = Vec::with_capacity(JOB_BUCKETS.len() + 1);
            for i in 0..=JOB_BUCKETS.len() {
                counts.push(row.try_get::<i64, _>(6 + i)?.max(0) as u64);
            }
            out.push(JobStats {
                workspace: row.try_get(0)?,
                operation: row.try_get(1)?,
                outcome: row.try_get(2)?,
                count: row.try_get::<i64, _>(3)?.max(0) as u64,
                seconds_sum: row.try_get(4)?,
                newest_end: row.try_get(5)?,
                buckets: counts,
            });
        }
        Ok(out)
    }

    /// Snapshots and their bytes (stored objects and new media) by workspace and kind, from
    /// the snapshot index (summed in SQLite, without reading each summary here).
    ///
    /// Errors: `Unavailable` for the catalog.
    pub async fn snapshot_totals(&self) -> Result<Vec<(String, String, u64, u64)>> {
        let rows: Vec<(String, Option<String>, i64, i64)> = sqlx::query_as(
            "SELECT workspace, json_extract(summary, '$.kind') AS kind, count(*),                     COALESCE(sum(COALESCE(json_extract(summary, '$.stored_bytes'), 0)                                + COALESCE(json_extract(summary, '$.media_new_bytes'), 0)), 0)              FROM snapshots WHERE json_valid(summary) GROUP BY workspace, kind ORDER BY workspace, kind",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(w, kind, n, bytes)| {
                (w, kind.unwrap_or_else(|| "unknown".into()), n.max(0) as u64, bytes.max(0) as u64)
            })
            .collect())
    }

    /// Every workspace's newest drill.
    ///
    /// Errors: `Unavailable` for the catalog.
    pub async fn newest_drills(&self) -> Result<Vec<NewestDrill>> {
        let sql = format!(
            "SELECT workspace, {}, passed, restore_ms FROM drills d \
             WHERE id = (SELECT max(id) FROM drills WHERE workspace = d.workspace) ORDER BY workspace",
            unix("finished_at")
        );
        let rows: Vec<(String, f64, bool, i64)> =
            sqlx::query_as(sqlx::AssertSqlSafe(sql)).fetch_all(&self.pool).await?;
        Ok(rows
            .into_iter()
            .map(|(workspace, finished, passed, ms)| NewestDrill {
                workspace,
                finished,
                passed,
                restore_seconds: ms as f64 / 1000.0,
            })
            .collect())
    }
}
