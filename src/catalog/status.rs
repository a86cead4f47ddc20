//! What a workspace's status is made of, read for every workspace at once: its newest
//! finished jobs, its running jobs, its newest drill and its newest indexed snapshot. Four
//! statements whatever the number of workspaces, none of which reads the whole history, so
//! the freshness watch can ask every minute (`job_newest` is kept as jobs end; the running
//! jobs have their own index).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::{Catalog, DrillRecord, Job, on_pool};
use crate::error::{Error, Result};

/// What the catalog holds about one workspace's status.
#[derive(Debug, Clone, Default)]
pub struct StatusRows {
    /// The newest succeeded and the newest failed job of each operation.
    pub newest_jobs: Vec<Job>,
    /// Its jobs running now, oldest first.
    pub running: Vec<Job>,
    /// Its newest drill (by start; ties: the newest recorded).
    pub newest_drill: Option<DrillRecord>,
    /// Its newest drill that passed (the same as `newest_drill` when that one passed).
    pub newest_passing_drill: Option<DrillRecord>,
    /// The summary (JSON) of the newest snapshot in the snapshot index.
    pub newest_snapshot: Option<String>,
    /// When its snapshot index was last compared with the repository (`None`: never).
    pub index_synced: Option<DateTime<Utc>>,
    /// How far each of its copies is, as their last copy left them.
    pub copies: Vec<super::copy_states::CopyStateRow>,
}

impl Catalog {
    /// The status rows of `workspace`, or of every workspace the catalog knows (a
    /// workspace it knows nothing of is not in the map).
    ///
    /// Errors: `Unavailable` for the catalog; `Integrity` for a drill report that is not JSON.
    pub async fn status_rows(&self, workspace: Option<&str>) -> Result<BTreeMap<String, StatusRows>> {
        let failed = |e| self.err("cannot read the workspaces' status", e);
        let mut rows: BTreeMap<String, StatusRows> = BTreeMap::new();
        let newest: Vec<Job> = on_pool!(&self.pool, |p| sqlx::query_as(
            "SELECT jobs.* FROM job_newest JOIN jobs ON jobs.id = job_newest.job \
             WHERE ($1 IS NULL OR job_newest.workspace = $1)",
        )
        .bind(workspace)
        .fetch_all(p)
        .await)
        .map_err(failed)?;
        for job in newest {
            rows.entry(job.workspace.clone()).or_default().newest_jobs.push(job);
        }
        let running: Vec<Job> = on_pool!(&self.pool, |p| {
            sqlx::query_as(
            "SELECT * FROM jobs WHERE status = 'running' AND ($1 IS NULL OR workspace = $1) ORDER BY started_at, id",
        )
        .bind(workspace)
        .fetch_all(p)
        .await
        })
        .map_err(failed)?;
        for job in running {
            rows.entry(job.workspace.clone()).or_default().running.push(job);
        }
        // The newest drill and the newest passing one, in one statement (`passing` says which
        // a row is; the same drill may be both).
        let drills: Vec<(String, i64, String, Option<String>, String, bool)> =
            on_pool!(&self.pool, |p| sqlx::query_as(
                "SELECT d.workspace, d.id, d.trigger, d.actor, d.report, n.passing FROM drills d \
             JOIN (SELECT workspace, MAX(started_at) AS newest, FALSE AS passing FROM drills \
                   WHERE ($1 IS NULL OR workspace = $1) GROUP BY workspace \
                   UNION ALL \
                   SELECT workspace, MAX(started_at), TRUE FROM drills \
                   WHERE passed AND ($1 IS NULL OR workspace = $1) GROUP BY workspace) n \
             ON d.workspace = n.workspace AND d.started_at = n.newest AND (d.passed OR NOT n.passing) \
             ORDER BY d.id",
            )
            .bind(workspace)
            .fetch_all(p)
            .await)
            .map_err(failed)?;
        for (ws, id, trigger, actor, report, passing) in drills {
            let report = serde_json::from_str(&report)
                .map_err(|e| Error::integrity(format!("the catalog's drill {id} has an unreadable report: {e}")))?;
            // Ordered by id: of drills that started at once, the newest recorded stays.
            let entry = rows.entry(ws).or_default();
            let drill = Some(DrillRecord { id, trigger, actor, report });
            match passing {
                true => entry.newest_passing_drill = drill,
                false => entry.newest_drill = drill,
            }
        }
        let snapshots: Vec<(String, Option<String>, Option<DateTime<Utc>>)> = on_pool!(&self.pool, |p| sqlx::query_as(
            "SELECT w.workspace, \
                    (SELECT summary FROM snapshots s WHERE s.workspace = w.workspace ORDER BY s.id DESC LIMIT 1), \
                    (SELECT synced_at FROM snapshot_index i WHERE i.workspace = w.workspace) \
             FROM (SELECT DISTINCT workspace FROM snapshots UNION SELECT workspace FROM snapshot_index) w \
             WHERE ($1 IS NULL OR w.workspace = $1)",
        )
        .bind(workspace)
        .fetch_all(p)
        .await)
        .map_err(failed)?;
        for (ws, summary, synced) in snapshots {
            let entry = rows.entry(ws).or_default();
            (entry.newest_snapshot, entry.index_synced) = (summary, synced);
        }
        let copies: Vec<super::copy_states::CopyStateRow> = on_pool!(&self.pool, |p| sqlx::query_as(
            "SELECT * FROM copy_states WHERE ($1 IS NULL OR workspace = $1) ORDER BY workspace, copy"
        )
        .bind(workspace)
        .fetch_all(p)
        .await)
        .map_err(failed)?;
        for copy in copies {
            rows.entry(copy.workspace.clone()).or_default().copies.push(copy);
        }
        Ok(rows)
    }
}
