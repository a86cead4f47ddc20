//! What prune and pins take and what prune reports.

#[allow(clippy::wildcard_imports)]
use super::*;

/// Objects younger than this are never collected as garbage (a snapshot may be writing them).
pub const DEFAULT_GRACE: std::time::Duration = std::time::Duration::from_secs(6 * 3600);

/// What `prune` takes; the API's request body (`POST .../prune`) as it is: a request says
/// only whether to delete (the grace, the moment and the wait are the host's).
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PruneOptions {
    /// The workspace (the API's path names it).
    #[serde(skip)]
    pub workspace: String,
    /// Decide and report, delete nothing.
    #[serde(default)]
    pub dry_run: bool,
    /// Objects younger than this are never collected as garbage (a request gets
    /// [`DEFAULT_GRACE`]).
    #[serde(skip, default = "default_grace")]
    pub grace: std::time::Duration,
    /// Apply retention as of this moment (default: now); the daemon passes its clock's time.
    #[serde(skip)]
    pub as_of: Option<chrono::DateTime<chrono::Utc>>,
    /// When another operation holds the workspace: refuse (default) or wait.
    #[serde(skip)]
    pub wait: WaitFor,
    /// A copy (`[copies.NAME]`) to apply its own retention to, instead of the primary.
    #[serde(default)]
    #[schema(pattern = "^[A-Za-z0-9_-]{1,40}$")]
    pub repository: Option<String>,
}

fn default_grace() -> std::time::Duration {
    DEFAULT_GRACE
}

/// What `snapshot pin` and `snapshot unpin` take.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PinOptions {
    /// A snapshot id, or `latest`.
    pub id: String,
    pub workspace: Option<String>,
    /// Pin (true) or unpin (false).
    pub pin: bool,
    #[serde(default)]
    pub wait: WaitFor,
}

#[derive(Debug, Clone, Serialize)]
pub struct PruneReport {
    pub workspace: String,
    pub dry_run: bool,
    pub decisions: Vec<Decision>,
    /// Objects deleted (or, with --dry-run, that would be), with their bytes.
    pub deleted_objects: u64,
    pub deleted_bytes: u64,
    /// Garbage collected: leftovers of uncommitted snapshots and unreferenced media.
    pub garbage_objects: u64,
    /// Garbage still inside the grace period, left for a later prune.
    pub garbage_in_grace: u64,
    /// Uploads that never completed (a killed snapshot, WAL push or base backup), older
    /// than the grace period: staging files of a local repository, incomplete S3
    /// multipart uploads.
    pub unfinished_uploads_deleted: u64,
    /// Base backups and WAL outside the point-in-time window.
    pub pitr: PitrPruneReport,
    /// Restore drill reports older than the longest `keep-within` (the newest ten stay).
    pub drill_reports_deleted: u64,
    /// Databases moved aside by in-place restores and `branch set-live` (`<db>_before_*`,
    /// `<db>_undone_*`) older than the workspace's keep-replaced: dropped (with --dry-run,
    /// that would be).
    pub replaced_databases_dropped: Vec<String>,
    /// Exports made over the API (`exports/<workspace>/<id>.tidemark`) older than
    /// `[api] keep-exports`: removed (with --dry-run, that would be); their ids.
    pub exports_removed: Vec<String>,
    /// Objects retention or garbage collection would delete but object lock still holds
    /// (kept until their date; a later prune deletes them).
    pub locked_objects: u64,
    /// Snapshots whose manifest cannot be read: kept, and while there are any, no media
    /// are collected.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub damaged: Vec<crate::repo::Damaged>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct PitrPruneReport {
    /// How far back a point-in-time restore stays possible.
    pub window: String,
    pub base_backups_deleted: Vec<String>,
    pub wal_files_deleted: u64,
    /// WAL files retention would delete but that are younger than the grace period.
    pub wal_files_in_grace: u64,
    pub oldest_wal_kept: Option<String>,
    /// Base backups whose manifest cannot be read: kept, and while there are any, no WAL
    /// is deleted.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub damaged: Vec<crate::repo::Damaged>,
}
