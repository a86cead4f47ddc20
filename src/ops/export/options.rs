//! What an export takes and what it reports.

#[allow(clippy::wildcard_imports)]
use super::*;

/// What `export` takes; the API's request body (`POST .../exports`) as it is: a request
/// picks the snapshot and the tables, and gets a bundle encrypted to the repository's
/// recipients, kept on the server (where it goes, what it is encrypted to, media and
/// formats are the host's to say).
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ExportOptions {
    /// The workspace (the API's path names it).
    #[serde(skip)]
    pub workspace: String,
    /// A snapshot id, or `latest` (the default).
    #[schema(pattern = "^([0-9]{8}T[0-9]{6}Z-[0-9a-f]{6}|latest)$")]
    pub snapshot: Option<String>,
    /// The bundle file to write (refused if it exists).
    #[serde(skip)]
    pub to: PathBuf,
    /// The schema only, no table data.
    pub schema_only: bool,
    /// Only these tables' data (`schema.name`); the schema stays whole.
    #[schema(max_items = 100)]
    pub tables: Vec<String>,
    /// The snapshot's media files too.
    #[serde(skip)]
    pub with_media: bool,
    /// Encrypt to these age recipients instead of the repository's.
    #[serde(skip)]
    pub recipients: Vec<String>,
    /// Not encrypted at all (zstd only).
    #[serde(skip)]
    pub plain: bool,
    /// `bundle` (the default) or `jsonl`: one table's rows as JSON lines, read from the
    /// live database (with exactly one `tables` entry).
    #[serde(skip)]
    pub format: Option<String>,
}

/// What an export wrote.
#[derive(Debug, Clone, Serialize)]
pub struct ExportReport {
    pub workspace: String,
    pub snapshot: String,
    pub file: String,
    pub bytes: u64,
    /// The age recipients it is encrypted to (empty: plain).
    pub encrypted_to: Vec<String>,
    pub tables: usize,
    pub rows: u64,
    pub media_files: usize,
    pub stacks: usize,
    pub total_ms: u64,
    /// Said when the bundle is plain.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
}

/// What a plain export warns about.
pub const PLAIN_WARNING: &str = "the bundle is NOT encrypted: anyone who gets the file can read every row in it; \
     it is checked for damage (SHA256SUMS), not protected against changes";

/// What an export may be refused for before any work, for every front end (the API asks
/// before it starts the job, and the export asks again): its limits and its snapshot's
/// spelling.
///
/// Errors: `Usage`.
pub fn check_request(opts: &ExportOptions) -> Result<()> {
    super::super::check_tables(&opts.tables, "tables")?;
    match opts.snapshot.as_deref() {
        None | Some("latest") => Ok(()),
        Some(id) => crate::repo::layout::validate_snapshot_id(id),
    }
}
