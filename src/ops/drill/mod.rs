//! `drill`: prove a backup restores. A logical drill restores a snapshot into a throwaway
//! database (a cluster tidemark starts itself, or a configured scratch server); a PITR
//! drill recovers a base backup and WAL into a throwaway cluster. Then it checks what came
//! back (object hashes, every table's rows and content digest, the schema fingerprint,
//! sequences, function stacks, media, and the restore-tests assertions), times every
//! phase, records the report in the catalog, and removes the throwaway: also on failure,
//! timeout or Ctrl-C. Nothing of a drill touches the source database.

use std::path::Path;
use std::time::Instant;

use chrono::Utc;
use serde::{Deserialize, Serialize};

mod logical;
mod options;
mod pitr;

pub use options::*;

use super::Core;
use super::pitr::{DEFAULT_PREFETCH, PitrRestoreOptions, restore as pitr_restore};
use super::restore::{RestoreOptions, restore};
use crate::actor::Actor;
use crate::catalog::Trigger;
use crate::drill::assertions::{self, Assertion};
use crate::drill::checks;
use crate::drill::record;
pub use crate::drill::record::StoredDrill;
use crate::drill::throwaway::{Place, remove};
use crate::drill::throwaway::{ScratchDatabase, ScratchDir, database_name, remove_leftover_databases};
use crate::drill::{Check, CheckStatus, DrillKind, DrillReport, DrillTimings};
use crate::error::{Error, ErrorKind, Result};
use crate::pg::ConnSpec;
use crate::pgcluster::{Cluster, ClusterOptions};
use crate::repo::manifest::Manifest;
use crate::wal::window::Target;

/// What the drill's work fills in; read back even when the work was cut short.
pub(super) struct Progressed {
    pub(super) checks: Vec<Check>,
    pub(super) timings: DrillTimings,
    pub(super) restored_into: String,
    pub(super) database: String,
    pub(super) source: String,
    pub(super) target: String,
    pub(super) stored_bytes: u64,
    pub(super) plain_bytes: u64,
    pub(super) place: Option<Place>,
}

