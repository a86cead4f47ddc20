//! `status`: the health of every workspace, gathered from the catalog, the snapshot index,
//! the PITR window and the source's archiver, and judged by the monitor engine
//! ([`crate::monitor::health`], pure: the daemon's alerts and the front ends agree).

use chrono::{DateTime, Utc};

use super::Core;
use super::workspace::StatusOptions;
use crate::actor::Actor;
use crate::error::Result;
pub use crate::monitor::health::*;

/// The health of one workspace (or all) now: the catalog, and the repository's WAL listing
/// for workspaces that archive WAL.
///
/// Errors: `NotFound` for an unknown workspace; for one workspace asked, `Config` for its
/// policies and those of the catalog and the repository (for all, a workspace that cannot
/// be read is listed in `unknown` and the others are still evaluated).
pub async fn health(core: &Core, opts: &HealthOptions, actor: &Actor) -> Result<HealthReport> {
    health_at(core, opts, actor, Utc::now()).await
}

/// [`health`] as of `now` (the daemon's clock).
///
/// Errors: those of [`health`].
pub async fn health_at(core: &Core, opts: &HealthOptions, actor: &Actor, now: DateTime<Utc>) -> Result<HealthReport> {
    let names: Vec<String> = match &opts.workspace {
        Some(w) => {
            core.workspace(w)?;
            vec![w.clone()]
        }
        None => core.config.config.workspaces.keys().cloned().collect(),
    };
    let mut workspaces = Vec::new();
    let mut unknown = Vec::new();
    for name in names {
        match workspace_health(core, &name, actor, now).await {
            Ok(health) => workspaces.push(health),
            // Asked about one: its error is the answer. About all: the others still count.
            Err(e) if opts.workspace.is_some() => return Err(e),
            Err(e) => unknown.push(Unknown { workspace: name, error: e.report() }),
        }
    }
    let all: Vec<Problem> = workspaces.iter().flat_map(|w| w.problems.clone()).collect();
    let state = match state_of(&all) {
        "healthy" if !unknown.is_empty() => "unknown",
        state => state,
    };
    Ok(HealthReport { at: now, state: state.to_string(), workspaces, unknown })
}

/// One workspace's health at `now`.
///
/// Errors: `Config` for its policies; those of the catalog and the repository.
async fn workspace_health(core: &Core, name: &str, actor: &Actor, now: DateTime<Utc>) -> Result<Health> {
    let name = name.to_string();
    let status = super::workspace::status(core, &StatusOptions { workspace: name.clone() }, actor).await?;
    let thresholds = Thresholds::for_workspace(&core.config, &name)?;
    let (earliest, latest, physical_bytes) =
        if thresholds.max_wal_lag_seconds.is_some() || status.last_base_backup.is_some() {
            core.workspace(&name)?;
            let physical = super::pitr::Physical::load(core, &core.identities()?, &name)
                .await
                .map_err(|e| e.context(format!("reading the PITR window of {name}")))?;
            let window = physical.window();
            let bytes = PhysicalBytes {
                base_backups: physical.bases.iter().map(|b| b.tar.stored_size).sum(),
                wal: physical.archived.iter().map(|a| a.stored_size).sum(),
            };
            (window.earliest.map(|m| m.time), window.latest, Some(bytes))
        } else {
            (None, None, None)
        };
    let latest_lsn = latest.as_ref().map(|m| m.lsn);
    let latest = latest.map(|m| m.time);
    let wal_stream = stream_health(core, &name, latest_lsn, latest, now).await?;
    let listing = super::snapshot::ListOptions { workspace: name.clone(), limit: Some(1), ..Default::default() };
    let indexed = super::snapshot::list(core, &listing, actor).await?.into_iter().next();
    let (mut newest_snapshot, mut newest_snapshot_at) =
        indexed.and_then(|s| s.finished_at.map(|t| (Some(s.id), Some(t)))).unwrap_or_default();
    if let Some(job) = &status.last_snapshot
        && job.finished_at > newest_snapshot_at
    {
        (newest_snapshot, newest_snapshot_at) = (job.snapshot_id.clone(), job.finished_at);
    }
    let waiting = match thresholds.max_wal_lag_seconds {
        Some(_) => segments_waiting(core, &name).await,
        None => None,
    };
    let observed = Observed { status: &status, newest_snapshot: newest_snapshot_at, wal_latest: latest };
    let mut problems = evaluate(&observed, &thresholds, now);
    if let Some(stream) = &wal_stream
        && let Some(standby) = &stream.standby
        && !standby.is_synchronous()
    {
        problems.push(Problem {
            kind: ProblemKind::StreamNotSynchronous,
            message: standby.warning(),
            late_by_seconds: None,
        });
    }
    let rpo_seconds = latest.or(newest_snapshot_at).map(|t| (now - t).num_seconds());
    Ok(Health {
        workspace: name,
        state: state_of(&problems).to_string(),
        status,
        newest_snapshot,
        newest_snapshot_at,
        pitr_earliest: earliest,
        pitr_latest: latest,
        pitr_latest_lsn: latest_lsn,
        rpo_seconds,
        wal_segments_waiting: waiting,
        wal_stream,
        physical_bytes,
        thresholds,
        problems,
    })
}

/// The workspace's WAL stream: where it reaches, and for a synchronous one how the source
/// sees the receiver (asked of the source; a source that cannot be asked leaves it out).
///
/// Errors: `Config` for an unknown workspace.
async fn stream_health(
    core: &Core,
    workspace: &str,
    streamed_lsn: Option<crate::wal::Lsn>,
    streamed_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Result<Option<StreamHealth>> {
    let ws = core.workspace(workspace)?;
    let mode = match ws.config.wal_stream {
        crate::config::WalStream::Off => return Ok(None),
        crate::config::WalStream::On => "on",
        crate::config::WalStream::Synchronous => "synchronous",
    };
    let standby = match ws.config.wal_stream {
        crate::config::WalStream::Synchronous => {
            let app = crate::wal::stream::application_name(workspace);
            match ws.conn() {
                Ok(spec) => crate::wal::stream::standby_state(spec, &app).await.ok(),
                Err(_) => None,
            }
        }
        _ => None,
    };
    let warning = standby.as_ref().map(crate::wal::stream::StandbyState::warning);
    Ok(Some(StreamHealth {
        mode: mode.into(),
        streamed_lsn,
        streamed_age_seconds: streamed_at.map(|t| (now - t).num_seconds()),
        standby,
        warning,
    }))
}

/// Completed WAL segments the source's archiver has not archived yet: from the segment
/// `pg_stat_archiver` archived last to the one being written (on the same timeline). A
/// source that cannot be asked, or has archived nothing yet, says nothing.
async fn segments_waiting(core: &Core, workspace: &str) -> Option<i64> {
    let spec = core.workspace(workspace).ok()?.conn().ok()?.clone();
    let mut conn = spec.connect().await.ok()?;
    let row: Option<(Option<String>, String, i64)> = sqlx::query_as(
        "SELECT last_archived_wal, pg_walfile_name(pg_current_wal_lsn()), \
                (SELECT setting::bigint FROM pg_settings WHERE name = 'wal_segment_size') FROM pg_stat_archiver",
    )
    .fetch_optional(&mut conn)
    .await
    .ok()?;
    crate::pg::ConnSpec::close(conn).await;
    let (archived, current, segment_size) = row?;
    waiting_between(&archived?, &current, u64::try_from(segment_size).ok()?)
}
