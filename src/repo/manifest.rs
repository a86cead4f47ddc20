//! The snapshot manifest: the single record that makes a snapshot exist. It lists every
//! object with its sizes and hashes, every table with its row count and content digest,
//! sequence values and what restore needs to rebuild the database exactly.

use serde::{Deserialize, Serialize};

pub const MANIFEST_FORMAT: u32 = 1;

/// What kind of snapshot this is; each kind has its own retention.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum SnapshotKind {
    /// Taken by a schedule (kept 3 days by default).
    Automatic,
    /// Asked for by an operator (kept 90 days by default).
    Manual,
    /// Taken before a destructive restore.
    PreRestore,
}

impl std::fmt::Display for SnapshotKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SnapshotKind::Automatic => "automatic",
            SnapshotKind::Manual => "manual",
            SnapshotKind::PreRestore => "pre-restore",
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Manifest {
    pub format: u32,
    pub id: String,
    pub workspace: String,
    pub kind: SnapshotKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    pub started_at: chrono::DateTime<chrono::Utc>,
    pub finished_at: chrono::DateTime<chrono::Utc>,
    pub tidemark_version: String,
    pub source: SourceInfo,
    pub timings: Timings,
    /// The schema, as pg_dump's pre-data and post-data sections (plain SQL).
    pub schema_pre: ObjectEntry,
    pub schema_post: ObjectEntry,
    pub tables: Vec<TableEntry>,
    pub sequences: Vec<SequenceEntry>,
    pub materialized_views: Vec<MatViewEntry>,
    /// How `content_digest` of every table is computed.
    pub content_digest_algorithm: String,
    /// The workspace's function stacks at the snapshot (they are restored with the tables of
    /// the `tidemark` schema; this is the summary `show` and drills compare against).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stacks: Vec<StackSummary>,
    /// The media store's files at the snapshot (`None`: the workspace has no media store,
    /// or the snapshot was taken with `--no-media`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media: Option<MediaSummary>,
    /// The schema's fingerprint at the snapshot: SHA-256 per kind of object (see
    /// `source::fingerprint`); drills compare the restored schema against it. Empty in
    /// snapshots taken before tidemark recorded it.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub schema_fingerprint: std::collections::BTreeMap<String, String>,
    /// The roles the database's objects refer to (owners, grantees); a drill creates them in
    /// its throwaway cluster before loading the schema.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    /// The role tidemark connected as when it took the snapshot (`None` in snapshots of
    /// earlier versions): a drill restores as a role like it, so that it proves what a
    /// restore by that role can and cannot apply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub taken_as: Option<RoleInfo>,
    /// The owner of the source database (`None` in snapshots of earlier versions): a drill
    /// gives its database the same owner, as an in-place restore does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database_owner: Option<String>,
    /// What the snapshot could not carry (e.g. large objects).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// The [`super::Descriptor::digest`] of `repository.json` when the snapshot was taken
    /// (`None` in snapshots of earlier versions): `check` reports a descriptor edited since.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository_digest: Option<String>,
}

/// A role as a drill recreates it: its name, whether it is a superuser, and the roles of
/// [`Manifest::roles`] it is a member of.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RoleInfo {
    pub name: String,
    pub superuser: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub member_of: Vec<String>,
}

/// The database the snapshot was taken from, at the moment it was taken.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SourceInfo {
    pub database: String,
    pub server_version: String,
    pub server_version_num: i32,
    pub encoding: String,
    pub collate: String,
    pub ctype: String,
    /// The exported transaction snapshot every connection shared.
    pub snapshot_lsn: String,
    pub system_identifier: String,
    pub pg_dump_version: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Timings {
    pub schema_ms: u64,
    pub data_ms: u64,
    pub total_ms: u64,
}

/// One stored object: plaintext size and digest, stored (compressed+encrypted) size and
/// SHA-256. The SHA-256 is over the bytes in the repository; restore checks it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ObjectEntry {
    /// Relative to the snapshot folder; see `repo::layout::SnapshotObject`.
    pub name: String,
    pub plain_size: u64,
    /// BLAKE3 of the plaintext (what `age -d | zstd -d | b3sum` prints).
    pub plain_blake3: String,
    pub stored_size: u64,
    pub stored_sha256: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TableEntry {
    pub schema: String,
    pub name: String,
    /// The columns in the COPY data, in order (generated and dropped columns excluded).
    pub columns: Vec<String>,
    pub rows: u64,
    /// Order-independent digest of the table's COPY text rows (see `content_digest_algorithm`).
    pub content_digest: String,
    /// The data, as one or more COPY text objects (large tables are split by block ranges).
    pub parts: Vec<ObjectEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SequenceEntry {
    pub schema: String,
    pub name: String,
    pub last_value: i64,
    pub is_called: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MatViewEntry {
    pub schema: String,
    pub name: String,
    pub populated: bool,
}

impl Manifest {
    /// Every object the snapshot consists of (excluding the manifest itself).
    pub fn objects(&self) -> impl Iterator<Item = &ObjectEntry> {
        [&self.schema_pre, &self.schema_post].into_iter().chain(self.tables.iter().flat_map(|t| t.parts.iter()))
    }

    /// [`Self::objects`], to change (a copy with its own keys records its own stored bytes).
    pub fn objects_mut(&mut self) -> impl Iterator<Item = &mut ObjectEntry> {
        [&mut self.schema_pre, &mut self.schema_post]
            .into_iter()
            .chain(self.tables.iter_mut().flat_map(|t| t.parts.iter_mut()))
    }

    pub fn stored_bytes(&self) -> u64 {
        self.objects().map(|o| o.stored_size).sum()
    }

    pub fn plain_bytes(&self) -> u64 {
        self.objects().map(|o| o.plain_size).sum()
    }

    pub fn total_rows(&self) -> u64 {
        self.tables.iter().map(|t| t.rows).sum()
    }
}

/// The media files of a snapshot. Their content lives in `workspaces/<ws>/media/`, stored
/// once per distinct SHA-256 and shared by every snapshot that has it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MediaSummary {
    /// The media store it was read from (informational).
    pub source: String,
    pub files: Vec<MediaEntry>,
    pub bytes: u64,
    /// Files and bytes whose content was not yet in the repository (uploaded by this snapshot).
    pub new_files: u64,
    pub new_bytes: u64,
    /// Files of the media store this snapshot does not have, and why (a symlink, a file
    /// that could not be read or vanished during the run). The snapshot is complete for
    /// everything else; see docs/guide/03-media-and-stacks.md.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<Skipped>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MediaEntry {
    /// Relative to the media store's root, `/`-separated.
    pub path: String,
    pub size: u64,
    pub modified: chrono::DateTime<chrono::Utc>,
    /// SHA-256 of the file's bytes: its name in the repository.
    pub sha256: String,
    /// Bytes of its object in the repository (`check` compares; `None` in snapshots of
    /// earlier versions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stored_size: Option<u64>,
    /// Unix permission bits of a file from a local folder (restored as they were);
    /// `None` for object-store media and snapshots of earlier versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<u32>,
}

/// A stack in `list` (and in a snapshot's manifest).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StackSummary {
    pub stack: String,
    pub changes: i64,
    pub live_change: i64,
    pub live_sha256: String,
    pub latest_version: Option<i32>,
}

/// A media file a snapshot did not back up, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Skipped {
    pub path: String,
    pub reason: String,
}
