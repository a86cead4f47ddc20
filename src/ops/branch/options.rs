//! What the branch operations take and report.

#[allow(clippy::wildcard_imports)]
use super::*;

/// What `branch create` takes; the API's request body (`POST .../branches`) as it is.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct BranchCreateOptions {
    /// The workspace (the API's path names it: never a request's to set).
    #[serde(skip)]
    pub workspace: String,
    /// The branch's name: lowercase letters, digits, `_` and `-`.
    #[schema(required = true, pattern = "^[a-z0-9_-]{1,40}$", example = "try-42")]
    pub name: String,
    /// A snapshot id or `latest` (default, unless `time`).
    #[schema(pattern = "^([0-9]{8}T[0-9]{6}Z-[0-9a-f]{6}|latest)$")]
    pub from: Option<String>,
    /// A moment instead of a snapshot (`2026-11-22 10:15:00+00`).
    pub time: Option<String>,
    /// Parallel connections loading tables (default: one per core).
    #[schema(minimum = 1, maximum = 32)]
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

impl BranchCreateOptions {
    /// What every front end may ask before it starts the job (the operation asks again): a
    /// name that can be a branch's, a snapshot or a time (not both), the connections.
    ///
    /// Errors: `Usage` saying which.
    pub fn check(&self) -> Result<()> {
        super::check_name(&self.workspace, &self.name)?;
        crate::restore::RestoreSource::from_options(self.from.as_deref(), self.time.as_deref())?;
        super::super::check_jobs(self.jobs)
    }
}

/// What `branch create` did.
#[derive(Debug, Clone, Serialize)]
pub struct BranchCreateReport {
    pub branch: BranchInfo,
    pub restore: RestoreReport,
}

/// What `branch set-live` takes; the API's request body (`POST .../set-live`) as it is.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct SetLiveOptions {
    /// The workspace (the API's path names it).
    #[serde(skip)]
    pub workspace: String,
    /// The branch (the API's path names it).
    #[serde(skip)]
    pub name: String,
    /// Must repeat the workspace's name: its live database is replaced.
    #[schema(required = true)]
    pub confirm: String,
    /// Drop the replaced database after the switch (no undo then).
    #[serde(rename = "drop_previous", alias = "drop-previous")]
    pub drop_previous: bool,
    /// How long to wait for a busy workspace (the command line's; a job over the API
    /// refuses at once).
    #[serde(skip)]
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
