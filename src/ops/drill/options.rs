//! What a drill takes: from the command line, the daemon, or a request (its body as it is).

#[allow(clippy::wildcard_imports)]
use super::*;

/// What to drill.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DrillSource {
    /// A snapshot by id; `None`: the workspace's newest.
    Snapshot(Option<String>),
    /// A point-in-time recovery to this target.
    Pitr(Target),
}

/// What `drill` takes; the API's request body (`POST .../drills`) as it is: a request
/// names the snapshot to drill (the workspace is the path's; point-in-time drills, the
/// trigger and the record are the command line's and the daemon's).
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DrillOptions {
    #[serde(skip, default)]
    pub workspace: String,
    /// A snapshot id, or `latest` (default).
    #[serde(rename = "snapshot", default = "newest", deserialize_with = "snapshot_source")]
    #[schema(value_type = Option<String>, pattern = "^([0-9]{8}T[0-9]{6}Z-[0-9a-f]{6}|latest)$")]
    pub source: DrillSource,
    /// What started it, as the catalog records it (`None`: what the actor's kind says; the
    /// daemon says `schedule` or `catch-up`).
    #[serde(skip, default)]
    pub trigger: Option<Trigger>,
    /// How the recovered server calls `tidemark wal fetch` (PITR; default: this binary).
    #[serde(skip, default)]
    pub tidemark_command: Option<String>,
    /// Record the report in the catalog (the default; off for the demo).
    #[serde(skip, default = "yes")]
    pub record: bool,
    /// A copy (`[copies.NAME]`) to drill instead of the primary: a copy nobody restores
    /// is not a backup.
    #[serde(default)]
    #[schema(pattern = "^[A-Za-z0-9_-]{1,40}$")]
    pub repository: Option<String>,
    /// Also check that every table row is in each of its indexes (`pg_amcheck
    /// --heapallindexed`: slower, it reads every index entry).
    #[serde(default)]
    pub heapallindexed: bool,
}

/// What a drill may be refused for before any work, for every front end: a snapshot id
/// that is not one.
///
/// Errors: `Usage`.
pub fn check_request(opts: &DrillOptions) -> Result<()> {
    match &opts.source {
        DrillSource::Snapshot(Some(id)) if id != "latest" => crate::repo::layout::validate_snapshot_id(id),
        _ => Ok(()),
    }
}

fn newest() -> DrillSource {
    DrillSource::Snapshot(None)
}

fn yes() -> bool {
    true
}

/// A request's snapshot as a drill's source: `latest` (or none) is the newest, anything
/// else must be a snapshot id.
fn snapshot_source<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<DrillSource, D::Error> {
    match crate::ops::snapshot_or_empty(d)?.as_str() {
        "" | "latest" => Ok(newest()),
        id => crate::repo::layout::validate_snapshot_id(id)
            .map(|()| DrillSource::Snapshot(Some(id.to_string())))
            .map_err(|e| serde::de::Error::custom(e.message())),
    }
}

impl DrillOptions {
    pub fn new(workspace: &str, source: DrillSource) -> DrillOptions {
        DrillOptions {
            workspace: workspace.to_string(),
            source,
            trigger: None,
            tidemark_command: None,
            record: true,
            repository: None,
            heapallindexed: false,
        }
    }
}
