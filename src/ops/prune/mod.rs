//! `prune`: apply each kind's retention to a workspace's snapshots (saying, per snapshot,
//! keep or delete and why), delete what no rule keeps — manifest first, so a snapshot
//! stops existing before any of its objects go — and collect garbage: objects of snapshots
//! that never committed (a crash) and media no remaining snapshot references, once they
//! are older than a grace period, so a snapshot being written at the same moment never
//! loses objects. The physical side too: base backups and WAL outside the point-in-time
//! window (see `wal::retention`). Also `snapshot pin|unpin`: pins live in the repository.

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

mod delete;
mod physical;

pub use delete::{SnapshotDeleteOptions, SnapshotDeleteReport, delete};

use super::Core;
use super::job::WaitFor;
use crate::actor::Actor;
use crate::error::{Error, Result};
use crate::repo::manifest::SnapshotKind;
use crate::repo::{Key, StoredObject, layout};
use crate::schedule::policy::{self, Policy};
use crate::schedule::retention::{self, Candidate, Decision, Retention};
use physical::prune_pitr;

/// Objects younger than this are never collected as garbage (a snapshot may be writing them).
pub const DEFAULT_GRACE: std::time::Duration = std::time::Duration::from_secs(6 * 3600);

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PruneOptions {
    pub workspace: String,
    /// Decide and report, delete nothing.
    pub dry_run: bool,
    #[serde(with = "crate::config::duration_text")]
    pub grace: std::time::Duration,
    /// Apply retention as of this moment (default: now); the daemon passes its clock's time.
    pub as_of: Option<chrono::DateTime<chrono::Utc>>,
    /// When another operation holds the workspace: refuse (default) or wait.
    #[serde(default)]
    pub wait: WaitFor,
}

/// What `snapshot pin` and `snapshot unpin` take.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PinOptions {
    /// A snapshot id, or `latest`.
    pub id: String,
    pub workspace: Option<String>,
    /// Pin (true) or unpin (false).
    pub pin: bool,
    #[serde(default)]
    pub wait: WaitFor,
}

#[derive(Debug, Clone, Serialize)]
pub struct PruneReport {
    pub workspace: String,
    pub dry_run: bool,
    pub decisions: Vec<Decision>,
    /// Objects deleted (or, with --dry-run, that would be), with their bytes.
    pub deleted_objects: u64,
    pub deleted_bytes: u64,
    /// Garbage collected: leftovers of uncommitted snapshots and unreferenced media.
    pub garbage_objects: u64,
    /// Garbage still inside the grace period, left for a later prune.
    pub garbage_in_grace: u64,
    /// Uploads that never completed (a killed snapshot, WAL push or base backup), older
    /// than the grace period: staging files of a local repository, incomplete S3
    /// multipart uploads.
    pub unfinished_uploads_deleted: u64,
    /// Base backups and WAL outside the point-in-time window.
    pub pitr: PitrPruneReport,
    /// Restore drill reports older than the longest `keep-within` (the newest ten stay).
    pub drill_reports_deleted: u64,
    /// Databases moved aside by in-place restores and `branch set-live` (`<db>_before_*`,
    /// `<db>_undone_*`) older than the workspace's keep-replaced: dropped (with --dry-run,
    /// that would be).
    pub replaced_databases_dropped: Vec<String>,
    /// Exports made over the API (`exports/<workspace>/<id>.tidemark`) older than
    /// `[api] keep-exports`: removed (with --dry-run, that would be); their ids.
    pub exports_removed: Vec<String>,
    /// Objects retention or garbage collection would delete but object lock still holds
    /// (kept until their date; a later prune deletes them).
    pub locked_objects: u64,
    /// Snapshots whose manifest cannot be read: kept, and while there are any, no media
    /// are collected.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub damaged: Vec<crate::repo::Damaged>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct PitrPruneReport {
    /// How far back a point-in-time restore stays possible.
    pub window: String,
    pub base_backups_deleted: Vec<String>,
    pub wal_files_deleted: u64,
    /// WAL files retention would delete but that are younger than the grace period.
    pub wal_files_in_grace: u64,
    pub oldest_wal_kept: Option<String>,
    /// Base backups whose manifest cannot be read: kept, and while there are any, no WAL
    /// is deleted.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub damaged: Vec<crate::repo::Damaged>,
}

