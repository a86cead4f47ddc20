//! `serve`: the daemon. Builds the schedules of every workspace (its policies that have a
//! cron line), and runs them with the scheduler of `schedule::daemon`; each job takes a
//! snapshot of the policy's kind and then applies the workspace's retention (and drills the
//! snapshot when the policy says `drill-after`), a base backup, or a restore drill. Workspaces
//! with `wal-stream = true` also get a continuous WAL stream for as long as it runs.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use tokio_util::sync::CancellationToken;

use super::Core;
use super::basebackup::BaseBackupOptions;
use super::drill::{DrillOptions, DrillSource, drill};
use super::job::WaitFor;
use super::prune::{DEFAULT_GRACE, PruneOptions, policies_for, prune};
use super::snapshot::{SnapshotOptions, create};
use crate::actor::Actor;
use crate::drill::DrillReport;
use crate::error::{Error, ErrorKind, Result};
use crate::schedule::clock::Clock;
use crate::schedule::daemon::{Daemon, DaemonReport, JobOutcome, Runner, Schedule, ScheduledJob};
use crate::schedule::policy::Action;
use crate::schedule::webhook::{Notifier, Webhook};

/// The schedules of every configured workspace: its policies with a cron line.
///
/// Errors: `Config` for a policy that cannot be loaded or is named but missing.
pub fn schedules(core: &Core) -> Result<Vec<Schedule>> {
    let mut out = Vec::new();
    for workspace in core.config.config.workspaces.keys() {
        for policy in policies_for(core, workspace)? {
            if policy.cron.is_some() {
                out.push(Schedule { workspace: workspace.clone(), policy });
            }
        }
    }
    Ok(out)
}

/// Runs the daemon until `shutdown` is cancelled.
///
/// Errors: `Config` for bad policies or webhook settings, `Unavailable` when the catalog
/// cannot be opened, `Refused` when another daemon runs with the same catalog. Job
/// failures are recorded and notified, never returned.
pub async fn serve(core: &Core, clock: Arc<dyn Clock>, shutdown: CancellationToken) -> Result<DaemonReport> {
    let schedules = schedules(core)?;
    let settings = core.config.config.daemon.clone();
    let webhook = settings.webhook.as_ref().map(Webhook::new).transpose()?;
    // One pool and one fleet member for the daemon and the operations it runs.
    let catalog = core.catalog().await?.clone();
    let _only_daemon = catalog.lock_for_daemon()?;
    catalog.join(crate::catalog::fleet::Role::Daemon).await?;
    super::switch::recover_all(core).await;
    if schedules.is_empty() {
        tracing::warn!("no workspace has a schedule with a cron line: nothing will run");
    }
    if !core.has_identities() {
        tracing::warn!("no age identity is configured: snapshots will be taken, but retention cannot read them");
    }
    let runner = Arc::new(SnapshotRunner { core: core.clone(), stop: CancellationToken::new() });
    let mut streams = tokio::task::JoinSet::new();
    for (name, ws) in &core.config.config.workspaces {
        if ws.wal_stream.is_on() {
            streams.spawn(stream_forever(core.clone(), name.clone(), shutdown.clone()));
        }
    }
    // Freshness: evaluated every minute, stale/recovered events through the same webhook.
    let (alert_notifier, alert_delivery) = webhook.clone().filter(|w| w.on_stale).map(Notifier::start).unzip();
    let watcher = tokio::spawn(watch_forever(core.clone(), clock.clone(), alert_notifier, shutdown.clone()));
    let wal_copier = tokio::spawn(super::copy::wal_forever(core.clone(), shutdown.clone()));
    let report = Daemon { clock, catalog, runner, schedules, settings, webhook }.run(shutdown).await;
    while streams.join_next().await.is_some() {}
    let _ = watcher.await;
    let _ = wal_copier.await;
    if let Some(delivery) = alert_delivery {
        delivery.finish().await;
    }
    report
}

