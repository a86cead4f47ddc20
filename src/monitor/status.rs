//! A workspace's status as the catalog knows it (what `ops::workspace::status` reads and
//! [`super::health`] judges).

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::catalog::Job;

/// A workspace's state as this host's catalog knows it: the newest good snapshot, base
/// backup and drill, the newest failure after them, and what runs now. The repository is
/// not read (a `check` does that).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct WorkspaceStatus {
    pub workspace: String,
    /// When this status was read (ages count to it).
    pub at: DateTime<Utc>,
    pub wal_stream: bool,
    pub media: bool,
    pub last_snapshot: Option<LastJob>,
    pub last_base_backup: Option<LastJob>,
    pub last_drill: Option<LastDrill>,
    /// The newest drill that passed (the recovery time last proved).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_passing_drill: Option<LastDrill>,
    /// The newest failed job of each operation that failed after its last success.
    pub failing: Vec<LastJob>,
    pub running: Vec<Job>,
}

/// A finished job, in short.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct LastJob {
    pub job: i64,
    pub operation: String,
    pub kind: Option<String>,
    pub snapshot_id: Option<String>,
    pub finished_at: Option<DateTime<Utc>>,
    pub age_seconds: Option<i64>,
    pub error: Option<String>,
}

impl LastJob {
    /// `job` in short, its age counted to `now`.
    pub fn of(job: &Job, now: DateTime<Utc>) -> LastJob {
        LastJob {
            job: job.id,
            operation: job.operation.clone(),
            kind: job.kind.clone(),
            snapshot_id: job.snapshot_id.clone(),
            finished_at: job.finished_at,
            age_seconds: job.finished_at.map(|t| (now - t).num_seconds()),
            error: job.error.clone(),
        }
    }
}

/// The newest drill, in short.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct LastDrill {
    pub id: i64,
    pub source: String,
    pub passed: bool,
    pub finished_at: DateTime<Utc>,
    pub age_seconds: i64,
    /// The restore's time: the recovery time this drill proves.
    pub rto_seconds: f64,
}