/// The policies that apply to a workspace (see [`crate::schedule::policy::policies_for`]).
pub fn policies_for(core: &Core, workspace: &str) -> Result<Vec<Policy>> {
    policy::policies_for(&core.config, workspace)
}

/// Pinned snapshot ids of a workspace.
pub async fn pinned(core: &Core, workspace: &str) -> Result<HashSet<String>> {
    core.repo.pinned(workspace).await
}

/// Pins (or unpins) a snapshot; returns its workspace. Errors: `NotFound` for a snapshot
/// that does not exist; `Refused` while another operation holds the workspace.
pub async fn set_pin(core: &Core, opts: &PinOptions, actor: &Actor) -> Result<String> {
    let (ws, id) = super::snapshot::resolve(core, &opts.id, opts.workspace.as_deref()).await?;
    let done = async {
        let _lock = super::job::take_workspace(core, &ws, "pin", actor, opts.wait).await?;
        core.repo.set_pin(&ws, &id, opts.pin).await?;
        // Under object lock a pinned snapshot is held one more full hold from now (its
        // media too, when the manifest can be read here).
        if opts.pin
            && let Some(until) = core.repo.lock_target()
        {
            let manifest = match core.identities() {
                Ok(ids) => Some(core.repo.read_manifest(&ws, &id, &ids).await?),
                Err(_) => None,
            };
            super::hold::extend_snapshot(core, manifest.as_ref(), &ws, &id, until).await?;
        }
        Ok(())
    }
    .await;
    let action = if opts.pin { crate::operation::Operation::Pin } else { crate::operation::Operation::Unpin };
    super::audit::record(core, actor, action, &format!("{ws}/{id}"), &done, serde_json::json!({})).await;
    done.map(|()| ws)
}

/// Applies retention and collects garbage.
///
/// Errors: `Key` without an identity (retention reads the manifests), `Config` for bad
/// policies, `Unavailable` for the store or while a snapshot of the workspace runs in
/// another process. A failure part-way leaves a consistent
/// repository: manifests go first, so nothing half-deleted looks whole.
pub async fn prune(core: &Core, opts: &PruneOptions, actor: &Actor) -> Result<PruneReport> {
    // Stopped part-way, what was deleted is consistent: manifests go first.
    let report = core.until_stopped(apply(core, opts, actor)).await?;
    if !report.dry_run {
        let (m, ws) = (&core.metrics, opts.workspace.as_str());
        m.retention_deleted(ws, "retention", report.deleted_objects);
        m.retention_deleted(ws, "garbage", report.garbage_objects);
        m.retention_deleted(ws, "unfinished-upload", report.unfinished_uploads_deleted);
        m.retention_deleted(ws, "pitr-base-backup", report.pitr.base_backups_deleted.len() as u64);
        m.retention_deleted(ws, "pitr-wal", report.pitr.wal_files_deleted);
        m.retention_deleted(ws, "drill-report", report.drill_reports_deleted);
        m.retention_deleted(ws, "replaced-database", report.replaced_databases_dropped.len() as u64);
        m.retention_deleted(ws, "export", report.exports_removed.len() as u64);
    }
    Ok(report)
}

