//! Typed object keys: the one place that turns "the manifest of snapshot X of workspace W"
//! into a path in the object store. No other module builds key strings.
//!
//! ```text
//! repository.json
//! workspaces/<ws>/snapshots/<id>/manifest.json.age
//! workspaces/<ws>/snapshots/<id>/schema-pre.sql.zst.age
//! workspaces/<ws>/snapshots/<id>/schema-post.sql.zst.age
//! workspaces/<ws>/snapshots/<id>/tables/<schema>.<table>[.<part>].copy.zst.age
//! workspaces/<ws>/media/<sha256>.zst.age
//! workspaces/<ws>/pins/<id>
//! workspaces/<ws>/wal/<timeline>/<wal file name>/<sha256>.zst.age
//! workspaces/<ws>/wal/<timeline>/<segment>.partial/<sha256>.zst.age   (streamed, unfinished)
//! workspaces/<ws>/base/<id>/base.tar.zst.age
//! workspaces/<ws>/base/<id>/manifest.json.age
//! workspaces/<ws>/restore-points/<name>.json.age
//! workspaces/<ws>/branches/<name>.json.age
//! <any signed object>.sig      (its Ed25519 signature, see `crate::signing`)
//! ```
//!
//! A WAL file is stored in a folder of its own, under the SHA-256 of its content (as
//! pgBackRest puts the checksum in the archived name): the same file pushed twice is
//! recognised without decrypting anything, and a different file under an existing name is
//! refused instead of overwriting it.

use object_store::path::Path;

use crate::error::{Error, Result};

pub const DESCRIPTOR: &str = "repository.json";
const MANIFEST: &str = "manifest.json.age";

/// The signature object beside a signed object: `<key>.sig`.
pub fn signature(key: &Path) -> Path {
    Path::from(format!("{key}{}", crate::signing::SIGNATURE_SUFFIX))
}

/// Whether a key is a signature object.
pub fn is_signature(key: &Path) -> bool {
    key.as_ref().ends_with(crate::signing::SIGNATURE_SUFFIX)
}

/// Whether objects of this key's kind are signed: the records (`*.json.age`: manifests,
/// restore points, drill reports, audit checkpoints) and WAL files.
pub fn is_signed_kind(key: &Path) -> bool {
    let k = key.as_ref();
    k.ends_with(".json.age") || (k.starts_with("workspaces/") && k.contains("/wal/") && k.ends_with(".zst.age"))
}

/// The repository descriptor's key.
pub fn descriptor() -> Path {
    Path::from(DESCRIPTOR)
}

/// `workspaces/`: one common prefix per workspace below it.
pub fn workspaces() -> Path {
    Path::from("workspaces")
}

/// `workspaces/<ws>/`: everything of one workspace.
pub fn workspace(workspace: &str) -> Path {
    Path::from_iter(["workspaces", workspace])
}

/// A probe object `wal setup` writes and deletes to see that the server's OS user may
/// write WAL (never listed as WAL: not a WAL file name).
pub fn wal_probe(workspace: &str, tag: &str) -> Path {
    Path::from_iter(["workspaces", workspace, "wal", &format!("tidemark-probe-{tag}")])
}

/// `workspaces/<ws>/snapshots/`: one common prefix per snapshot id below it.
pub fn snapshots(workspace: &str) -> Path {
    Path::from_iter(["workspaces", workspace, "snapshots"])
}

/// The folder of one snapshot.
pub fn snapshot_dir(workspace: &str, id: &str) -> Path {
    Path::from_iter(["workspaces", workspace, "snapshots", id])
}

/// The manifest of one snapshot: written last, its presence makes the snapshot exist.
pub fn manifest(workspace: &str, id: &str) -> Path {
    snapshot_dir(workspace, id).join(MANIFEST)
}

/// A media file's content, shared by every snapshot that has it: `workspaces/<ws>/media/<sha256>.zst.age`.
///
/// Errors: `Integrity` when `sha256` is not 64 lowercase hex digits (it may come from a manifest).
pub fn media_object(workspace: &str, sha256: &str) -> Result<Path> {
    if !is_sha256_hex(sha256) {
        return Err(Error::integrity(format!("{sha256:?} is not a media content hash")));
    }
    Ok(Path::from_iter(["workspaces", workspace, "media", &format!("{sha256}.zst.age")]))
}

