//! The operations: one module per operation, each orchestrating the engines below it. The
//! front ends (CLI, API, scheduler) turn their input into the same `*Options` structs, call
//! these functions with an `Actor` and render the report. Every operation runs in one
//! [`Core`] (`context`). No file here is longer than ~300 lines, and no function longer than
//! ~100, without the reason written beside it (tests/it/architecture.rs checks).

pub mod alerts;
pub mod audit;
pub mod basebackup;
pub mod branch;
pub mod catalog;
pub mod check;
pub mod copy;
pub mod demo;
pub mod drill;
pub mod export;
pub mod fleet;
pub mod health;
pub mod hold;
pub mod import;
pub mod init;
pub mod inplace;
pub mod job;
pub mod link;
pub mod metrics;
pub mod overview;
pub mod pitr;
pub mod prune;
pub mod restore;
pub mod serve;
pub mod session;
pub mod signing;
pub mod snapshot;
pub mod stacks;
pub mod switch;
pub mod token;

pub mod wal;
pub mod workspace;

mod context;

pub use context::{Core, Workspace};

use crate::error::{Error, Result};

/// The most parallel connections any operation takes (`jobs`), from any front end: each
/// is a connection to the workspace's server, which the application shares.
pub const MAX_JOBS: usize = 32;

/// The most tables one restore or export picks.
pub const MAX_TABLES: usize = 100;

/// Refuses a `jobs` of 0 or above [`MAX_JOBS`] (none: one per core).
///
/// Errors: `Usage`.
pub fn check_jobs(jobs: Option<usize>) -> Result<()> {
    match jobs {
        Some(j) if j == 0 || j > MAX_JOBS => Err(Error::usage(format!(
            "jobs is 1 to {MAX_JOBS} (each is a connection to the workspace's server), not {j}"
        ))),
        _ => Ok(()),
    }
}

/// Refuses more than [`MAX_TABLES`] tables (or new names for them).
///
/// Errors: `Usage`.
pub fn check_tables(tables: &[String], what: &str) -> Result<()> {
    match tables.len() > MAX_TABLES {
        true => Err(Error::usage(format!("at most {MAX_TABLES} {what} at once, not {}", tables.len()))),
        false => Ok(()),
    }
}

/// Parallel jobs: the given number, or one per core.
pub fn jobs_or_default(jobs: Option<usize>) -> usize {
    jobs.filter(|j| *j > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map(std::num::NonZero::get).unwrap_or(2))
}

/// A snapshot option as a request sends it: an id, `latest`, or left out or `null` (both:
/// the default, an empty id).
pub(crate) fn snapshot_or_empty<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<String, D::Error> {
    <Option<String> as serde::Deserialize>::deserialize(d).map(Option::unwrap_or_default)
}

#[cfg(test)]
mod tests {
    use super::job::WaitFor;
    use std::time::Duration;

    /// The options are the requests' bodies: each takes what a request may set, with the
    /// host's defaults for the rest, and refuses every field that is the path's, the
    /// host's or a schedule's (unknown fields are refused, never ignored).
    #[test]
    fn options_come_as_json_with_only_what_a_request_may_set() {
        use crate::ops::{drill, export, inplace, link, prune, restore, snapshot};
        let opts: snapshot::SnapshotOptions =
            serde_json::from_str(r#"{"note": "before 42", "no_media": true}"#).unwrap();
        assert_eq!((opts.note.as_deref(), opts.no_media), (Some("before 42"), true));
        assert_eq!(opts.kind, crate::repo::manifest::SnapshotKind::Manual, "defaults fill the rest");
        assert_eq!(opts.split_table_mib, snapshot::SnapshotOptions::default().split_table_mib);
        let prune: prune::PruneOptions = serde_json::from_str(r#"{"dry_run": true}"#).unwrap();
        assert_eq!((prune.dry_run, prune.grace, prune.wait), (true, prune::DEFAULT_GRACE, WaitFor::NO));
        let drill: drill::DrillOptions = serde_json::from_str("{}").unwrap();
        assert!(matches!(drill.source, drill::DrillSource::Snapshot(None)) && drill.record);
        let drill: drill::DrillOptions = serde_json::from_str(r#"{"snapshot": "20261129T101500Z-1a2b3c"}"#).unwrap();
        assert!(matches!(drill.source, drill::DrillSource::Snapshot(Some(_))));
        let link: link::LinkOptions = serde_json::from_str(r#"{"valid_for": "1h"}"#).unwrap();
        assert_eq!(link.valid_for, Some(Duration::from_secs(3600)));
        let restore: restore::RestoreOptions =
            serde_json::from_str(r#"{"database": "shop_copy", "tables": ["public.t"]}"#).unwrap();
        assert!(matches!(restore.target, restore::RestoreTarget::OnWorkspaceServer(_)) && restore.no_media);
        let refused = [
            ("snapshot", r#"{"workspace": "other"}"#),
            ("snapshot", r#"{"kind": "automatic"}"#),
            ("snapshot", r#"{"jobs": 500}"#),
            ("snapshot", r#"{"wait": "10m"}"#),
            ("prune", r#"{"grace": "0s"}"#),
            ("prune", r#"{"as_of": "2001-01-01T00:00:00Z"}"#),
            ("prune", r#"{"workspace": "other"}"#),
            ("drill", r#"{"source": {"pitr": "latest"}}"#),
            ("drill", r#"{"record": false}"#),
            ("drill", r#"{"snapshot": "../etc"}"#),
            ("export", r#"{"to": "/etc/passwd"}"#),
            ("export", r#"{"plain": true}"#),
            ("export", r#"{"recipients": ["age1..."]}"#),
            ("export", r#"{"format": "jsonl"}"#),
            ("export", r#"{"with_media": true}"#),
            ("in-place", r#"{"confirm": "shop", "bundle": "/tmp/x"}"#),
            ("in-place", r#"{"confirm": "shop", "jobs": 500}"#),
            ("in-place", r#"{"confirm": "shop", "workspace": "other"}"#),
            ("link", r#"{"valid_for": "soon"}"#),
            ("link", r#"{"export": "00000000000000000000000000000000"}"#),
            ("restore", r#"{"database": "copy", "target": "postgres://evil.example/db"}"#),
            ("restore", r#"{"database": "copy", "target_password": "file:/etc/shadow"}"#),
            ("restore", r#"{"database": "copy", "media_target": "/etc"}"#),
            ("restore", r#"{"database": "copy", "no_media": false}"#),
            ("restore", r#"{"database": "copy; DROP DATABASE shop"}"#),
            ("restore", r#"{"database": "copy", "into_live": true}"#),
            ("restore", r#"{}"#),
        ];
        for (what, json) in refused {
            let parsed = match what {
                "snapshot" => serde_json::from_str::<snapshot::SnapshotOptions>(json).map(drop),
                "prune" => serde_json::from_str::<prune::PruneOptions>(json).map(drop),
                "drill" => serde_json::from_str::<drill::DrillOptions>(json).map(drop),
                "export" => serde_json::from_str::<export::ExportOptions>(json).map(drop),
                "in-place" => serde_json::from_str::<inplace::InPlaceOptions>(json).map(drop),
                "link" => serde_json::from_str::<link::LinkOptions>(json).map(drop),
                _ => serde_json::from_str::<restore::RestoreOptions>(json).map(drop),
            };
            assert!(parsed.is_err(), "{what} took {json}");
        }
        assert_eq!(serde_json::to_value(WaitFor::FOREVER).unwrap(), serde_json::json!("0s"));
    }
}
