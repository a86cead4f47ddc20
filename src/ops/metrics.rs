//! `/metrics`: what the catalog and the daemon's newest health evaluation say, gathered
//! for a scrape and encoded by the monitor engine ([`crate::monitor::metrics`]).

use chrono::Utc;

use super::Core;
use crate::catalog::copy_states::CopyStateRow;
use crate::catalog::stats::{JobStats, NewestDrill};
use crate::error::Result;
pub use crate::monitor::metrics::*;

/// The metrics text: OpenMetrics when `openmetrics`, else the classic text format.
///
/// Errors: `Internal` when encoding fails (a bug).
pub async fn render(core: &Core, openmetrics: bool) -> Result<String> {
    let mut scrape = Scrape {
        workspaces: core.config.config.workspaces.keys().cloned().collect(),
        health: core.monitor.latest(),
        now: unix(Utc::now()),
        ..Default::default()
    };
    match gather(core, &scrape.workspaces).await {
        Ok(((jobs, drills, snapshots), fleet, copies)) => {
            (scrape.catalog_up, scrape.jobs, scrape.drills, scrape.snapshots) = (true, jobs, drills, snapshots);
            scrape.fleet = fleet;
            let now = Utc::now();
            scrape.copies = copies
                .into_iter()
                .filter(|c| core.config.config.copies.contains_key(&c.copy))
                .map(|c| (c.workspace.clone(), c.copy.clone(), c.lag_seconds(now) as f64))
                .collect();
        }
        Err(e) => tracing::warn!(error = %e.report(), "metrics: the catalog cannot be read"),
    }
    core.metrics.encode(scrape, openmetrics)
}

type Gathered = (Vec<JobStats>, Vec<NewestDrill>, Vec<(String, String, u64, u64)>);

async fn gather(core: &Core, workspaces: &[String]) -> Result<(Gathered, FleetFigures, Vec<CopyStateRow>)> {
    let catalog = core.catalog().await?;
    let jobs = catalog.job_stats().await?;
    let drills = catalog.newest_drills().await?;
    let snapshots = catalog.snapshot_totals().await?.into_iter().filter(|(w, ..)| workspaces.contains(w)).collect();
    Ok(((jobs, drills, snapshots), fleet(core, catalog).await?, catalog.copy_states().await?))
}

/// The fleet's figures: live members by role, takeovers, the last day's claim delays, and
/// how many live daemons serve each scheduled workspace of this config.
async fn fleet(core: &Core, catalog: &crate::catalog::Catalog) -> Result<FleetFigures> {
    let members = catalog.members(std::time::Duration::from_secs(365 * 24 * 3600)).await?;
    let alive: Vec<_> = members.iter().filter(|m| m.alive).collect();
    let delays = catalog.claim_delays(catalog.now().await? - chrono::Duration::days(1)).await?;
    let quantile = |q: f64| delays[((delays.len() - 1) as f64 * q).round() as usize];
    let scheduled = super::serve::schedules(core).unwrap_or_default();
    let mut schedule_daemons: Vec<(String, u64)> = Vec::new();
    for s in scheduled {
        if schedule_daemons.iter().any(|(w, _)| *w == s.workspace) {
            continue;
        }
        let serving = alive.iter().filter(|m| m.role == "daemon" && m.serves.contains(&s.workspace)).count();
        schedule_daemons.push((s.workspace, serving as u64));
    }
    Ok(FleetFigures {
        members: ["daemon", "api", "cli"]
            .iter()
            .map(|role| (role.to_string(), alive.iter().filter(|m| m.role == *role).count() as u64))
            .collect(),
        takeovers: members.iter().map(|m| m.takeovers.max(0) as u64).sum(),
        claim_delay: (!delays.is_empty()).then(|| (quantile(0.5), quantile(0.99))),
        schedule_daemons,
    })
}
