//! The overview of every workspace a caller may see, worst first: what the web console's
//! first page and `GET /v1/overview` show. Health is `status`'s evaluation (the monitor
//! engine); this adds what a person scanning many workspaces wants beside it: the
//! repository's size and the next scheduled run.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::Core;
use crate::actor::Actor;
use crate::error::Result;
use crate::monitor::status::LastDrill;
use crate::ops::health::{HealthOptions, HealthReport, Unknown};

/// One workspace's line.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct OverviewRow {
    pub workspace: String,
    /// `failing`, `unknown` (it could not be read), `stale` or `healthy`.
    pub state: String,
    /// Why it is not healthy, one line each.
    pub problems: Vec<String>,
    pub newest_snapshot: Option<String>,
    pub newest_snapshot_at: Option<DateTime<Utc>>,
    /// The newest drill (passed or not).
    pub last_drill: Option<LastDrill>,
    /// The newest drill that passed, and the restore time (RTO) it proved.
    pub last_passing_drill: Option<LastDrill>,
    /// The point-in-time window, for workspaces that archive WAL.
    pub pitr_earliest: Option<DateTime<Utc>>,
    pub pitr_latest: Option<DateTime<Utc>>,
    /// Seconds of changes a restore now would lose (the newest restorable moment's age).
    pub rpo_seconds: Option<i64>,
    /// Bytes the repository holds for it: snapshots (their objects and new media), base
    /// backups and WAL.
    pub repository_bytes: u64,
    /// The next scheduled run of any of its policies.
    pub next_run: Option<NextRun>,
    /// Operations running now.
    pub running: Vec<String>,
    /// Its copies (`[copies.NAME]`) and how far each is behind.
    pub copies: Vec<crate::monitor::health::CopyHealth>,
}

/// A policy's next run.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct NextRun {
    pub policy: String,
    pub at: DateTime<Utc>,
}

/// What `GET /v1/overview` answers.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Overview {
    pub at: DateTime<Utc>,
    /// Worst first (failing, unknown, stale, healthy), then by name.
    pub workspaces: Vec<OverviewRow>,
}

/// What the overview takes.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct OverviewOptions {
    /// One workspace's line (default: every one the caller may see).
    pub workspace: Option<String>,
}

/// The overview of the workspaces `actor` may see (a token limited to some: those).
///
/// Errors: `Forbidden` for a workspace asked that the actor may not read; `NotFound` for
/// one not configured; `Unavailable` for the catalog (a workspace that cannot be read is a
/// row in state `unknown`, the others are still shown).
pub async fn overview(core: &Core, opts: &OverviewOptions, actor: &Actor, now: DateTime<Utc>) -> Result<Overview> {
    let grant = actor.grant();
    crate::access::check(&grant, crate::access::Action::Read, opts.workspace.as_deref())?;
    let mut reports: Vec<HealthReport> = Vec::new();
    let names: Vec<String> = match &opts.workspace {
        Some(ws) => {
            core.config.workspace(ws)?;
            vec![ws.clone()]
        }
        None => grant.workspaces.clone(),
    };
    if names.is_empty() {
        reports.push(super::health::health_at(core, &HealthOptions { workspace: None }, actor, now).await?);
    } else {
        for ws in names.iter().filter(|w| core.config.config.workspaces.contains_key(*w)) {
            let opts = HealthOptions { workspace: Some(ws.clone()) };
            match super::health::health_at(core, &opts, actor, now).await {
                Ok(report) => reports.push(report),
                Err(e) => reports.push(HealthReport {
                    at: now,
                    state: "unknown".into(),
                    workspaces: Vec::new(),
                    unknown: vec![Unknown { workspace: ws.clone(), error: e.report() }],
                }),
            }
        }
    }
    let totals = core.catalog().await?.snapshot_totals().await?;
    let snapshot_bytes = |ws: &str| totals.iter().filter(|t| t.0 == ws).map(|t| t.3).sum::<u64>();
    let mut rows = Vec::new();
    for report in reports {
        for h in report.workspaces {
            let physical = h.physical_bytes.map_or(0, |b| b.base_backups + b.wal);
            rows.push(OverviewRow {
                state: h.state.clone(),
                problems: h.problems.iter().map(|p| p.message.clone()).collect(),
                newest_snapshot: h.newest_snapshot.clone(),
                newest_snapshot_at: h.newest_snapshot_at,
                last_drill: h.status.last_drill.clone(),
                last_passing_drill: h.status.last_passing_drill.clone(),
                pitr_earliest: h.pitr_earliest,
                pitr_latest: h.pitr_latest,
                rpo_seconds: h.rpo_seconds,
                repository_bytes: snapshot_bytes(&h.workspace) + physical,
                next_run: next_run(core, &h.workspace, now),
                running: h.status.running.iter().map(|j| j.operation.clone()).collect(),
                copies: h.copies,
                workspace: h.workspace,
            });
        }
        for u in report.unknown {
            rows.push(OverviewRow {
                state: "unknown".into(),
                problems: vec![u.error],
                newest_snapshot: None,
                newest_snapshot_at: None,
                last_drill: None,
                last_passing_drill: None,
                pitr_earliest: None,
                pitr_latest: None,
                rpo_seconds: None,
                repository_bytes: snapshot_bytes(&u.workspace),
                next_run: next_run(core, &u.workspace, now),
                running: Vec::new(),
                copies: Vec::new(),
                workspace: u.workspace,
            });
        }
    }
    rows.sort_by(|a, b| (rank(&a.state), &a.workspace).cmp(&(rank(&b.state), &b.workspace)));
    Ok(Overview { at: now, workspaces: rows })
}

/// Worst first.
fn rank(state: &str) -> u8 {
    match state {
        "failing" => 0,
        "unknown" => 1,
        "stale" => 2,
        "healthy" => 3,
        _ => 1,
    }
}

/// The soonest next run of the workspace's scheduled policies (policies that cannot be read
/// have none: `status` names their error).
fn next_run(core: &Core, workspace: &str, now: DateTime<Utc>) -> Option<NextRun> {
    let policies = crate::schedule::policy::policies_for(&core.config, workspace).ok()?;
    policies
        .iter()
        .filter_map(|p| p.next_run(now).map(|at| NextRun { policy: p.name.clone(), at }))
        .min_by_key(|n| n.at)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_worst_comes_first_and_an_unknown_state_is_never_read_as_healthy() {
        let mut states = vec!["healthy", "stale", "bogus", "failing", "unknown"];
        states.sort_by_key(|s| super::rank(s));
        assert_eq!(states, ["failing", "bogus", "unknown", "stale", "healthy"]);
    }
}