/// `workspaces/<ws>/pins/`: one empty object per pinned snapshot id.
pub fn pins(workspace: &str) -> Path {
    Path::from_iter(["workspaces", workspace, "pins"])
}

/// The pin marker of a snapshot: while it exists, retention never deletes the snapshot.
pub fn pin(workspace: &str, id: &str) -> Path {
    pins(workspace).join(id)
}

/// `workspaces/<ws>/wal/`.
pub fn wal_dir(workspace: &str) -> Path {
    Path::from_iter(["workspaces", workspace, "wal"])
}

/// The folder of one archived WAL file, or (`<segment>.partial`) of the shipped versions
/// of a segment still being written. Errors: `Usage` for a name that is neither.
pub fn wal_file_dir(workspace: &str, name: &str) -> Result<Path> {
    let file = match name.strip_suffix(".partial") {
        Some(segment) => match crate::wal_name::WalFile::parse(segment)? {
            f @ crate::wal_name::WalFile::Segment { .. } => f,
            _ => return Err(Error::usage(format!("{name:?} is not a partial WAL segment"))),
        },
        None => crate::wal_name::WalFile::parse(name)?,
    };
    Ok(wal_dir(workspace).join(format!("{:08X}", file.timeline())).join(name))
}

/// An archived WAL file's object, named by the SHA-256 of its content.
pub fn wal_object(workspace: &str, name: &str, sha256: &str) -> Result<Path> {
    if !is_sha256_hex(sha256) {
        return Err(Error::integrity(format!("{sha256:?} is not a WAL content hash")));
    }
    Ok(wal_file_dir(workspace, name)?.join(format!("{sha256}.zst.age")))
}

/// Beside a streamed partial segment's version: an empty object whose name records where
/// that version's WAL reaches (`<sha256>.reach-<LSN as 16 hex digits>`).
pub fn wal_reach(workspace: &str, name: &str, sha256: &str, lsn: u64) -> Result<Path> {
    if !is_sha256_hex(sha256) {
        return Err(Error::integrity(format!("{sha256:?} is not a WAL content hash")));
    }
    Ok(wal_file_dir(workspace, name)?.join(format!("{sha256}.reach-{lsn:016X}")))
}

/// The version and LSN a [`wal_reach`] object's file name records.
pub fn parse_wal_reach(file: &str) -> Option<(&str, u64)> {
    let (sha256, lsn) = file.split_once(".reach-")?;
    Some((sha256, u64::from_str_radix(lsn, 16).ok()?))
}

/// `workspaces/<ws>/base/`: one folder per base backup id.
pub fn base_backups(workspace: &str) -> Path {
    Path::from_iter(["workspaces", workspace, "base"])
}

/// The data directory of a base backup, as a tar.
pub fn base_tar(workspace: &str, id: &str) -> Path {
    base_backups(workspace).join(id).join("base.tar.zst.age")
}

/// The manifest of a base backup: written last, its presence makes the base backup exist.
pub fn base_manifest(workspace: &str, id: &str) -> Path {
    base_backups(workspace).join(id).join(MANIFEST)
}

/// `workspaces/<ws>/restore-points/`.
pub fn restore_points(workspace: &str) -> Path {
    Path::from_iter(["workspaces", workspace, "restore-points"])
}

/// A restore point made by `pitr mark`: its name, LSN and time, so a restore to it can
/// pick the right base backup. `workspaces/<ws>/restore-points/<encoded name>.json.age`.
pub fn restore_point(workspace: &str, name: &str) -> Path {
    Path::from_iter(["workspaces", workspace, "restore-points", &format!("{}.json.age", encode_segment(name))])
}

/// A branch's record (`branch create`): its database, source and creation.
/// `workspaces/<ws>/branches/<name>.json.age`.
pub fn branch(workspace: &str, name: &str) -> Path {
    Path::from_iter(["workspaces", workspace, "branches", &format!("{}.json.age", encode_segment(name))])
}

fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// `workspaces/<ws>/drills/`: the reports of restore drills, one encrypted JSON each.
pub fn drill_reports(workspace: &str) -> Path {
    Path::from_iter(["workspaces", workspace, "drills"])
}