/// Runs a drill to its end and returns its report (`passed` says whether every check
/// held). The throwaway is removed before this returns, whatever happened.
///
/// Errors: `Config` for bad restore-tests files or drill settings; `NotFound` for an
/// unknown snapshot; `Unavailable`/`Config` when the throwaway cannot be set up;
/// `Interrupted` when the core's stop signal fires. A restore or check that fails is a
/// failed check in the report, not an error.
// Longer than ~100 lines: checks of what was asked, then the kind's run and the record, with the throwaway's cleanup on every path.
pub async fn drill(core: &Core, opts: &DrillOptions, actor: &Actor) -> Result<DrillReport> {
    let core = &core.on_repository(opts.repository.as_deref()).await?;
    check_request(opts)?;
    let cancel = core.stop();
    let started_at = Utc::now();
    let clock = Instant::now();
    let ws = core.config.workspace(&opts.workspace)?.clone();
    let settings = core.config.config.drill.clone();
    let user_assertions = assertions::load_for(&core.config, &ws)?;
    let root = core.scratch_root();
    let bin_dir = core.pg_bin_dir();
    let scratch_server = match &settings.scratch_server {
        Some(url) if matches!(opts.source, DrillSource::Snapshot(_)) => Some(
            ConnSpec::parse(url, settings.scratch_password.as_ref()).map_err(|e| e.context("drill.scratch-server"))?,
        ),
        _ => None,
    };

    let mut leftovers = {
        let (root, bin_dir) = (root.clone(), bin_dir.clone());
        tokio::task::spawn_blocking(move || crate::drill::throwaway::remove_leftover_dirs(&root, bin_dir.as_deref()))
            .await
            .map_err(|e| Error::internal(format!("drill cleanup task: {e}")))?
    };
    if let Some(server) = &scratch_server {
        leftovers.extend(remove_leftover_databases(server).await?);
    }

    let (kind, manifest) = match &opts.source {
        DrillSource::Snapshot(id) => {
            (DrillKind::Logical, Some(snapshot_to_drill(core, &opts.workspace, id.as_deref()).await?))
        }
        DrillSource::Pitr(_) => (DrillKind::Pitr, None),
    };
    let scratch = ScratchDir::create(&root, &opts.workspace)?;
    let mut done = Progressed {
        checks: Vec::new(),
        timings: DrillTimings::default(),
        restored_into: String::new(),
        database: String::new(),
        source: String::new(),
        target: String::new(),
        stored_bytes: 0,
        plain_bytes: 0,
        place: None,
    };
    let ctx = Context { core, opts, actor, scratch: scratch.path(), assertions: &user_assertions };
    let ended: Result<()> = {
        let work = async {
            match (&opts.source, &manifest) {
                (DrillSource::Snapshot(_), Some(manifest)) => {
                    logical::logical(&ctx, manifest, scratch_server.as_ref(), &mut done).await
                }
                (DrillSource::Pitr(target), _) => pitr::pitr(&ctx, target, &mut done).await,
                (DrillSource::Snapshot(_), None) => unreachable!("a logical drill has its manifest"),
            }
        };
        let timed_out = tokio::select! {
            r = tokio::time::timeout(settings.timeout, work) => match r {
                Ok(r) => r.map(|()| false),
                Err(_) => Ok(true),
            },
            () = cancel.cancelled() => Err(Error::new(
                ErrorKind::Interrupted,
                "the drill was interrupted; its throwaway was removed",
            )),
        };
        if let Ok(true) = timed_out {
            done.checks.push(Check::new(
                "timeout",
                Err(format!(
                    "the drill did not finish within {} (drill.timeout)",
                    humantime::format_duration(settings.timeout)
                )),
                settings.timeout.as_millis() as u64,
            ));
        }
        timed_out.map(|_| ())
    };

    let cleanup_clock = Instant::now();
    let cleanup_error = remove(done.place.take(), scratch, bin_dir).await.err().map(|e| e.report());
    if let Some(e) = &cleanup_error {
        tracing::error!(error = %e, "the drill's throwaway could not be removed");
    }
    done.timings.cleanup_ms = cleanup_clock.elapsed().as_millis() as u64;
    ended?;

    done.timings.total_ms = clock.elapsed().as_millis() as u64;
    let report = DrillReport {
        workspace: opts.workspace.clone(),
        kind,
        source: done.source,
        target: done.target,
        restored_into: done.restored_into,
        database: done.database,
        started_at,
        finished_at: Utc::now(),
        // A skipped check is one that does not apply (no media) or could not run because
        // another failed; only failures decide.
        passed: done.checks.iter().any(|c| c.status == CheckStatus::Pass)
            && done.checks.iter().all(|c| c.status != CheckStatus::Fail)
            && cleanup_error.is_none(),
        checks: done.checks,
        timings: done.timings,
        stored_bytes: done.stored_bytes,
        plain_bytes: done.plain_bytes,
        leftovers_removed: leftovers,
        cleanup_error,
    };
    if opts.record {
        let trigger = opts.trigger.unwrap_or(Trigger::of(actor));
        record::record(core.catalog().await, &core.repo, core.recipients(), &report, trigger, actor).await;
    }
    Ok(report)
}

/// What a drill job records as its end: a drill whose checks failed is a failed job,
/// naming them.
pub fn job_end(r: &DrillReport) -> crate::catalog::JobEnd {
    crate::catalog::JobEnd {
        snapshot_id: (r.kind == crate::drill::DrillKind::Logical).then(|| r.source.clone()),
        bytes: Some(r.stored_bytes),
        error: (!r.passed).then(|| {
            let failed: Vec<&str> = r.failed_checks().iter().map(|c| c.name.as_str()).collect();
            format!("the restore drill FAILED: {}", failed.join(", "))
        }),
        ..Default::default()
    }
}

