//! `prune`: apply each kind's retention to a workspace's snapshots (saying, per snapshot,
//! keep or delete and why), delete what no rule keeps — manifest first, so a snapshot
//! stops existing before any of its objects go — and collect garbage: objects of snapshots
//! that never committed (a crash) and media no remaining snapshot references, once they
//! are older than a grace period, so a snapshot being written at the same moment never
//! loses objects. The physical side too: base backups and WAL outside the point-in-time
//! window (see `wal::retention`). Also `snapshot pin|unpin`: pins live in the repository.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

mod delete;
mod pass;

use pass::Pass;
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
mod aside;
mod options;
use aside::{prune_exports, prune_replaced};
pub use options::*;

/// The policies that apply to a workspace (see [`crate::schedule::policy::policies_for`]);
/// in a copy with its own `keep-within`, that is every kind's retention.
pub fn policies_for(core: &Core, workspace: &str) -> Result<Vec<Policy>> {
    let mut policies = policy::policies_for(&core.config, workspace)?;
    if let Some(keep) =
        core.copy_name().map(|c| core.config.config.repository_named(Some(c))).transpose()?.and_then(|c| c.keep_within)
    {
        let keep_within = Some(chrono::Duration::from_std(keep).unwrap_or(chrono::Duration::MAX));
        for p in policies.iter_mut().filter(|p| p.kind.is_some()) {
            p.retention = crate::schedule::retention::Retention { keep_within, ..Default::default() };
        }
    }
    Ok(policies)
}

/// Pinned snapshot ids of a workspace.
pub async fn pinned(core: &Core, workspace: &str) -> Result<HashSet<String>> {
    core.repo.pinned(workspace).await
}

/// A page of snapshots as `snapshot list` gives it (see [`super::snapshot::list`]), each
/// saying whether it is pinned, what retention decides of it now (as `prune` would, from
/// the catalog's index of every snapshot of the workspace and the repository's pins) and
/// its signature's state. The whole index is read (retention decides over all of it) and
/// the repository's pins listed.
///
/// Errors: those of the listing; `Config` for the workspace's policies.
pub async fn list_annotated(
    core: &Core,
    opts: &super::snapshot::ListOptions,
    actor: &Actor,
) -> Result<Vec<super::snapshot::SnapshotSummary>> {
    // Retention decides over every snapshot: read them all once, and the page from them.
    if let Some(before) = &opts.before {
        layout::validate_snapshot_id(before)?;
    }
    let every = super::snapshot::ListOptions { limit: None, before: None, ..opts.clone() };
    let all = super::snapshot::list(core, &every, actor).await?;
    let mut page = super::snapshot::page(all.clone(), opts);
    let pins = pinned(core, &opts.workspace).await?;
    let policies = policies_for(core, &opts.workspace)?;
    let candidates: Vec<Candidate> = all
        .iter()
        .filter(|s| s.problem.is_none())
        .filter_map(|s| {
            let taken_at = layout::snapshot_started(&s.id).or(s.finished_at)?;
            Some(Candidate { id: s.id.clone(), kind: s.kind?, taken_at, pinned: pins.contains(&s.id) })
        })
        .collect();
    let retention_of = |kind: SnapshotKind| -> Option<(Retention, chrono_tz::Tz)> {
        policies.iter().find(|p| p.kind == Some(kind)).map(|p| (p.retention.clone(), p.time_zone))
    };
    let decisions: HashMap<String, Decision> =
        retention::select(&candidates, retention_of, Utc::now()).into_iter().map(|d| (d.id.clone(), d)).collect();
    let signature = if core.repo.signing().trust.allow_unsigned { "not-required" } else { "verified" };
    for s in &mut page {
        s.pinned = Some(pins.contains(&s.id));
        s.retention =
            decisions.get(&s.id).map(|d| super::snapshot::Retained { keep: d.keep, reasons: d.reasons.clone() });
        s.signature = s.problem.is_none().then(|| signature.to_string());
    }
    Ok(page)
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
    let core = &core.on_repository(opts.repository.as_deref()).await?;
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
    let now = chrono::Utc::now();
    let pass = Pass {
        core,
        opts,
        damaged: read.damaged.iter().map(|d| d.id.clone()).collect(),
        manifests: read.items.into_iter().map(|m| (m.id.clone(), m)).collect(),
        // Garbage ages are compared with the objects' own (real) modification times.
        now,
        grace: chrono::Duration::from_std(opts.grace).unwrap_or(chrono::Duration::MAX),
    };
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
        damaged: read.damaged.clone(),
    };
    let doomed = pass.decide(&policies, &pins, &mut report).await?;
    // A process paused past its lease deletes nothing another may be writing or keeping.
    if !opts.dry_run {
        crate::catalog::lock::fence(&opts.workspace, "deleting snapshots and garbage").await?;
    }
    let writing_now = pass.snapshot_folders(&doomed, &mut report).await?;
    pass.media(&doomed, writing_now, &mut report).await?;
    // Uploads a killed process never finished (staging files, incomplete multipart uploads).
    for stale in core.repo.stale_uploads(&layout::workspace(&opts.workspace), now - pass.grace).await? {
        if !opts.dry_run {
            core.repo.remove_stale_upload(&stale).await?;
        }
        report.unfinished_uploads_deleted += 1;
        report.deleted_bytes += stale.size.unwrap_or(0);
    }
    let as_of = opts.as_of.unwrap_or(now);
    progress.set_message("base backups and WAL");
    if !opts.dry_run {
        crate::catalog::lock::fence(&opts.workspace, "deleting base backups and WAL").await?;
    }
    report.pitr = prune_pitr(core, opts, &policies, &identities, as_of, pass.grace, now).await?;
    progress.set_message("drill reports and pins");
    pass.drill_reports(&policies, as_of, &mut report).await?;
    // The live server's replaced databases and this host's exports are the primary's to
    // collect, never a copy's.
    if core.copy_name().is_none() {
        progress.set_message("replaced databases");
        report.replaced_databases_dropped = prune_replaced(core, opts, now).await?;
        report.exports_removed = prune_exports(core, opts, now)?;
    }
    // Pins of snapshots that no longer exist.
    for id in pins.iter().filter(|id| !pass.manifests.contains_key(*id)) {
        if !opts.dry_run {
            core.repo.delete(&layout::pin(&opts.workspace, id)).await?;
        }
    }
    progress.finish();
    Ok(report)
}

/// How long a replaced database is kept by default.
pub const KEEP_REPLACED_DEFAULT: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);

/// How long an export made over the API is kept by default.
pub const KEEP_EXPORTS_DEFAULT: std::time::Duration = std::time::Duration::from_secs(3 * 24 * 3600);

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

/// The operation a prune request is: deleting, or only saying what it would delete.
pub fn operation_of(opts: &PruneOptions) -> crate::operation::Operation {
    match opts.dry_run {
        true => crate::operation::Operation::PruneDryRun,
        false => crate::operation::Operation::Prune,
    }
}

/// [`prune`] as a recorded job (see [`super::job::recorded`]).
pub async fn prune_recorded(core: &Core, opts: &PruneOptions, actor: &Actor) -> Result<PruneReport> {
    let spec = super::job::JobSpec { workspace: opts.workspace.clone(), operation: operation_of(opts), kind: None };
    super::job::recorded(core, actor, spec, |core| async move { prune(&core, opts, actor).await }, job_end).await
}