/// One drill's report: `workspaces/<ws>/drills/<id>.json.age`, the id sorting by time.
pub fn drill_report(workspace: &str, id: &str) -> Path {
    drill_reports(workspace).join(format!("{id}.json.age"))
}

/// `audit/<chain>/`: checkpoints of one catalog's audit chain.
pub fn audit_checkpoints(chain: &str) -> Path {
    Path::from_iter(["audit", chain])
}

/// `audit/`: the checkpoints of every audit chain, a folder each.
pub fn audit_chains() -> Path {
    Path::from("audit")
}

/// The link of audit chain `chain` to the chain it continues (none for the repository's
/// first), written once when the chain is first checkpointed or started by `audit
/// new-chain`: `audit-links/<chain>.json.age`.
pub fn audit_link(chain: &str) -> Path {
    Path::from_iter(["audit-links", &format!("{chain}.json.age")])
}

/// One checkpoint of an audit chain's head, written once: `audit/<chain>/<seq, 12
/// digits>.json.age`, so names sort by position in the chain.
pub fn audit_checkpoint(chain: &str, seq: i64) -> Path {
    audit_checkpoints(chain).join(format!("{seq:012}.json.age"))
}

/// `workspaces/<ws>/media/`.
pub fn media_dir(workspace: &str) -> Path {
    Path::from_iter(["workspaces", workspace, "media"])
}

/// The objects of a snapshot, named relative to the snapshot folder as the manifest lists them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotObject {
    SchemaPre,
    SchemaPost,
    TablePart { schema: String, table: String, part: Option<u32> },
}

impl SnapshotObject {
    /// The name recorded in the manifest (relative to the snapshot folder).
    pub fn name(&self) -> String {
        match self {
            SnapshotObject::SchemaPre => "schema-pre.sql.zst.age".into(),
            SnapshotObject::SchemaPost => "schema-post.sql.zst.age".into(),
            SnapshotObject::TablePart { schema, table, part } => {
                let part = part.map(|p| format!(".{p}")).unwrap_or_default();
                format!("tables/{}.{}{part}.copy.zst.age", encode_segment(schema), encode_segment(table))
            }
        }
    }

    /// The object's full key.
    pub fn key(&self, workspace: &str, id: &str) -> Path {
        let dir = snapshot_dir(workspace, id);
        match self {
            SnapshotObject::SchemaPre | SnapshotObject::SchemaPost => dir.join(self.name()),
            SnapshotObject::TablePart { .. } => {
                let name = self.name();
                let file = name.strip_prefix("tables/").expect("table objects live in tables/");
                dir.join("tables").join(file)
            }
        }
    }

    /// Checks that a name read from a manifest is one tidemark writes, so that a crafted
    /// manifest cannot point a restore at any other key.
    ///
    /// Errors: `Integrity` naming the bad entry.
    pub fn validate_name(name: &str) -> Result<()> {
        let ok = match name {
            "schema-pre.sql.zst.age" | "schema-post.sql.zst.age" => true,
            _ => name.strip_prefix("tables/").and_then(|rest| rest.strip_suffix(".copy.zst.age")).is_some_and(|stem| {
                !stem.is_empty()
                    && stem.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '=' | '.'))
            }),
        };
        if ok {
            Ok(())
        } else {
            Err(Error::integrity(format!("the manifest names an object tidemark never writes: {name:?}")))
        }
    }

    /// The key of an object given its (validated) manifest name.
    pub fn key_for_name(workspace: &str, id: &str, name: &str) -> Result<Path> {
        Self::validate_name(name)?;
        let mut key = snapshot_dir(workspace, id);
        for part in name.split('/') {
            key = key.join(part);
        }
        Ok(key)
    }
}

/// Encodes an SQL name as a key segment: ASCII letters, digits, `_` and `-` stay; every
/// other byte becomes `=XX`. The encoding is injective, so distinct names never collide,
/// and dots (the schema/table separator) never appear inside a segment.
pub fn encode_segment(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
            out.push(b as char);
        } else {
            out.push_str(&format!("={b:02X}"));
        }
    }
    out
}

