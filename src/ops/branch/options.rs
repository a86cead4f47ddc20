//! What the branch operations take and report.

#[allow(clippy::wildcard_imports)]
use super::*;

/// What `branch create` takes.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct BranchCreateOptions {
    pub workspace: String,
    /// Lowercase letters, digits, `_` and `-`.
    pub name: String,
    /// A snapshot id or `latest` (default, unless `time`).
    pub from: Option<String>,
    /// A moment instead of a snapshot (`2026-11-22 10:15:00+00`).
    pub time: Option<String>,
    /// Parallel connections loading tables (default: one per core).
    pub jobs: Option<usize>,
    /// How a recovered server runs `tidemark wal fetch` (default: this binary).
    #[serde(skip)]
    pub tidemark_command: Option<String>,
}

/// A branch, as `branch list` shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct BranchInfo {
    /// The branch's own workspace name (`<workspace>--<name>`).
    pub workspace: String,
    pub branch_of: String,
    pub name: String,
    pub database: String,
    /// `snapshot <id>` or `time <moment>`.
    pub source: String,
    pub created_at: Option<DateTime<Utc>>,
    pub age_seconds: Option<i64>,
    /// `pg_database_size`, when the database could be reached.
    pub size_bytes: Option<i64>,
    /// `creating` while its database is restored, `deleting` while it is dropped.
    pub state: BranchState,
    /// An entry in tidemark.toml (made by an earlier version), not a catalog row: tidemark
    /// does not change it; the operator removes it.
    pub in_config: bool,
}

/// What `branch create` did.
#[derive(Debug, Clone, Serialize)]
pub struct BranchCreateReport {
    pub branch: BranchInfo,
    pub restore: RestoreReport,
}

/// What `branch set-live` takes.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct SetLiveOptions {
    pub workspace: String,
    pub name: String,
    /// Must repeat the workspace's name: its live database is replaced.
    pub confirm: String,
    /// Drop the replaced database after the switch (no undo then).
    pub drop_previous: bool,
    pub wait: WaitFor,
}

/// What `branch set-live` did.
#[derive(Debug, Clone, Serialize)]
pub struct SetLiveReport {
    pub workspace: String,
    pub branch: String,
    /// The snapshot of the live database taken first (kind `pre-restore`).
    pub safety_snapshot: String,
    /// The live database's name (now the branch's data).
    pub database: String,
    /// Where the replaced database is (`None` with `drop-previous`); `restore undo` swaps it back.
    pub previous_database: Option<String>,
    pub switch_ms: u64,
}

/// What `branch delete` takes.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct BranchDeleteOptions {
    pub workspace: String,
    pub name: String,
    /// Must repeat the branch's name: its database is dropped.
    pub confirm: String,
}