async fn apply(core: &Core, opts: &PruneOptions, actor: &Actor) -> Result<PruneReport> {
    let policies = policies_for(core, &opts.workspace)?;
    // No snapshot of this workspace runs meanwhile in any process of this host: its
    // objects are committed by no manifest yet. (A dry run deletes nothing.)
    let _lock = match opts.dry_run {
        true => None,
        false => Some(
            super::job::take_workspace(
                core,
                &opts.workspace,
                crate::operation::Operation::Prune.lock_label(),
                actor,
                opts.wait,
            )
            .await?,
        ),
    };
    let identities = core.identities()?;
    let progress = core.progress();
    progress.set_prefix(format!("prune {}", opts.workspace));
    progress.set_message("retention");
    let pins = pinned(core, &opts.workspace).await?;
    // A manifest that cannot be read is never deleted, never counted as a kept snapshot,
    // and its folder is no garbage; while one exists, no media are collected (what it
    // references is unknown).
    let read = core.repo.read_manifests(&opts.workspace, &identities).await?;
    let damaged: HashSet<String> = read.damaged.iter().map(|d| d.id.clone()).collect();
    let manifests: BTreeMap<String, crate::repo::manifest::Manifest> =
        read.items.into_iter().map(|m| (m.id.clone(), m)).collect();
    let candidates: Vec<Candidate> = manifests
        .values()
        .map(|m| Candidate { id: m.id.clone(), kind: m.kind, taken_at: m.started_at, pinned: pins.contains(&m.id) })
        .collect();
    let retention_of = |kind: SnapshotKind| -> Option<(Retention, chrono_tz::Tz)> {
        policies.iter().find(|p| p.kind == Some(kind)).map(|p| (p.retention.clone(), p.time_zone))
    };
    let mut decisions = retention::select(&candidates, retention_of, opts.as_of.unwrap_or_else(chrono::Utc::now));
    // Garbage ages are compared with the objects' own (real) modification times.
    let now = chrono::Utc::now();

    let mut report = PruneReport {
        workspace: opts.workspace.clone(),
        dry_run: opts.dry_run,
        decisions: Vec::new(),
        deleted_objects: 0,
        deleted_bytes: 0,
        garbage_objects: 0,
        garbage_in_grace: 0,
        unfinished_uploads_deleted: 0,
        pitr: PitrPruneReport::default(),
        drill_reports_deleted: 0,
        replaced_databases_dropped: Vec::new(),
        exports_removed: Vec::new(),
        locked_objects: 0,
        damaged: Vec::new(),
    };
    // Under object lock, a snapshot retention would delete but whose manifest is still
    // locked is kept, saying until when (S3 would refuse the delete).
    for d in decisions.iter_mut().filter(|d| !d.keep) {
        if let Some(until) = core.repo.locked_until(&layout::manifest(&opts.workspace, &d.id)).await? {
            d.keep = true;
            d.reasons.push(format!("kept: locked until {}", until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)));
        }
    }
    let mut doomed: HashSet<String> = decisions.iter().filter(|d| !d.keep).map(|d| d.id.clone()).collect();
    for d in &read.damaged {
        decisions.push(Decision {
            id: d.id.clone(),
            keep: true,
            reasons: vec![format!("its manifest cannot be read, so nothing decides about it: {}", d.problem)],
        });
    }
    decisions.sort_by(|a, b| a.id.cmp(&b.id));
    report.decisions = decisions;
    report.damaged = read.damaged.clone();
    let mut kept_locked = Vec::new();
    for id in &doomed {
        let manifest = layout::manifest(&opts.workspace, id);
        if !opts.dry_run && !delete_unless_locked(core, &manifest, &mut report.locked_objects).await? {
            // Locked after all (its lock moved meanwhile): the snapshot stays whole.
            kept_locked.push(id.clone());
        }
    }
    for id in kept_locked {
        doomed.remove(&id);
        if let Some(d) = report.decisions.iter_mut().find(|d| d.id == id) {
            d.keep = true;
            d.reasons.push("kept: its manifest is locked".into());
        }
    }
    if !opts.dry_run
        && !doomed.is_empty()
        && let Ok(catalog) = core.catalog().await
    {
        let gone: Vec<String> = doomed.iter().cloned().collect();
        if let Err(e) = catalog.unindex_snapshots(&opts.workspace, &gone).await {
            tracing::warn!(error = %e.report(), "deleted snapshots stay in the catalog's index until the next listing");
            let _ = catalog.set_snapshot_index_synced(&opts.workspace, None).await;
        }
    }

    // Everything under snapshots/: objects of deleted snapshots go now (nobody else uses
    // them); objects of snapshots that never committed go once the whole folder is older
    // than the grace period.
    let grace = chrono::Duration::from_std(opts.grace).unwrap_or(chrono::Duration::MAX);
    let listing = core.repo.list_all(&layout::snapshots(&opts.workspace)).await?;
    let mut by_snapshot: BTreeMap<String, Vec<StoredObject>> = BTreeMap::new();
    for object in listing {
        if let Some(id) = object.key.parts().nth(3) {
            by_snapshot.entry(id.as_ref().to_string()).or_default().push(object);
        }
    }
    let mut writing_now = false;
    for (id, objects) in &by_snapshot {
        let committed = manifests.contains_key(id) && !doomed.contains(id.as_str());
        if committed || damaged.contains(id) {
            continue;
        }
        let garbage = !manifests.contains_key(id);
        let newest = objects.iter().map(|o| o.modified).max().unwrap_or(now);
        if garbage && now.signed_duration_since(newest) < grace {
            writing_now = true;
            report.garbage_in_grace += objects.len() as u64;
            continue;
        }
        for o in objects {
            if !opts.dry_run && !delete_unless_locked(core, &o.key, &mut report.locked_objects).await? {
                continue;
            }
            report.deleted_objects += 1;
            report.deleted_bytes += o.size;
            if garbage {
                report.garbage_objects += 1;
            }
        }
    }

    // Media no remaining snapshot references. While a snapshot may be writing (an
    // uncommitted folder inside the grace period), media are left alone entirely: its
    // media objects are referenced by no manifest yet.
    let referenced: HashSet<String> = manifests
        .values()
        .filter(|m| !doomed.contains(m.id.as_str()))
        .flat_map(|m| m.media.iter().flat_map(|media| media.files.iter().map(|f| f.sha256.clone())))
        .collect();
    for o in core.repo.list(&layout::media_dir(&opts.workspace)).await? {
        let sha = o.key.filename().and_then(|f| f.strip_suffix(".zst.age")).unwrap_or_default().to_string();
        if referenced.contains(&sha) {
            continue;
        }
        if writing_now || !damaged.is_empty() || now.signed_duration_since(o.modified) < grace {
            report.garbage_in_grace += 1;
            continue;
        }
        if !opts.dry_run && !delete_unless_locked(core, &o.key, &mut report.locked_objects).await? {
            continue;
        }
        report.deleted_objects += 1;
        report.deleted_bytes += o.size;
        report.garbage_objects += 1;
    }
    // Uploads a killed process never finished (staging files, incomplete multipart uploads).
    let unfinished_before = now - grace;
    for stale in core.repo.stale_uploads(&layout::workspace(&opts.workspace), unfinished_before).await? {
        if !opts.dry_run {
            core.repo.remove_stale_upload(&stale).await?;
        }
        report.unfinished_uploads_deleted += 1;
        report.deleted_bytes += stale.size.unwrap_or(0);
    }
    let as_of = opts.as_of.unwrap_or(now);
    progress.set_message("base backups and WAL");
    report.pitr = prune_pitr(core, opts, &policies, &identities, as_of, grace, now).await?;

    progress.set_message("drill reports and pins");
    // Drill reports: kept as long as the longest-kept snapshots, the newest always.
    let horizon = policies
        .iter()
        .filter_map(|p| p.retention.keep_within)
        .max()
        .unwrap_or(chrono::Duration::days(retention::DRILL_REPORTS_DEFAULT_DAYS));
    let reports = core.repo.list(&layout::drill_reports(&opts.workspace)).await?;
    let reports: Vec<(Key, DateTime<Utc>)> = reports.into_iter().map(|o| (o.key, o.modified)).collect();
    for key in retention::drill_reports_to_delete(&reports, horizon, as_of) {
        if !opts.dry_run && !delete_unless_locked(core, &key, &mut report.locked_objects).await? {
            continue;
        }
        report.drill_reports_deleted += 1;
    }

    progress.set_message("replaced databases");
    report.replaced_databases_dropped = prune_replaced(core, opts, now).await?;
    report.exports_removed = prune_exports(core, opts, now)?;

    // Pins of snapshots that no longer exist.
    for id in pins.iter().filter(|id| !manifests.contains_key(*id)) {
        if !opts.dry_run {
            core.repo.delete(&layout::pin(&opts.workspace, id)).await?;
        }
    }
    progress.finish();
    Ok(report)
}