/// [`drill`] as a recorded job (see [`super::job::recorded`]): a drill whose checks
/// failed is a failed job, naming them.
pub async fn drill_recorded(core: &Core, opts: &DrillOptions, actor: &Actor) -> Result<DrillReport> {
    check_request(opts)?;
    let spec = super::job::JobSpec {
        workspace: opts.workspace.clone(),
        operation: crate::operation::Operation::Drill,
        kind: None,
    };
    super::job::recorded(core, actor, spec, |core| async move { drill(&core, opts, actor).await }, job_end).await
}

/// Every drill report the repository holds for a workspace, oldest first (see
/// [`record::stored_reports`]).
///
/// Errors: `Unavailable` for the store, `Key` without an identity.
pub async fn stored_reports(core: &Core, workspace: &str) -> Result<Vec<StoredDrill>> {
    record::stored_reports(&core.repo, &core.identities()?, workspace).await
}

/// The drills the catalog recorded, newest first.
///
/// Errors: `Unavailable` when the catalog cannot be opened.
pub async fn history(core: &Core, opts: &HistoryOptions, _actor: &Actor) -> Result<Vec<DrillEntry>> {
    let records = core.catalog().await?.drills(opts.workspace.as_deref(), opts.limit).await?;
    records.into_iter().map(DrillEntry::of).collect()
}

/// What `drill history` takes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HistoryOptions {
    /// One workspace's drills (default: all).
    pub workspace: Option<String>,
    /// The newest this many.
    pub limit: u32,
}

/// A drill of `drill history`: the catalog's id, what started it, who asked, and the report.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DrillEntry {
    pub id: i64,
    pub trigger: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    #[serde(flatten)]
    pub report: DrillReport,
}

impl DrillEntry {
    /// A drill as the catalog keeps it, its report read.
    ///
    /// Errors: `Integrity` for a report that is not a drill's.
    pub fn of(record: crate::catalog::DrillRecord) -> Result<DrillEntry> {
        let report = serde_json::from_value(record.report).map_err(|e| {
            Error::integrity(format!("the catalog's drill {} has an unreadable report: {e}", record.id))
        })?;
        Ok(DrillEntry { id: record.id, trigger: record.trigger, actor: record.actor, report })
    }
}

pub(super) struct Context<'a> {
    pub(super) core: &'a Core,
    pub(super) opts: &'a DrillOptions,
    pub(super) actor: &'a Actor,
    pub(super) scratch: &'a Path,
    pub(super) assertions: &'a [Assertion],
}

/// The snapshot named, or the newest one whose manifest can be read ("latest"): a damaged
/// newer manifest is logged (`check` reports it as a problem) and the drill proves the
/// newest snapshot that can restore.
async fn snapshot_to_drill(core: &Core, workspace: &str, id: Option<&str>) -> Result<Manifest> {
    if let Some(id) = id.filter(|id| *id != "latest") {
        return super::snapshot::manifest(core, id, Some(workspace)).await;
    }
    // Like `snapshot::resolve("latest")`, and a damaged newer manifest is logged.
    let read = core.repo.read_manifests(workspace, &core.identities()?).await?;
    let newest = read.items.into_iter().max_by(|a, b| a.id.cmp(&b.id)).ok_or_else(|| {
        let damaged = if read.damaged.is_empty() {
            String::new()
        } else {
            format!(" that can be read ({} damaged: `tidemark check --workspace {workspace}`)", read.damaged.len())
        };
        Error::not_found(format!(
            "workspace {workspace} has no snapshot{damaged} to drill; take one with `tidemark snapshot create`"
        ))
    })?;
    for d in read.damaged.iter().filter(|d| d.id > newest.id) {
        tracing::warn!(workspace, snapshot = %d.id, problem = %d.problem, "a newer snapshot's manifest cannot be read; drilling {}", newest.id);
    }
    Ok(newest)
}

pub(super) fn ms(since: Instant) -> u64 {
    since.elapsed().as_millis() as u64
}
