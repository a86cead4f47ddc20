//! What `pitr restore` takes and says.

#[allow(clippy::wildcard_imports)]
use super::*;

/// What `pitr restore` takes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PitrRestoreOptions {
    pub workspace: String,
    /// The new data directory: must not exist, or be empty.
    pub pgdata: PathBuf,
    pub target: Target,
    /// Start the server and wait until the target is reached.
    pub start: bool,
    /// The port of the started server (default: a free one).
    pub port: Option<u16>,
    /// How tidemark is invoked by the server's `restore_command` (default: this binary).
    pub tidemark_command: Option<String>,
    /// WAL segments read ahead during recovery (`wal fetch --prefetch`); 0: none.
    pub prefetch: u32,
    /// Leave out what the workspace's WAL stream received and has not shipped yet (its
    /// spool on this host): restore from the repository alone, as a drill does.
    #[serde(default)]
    pub repository_only: bool,
    /// A copy (`[copies.NAME]`) to restore from instead of the primary.
    #[serde(default)]
    pub repository: Option<String>,
}

/// Segments `pitr restore` reads ahead by default: 8 x 16 MiB in the spool at most.
pub const DEFAULT_PREFETCH: u32 = 8;

#[derive(Debug, Clone, Serialize)]
pub struct PitrRestoreReport {
    pub workspace: String,
    pub pgdata: String,
    pub base_backup: String,
    /// When `base_backup` is incremental: the links it was assembled from before it, the
    /// full one first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chain: Vec<String>,
    pub target: String,
    pub window: String,
    pub port: Option<u16>,
    pub reached: Option<Reached>,
    /// WAL files taken from the WAL stream's spool on this host (received, not yet in the
    /// repository): the unfinished segment and any not shipped yet.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub from_spool: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    pub restore_ms: u64,
    /// What the restore reads, stored and plain: the base backup's tar and the WAL
    /// segments along its timelines from its start to the one recovery stopped in (without
    /// `--start`, to the one where the copy becomes consistent), as archived when the
    /// restore began.
    pub stored_bytes: u64,
    pub plain_bytes: u64,
}