/// How long a replaced database is kept by default.
pub const KEEP_REPLACED_DEFAULT: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);

/// Drops the databases switches moved aside longer ago than the workspace's keep-replaced
/// (on the workspace's server; one that is gone already is only forgotten).
async fn prune_replaced(core: &Core, opts: &PruneOptions, now: DateTime<Utc>) -> Result<Vec<String>> {
    let ws = core.workspace(&opts.workspace)?;
    let keep = ws.config.keep_replaced.unwrap_or(KEEP_REPLACED_DEFAULT);
    let keep = chrono::Duration::from_std(keep).unwrap_or(chrono::Duration::MAX);
    let catalog = core.catalog().await?;
    let mut dropped = Vec::new();
    let live = ws.conn()?.database().unwrap_or_default();
    for (database, replaced_at) in catalog.replaced(&opts.workspace).await? {
        // Never the live one, whatever the catalog says.
        if database == live || now.signed_duration_since(replaced_at) < keep {
            continue;
        }
        if !opts.dry_run {
            let server = ws.conn()?;
            crate::restore::database::drop_database(&server.with_database(&database)).await?;
            catalog.forget_replaced(&opts.workspace, &database).await?;
            tracing::info!(workspace = %opts.workspace, database, "dropped a replaced database (keep-replaced)");
        }
        dropped.push(database);
    }
    Ok(dropped)
}

