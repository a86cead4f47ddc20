//! What a restore takes and what it reports.

#[allow(clippy::wildcard_imports)]
use super::*;

/// What `restore` takes. A request deserialises it through [`RestoreRequest`], which says
/// what a request may set.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(try_from = "RestoreRequest")]
pub struct RestoreOptions {
    /// A snapshot id, or `latest`; empty: the newest, unless `time`.
    pub snapshot: String,
    /// The snapshot's workspace; found by searching the repository when omitted.
    pub workspace: Option<String>,
    /// Where the restore writes.
    pub target: RestoreTarget,
    /// Parallel connections loading tables (default: one per core).
    pub jobs: Option<usize>,
    /// Where the snapshot's media files go: a folder, `file://` or `s3://` URL.
    pub media_target: Option<String>,
    /// Restore the database only, even if the snapshot has media.
    pub no_media: bool,
    /// When the target is the workspace's own database and another operation holds the
    /// workspace: refuse (default) or wait.
    pub wait: WaitFor,
    /// Only these tables (`schema.name`), with their indexes, constraints, defaults, owned
    /// sequences and row-level security; foreign keys to other tables are left out.
    pub tables: Vec<String>,
    /// With `tables`: the names they get, one per table in the same order (required into
    /// the live database: a restore never goes over an existing table).
    pub rename_to: Vec<String>,
    /// A moment instead of a snapshot (`2026-11-22 10:15:00+00`): the workspace is
    /// recovered to it in a throwaway cluster and the database (or `tables`) copied from
    /// there.
    pub time: Option<String>,
    /// How the recovered server runs `tidemark wal fetch` (default: this binary).
    pub tidemark_command: Option<String>,
    /// A copy (`[copies.NAME]`) to restore from instead of the primary.
    pub repository: Option<String>,
    /// Hears of each table of the snapshot (its index in the manifest) once its rows are
    /// committed and its indexes and constraints built, while the restore goes on (a drill
    /// checks them meanwhile; see [`crate::restore::load::TableLoaded`]).
    pub table_loaded: Option<crate::restore::load::TableLoaded>,
}

/// What a request may set of a restore (`POST /v1/workspaces/{ws}/restores`, and any
/// other front end that speaks JSON): into a new database on the workspace's own server,
/// with the workspace's credentials. Neither a server nor a password nor a media folder
/// comes from a request: a token must not make the backup host connect to a server of its
/// choosing with a password read from the host's files or environment (`file:`/`env:`),
/// nor write files where it says. The workspace is the path's.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct RestoreRequest {
    /// A snapshot id, or `latest` (default).
    #[schema(pattern = "^([0-9]{8}T[0-9]{6}Z-[0-9a-f]{6}|latest)$")]
    snapshot: Option<String>,
    /// The new database's name (letters, digits, `_`; at most 63): created, or refused
    /// when it exists and is not empty. Required unless `into_live`.
    #[schema(pattern = "^[A-Za-z_][A-Za-z0-9_]{0,62}$", example = "shop_copy")]
    database: Option<String>,
    /// Parallel connections loading tables (default: one per core, at most 32).
    #[schema(minimum = 1, maximum = 32)]
    jobs: Option<usize>,
    /// Only these tables (`schema.name`), with their indexes, constraints, defaults, owned
    /// sequences and row-level security; foreign keys to other tables are left out.
    #[schema(max_items = 100, example = json!(["public.orders"]))]
    tables: Vec<String>,
    /// With `tables`: into the workspace's live database beside the live tables, under the
    /// names in `as` (never over an existing table), instead of a new database.
    into_live: bool,
    /// With `tables`: the names they get, one per table in the same order.
    #[serde(rename = "as")]
    #[schema(max_items = 100, example = json!(["public.orders_restored"]))]
    rename_to: Vec<String>,
    /// A moment instead of a snapshot (RFC 3339, with a zone): the workspace is recovered
    /// to it in a throwaway cluster and the database (or `tables`) copied from there.
    #[schema(example = "2026-11-22T10:15:00Z")]
    time: Option<String>,
    /// A copy (`[copies.NAME]` of the server's config) to restore from instead of the
    /// primary repository.
    #[schema(pattern = "^[A-Za-z0-9_-]{1,40}$", example = "offsite")]
    repository: Option<String>,
}

impl TryFrom<RestoreRequest> for RestoreOptions {
    type Error = crate::error::Error;

    /// The options a request asks for; its target checked as every front end's is.
    fn try_from(asked: RestoreRequest) -> Result<RestoreOptions> {
        Ok(RestoreOptions {
            snapshot: asked.snapshot.unwrap_or_default(),
            target: RestoreTarget::from_options(None, None, asked.database.as_deref(), asked.into_live)?,
            jobs: asked.jobs,
            // A request never writes files on the host: media stay in the repository.
            no_media: true,
            tables: asked.tables,
            rename_to: asked.rename_to,
            time: asked.time,
            repository: asked.repository,
            ..Default::default()
        })
    }
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