/// A workspace's WAL stream for as long as the daemon runs: restarted with backoff when
/// it fails (the spool and the slot make a restart lose nothing). With a shared catalog,
/// exactly one daemon of the fleet streams a workspace: the one holding its `wal-stream`
/// lease; the others look again every third of the lease timeout and take the stream over
/// when its daemon dies (the replication slot keeps the WAL meanwhile).
async fn stream_forever(core: Core, workspace: String, shutdown: CancellationToken) {
    let mut wait = std::time::Duration::from_secs(5);
    loop {
        match stream_while_held(&core, &workspace, &shutdown).await {
            Ok(()) => return,
            Err(e) => {
                tracing::error!(workspace = %workspace, error = %e.report(), retry_in = ?wait, "WAL stream failed");
            }
        }
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = shutdown.cancelled() => return,
        }
        wait = (wait * 2).min(std::time::Duration::from_secs(300));
    }
}

/// Streams `workspace`'s WAL until `shutdown` (`Ok`) or a failure, while this daemon holds
/// the fleet's `wal-stream` lease of it.
async fn stream_while_held(core: &Core, workspace: &str, shutdown: &CancellationToken) -> Result<()> {
    let opts = super::wal::StreamOptions { workspace: workspace.to_string(), ..Default::default() };
    let stream = |stop| async move { super::wal::stream(core, &opts, stop).await.map(drop) };
    super::fleet::while_holding(core, &format!("wal-stream {workspace}"), shutdown, stream).await.map(drop)
}

/// The freshness watch, run by one daemon of the fleet (the holder of `health-watch`), so
/// that a stale workspace is told once and the catalog read once a minute, not once per
/// daemon; another daemon takes it over when that one dies.
async fn watch_forever(
    core: Core,
    clock: Arc<dyn Clock>,
    notifier: Option<Notifier<crate::monitor::alerts::WorkspaceEvent>>,
    shutdown: CancellationToken,
) {
    let notifier = notifier.map(Arc::new);
    loop {
        let watch = |stop| {
            let (core, clock, notifier) = (core.clone(), clock.clone(), notifier.clone());
            async move {
                super::alerts::watch(core, clock, notifier, stop).await;
                Ok(())
            }
        };
        match super::fleet::while_holding(&core, "health-watch", &shutdown, watch).await {
            Ok(_) => return,
            Err(e) => tracing::warn!(error = %e.report(), "the freshness watch stopped; taking it again"),
        }
        tokio::select! {
            () = tokio::time::sleep(std::time::Duration::from_secs(5)) => {}
            () = shutdown.cancelled() => return,
        }
    }
}

/// A scheduled job: a snapshot of the policy's kind (or a base backup), then retention
/// for the workspace.
struct SnapshotRunner {
    core: Core,
    /// Cancelled when the shutdown timeout passes: snapshots and base backups stop at
    /// once, drills after removing their throwaway.
    stop: CancellationToken,
}

impl Runner for SnapshotRunner {
    fn run(&self, job: &ScheduledJob, now: DateTime<Utc>) -> BoxFuture<'static, Result<JobOutcome>> {
        let core = self.core.with_stop(self.stop.clone());
        let job = job.clone();
        let actor = Actor::schedule(&job.policy);
        Box::pin(async move {
            let result = scheduled(&core, &job, &actor, now).await;
            let details = match &result {
                Ok(o) => serde_json::json!({"snapshot": o.snapshot_id, "bytes": o.bytes, "warning": o.warning}),
                Err(_) => serde_json::json!({}),
            };
            super::audit::record(&core, &actor, job.operation(), &job.workspace, &result, details).await;
            result
        })
    }

    fn stop_jobs(&self) -> bool {
        self.stop.cancel();
        true
    }
}

