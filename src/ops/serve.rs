//! `serve`: the daemon. Builds the schedules of every workspace (its policies that have a
//! cron line), and runs them with the scheduler of `schedule::daemon`; each job takes a
//! snapshot of the policy's kind and then applies the workspace's retention. Workspaces
//! with `wal-stream = true` also get a continuous WAL stream for as long as it runs.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use tokio_util::sync::CancellationToken;

use super::Core;
use super::prune::{DEFAULT_GRACE, PruneOptions, policies_for, prune};
use super::snapshot::{SnapshotOptions, create};
use crate::catalog::Catalog;
use crate::error::Result;
use crate::progress::Progress;
use crate::schedule::clock::Clock;
use crate::schedule::daemon::{Daemon, DaemonReport, JobOutcome, Runner, Schedule, ScheduledJob};
use crate::schedule::webhook::Webhook;

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
/// cannot be opened. Job failures are recorded and notified, never returned.
pub async fn serve(core: &Core, clock: Arc<dyn Clock>, shutdown: CancellationToken) -> Result<DaemonReport> {
    let schedules = schedules(core)?;
    let settings = core.config.config.daemon.clone();
    let webhook = settings.webhook.as_ref().map(Webhook::new).transpose()?;
    let catalog = Catalog::open(&core.config.catalog_path()).await?;
    if schedules.is_empty() {
        tracing::warn!("no workspace has a schedule with a cron line: nothing will run");
    }
    if !core.has_identities() {
        tracing::warn!("no age identity is configured: snapshots will be taken, but retention cannot read them");
    }
    let runner = Arc::new(SnapshotRunner { core: core.clone() });
    let mut streams = tokio::task::JoinSet::new();
    for (name, ws) in &core.config.config.workspaces {
        if ws.wal_stream {
            streams.spawn(stream_forever(core.clone(), name.clone(), shutdown.clone()));
        }
    }
    let report = Daemon { clock, catalog, runner, schedules, settings, webhook }.run(shutdown).await;
    while streams.join_next().await.is_some() {}
    report
}

/// A workspace's WAL stream for as long as the daemon runs: restarted with backoff when
/// it fails (the spool and the slot make a restart lose nothing).
async fn stream_forever(core: Core, workspace: String, shutdown: CancellationToken) {
    let opts = super::wal::StreamOptions { workspace: workspace.clone(), ..Default::default() };
    let mut wait = std::time::Duration::from_secs(5);
    loop {
        match super::wal::stream(&core, &opts, shutdown.clone()).await {
            Ok(_) => return,
            Err(e) => {
                tracing::error!(workspace = %workspace, error = %e.report(), retry_in = ?wait, "WAL stream failed")
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.cancelled() => return,
        }
        wait = (wait * 2).min(std::time::Duration::from_secs(300));
    }
}

/// A scheduled job: a snapshot of the policy's kind (or a base backup), then retention
/// for the workspace.
struct SnapshotRunner {
    core: Core,
}

impl Runner for SnapshotRunner {
    fn run(&self, job: &ScheduledJob, now: DateTime<Utc>) -> BoxFuture<'static, Result<JobOutcome>> {
        let core = self.core.clone();
        let job = job.clone();
        Box::pin(async move {
            let (id, bytes) = match job.kind {
                Some(kind) => {
                    let opts = SnapshotOptions {
                        workspace: job.workspace.clone(),
                        kind,
                        note: Some(format!("schedule {}", job.policy)),
                        ..Default::default()
                    };
                    let manifest = create(&core, &opts, &Progress::hidden()).await?;
                    (manifest.id.clone(), manifest.stored_bytes())
                }
                None => {
                    let manifest = super::basebackup::basebackup(&core, &job.workspace).await?;
                    (manifest.id, manifest.tar.stored_size)
                }
            };
            // Retention after every scheduled snapshot. Its failure does not undo a good
            // snapshot: it becomes the job's warning.
            let prune_opts = PruneOptions {
                workspace: job.workspace.clone(),
                dry_run: false,
                grace: DEFAULT_GRACE,
                as_of: Some(now),
            };
            let warning = match prune(&core, &prune_opts).await {
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
            Ok(JobOutcome { snapshot_id: Some(id), bytes: Some(bytes), warning })
        })
    }
}
