//! What an in-place restore and its undo take and report.

#[allow(clippy::wildcard_imports)]
use super::*;

/// What `restore --in-place` takes; the API's request body (`POST .../restores/in-place`)
/// as it is: a request names the snapshot or moment, confirms, and may drop the replaced
/// database (the workspace is the path's; connections, waiting and bundles the host's).
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct InPlaceOptions {
    /// A snapshot id, or `latest` (default, unless `time`).
    #[serde(deserialize_with = "crate::ops::snapshot_or_empty")]
    #[schema(value_type = Option<String>, pattern = "^([0-9]{8}T[0-9]{6}Z-[0-9a-f]{6}|latest)$")]
    pub snapshot: String,
    /// The workspace (the API's path names it).
    #[serde(skip)]
    pub workspace: String,
    /// The workspace's name again: this replaces its live database.
    #[schema(required = true)]
    pub confirm: String,
    /// Parallel connections loading tables (default: one per core).
    #[serde(skip)]
    pub jobs: Option<usize>,
    /// Drop the replaced database after the switch (no undo then).
    pub drop_previous: bool,
    /// When another operation holds the workspace: refuse (default) or wait.
    #[serde(skip)]
    pub wait: WaitFor,
    /// A moment instead of a snapshot (`2026-11-22 10:15:00+00`, RFC 3339 with a zone):
    /// the workspace is recovered to it in a throwaway cluster and its database copied
    /// from there. Media are not in WAL: they stay as they are.
    #[schema(example = "2026-11-22T10:15:00Z")]
    pub time: Option<String>,
    /// How the recovered server runs `tidemark wal fetch` (default: this binary).
    #[serde(skip)]
    pub tidemark_command: Option<String>,
    /// A bundle from `export` instead of a snapshot (`import --replace`): a file of the
    /// host's, never a request's.
    #[serde(skip)]
    pub bundle: Option<std::path::PathBuf>,
}

/// What an in-place restore did.
#[derive(Debug, Clone, Serialize)]
pub struct InPlaceReport {
    pub workspace: String,
    /// The snapshot restored (`None` when restored to a moment).
    pub snapshot: Option<String>,
    /// The moment restored to (`None` when restored from a snapshot).
    pub time: Option<chrono::DateTime<chrono::Utc>>,
    /// The snapshot of the live database taken first (kind `pre-restore`).
    pub safety_snapshot: String,
    /// The live database's name (now the restored one).
    pub database: String,
    /// Where the replaced database is (`None` with `--drop-previous`).
    pub previous_database: Option<String>,
    /// The media, when they were swapped too: the live folder (or prefix), and where the
    /// media it held went (`None` with `--drop-previous`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub media: Option<MediaSwapped>,
    /// Tables compared with the snapshot (or the recovered database) on the restored copy
    /// before the switch (sequences too).
    pub verified_tables: usize,
    /// How long the live database was unavailable.
    pub switch_ms: u64,
    /// The restore from the snapshot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restore: Option<RestoreReport>,
    /// The recovery to the moment (in a throwaway cluster, removed since).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub point_in_time: Option<super::super::pitr::PitrRestoreReport>,
    /// The import of the bundle.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub import: Option<super::super::import::ImportReport>,
}

/// Where an in-place restore takes the workspace back to.
pub(super) enum Source {
    Snapshot(String),
    Time(chrono::DateTime<chrono::Utc>),
    Bundle(std::path::PathBuf),
}

/// What `restore undo` takes; the API's request body (`POST .../restores/undo`) as it is.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct UndoOptions {
    /// The workspace (the API's path names it).
    #[serde(skip)]
    pub workspace: String,
    /// Must repeat the workspace's name.
    #[schema(required = true)]
    pub confirm: String,
    /// How long to wait for a busy workspace (the command line's).
    #[serde(skip)]
    pub wait: WaitFor,
}

/// What an undo did.
#[derive(Debug, Clone, Serialize)]
pub struct UndoReport {
    pub workspace: String,
    pub database: String,
    /// The database that is live again (its name before the undo).
    pub restored_from: String,
    /// Where the database the undo replaced went.
    pub replaced_moved_to: String,
    pub switch_ms: u64,
}