/// One scheduled job's work: a snapshot (then retention, then a drill if the policy asks),
/// a base backup, or a drill.
async fn scheduled(core: &Core, job: &ScheduledJob, actor: &Actor, now: DateTime<Utc>) -> Result<JobOutcome> {
    let (id, bytes) = match (job.action, job.kind) {
        (Action::Copy, _) => {
            let report = super::copy::scheduled(core, &job.workspace, job.to.clone(), actor).await?;
            return Ok(JobOutcome {
                snapshot_id: None,
                bytes: Some(report.copies.iter().map(|c| c.tally.bytes).sum()),
                warning: None,
            });
        }
        (Action::Drill, _) => {
            let report = scheduled_drill(core, job, None, actor).await?;
            return Ok(JobOutcome {
                snapshot_id: Some(report.source),
                bytes: Some(report.stored_bytes),
                warning: None,
            });
        }
        (Action::Snapshot, Some(kind)) => {
            let opts = SnapshotOptions {
                workspace: job.workspace.clone(),
                kind,
                note: Some(format!("schedule {}", job.policy)),
                // A scheduled snapshot waits for an operator's operation on the
                // workspace to end (a prune, a pin) instead of failing.
                wait: WaitFor::FOREVER,
                ..Default::default()
            };
            let manifest = create(core, &opts, actor).await?;
            (manifest.id.clone(), manifest.stored_bytes())
        }
        (Action::BaseBackup, _) => {
            let manifest = super::basebackup::basebackup(core, &BaseBackupOptions::scheduled(job), actor).await?;
            (manifest.id, manifest.tar.stored_size)
        }
        (Action::Snapshot, None) => {
            return Err(Error::internal(format!("policy {} takes snapshots of no kind", job.policy)));
        }
    };
    // Retention after every scheduled snapshot. Its failure does not undo a good
    // snapshot: it becomes the job's warning.
    let prune_opts = PruneOptions {
        workspace: job.workspace.clone(),
        dry_run: false,
        grace: DEFAULT_GRACE,
        as_of: Some(now),
        wait: WaitFor::FOREVER,
        repository: None,
    };
    let warning = match prune(core, &prune_opts, actor).await {
        Ok(report) => {
            tracing::info!(workspace = %job.workspace,
                deleted = report.decisions.iter().filter(|d| !d.keep).count(),
                objects = report.deleted_objects, "retention applied");
            None
        }
        Err(e) => {
            tracing::warn!(workspace = %job.workspace, error = %e.report(), "retention failed");
            Some(format!("retention failed: {}", e.report()))
        }
    };
    if job.drill_after && job.action == Action::Snapshot {
        // The snapshot is committed whatever the drill finds: the job fails (and
        // notifies) without a retry, which would take another snapshot. A drill
        // stopped at shutdown stays `Interrupted`: the job is then aborted.
        scheduled_drill(core, job, Some(id.clone()), actor).await.map_err(|e| {
            let kind = match e.kind() {
                ErrorKind::Interrupted => ErrorKind::Interrupted,
                kind if kind.is_temporary() => ErrorKind::Internal,
                kind => kind,
            };
            Error::new(kind, format!("snapshot {id} was taken, but {}", e.report()))
        })?;
    }
    let mut warning = warning;
    if job.copy_after && job.action == Action::Snapshot {
        // The snapshot stays whatever happens to its copy. A copy store away is the job's
        // warning, not a retry (which would take another snapshot): the next copy sends
        // everything missing, and the copy's lag shows in status and metrics meanwhile.
        match super::copy::scheduled(core, &job.workspace, job.to.clone(), actor).await {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => return Err(e),
            Err(e) if e.kind().is_temporary() => {
                let said = format!("the copy failed (the next one sends what is missing): {}", e.report());
                warning = Some(warning.map_or(said.clone(), |w| format!("{w}; {said}")));
            }
            Err(e) => {
                return Err(Error::new(
                    e.kind(),
                    format!("snapshot {id} was taken, but its copy failed: {}", e.report()),
                ));
            }
        }
    }
    Ok(JobOutcome { snapshot_id: Some(id), bytes: Some(bytes), warning })
}

/// A drill run by the daemon (of `snapshot`, else the newest), recorded in the catalog.
///
/// Errors: what kept the drill from running, and `Integrity` naming the failed checks.
async fn scheduled_drill(
    core: &Core,
    job: &ScheduledJob,
    snapshot: Option<String>,
    actor: &Actor,
) -> Result<DrillReport> {
    let opts = DrillOptions {
        trigger: Some(job.trigger),
        repository: job.repository.clone(),
        heapallindexed: job.heapallindexed,
        ..DrillOptions::new(&job.workspace, DrillSource::Snapshot(snapshot))
    };
    let report = drill(core, &opts, actor).await?;
    if report.passed {
        tracing::info!(workspace = %job.workspace, snapshot = %report.source,
            checks = report.checks.len(), rto_ms = report.timings.restore_ms, "restore drill passed");
        return Ok(report);
    }
    let failed: Vec<String> = report.failed_checks().iter().map(|c| format!("{}: {}", c.name, c.details)).collect();
    Err(Error::integrity(format!(
        "the restore drill of snapshot {} FAILED: {}",
        report.source,
        if failed.is_empty() { report.cleanup_error.clone().unwrap_or_default() } else { failed.join("; ") }
    )))
}
