//! Where a drill's report is kept: the catalog (`drill history`) and, encrypted, the
//! repository (the truth, from which `catalog rebuild` brings the history back).

use serde::{Deserialize, Serialize};

use super::DrillReport;
use crate::actor::Actor;
use crate::catalog::{Catalog, Trigger};
use crate::error::Result;
use crate::keys::{Identities, Recipients};
use crate::repo::{Repository, layout};

/// A drill's report as the repository keeps it, encrypted (a failed assertion's details
/// may show data): `workspaces/<ws>/drills/<id>.json.age`.
#[derive(Debug, Serialize, Deserialize)]
pub struct StoredDrill {
    pub trigger: Trigger,
    pub report: DrillReport,
}

/// Records the report in the catalog (`drill history`) and in the repository (the truth,
/// from which `catalog rebuild` brings the history back). Failures are logged: the drill
/// itself happened either way.
pub async fn record(
    catalog: Result<&Catalog>,
    repo: &Repository,
    recipients: Result<&Recipients>,
    report: &DrillReport,
    trigger: Trigger,
    actor: &Actor,
) {
    let who = actor.to_string();
    let catalogued = async { catalog?.record_drill(&report.row(), trigger, Some(&who)).await };
    if let Err(e) = catalogued.await {
        tracing::warn!(error = %e.report(), "the drill's report could not be recorded in the catalog");
    }
    let stored = async {
        let key = layout::drill_report(&report.workspace, &layout::new_snapshot_id(report.started_at));
        repo.put_sealed(&key, &StoredDrill { trigger, report: report.clone() }, recipients?).await
    };
    if let Err(e) = stored.await {
        tracing::warn!(error = %e.report(), "the drill's report could not be stored in the repository");
    }
}

/// Every drill report the repository holds for a workspace, oldest first. An unreadable
/// one is skipped with a warning.
///
/// Errors: `Unavailable` for the store, `Key` without an identity.
pub async fn stored_reports(repo: &Repository, identities: &Identities, workspace: &str) -> Result<Vec<StoredDrill>> {
    let mut listed = repo.list(&layout::drill_reports(workspace)).await?;
    listed.sort_by(|a, b| a.key.cmp(&b.key));
    let mut out = Vec::with_capacity(listed.len());
    for object in listed {
        let what = format!("drill report {}", object.key);
        match repo.read_sealed::<StoredDrill>(&object.key, identities, &what).await {
            Ok(Some(stored)) => out.push(stored),
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(object = %object.key, error = %e.report(), "skipping an unreadable drill report");
            }
        }
    }
    Ok(out)
}