/// How long an export made over the API is kept by default.
pub const KEEP_EXPORTS_DEFAULT: std::time::Duration = std::time::Duration::from_secs(3 * 24 * 3600);

/// Removes the workspace's exports made over the API whose file is older than
/// `[api] keep-exports` (a link to one then answers 404); returns their ids.
///
/// Errors: `Internal` for a folder that cannot be read or a file that cannot be removed.
fn prune_exports(core: &Core, opts: &PruneOptions, now: DateTime<Utc>) -> Result<Vec<String>> {
    let keep = core.config.config.api.keep_exports.unwrap_or(KEEP_EXPORTS_DEFAULT);
    let keep = chrono::Duration::from_std(keep).unwrap_or(chrono::Duration::MAX);
    let dir = super::link::exports_dir(core, &opts.workspace)?;
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::from(e).context(format!("reading {}", dir.display()))),
    };
    let mut removed = Vec::new();
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        // Finished exports and the partial files of ones that were stopped.
        let Some(id) = name.strip_suffix(".tidemark").or_else(|| name.strip_suffix(".tidemark.partial")) else {
            continue;
        };
        let modified: DateTime<Utc> = entry.metadata()?.modified()?.into();
        if now.signed_duration_since(modified) < keep {
            continue;
        }
        if !opts.dry_run {
            fs_err::remove_file(entry.path())?;
            tracing::info!(workspace = %opts.workspace, export = id, "removed an export (keep-exports)");
        }
        removed.push(id.to_string());
    }
    removed.sort();
    Ok(removed)
}

/// Deletes an object unless object lock holds it (then counts it in `locked` and returns
/// false: S3 refuses, and the object is kept until its date).
///
/// Errors: those of the store.
pub(super) async fn delete_unless_locked(core: &Core, key: &Key, locked: &mut u64) -> Result<bool> {
    match core.repo.delete(key).await {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == crate::error::ErrorKind::Refused && core.repo.object_lock().is_some() => {
            tracing::info!(object = %key, "kept: {}", e.message());
            *locked += 1;
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

/// What a prune job records as its end.
pub fn job_end(r: &PruneReport) -> crate::catalog::JobEnd {
    crate::catalog::JobEnd { bytes: Some(r.deleted_bytes), ..Default::default() }
}

/// [`prune`] as a recorded job (see [`super::job::recorded`]).
pub async fn prune_recorded(core: &Core, opts: &PruneOptions, actor: &Actor) -> Result<PruneReport> {
    let spec = super::job::JobSpec {
        workspace: opts.workspace.clone(),
        operation: match opts.dry_run {
            true => crate::operation::Operation::PruneDryRun,
            false => crate::operation::Operation::Prune,
        },
        kind: None,
    };
    super::job::recorded(core, actor, spec, |core| async move { prune(&core, opts, actor).await }, job_end).await
}