/// Snapshot ids sort by time to the microsecond: `20261123T004512Z-0a1b2c` is the second,
/// then the microseconds in five hex digits (at most f423f) and one random digit (two
/// snapshots started in the same microsecond still get different ids, mostly; a clash
/// is refused when the manifest is committed, never overwritten). Ids of earlier versions
/// (six random digits) remain valid; within one second they sort before or after these.
pub fn new_snapshot_id(now: chrono::DateTime<chrono::Utc>) -> String {
    let micros = now.timestamp_subsec_micros().min(999_999);
    let random = rand::random::<u8>() & 0xf;
    format!("{}-{micros:05x}{random:x}", now.format("%Y%m%dT%H%M%SZ"))
}

/// When the snapshot (or base backup) `id` began, to the microsecond, as
/// [`new_snapshot_id`] wrote it; `None` for an id of another shape.
pub fn snapshot_started(id: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    let (at, rest) = id.split_once('-')?;
    let second = chrono::NaiveDateTime::parse_from_str(at, "%Y%m%dT%H%M%SZ").ok()?.and_utc();
    let micros = u32::from_str_radix(rest.get(..5)?, 16).ok().filter(|m| *m < 1_000_000)?;
    Some(second + chrono::TimeDelta::microseconds(i64::from(micros)))
}

/// Errors: `Usage` when `id` does not look like a snapshot id (it may end up in a key).
pub fn validate_snapshot_id(id: &str) -> Result<()> {
    let bytes = id.as_bytes();
    let ok = bytes.len() == 23
        && bytes[..8].iter().all(u8::is_ascii_digit)
        && bytes[8] == b'T'
        && bytes[9..15].iter().all(u8::is_ascii_digit)
        && &bytes[15..17] == b"Z-"
        && bytes[17..].iter().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b));
    if ok {
        Ok(())
    } else {
        Err(Error::usage(format!(
            "{id:?} is not a snapshot id (they look like 20261123T004512Z-3f9a1c); \
             `tidemark snapshot list` shows them"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hard_names_encode_injectively_and_validate() {
        let names = ["users", "my table", "a.b", "Ünïcode", "select", "x=41", "x", "A"];
        let encoded: std::collections::HashSet<String> = names.iter().map(|n| encode_segment(n)).collect();
        assert_eq!(encoded.len(), names.len());
        for n in names {
            let obj = SnapshotObject::TablePart { schema: "s.p".into(), table: n.into(), part: Some(2) };
            SnapshotObject::validate_name(&obj.name()).unwrap();
            let key = SnapshotObject::key_for_name("shop", "20261123T004512Z-3f9a1c", &obj.name()).unwrap();
            assert_eq!(key, obj.key("shop", "20261123T004512Z-3f9a1c"));
            assert!(!obj.name()[7..].contains('/'));
        }
        assert_eq!(encode_segment("a.b"), "a=2Eb");
    }

    #[test]
    fn crafted_names_are_refused() {
        for bad in
            ["../../repository.json", "tables/../x.copy.zst.age", "tables/a/b.copy.zst.age", "manifest.json.age", ""]
        {
            assert!(SnapshotObject::validate_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ids_sort_by_time_and_validate() {
        let t1 = chrono::DateTime::parse_from_rfc3339("2026-11-23T00:45:12Z").unwrap().to_utc();
        let t2 = t1 + chrono::Duration::seconds(1);
        let (a, b) = (new_snapshot_id(t1), new_snapshot_id(t2));
        let t3 = t1 + chrono::Duration::microseconds(654_321);
        assert_eq!(snapshot_started(&a), Some(t1), "{a}");
        assert_eq!(snapshot_started(&new_snapshot_id(t3)), Some(t3));
        assert_eq!(snapshot_started("20261207T155755Z"), None);
        assert!(a < b);
        // Issue 11.11: two snapshots in the same second sort by time too.
        for (earlier, later) in [(0, 1), (9, 10), (999, 1000), (123_456, 999_999)] {
            let (x, y) = (t1 + chrono::Duration::microseconds(earlier), t1 + chrono::Duration::microseconds(later));
            let (x, y) = (new_snapshot_id(x), new_snapshot_id(y));
            assert!(x < y, "{x} !< {y}");
            validate_snapshot_id(&y).unwrap();
        }
        validate_snapshot_id(&a).unwrap();
        assert!(validate_snapshot_id("../etc").is_err());
        assert!(validate_snapshot_id("20261123T004512Z-3F9A1C").is_err());
    }
}
