//! `status`: the health of every workspace, gathered from the catalog, the snapshot index,
//! the PITR window and the source's archiver, and judged by the monitor engine
//! ([`crate::monitor::health`], pure: the daemon's alerts and the front ends agree).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::Core;
pub use super::snapshot::INDEX_RECHECK;
use crate::actor::Actor;
use crate::catalog::status::StatusRows;
use crate::error::{Error, Result};
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

/// [`health`] as of `now` (the daemon's clock). The catalog is read once for every
/// workspace (a few statements, whatever their number: the freshness watch asks every
/// minute); a snapshot index never compared with the repository is compared first, one
/// compared longer than [`INDEX_RECHECK`] ago is compared again in the background.
///
/// Errors: those of [`health`].
pub async fn health_at(core: &Core, opts: &HealthOptions, _actor: &Actor, now: DateTime<Utc>) -> Result<HealthReport> {
    let names: Vec<String> = match &opts.workspace {
        Some(w) => {
            core.workspace(w)?;
            vec![w.clone()]
        }
        None => core.config.config.workspaces.keys().cloned().collect(),
    };
    let mut workspaces = Vec::new();
    let mut unknown = Vec::new();
    let mut rows = match read_rows(core, opts.workspace.as_deref(), &names).await {
        Ok(rows) => rows,
        // Asked about one: its error is the answer. About all: none can be told.
        Err(e) if opts.workspace.is_some() => return Err(e),
        Err(e) => {
            let error = e.report();
            unknown = names.into_iter().map(|workspace| Unknown { workspace, error: error.clone() }).collect();
            return Ok(HealthReport { at: now, state: "unknown".into(), workspaces, unknown });
        }
    };
    for name in names {
        let read = rows.remove(&name).unwrap_or_else(|| Ok(StatusRows::default()));
        match read.and_then(|rows| super::workspace::status_of(core, &name, &rows, now).map(|s| (rows, s))) {
            Err(e) if opts.workspace.is_some() => return Err(e),
            Err(e) => unknown.push(Unknown { workspace: name, error: e.report() }),
            Ok((rows, status)) => match workspace_health(core, status, &rows, now).await {
                Ok(health) => workspaces.push(health),
                Err(e) if opts.workspace.is_some() => return Err(e),
                Err(e) => unknown.push(Unknown { workspace: name, error: e.report() }),
            },
        }
    }
    let all: Vec<Problem> = workspaces.iter().flat_map(|w| w.problems.clone()).collect();
    let state = match state_of(&all) {
        "healthy" if !unknown.is_empty() => "unknown",
        state => state,
    };
    Ok(HealthReport { at: now, state: state.to_string(), workspaces, unknown })
}

/// The catalog's status rows of `names` (`workspace`: the one asked), their snapshot
/// indexes compared with the repository where they never were (a workspace whose
/// repository cannot be read then is an `Err`).
///
/// Errors: `Unavailable` for the catalog.
async fn read_rows(
    core: &Core,
    workspace: Option<&str>,
    names: &[String],
) -> Result<BTreeMap<String, Result<StatusRows>>> {
    let catalog = core.catalog().await?;
    let rows = catalog.status_rows(workspace).await?;
    let synced: Vec<(String, Option<DateTime<Utc>>)> =
        names.iter().map(|n| (n.clone(), rows.get(n).and_then(|r| r.index_synced))).collect();
    let compared = super::snapshot::compare_indexes(core, catalog, &synced).await;
    let mut out: BTreeMap<String, Result<StatusRows>> = rows.into_iter().map(|(ws, r)| (ws, Ok(r))).collect();
    for (ws, result) in compared {
        let newest = match result {
            Ok(()) => catalog.snapshot_summaries(&ws, None, 1).await.map(|mut s| s.pop()),
            Err(e) => Err(e),
        };
        let entry = out.entry(ws).or_insert_with(|| Ok(StatusRows::default()));
        match (newest, entry) {
            (Ok(newest), Ok(rows)) => rows.newest_snapshot = newest,
            (Err(e), entry) => *entry = Err(e),
            (Ok(_), Err(_)) => {}
        }
    }
    Ok(out)
}

/// One workspace's health at `now`, from its status and catalog rows.
///
/// Errors: `Config` for its policies; those of the repository (its PITR window).
async fn workspace_health(
    core: &Core,
    status: super::workspace::WorkspaceStatus,
    rows: &StatusRows,
    now: DateTime<Utc>,
) -> Result<Health> {
    let name = status.workspace.clone();
    let thresholds = Thresholds::for_workspace(&core.config, &name)?;
    let (earliest, latest, physical_bytes) =
        if thresholds.max_wal_lag_seconds.is_some() || status.last_base_backup.is_some() {
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
    let indexed: Option<super::snapshot::SnapshotSummary> = match &rows.newest_snapshot {
        Some(row) => Some(
            serde_json::from_str(row).map_err(|e| Error::integrity(format!("the catalog's snapshot index: {e}")))?,
        ),
        None => None,
    };
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
    let copies: Vec<CopyHealth> = core
        .config
        .config
        .copies
        .keys()
        .map(|name| {
            let state = rows.copies.iter().find(|c| &c.copy == name);
            CopyHealth {
                name: name.clone(),
                caught_up_to: state.map(|s| s.caught_up_to),
                lag_seconds: state.map(|s| (now - s.caught_up_to).num_seconds().max(0)),
                snapshots: state.map(|s| s.snapshots),
            }
        })
        .collect();
    let observed =
        Observed { status: &status, newest_snapshot: newest_snapshot_at, wal_latest: latest, copies: &copies };
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
        copies,
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
