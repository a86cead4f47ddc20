//! `/metrics`: what the catalog and the daemon's newest health evaluation say, gathered
//! for a scrape and encoded by the monitor engine ([`crate::monitor::metrics`]).

use chrono::Utc;

use super::Core;
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
        Ok((jobs, drills, snapshots)) => {
            (scrape.catalog_up, scrape.jobs, scrape.drills, scrape.snapshots) = (true, jobs, drills, snapshots);
        }
        Err(e) => tracing::warn!(error = %e.report(), "metrics: the catalog cannot be read"),
    }
    core.metrics.encode(scrape, openmetrics)
}

type Gathered = (Vec<JobStats>, Vec<NewestDrill>, Vec<(String, String, u64, u64)>);

async fn gather(core: &Core, workspaces: &[String]) -> Result<Gathered> {
    let catalog = core.catalog().await?;
    let jobs = catalog.job_stats().await?;
    let drills = catalog.newest_drills().await?;
    let snapshots = catalog.snapshot_totals().await?.into_iter().filter(|(w, ..)| workspaces.contains(w)).collect();
    Ok((jobs, drills, snapshots))
}
