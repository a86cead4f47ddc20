//! What a restore takes and what it reports.

#[allow(clippy::wildcard_imports)]
use super::*;

/// What `restore` takes.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct RestoreOptions {
    pub snapshot: String,
    /// The snapshot's workspace; found by searching the repository when omitted.
    pub workspace: Option<String>,
    /// `postgres://.../new_db`: created if missing, refused if not empty.
    pub target: String,
    /// Parallel connections loading tables (default: one per core).
    pub jobs: Option<usize>,
    /// Where the snapshot's media files go: a folder, `file://` or `s3://` URL.
    pub media_target: Option<String>,
    /// Restore the database only, even if the snapshot has media.
    pub no_media: bool,
    /// The target server's password when the URL carries none: `env:VARIABLE` or
    /// `file:/path` (a password given as is is refused).
    pub target_password: Option<String>,
    /// The target's password as a configured secret (a drill's scratch server).
    #[serde(skip)]
    pub target_secret: Option<crate::config::Secret>,
    /// The target already resolved, with its credentials; wins over `target` and the
    /// passwords (the API's: a database on the workspace's own server).
    #[serde(skip)]
    pub target_conn: Option<ConnSpec>,
    /// When the target is the workspace's own database and another operation holds the
    /// workspace: refuse (default) or wait.
    pub wait: WaitFor,
    /// Only these tables (`schema.name`), with their indexes, constraints, defaults, owned
    /// sequences and row-level security; foreign keys to other tables are left out.
    pub tables: Vec<String>,
    /// With `tables`: into the workspace's live database, under the names in `as`.
    pub into_live: bool,
    /// With `tables`: the names they get, one per table in the same order (required with
    /// `into-live`: a restore never goes over an existing table).
    #[serde(rename = "as")]
    pub rename_to: Vec<String>,
    /// A moment instead of a snapshot (`2026-11-22 10:15:00+00`): the workspace is
    /// recovered to it in a throwaway cluster and the database (or `tables`) copied from
    /// there.
    pub time: Option<String>,
    /// How the recovered server runs `tidemark wal fetch` (default: this binary).
    #[serde(skip)]
    pub tidemark_command: Option<String>,
    /// The target is a name the calling operation reserved for itself (an in-place
    /// restore's copy beside the live database, a branch): set by those operations only,
    /// never from a request.
    #[serde(skip)]
    pub reserved_target: bool,
    /// Hears of each table of the snapshot (its index in the manifest) once its rows are
    /// committed and its indexes and constraints built, while the restore goes on (a drill
    /// checks them meanwhile; see [`crate::restore::load::TableLoaded`]).
    #[serde(skip)]
    pub table_loaded: Option<crate::restore::load::TableLoaded>,
}

/// What a restore did, with its phases timed.
#[derive(Debug, Clone, Serialize)]
pub struct RestoreReport {
    pub snapshot: String,
    pub workspace: String,
    /// The target URL, without any password.
    pub target: String,
    pub created_database: bool,
    pub tables: usize,
    pub rows: u64,
    pub plain_bytes: u64,
    pub stored_bytes: u64,
    /// Media files restored (0 with `--no-media` or when the snapshot has none).
    pub media_files: usize,
    pub timings: RestoreTimings,
    /// With `tables`: what came back, under which names, what was left out and how much
    /// of the snapshot was read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub table_restore: Option<TablesOutcome>,
    /// The moment restored (`snapshot` is then empty).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time: Option<DateTime<Utc>>,
    /// With `time`: the recovery in the throwaway cluster (removed since).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub point_in_time: Option<PitrRestoreReport>,
    /// Privilege statements of the snapshot (GRANT, REVOKE) that the restoring role may not
    /// give, skipped: everything else was restored. A superuser can run them afterwards.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped_privileges: Vec<String>,
}
