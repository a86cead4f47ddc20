//! Aggregates for `/metrics`: finished jobs by workspace, operation and outcome (count,
//! duration histogram, newest end) and every workspace's newest drill, each one query
//! whose cost does not grow with what a scrape returns.

use super::{Catalog, Get, Pool, on_pool};
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

/// Unix seconds of a stored timestamp, in the engine's SQL.
fn unix(pool: &Pool, column: &str) -> String {
    match pool {
        Pool::Sqlite(_) => format!("((julianday({column}) - 2440587.5) * 86400.0)"),
        Pool::Postgres(_) => format!("EXTRACT(EPOCH FROM {column})::float8"),
    }
}

/// One row of [`Catalog::job_stats`], read by name from either engine.
fn job_stats_of(row: &impl Get) -> std::result::Result<JobStats, sqlx::Error> {
    let mut counts = Vec::with_capacity(JOB_BUCKETS.len() + 1);
    for i in 0..=JOB_BUCKETS.len() {
        counts.push(row.get::<i64>(&format!("b{i}"))?.max(0) as u64);
    }
    Ok(JobStats {
        workspace: row.get("workspace")?,
        operation: row.get("operation")?,
        outcome: row.get("status")?,
        count: row.get::<i64>("n")?.max(0) as u64,
        seconds_sum: row.get("seconds")?,
        newest_end: row.get("newest")?,
        buckets: counts,
    })
}

super::from_row!(JobStats, job_stats_of);

impl Catalog {
    /// Finished jobs by workspace, operation and outcome.
    ///
    /// Errors: `Unavailable` for the catalog.
    pub async fn job_stats(&self) -> Result<Vec<JobStats>> {
        let mut buckets = Vec::new();
        let mut lower = f64::NEG_INFINITY;
        for (i, upper) in JOB_BUCKETS.into_iter().enumerate() {
            buckets.push(format!(
                "COALESCE(sum(CASE WHEN d > {lower:?} AND d <= {upper:?} THEN 1 ELSE 0 END), 0) AS b{i}"
            ));
            lower = upper;
        }
        buckets.push(format!("COALESCE(sum(CASE WHEN d > {lower:?} THEN 1 ELSE 0 END), 0) AS b{}", JOB_BUCKETS.len()));
        let duration = match &self.pool {
            Pool::Sqlite(_) => "max(0.0, (julianday(finished_at) - julianday(started_at)) * 86400.0)",
            Pool::Postgres(_) => "GREATEST(0.0, EXTRACT(EPOCH FROM (finished_at - started_at))::float8)",
        };
        let sql = format!(
            "SELECT workspace, operation, status, count(*) AS n, COALESCE(sum(d), 0.0) AS seconds, \
             max({}) AS newest, {} \
             FROM (SELECT workspace, operation, status, finished_at, {duration} AS d \
                   FROM jobs WHERE status != 'running' AND finished_at IS NOT NULL) AS finished \
             GROUP BY workspace, operation, status ORDER BY workspace, operation, status",
            unix(&self.pool, "finished_at"),
            buckets.join(", ").replace("-inf", "-1e308")
        );
        // PostgreSQL sums integers as bigint only when told (its sum of bigint is numeric).
        let sql = match &self.pool {
            Pool::Sqlite(_) => sql,
            Pool::Postgres(_) => sql.replace("THEN 1 ELSE 0 END), 0)", "THEN 1 ELSE 0 END), 0)::bigint"),
        };
        Ok(on_pool!(&self.pool, |p| sqlx::query_as(sqlx::AssertSqlSafe(sql)).fetch_all(p).await)?)
    }

    /// Snapshots and their bytes (stored objects and new media) by workspace and kind, from
    /// the snapshot index (summed by the engine, without reading each summary here).
    ///
    /// Errors: `Unavailable` for the catalog.
    pub async fn snapshot_totals(&self) -> Result<Vec<(String, String, u64, u64)>> {
        let sql = match &self.pool {
            Pool::Sqlite(_) => {
                "SELECT workspace, json_extract(summary, '$.kind') AS kind, count(*), \
                 COALESCE(sum(COALESCE(json_extract(summary, '$.stored_bytes'), 0) \
                              + COALESCE(json_extract(summary, '$.media_new_bytes'), 0)), 0) \
                 FROM snapshots WHERE json_valid(summary) GROUP BY workspace, kind ORDER BY workspace, kind"
            }
            Pool::Postgres(_) => {
                "SELECT workspace, tidemark_json(summary) ->> 'kind' AS kind, count(*), \
                 COALESCE(sum(COALESCE((tidemark_json(summary) ->> 'stored_bytes')::bigint, 0) \
                              + COALESCE((tidemark_json(summary) ->> 'media_new_bytes')::bigint, 0)), 0)::bigint \
                 FROM snapshots WHERE tidemark_json(summary) IS NOT NULL GROUP BY workspace, kind \
                 ORDER BY workspace, kind"
            }
        };
        let rows: Vec<(String, Option<String>, i64, i64)> =
            on_pool!(&self.pool, |p| sqlx::query_as(sql).fetch_all(p).await)?;
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
            unix(&self.pool, "finished_at")
        );
        let rows: Vec<(String, f64, bool, i64)> =
            on_pool!(&self.pool, |p| sqlx::query_as(sqlx::AssertSqlSafe(sql)).fetch_all(p).await)?;
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
